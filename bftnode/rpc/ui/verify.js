// Checks the explorer runs in the browser: Ed25519 signatures of validators (WebCrypto) over the
// canonical msgpack bytes the node signs (consensus.codec.signing_bytes), and a tx result's
// RFC 6962 path to its block's results root (storage/results_root.py). Nothing here trusts the
// node's word for a signature: every signed byte string is rebuilt from the fields shown.
"use strict";

const V = (() => {
  const hex = {
    dec(s) {
      if (typeof s !== "string" || s.length % 2 || /[^0-9a-f]/i.test(s)) throw new Error("not hex");
      const out = new Uint8Array(s.length / 2);
      for (let i = 0; i < out.length; i++) out[i] = parseInt(s.substr(2 * i, 2), 16);
      return out;
    },
    enc(b) { return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join(""); },
  };
  const b64 = (s) => Uint8Array.from(atob(s), (c) => c.charCodeAt(0));
  const cat = (...parts) => {
    const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    let at = 0;
    for (const p of parts) { out.set(p, at); at += p.length; }
    return out;
  };
  const equal = (a, b) => a.length === b.length && a.every((x, i) => x === b[i]);

  // msgpack, the subset msgspec writes for our signed structs: unsigned ints, bin, arrays
  function uint(n) {
    n = BigInt(n);
    if (n < 0n) throw new Error("negative");
    if (n < 128n) return Uint8Array.of(Number(n));
    const width = n < 256n ? 1 : n < 65536n ? 2 : n < 4294967296n ? 4 : 8;
    const out = new Uint8Array(1 + width);
    out[0] = { 1: 0xcc, 2: 0xcd, 4: 0xce, 8: 0xcf }[width];
    for (let i = width; i >= 1; i--) { out[i] = Number(n & 0xffn); n >>= 8n; }
    return out;
  }
  function bin(b) {
    const n = b.length;
    const head = n < 256 ? Uint8Array.of(0xc4, n)
      : n < 65536 ? Uint8Array.of(0xc5, n >> 8, n & 255)
      : Uint8Array.of(0xc6, n >>> 24, (n >> 16) & 255, (n >> 8) & 255, n & 255);
    return cat(head, b);
  }
  function array(items) {
    if (items.length > 15) throw new Error("array too long");
    return cat(Uint8Array.of(0x90 + items.length), ...items);
  }
  function decode(buf) {  // -> [value, next offset]; ints as BigInt-safe Numbers, bin as bytes
    let at = 0;
    const be = (n) => { let v = 0n; for (let i = 0; i < n; i++) v = (v << 8n) | BigInt(buf[at++]); return v; };
    function one() {
      if (at >= buf.length) throw new Error("truncated");
      const t = buf[at++];
      if (t < 0x80) return t;
      if (t >= 0x90 && t <= 0x9f) return Array.from({ length: t - 0x90 }, one);
      if (t === 0xdc) { const n = Number(be(2)); return Array.from({ length: n }, one); }
      if (t >= 0xcc && t <= 0xcf) {
        const v = be({ 0xcc: 1, 0xcd: 2, 0xce: 4, 0xcf: 8 }[t]);
        if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new Error("int too large");
        return Number(v);
      }
      if (t >= 0xc4 && t <= 0xc6) {
        const n = Number(be({ 0xc4: 1, 0xc5: 2, 0xc6: 4 }[t]));
        if (at + n > buf.length) throw new Error("truncated");
        const out = buf.slice(at, at + n); at += n; return out;
      }
      throw new Error("unexpected msgpack type 0x" + t.toString(16));
    }
    const v = one();
    if (at !== buf.length) throw new Error("trailing bytes");
    return v;
  }

  const keys = new Map();
  async function ed25519(pubHex, data, sig) {
    if (!crypto.subtle) throw new Error("WebCrypto needs a secure context (localhost or TLS)");
    let k = keys.get(pubHex);
    if (!k) {
      k = await crypto.subtle.importKey("raw", hex.dec(pubHex), { name: "Ed25519" }, false, ["verify"]);
      keys.set(pubHex, k);
    }
    return crypto.subtle.verify({ name: "Ed25519" }, k, sig, data);
  }
  const sha256 = async (b) => new Uint8Array(await crypto.subtle.digest("SHA-256", b));

  // chain: {domain: Uint8Array, keys: {replica index: hex key}, validators: [...], quorum}
  async function signedBy(chain, replica, body, sig) {
    const key = chain.keys[replica];
    if (key === undefined) return false;
    try { return await ed25519(key, cat(chain.domain, body), sig); } catch (e) { return false; }
  }

  // A block's commit certificate: each Commit(view, seq, digest, replica) as the node stored it
  // (wire version byte + msgpack), re-encoded with its signature emptied and checked.
  async function commitCertificate(chain, commit) {
    const byReplica = new Map();
    for (const c of commit.commits || []) {
      let f;
      try { f = decode(b64(c).slice(1)); } catch (e) { continue; }
      if (!Array.isArray(f) || f.length !== 6 || f[0] !== 4) continue;
      const [, view, seq, digest, replica, sig] = f;
      if (view !== commit.view || seq !== commit.seq || hex.enc(digest) !== commit.digest) continue;
      if (byReplica.has(replica)) continue;
      const body = array([uint(4), uint(view), uint(seq), bin(digest), uint(replica), bin(new Uint8Array())]);
      byReplica.set(replica, await signedBy(chain, replica, body, sig));
    }
    const valid = [...byReplica].filter(([, ok]) => ok).map(([r]) => r).sort((a, b) => a - b);
    return { valid, checked: [...byReplica.keys()].sort((a, b) => a - b), ok: valid.length >= chain.quorum };
  }

  // A state certificate: StateVote(height, block_hash, state_root, results_root, replica).
  async function stateCertificate(chain, cert) {
    const fixed = [uint(15), uint(cert.height), bin(hex.dec(cert.block_hash)),
      bin(hex.dec(cert.state_root)), bin(hex.dec(cert.results_root))];
    const valid = new Set();
    for (const item of (cert.certificate || []).slice(0, 4 * chain.validators.length)) {
      const r = item && item.replica;
      if (!Number.isInteger(r) || valid.has(r)) continue;
      let sig;
      try { sig = hex.dec(item.sig); } catch (e) { continue; }
      const body = array([...fixed, uint(r), bin(new Uint8Array())]);
      if (await signedBy(chain, r, body, sig)) valid.add(r);
    }
    const list = [...valid].sort((a, b) => a - b);
    return { valid: list, ok: list.length >= chain.quorum };
  }

  const node = async (l, r) => sha256(cat(Uint8Array.of(1), l, r));

  // tx answer (with prove) -> {ok, why, signers}: its result's leaf, path to the results root,
  // and the root under 2f+1 validators' StateVotes.
  async function txProof(chain, tx) {
    const p = tx.proof;
    if (!p || !p.result) return { ok: false, why: "no proof (the node runs without authenticated_state)" };
    const cert = await stateCertificate(chain, p);
    if (!cert.ok) return { ok: false, why: `state certificate: ${cert.valid.length} valid signatures, needs ${chain.quorum}` };
    if (p.height !== tx.height || p.result.index !== tx.index) return { ok: false, why: "height/index differ from the proof" };
    const leafBody = array([bin(hex.dec(tx.hash)), bin(hex.dec(tx.client_id)), uint(tx.request_seq),
      uint(tx.height), uint(tx.index), uint(tx.code), bin(b64(tx.result_raw))]);
    let h = await sha256(cat(Uint8Array.of(0), leafBody));
    let fn = p.result.index, sn = p.result.count - 1;
    if (!(fn >= 0 && fn <= sn)) return { ok: false, why: "index outside the block" };
    for (const stepHex of p.result.path) {
      const step = hex.dec(stepHex);
      if (sn === 0) return { ok: false, why: "path longer than the tree is deep" };
      if (fn & 1 || fn === sn) {
        h = await node(step, h);
        if (!(fn & 1)) while ((fn & 1) === 0 && fn !== 0) { fn >>= 1; sn >>= 1; }
      } else {
        h = await node(h, step);
      }
      fn >>= 1; sn >>= 1;
    }
    if (sn !== 0) return { ok: false, why: "path shorter than the tree is deep" };
    if (!equal(h, hex.dec(p.results_root))) return { ok: false, why: "result does not match the results root" };
    return { ok: true, signers: cert.valid };
  }

  return { hex, b64, commitCertificate, stateCertificate, txProof, decode };
})();
