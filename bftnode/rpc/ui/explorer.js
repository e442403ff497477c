// The explorer: one page, hash routes (#/, #/block/H, #/tx/HASH, #/keys, …), JSON-RPC to the
// node that served it, live blocks over its WebSocket. Node data is shown with textContent
// only: keys, values and names are whatever clients wrote.
"use strict";

const main = document.getElementById("main");
let chain = null;  // {id, domain, keys, quorum, validators}
let rpcId = 0;

async function rpc(method, params = {}) {
  const r = await fetch("/", { method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ jsonrpc: "2.0", id: ++rpcId, method, params }) });
  const out = await r.json();
  if (out.error) throw new Error(`${method}: ${out.error.message}`);
  return out.result;
}

function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v; else if (k === "text") e.textContent = v; else e.setAttribute(k, v);
  }
  for (const k of kids.flat()) if (k !== null && k !== undefined) e.append(k instanceof Node ? k : String(k));
  return e;
}
const link = (href, text, cls) => el("a", { href, class: cls || "" }, text);
const short = (h) => (typeof h === "string" && h.length > 20 ? h.slice(0, 16) + "…" : String(h ?? ""));
const when = (ms) => (ms ? new Date(ms).toISOString().replace("T", " ").replace("Z", "") : "");
const mark = (ok, yes, no) => el("span", { class: ok ? "ok" : "bad" }, ok ? yes : no);

function table(cols, rows, id) {
  const t = el("table", id ? { id } : {});
  t.append(el("tr", {}, cols.map((c) => el("th", {}, c))));
  for (const r of rows) t.append(el("tr", {}, r.map((c) => el("td", {}, c))));
  return t;
}
function kv(pairs) {
  const t = el("table", { class: "kv" });
  for (const [k, v] of pairs) t.append(el("tr", {}, el("th", {}, k), el("td", {}, v)));
  return t;
}
function card(k, v, id) {
  return el("div", { class: "card" }, el("div", { class: "v", id: id || "" }, v), el("div", { class: "k" }, k));
}
function show(...nodes) { main.replaceChildren(...nodes); }

async function loadChain() {
  const [v, st] = await Promise.all([rpc("validators"), rpc("status")]);
  chain = {
    id: v.chain_id, domain: V.hex.dec(st.domain), genesis: st.genesis_hash, quorum: v.quorum,
    keys: Object.fromEntries(v.validators.map((x) => [x.index, x.public_key])), validators: v.validators,
    self: st.validator_index,  // this node's index: fixed for the page's life
  };
  document.getElementById("chain").textContent = `chain ${v.chain_id} · node ${st.validator_index ?? "?"}`;
}

function txRate(headers) {
  if (headers.length < 2) return 0;
  const span = headers[0].time_ms - headers[headers.length - 1].time_ms;
  const txs = headers.slice(0, -1).reduce((n, h) => n + (h.num_txs || 0), 0);
  return span > 0 ? (1000 * txs) / span : 0;
}

function blockRow(h) {
  return [link(`#/block/${h.height}`, String(h.height)), el("span", { class: "mono" }, short(h.hash)),
    String(h.num_txs ?? 0), String(h.view ?? ""), when(h.time_ms)];
}

async function overview() {
  const [st, health, bc] = await Promise.all([rpc("status"), rpc("health"), rpc("blockchain")]);
  const why = [...(health.why || []), ...(st.why ? [st.why] : [])];
  show(
    el("h1", {}, "Chain overview"),
    el("div", { class: "cards" },
      card("height", String(st.height), "height"), card("view", String(st.view)),
      card("primary", String(st.primary)), card("tx/s (last blocks)", txRate(bc.blocks).toFixed(1), "txrate"),
      card("this node", health.ok ? "healthy" : "unhealthy")),
    why.length ? el("p", { class: "warn" }, "why: " + why.join("; ")) : el("p", { class: "muted" }, "nothing stuck"),
    el("h2", {}, "Validators"), await validatorTable(health),
    el("h2", {}, "Latest blocks"),
    table(["height", "hash", "txs", "view", "time (UTC)"], bc.blocks.slice(0, 15).map(blockRow), "blocks"));
}

async function validatorTable(health) {
  const [net, ev] = await Promise.all([rpc("net_info"), rpc("evidence")]);
  const up = new Map((net.peers || []).map((p) => [p.index, p.connected]));
  const seen = (health && health.replica && health.replica.peers_executed) || {};
  const convicted = new Map((ev.convicted || []).map((c) => [c.replica, c]));
  const self = chain.self;
  return table(["#", "name", "public key", "connected", "last executed", "convicted"],
    chain.validators.map((v) => [String(v.index), v.name || "", el("span", { class: "mono" }, short(v.public_key)),
      v.index === self ? el("span", { class: "ok" }, "this node") : mark(up.get(v.index), "yes", "no"),
      v.index === self ? String(health.height) : String(seen[v.index] ?? seen[String(v.index)] ?? "?"),
      convicted.has(v.index) ? el("span", { class: "bad" }, `at ${convicted.get(v.index).height} (${convicted.get(v.index).kind})`) : "no"]),
    "validators");
}

async function validators() {
  show(el("h1", {}, "Validators"), await validatorTable(await rpc("health")),
    kv([["chain id", chain.id], ["quorum (2f+1)", String(chain.quorum)],
      ["genesis hash", el("span", { class: "mono", id: "genesis-hash" }, chain.genesis)]]));
}

async function blocks() {
  const bc = await rpc("blockchain");
  show(el("h1", {}, "Blocks"), table(["height", "hash", "txs", "view", "time (UTC)"], bc.blocks.map(blockRow), "blocks"));
}

async function block(height) {
  const b = await rpc("block", { height: Number(height) });
  const cert = await V.commitCertificate(chain, b.commit);
  const signers = el("div", { id: "signers" }, cert.valid.length
    ? cert.valid.map((r) => el("div", {}, el("span", { class: "ok" }, "✓ "), `validator ${r}` + (chain.validators[r]?.name ? ` (${chain.validators[r].name})` : "") + ` · key ${short(chain.keys[r])}`))
    : el("span", { class: "bad" }, "no valid signature"));
  const parts = [
    el("h1", {}, `Block ${b.height}`),
    kv([["hash", el("span", { class: "mono" }, b.hash)], ["previous", link(`#/block/${b.height - 1}`, short(b.prev_hash))],
      ["time (UTC)", when(b.time_ms)], ["view", String(b.view)], ["batch digest", el("span", { class: "mono" }, b.digest)],
      ["state root", el("span", { class: "mono" }, b.state_root)], ["results root", el("span", { class: "mono" }, b.results_root)],
      ["transactions", String(b.num_txs)]]),
    el("h2", {}, "Commit certificate"),
    el("p", { id: "cert-verdict" }, mark(cert.ok, `verified in this page: ${cert.valid.length} of ${chain.validators.length} validators signed (quorum ${chain.quorum})`,
      `NOT verified: ${cert.valid.length} valid signatures, needs ${chain.quorum}`)),
    signers,
  ];
  if (b.state_certificate) {
    const sc = await V.stateCertificate(chain, b.state_certificate);
    parts.push(el("h2", {}, "State certificate"),
      el("p", {}, mark(sc.ok, `roots verified in this page: signed by validators ${sc.valid.join(", ")}`, `NOT verified: ${sc.valid.length} valid signatures`)));
  }
  parts.push(el("h2", {}, "Transactions"),
    table(["#", "hash"], (b.tx_hashes || []).map((h, i) => [String(i), link(`#/tx/${h}`, h, "mono")]), "txs"));
  show(...parts);
}

async function tx(hash) {
  const t = await rpc("tx", { hash, prove: true });
  const proof = await V.txProof(chain, t);
  let inBlock = null;
  if (t.commit) {
    const c = await V.commitCertificate(chain, t.commit);
    inBlock = mark(c.ok, `block ${t.height} commit certificate verified in this page (${c.valid.join(", ")})`, "commit certificate NOT verified");
  }
  show(el("h1", {}, "Transaction"),
    kv([["hash", el("span", { class: "mono" }, t.hash)], ["block", link(`#/block/${t.height}`, String(t.height))],
      ["index", String(t.index)], ["client", el("span", { class: "mono" }, t.client_id)], ["request seq", String(t.request_seq)],
      ["status", `${t.code_name} (code ${t.code})`],
      ["result proof", el("span", { id: "proof-verdict" }, proof.ok
        ? mark(true, `verified in this page against the results root certified by validators ${proof.signers.join(", ")}`)
        : el("span", { class: "warn" }, `not verified: ${proof.why}`))],
      ["commit", inBlock || "—"]]),
    el("h2", {}, "Result"), el("pre", {}, JSON.stringify(t.result, null, 2)));
}

async function keys(query) {
  const prefix = query.get("prefix") || "";
  const form = el("form", { id: "prefix-form" }, el("input", { id: "prefix", value: prefix, placeholder: "key prefix" }), el("button", {}, "list"));
  form.addEventListener("submit", (e) => { e.preventDefault(); location.hash = `#/keys?prefix=${encodeURIComponent(form.querySelector("input").value)}`; });
  const r = await rpc("kv_range", { key: prefix, prefix: true, limit: 50 });
  show(el("h1", {}, "Keys"), form,
    table(["key", "value", "mod revision", "version", "lease"], (r.kvs || []).map((k) =>
      [el("span", { class: "mono" }, k.key), el("span", { class: "mono" }, short(k.value)), String(k.mod_revision), String(k.version), String(k.lease || "")]), "keys"),
    el("p", { class: "muted" }, `${(r.kvs || []).length} shown at revision ${r.read_revision}${r.more ? " (more: narrow the prefix)" : ""}`));
}

async function leases() {
  const r = await rpc("lease_list", { limit: 100 });
  show(el("h1", {}, "Leases"), table(["id", "ttl ms", "remaining ms", "owner"], r.items.map((l) =>
    [String(l.id), String(l.ttl_ms), String(l.remaining_ms), el("span", { class: "mono" }, short(l.owner))]), "leases"));
}

async function locks(kind) {
  const r = await rpc("lock_list", { kind, limit: 100 });
  const title = kind === "election" ? "Elections" : "Locks";
  show(el("h1", {}, title), table(
    kind === "election" ? ["election", "leader", "token", "lease", "candidates waiting"] : ["lock", "holder (lease)", "token", "queue", "last token"],
    r.items.map((x) => kind === "election"
      ? [x.name, x.holder ? String(x.holder.value ?? "") : "—", x.holder ? String(x.holder.token) : "", x.holder ? String(x.holder.lease) : "", String(x.waiters.length)]
      : [x.name, x.holder ? `lease ${x.holder.lease}` : "free", x.holder ? String(x.holder.token) : "", x.waiters.map((w) => `lease ${w.lease}`).join(", ") || "—", String(x.last_token)]),
    kind === "election" ? "elections" : "locks"));
}

async function evidence() {
  const ev = await rpc("evidence");
  show(el("h1", {}, "Evidence and convictions"),
    el("h2", {}, "Convicted (committed evidence)"),
    table(["validator", "height", "kind"], (ev.convicted || []).map((c) => [String(c.replica), link(`#/block/${c.height}`, String(c.height)), c.kind]), "convicted"),
    el("h2", {}, "Misbehaviour seen by this node"),
    table(["kind", "validator", "reason"], (ev.evidence || []).slice(-100).reverse().map((e) => [e.kind, String(e.replica), e.reason || ""]), "evidence"));
}

async function route() {
  const [path, qs] = (location.hash.slice(1) || "/").split("?");
  const parts = path.split("/").filter(Boolean);
  const query = new URLSearchParams(qs || "");
  try {
    if (!chain) await loadChain();
    if (parts[0] === "block" && parts[1]) await block(parts[1]);
    else if (parts[0] === "tx" && parts[1]) await tx(parts[1]);
    else if (parts[0] === "blocks") await blocks();
    else if (parts[0] === "validators") await validators();
    else if (parts[0] === "keys") await keys(query);
    else if (parts[0] === "leases") await leases();
    else if (parts[0] === "locks") await locks("lock");
    else if (parts[0] === "elections") await locks("election");
    else if (parts[0] === "evidence") await evidence();
    else await overview();
  } catch (e) {
    show(el("h1", {}, "Error"), el("p", { class: "bad", id: "error" }, String(e.message || e)));
  }
}

function live() {
  const status = document.getElementById("live");
  const ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/websocket`);
  ws.onopen = () => {
    status.textContent = "live";
    ws.send(JSON.stringify({ jsonrpc: "2.0", id: 1, method: "subscribe", params: { topic: "blocks" } }));
  };
  ws.onmessage = (m) => {
    const msg = JSON.parse(m.data);
    if (msg.method !== "subscription") return;
    const h = msg.params.result;
    status.textContent = `live · height ${h.height}`;
    const height = document.getElementById("height");
    if (height) height.textContent = String(h.height);
    const t = document.getElementById("blocks");
    if (t && (location.hash || "#/") === "#/") {
      t.rows[0].after(el("tr", {}, blockRow(h).map((c) => el("td", {}, c))));
      while (t.rows.length > 16) t.deleteRow(-1);
    }
  };
  ws.onclose = () => { status.textContent = "reconnecting…"; setTimeout(live, 2000); };
}

document.getElementById("search").addEventListener("submit", (e) => {
  e.preventDefault();
  const q = document.getElementById("q").value.trim();
  location.hash = /^\d+$/.test(q) ? `#/block/${q}` : `#/tx/${q}`;
});
window.addEventListener("hashchange", route);
route();
live();
