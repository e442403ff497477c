"""`python -m testnet nemesis --duration S --seed N [--json] [--out DIR]`: a Jepsen-style run.

Starts a `--netns` testnet (root only: exit 2 otherwise), runs concurrent clients
(testnet/nemesis_clients.py: KV writes, linearizable reads, CAS txns, adds, and lock clients
writing to a protected resource with fencing tokens, testnet/protected.py) while a seeded
schedule of faults runs (testnet/nemesis_faults.py), then heals everything and checks:
    linearizable      every register key's write/read/CAS history (testnet/history_cas.py)
    lost_writes       every acknowledged add is in the final read, nothing else is
    mutual_exclusion  the resource's record: accepted tokens never go down, no interleaving,
                      each accepted token granted by the chain to the writer
    chain_locks       the chain's lock events (no overlapping holders, tokens increase, FIFO,
                      expiry timing: testnet.history.check_locks)
    exactly_once      every acknowledged tx in exactly one block, no tx in two
    agreement         every node has the same block hash at every height
Writes DIR/report.json, DIR/history.jsonl, DIR/timeline.png (testnet/nemesis_report.py) and
prints the report (one JSON object with --json: at least linearizable, lost, ops, faults).
Exit 0: every verdict ok; 1: a violation or an unknown verdict; 2: cannot run here.
Imports: stdlib, trio, bftnode.client, testnet (launcher, links, netns, bench_locks'
EventRecorder, history, history_cas, protected, nemesis_*).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import trio

from testnet import history as H
from testnet import history_cas as HC
from testnet import nemesis_faults as NF
from testnet import nemesis_report as NR
from testnet import netns as ns
from testnet import protected
from testnet.bench_locks import EventRecorder, as_app_events
from testnet.nemesis_clients import Recorder, Workload, prepare, run_clients


def progress(msg: str) -> None:
    print(f"nemesis {time.strftime('%H:%M:%S')} {msg}", file=sys.stderr, flush=True)


CONSENSUS = {"timeout_request_ms": 1000, "timeout_view_change_ms": 1000, "heartbeat_ms": 200}
SETTLE_S = 90.0


def _chain(url: str, top: int) -> dict[int, dict]:
    """Headers 1..top of one node (`blockchain`, 100 per call): height -> header."""
    from testnet.launcher import LauncherError, rpc

    out: dict[int, dict] = {}
    hi = top
    while hi >= 1:
        lo = max(1, hi - 99)
        for attempt in range(50):
            try:
                res = rpc(url, "blockchain", {"min_height": lo, "max_height": hi}, timeout=20)
                break
            except LauncherError as exc:  # the node's per-address read budget: slow down
                if "rate limited" not in str(exc) or attempt == 49:
                    raise
                time.sleep(0.2)
        for b in res["blocks"]:
            out[int(b["height"])] = b
        hi = lo - 1
    return out


def check_chain(chains: list[dict[int, dict]], acked: list[str]) -> tuple[dict, dict]:
    """(agreement, exactly_once) over every node's headers."""
    top = min((max(c) if c else 0) for c in chains)
    forks = [h for h in range(1, top + 1)
             if len({c.get(h, {}).get("hash") for c in chains}) != 1]
    agreement = {"result": H.VIOLATION if forks else H.OK, "heights": top,
                 "nodes": len(chains), "forks": forks[:20]}
    counts: Counter[str] = Counter()
    for h in range(1, top + 1):
        counts.update(chains[0][h].get("tx_hashes", []))
    twice = sorted(t for t, n in counts.items() if n > 1)
    missing = sorted(t for t in acked if counts[t] == 0)
    once = {"result": H.VIOLATION if twice or missing else H.OK, "acknowledged": len(acked),
            "txs_in_chain": sum(counts.values()), "twice": twice[:20],
            "acknowledged_missing": missing[:20]}
    return agreement, once


async def _final_reads(urls: list[str], keys_dir: Path, w: Workload, rec: Recorder,
                       kv_procs: list[str]) -> tuple[dict[str, list[str]] | None, int]:
    """Linearizable reads of every register (into the history) and of every set prefix;
    returns (set keys present per process or None, height of the last read)."""
    from bftnode.app import ops as O
    from bftnode.client import AsyncClient, ClientError

    height = 0
    sets: dict[str, list[str]] | None = {}
    async with AsyncClient(urls, keys_dir / "final.key", timeout=20.0) as c:
        for k in w.reg_keys():
            op = rec.invoke("final", "read", k)
            try:
                res = await c.commit_op(O.range_(k.encode()))
            except ClientError as exc:
                rec.unknown(op, exc)
                continue
            kvs = (res.get("result") or {}).get("kvs")
            rec.done(op, "ok", value=kvs[0].get("value") if kvs else None, tx=res.get("hash"))
            height = max(height, int(res.get("height") or 0))
        for p in kv_procs:
            try:
                res = await c.commit_op(O.range_(w.set_prefix(p).encode(), prefix=True,
                                                 keys_only=True))
            except ClientError:
                sets = None
                break
            r = res.get("result") or {}
            if r.get("more"):
                sets = None
                break
            assert sets is not None
            sets[p] = [kv["key"] for kv in r.get("kvs", [])]
            height = max(height, int(res.get("height") or 0))
    return sets, height


class FailoverRecorder(EventRecorder):
    """An EventRecorder that resubscribes at the next node after a failure (a restarted node
    no longer holds the app events of the heights before its restart)."""

    def __init__(self, urls: list[str], from_height: int) -> None:
        super().__init__(urls[0], from_height)
        self.urls = urls

    def _resume_height(self) -> int:
        if self.reconnects:  # the connection after this one goes to the next node
            self.url = self.urls[self.reconnects % len(self.urls)].rstrip("/")
        return super()._resume_height()


async def _all_events(urls: list[str], keys_dir: Path, w: Workload, recorders: list[Any],
                      height: int) -> tuple[int, list[dict] | None]:
    """A sentinel put after everything; the events of the first recorder that streams up to
    its event (then it has every event of the run: a recorder's stream has no gaps)."""
    from bftnode.client import AsyncClient, ClientError

    sentinel = f"{w.prefix}/sentinel"
    try:
        async with AsyncClient(urls, keys_dir / "final.key", timeout=20.0) as c:
            height = max(height, int((await c.put(sentinel, "end"))["height"]))
    except ClientError:
        return height, None
    done: list[Any] = []

    async def wait(r: Any) -> None:
        if await r.wait_for(lambda e: e["kind"] == "put" and e.get("key") == sentinel, 60.0):
            done.append(r)
            nursery.cancel_scope.cancel()

    async with trio.open_nursery() as nursery:
        for r in recorders:
            nursery.start_soon(wait, r)
    return height, done[0].snapshot(height) if done else None


async def _workload(m: dict, out: Path, w: Workload, opts: argparse.Namespace,
                    faults: list[NF.Fault], emulate_links: bool = False) -> dict[str, Any]:
    from bftnode.client import AsyncClient

    urls = [n["rpc"] for n in m["nodes"]]
    keys_dir = out / "keys"
    keys_dir.mkdir(parents=True, exist_ok=True)
    async with AsyncClient(urls, keys_dir / "setup.key", timeout=30.0) as c:
        start_height = int((await c.status())["height"]) + 1
        await prepare(c, w)
    t0 = time.monotonic()
    rec = Recorder(lambda: time.monotonic() - t0)
    injector = NF.Injector(m["dir"], faults, rec.clock, emulate_links=emulate_links)
    recorders = [FailoverRecorder(urls[i:] + urls[:i], start_height)
                 for i in range(len(urls))]
    result: dict[str, Any] = {"start_height": start_height}
    with protected.ProtectedServer(rec.clock) as server:
        async with trio.open_nursery() as outer:
            for r in recorders:
                await outer.start(r.run)
            injector.start()
            await run_clients(urls, keys_dir, w, rec, opts.duration, opts.seed, server.address)
            result["clients_end_s"] = rec.clock()
            result["healed"] = await trio.to_thread.run_sync(injector.finish)
            result["settled"] = await trio.to_thread.run_sync(_settle, m["dir"])
            kv_procs = [f"c{i}" for i in range(w.clients - w.lock_clients)]
            sets, height = await _final_reads(urls, keys_dir, w, rec, kv_procs)
            height, events = await _all_events(urls, keys_dir, w, recorders, height)
            outer.cancel_scope.cancel()
        result.update(rec=rec, injector=injector, sets=sets, events=events,
                      final_height=height, resource=server.state, end_s=rec.clock())
    return result


def _settle(d: str) -> dict[str, Any]:
    """Wait until every node answers and all reach the same height (after the heal)."""
    from testnet.launcher import all_status, read_manifest

    t0 = time.monotonic()

    def converged() -> list[dict] | None:
        rows = all_status(read_manifest(d))
        hs = [r.get("height") for r in rows]
        if all(r.get("ok") for r in rows) and len(set(hs)) == 1:
            return rows
        return None

    rows = NF.wait_for(converged, SETTLE_S, 0.5)
    return {"ok": rows is not None, "s": round(time.monotonic() - t0, 1),
            "height": rows[0]["height"] if rows else None}


def judge(res: dict[str, Any], m: dict, w: Workload) -> dict[str, Any]:
    rec: Recorder = res["rec"]
    t0 = time.perf_counter()
    reg = [o for o in rec.ops if o["f"] in ("write", "read", "cas")]
    lin = HC.check_cas(reg, {k: "init" for k in w.reg_keys()})
    adds = [o for o in rec.ops if o["f"] == "add"]
    final = None if res["sets"] is None else [k for v in res["sets"].values() for k in v]
    lost = HC.check_set(adds, final)
    events = res["events"]
    locks = set(w.lock_names())
    grants = None
    chain_locks: dict[str, Any] = {"result": H.UNKNOWN,
                                   "detail": "no node streamed every app event of the run"}
    if events is not None:
        grants = [{"lock": e["key"], "token": e["token"], "client": rec.leases.get(e["lease"])}
                  for e in events if e["kind"] == "lock_granted" and e.get("key") in locks]
        lines = [ln for ln in H.events_to_history(as_app_events(events))
                 if ln["type"] == "lease" or ln["lock"] in locks]
        chain_locks = H.check_locks(lines)
    mutex = protected.check_resource(res["resource"], grants)
    checker_s = time.perf_counter() - t0
    top = res["final_height"]
    t1 = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(len(m["nodes"])) as pool:
        chains = list(pool.map(lambda n: _chain(n["rpc"], top), m["nodes"]))
    progress(f"read {top} headers from each node in {time.perf_counter() - t1:.1f} s")
    acked = [o["tx"] for o in rec.ops if o["type"] == "ok" and o.get("tx")]
    agreement, once = check_chain(chains, acked)
    return {"linearizable": lin, "lost_writes": lost, "mutual_exclusion": mutex,
            "chain_locks": chain_locks, "exactly_once": once, "agreement": agreement,
            "checker_s": round(checker_s, 3)}


def execute(opts: argparse.Namespace) -> dict[str, Any]:
    from bftnode.genesis import load_genesis
    from testnet import launcher

    out = Path(opts.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    d = out / "testnet"
    w = Workload(clients=opts.clients, lock_clients=opts.lock_clients, keys=opts.keys,
                 locks=opts.locks)
    progress(f"starting a {opts.nodes}-node --netns testnet in {d}")
    m = launcher.up(d, opts.nodes, netns=True, log_level="warning", consensus=CONSENSUS,
                    open_chain=True)  # clients write with keys of their own
    try:
        skew = load_genesis(d / "genesis.json").config().max_clock_skew_ms * 3 // 4
        kinds = [k for k in opts.faults.split(",") if k] if opts.faults else list(NF.KINDS)
        skipped: dict[str, str] = {}
        emulated: dict[str, str] = {}
        if "netem" in kinds and (why := NF.netem_available(d)):
            # the same profile in the nodes' transports (testnet/links.py)
            emulated["netem"] = f"in the nodes' transports, not the kernel: {why}"
        faults = NF.schedule(opts.seed, opts.duration, opts.nodes, kinds, skew)
        progress(f"{len(faults)} faults scheduled; clients run {opts.duration:g} s")
        res = trio.run(_workload, m, out, w, opts, faults, bool(emulated))
        progress(f"healed {res['healed']}, settled {res['settled']}; checking")
        verdicts = judge(res, launcher.read_manifest(d), w)
    finally:
        progress("stopping the testnet")
        launcher.down(d)
    rec: Recorder = res["rec"]
    applied = [a.to_json() for a in res["injector"].log]
    by_kind = NF.count_by_kind(res["injector"].log)
    summary = {k: verdicts[k]["result"] for k in NR.VERDICTS}
    report = {
        "seed": opts.seed, "duration_s": opts.duration, "nodes": opts.nodes,
        "clients": w.clients, "lock_clients": w.lock_clients,
        "result": NR.overall(summary), "verdicts": summary,
        "linearizable": summary["linearizable"] == H.OK,
        "lost": verdicts["lost_writes"].get("lost"),
        "ops": len(rec.ops), "ops_by": NR.op_counts(rec.ops), "faults": by_kind,
        "faults_total": sum(by_kind.values()), "faults_skipped": skipped,
        "faults_emulated": emulated,
        "fault_errors": [a for a in applied if a["error"]],
        "checker_s": verdicts["checker_s"],
        "linearizability_checker_s": verdicts["linearizable"]["checker_s"],
        "client_errors": rec.errors, "healed": res["healed"], "settled": res["settled"],
        "max_clock_skew_ms": skew, "details": verdicts, "out": str(out),
    }
    NR.write_history(out, rec.ops, applied)
    title = (f"nemesis seed {opts.seed}: {report['result']}, {len(rec.ops)} ops, "
             f"{report['faults_total']} faults")
    report["plot"] = str(NR.plot(out, rec.ops, applied, title, res["clients_end_s"] + 2))
    (out / "report.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    return report


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--duration", type=float, default=60.0, help="seconds of client load")
    p.add_argument("--seed", type=int, default=1, help="seeds the fault schedule and clients")
    p.add_argument("--nodes", type=int, default=4)
    p.add_argument("--clients", type=int, default=8, help="concurrent clients (>= 2)")
    p.add_argument("--lock-clients", type=int, default=3, help="of --clients: lock clients")
    p.add_argument("--keys", type=int, default=6, help="register keys")
    p.add_argument("--locks", type=int, default=2)
    p.add_argument("--faults", default="",
                   help=f"comma-separated kinds (default all): {','.join(NF.KINDS)}")
    p.add_argument("--out", default=None, help="report directory (default ./nemesis-SEED)")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def run(args: argparse.Namespace) -> int:
    args.out = args.out or f"nemesis-{args.seed}"
    if not 1 <= args.lock_clients < args.clients:
        print("nemesis: need 1 <= --lock-clients < --clients", file=sys.stderr)
        return 2
    try:
        ns.require_root()
        report = execute(args)
    except (ns.NetnsError, ValueError) as exc:  # cannot run here / bad arguments
        print(f"nemesis: {exc}", file=sys.stderr)
        return 2
    if args.json:
        brief = {k: v for k, v in report.items() if k != "details"}
        print(json.dumps(brief, default=str))
    else:
        print(NR.text_summary(report))
    return 0 if report["result"] == H.OK else 1
