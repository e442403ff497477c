"""`python -m testnet bench-catchup`: how long a wiped node takes to rejoin, by full block
replay and by a certified snapshot; and, with `--flat-seconds`, the ledger directory sizes of
nodes that prune (`retain_blocks`) under a steady load.

A fresh 4-node testnet with the state tree on (`authenticated_state`, which turns on the
StateVotes that certify each block's roots: the snapshots' certificates). Steps:
commit `--txs` puts (`testnet bench --url`); wipe node 3 and time its rejoin (height reaches
the others' height at the wipe) while every peer keeps all blocks: block replay; set
`retain_blocks` on nodes 0-2 and restart them, wait until they pruned, wipe node 3 again and
time its rejoin: snapshot, then replay of the blocks after it. Prints one JSON object with
`--json`.
Imports: stdlib, bftnode.config, testnet.{launcher,bench}.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bftnode.config import load_config, write_config


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--txs", type=int, default=20_000, help="puts committed before the wipes")
    p.add_argument("--retain", type=int, default=1000, help="retain_blocks of nodes 0-2")
    p.add_argument("--dir", help="testnet directory (default: a fresh temporary one)")
    p.add_argument("--base-port", type=int, default=27700)
    p.add_argument("--timeout", type=float, default=1800.0, help="seconds per rejoin at most")
    p.add_argument("--skip-replay", action="store_true", help="time the snapshot rejoin only")
    p.add_argument("--flat-seconds", type=float, default=0.0,
                   help="afterwards, offer --flat-rate tx/s this long and sample the ledger "
                        "directory sizes every --sample-seconds")
    p.add_argument("--flat-rate", type=float, default=900.0)
    p.add_argument("--flat-retain", type=int, default=1000,
                   help="retain_blocks of every node during the --flat-seconds run")
    p.add_argument("--sample-seconds", type=float, default=30.0)
    p.add_argument("--keys", type=int, default=0,
                   help="the puts overwrite this many keys per client (0: a new key each)")
    p.add_argument("--compact-every", type=float, default=0.0, metavar="S",
                   help="compact the KV history: once after the first load, and every S "
                        "seconds of the --flat-seconds run to the revision of the round before "
                        "(as etcd's periodic auto-compaction); 0: never")
    p.add_argument("--json", action="store_true")


def _status(url: str) -> dict[str, Any] | None:
    from testnet.launcher import rpc

    try:
        return rpc(url, "status", timeout=2.0)
    except Exception:
        return None


def _height(url: str) -> int:
    st = _status(url)
    return int(st["height"]) if st else -1


def _du(path: Path) -> int:
    out = subprocess.run(["du", "-sb", str(path)], capture_output=True, text=True, check=False)
    return int(out.stdout.split()[0]) if out.returncode == 0 and out.stdout else -1


def _load(urls: list[str], extra: list[str]) -> dict[str, Any]:
    from testnet import bench

    p = argparse.ArgumentParser()
    bench.add_arguments(p)
    args = p.parse_args(sum((["--url", u] for u in urls), []) + extra + ["--json"])
    return bench.bench_once(args)


def _revision(url: str) -> int:
    from testnet.launcher import rpc

    return int(rpc(url, "revision", {"prove": False}, timeout=10.0)["revision"])


def _compact(url: str, key_path: Path, revision: int) -> None:
    from bftnode.app import ops
    from bftnode.client import Client

    with Client(url, key_path, verify="none", timeout=60.0) as c:
        c.commit_op(ops.compact(revision))


def _compactor(url: str, key_path: Path, every_s: float, stop: threading.Event,
               done: list[int], failed: list[str]) -> None:
    """Every `every_s`: compact to the revision read one round before (history older than
    one round goes). A round that fails is counted and the next one tries again."""
    import httpx

    from bftnode.client import ClientError

    prev = None
    while True:
        try:
            now = _revision(url)
            if prev is not None:
                _compact(url, key_path, prev)
                done.append(prev)
            prev = now
        except (ClientError, httpx.HTTPError, KeyError, TypeError, ValueError) as exc:
            failed.append(type(exc).__name__)
        if stop.wait(every_s):
            return


def _rejoin(d: Path, m: dict[str, Any], victim: int, timeout: float) -> dict[str, Any]:
    """Wipe `victim`, restart it and time until it reaches the others' height at the wipe."""
    from testnet import launcher

    urls = [n["rpc"] for n in m["nodes"]]
    target = max(_height(u) for i, u in enumerate(urls) if i != victim)
    launcher.kill(d, victim, hard=True)
    data = load_config(m["nodes"][victim]["home"]).data_path
    shutil.rmtree(data, ignore_errors=True)
    t0 = time.monotonic()
    launcher.restart(d, victim)
    deadline = t0 + timeout
    while _height(urls[victim]) < target:
        if time.monotonic() > deadline:
            raise TimeoutError(f"node {victim} did not reach height {target} in {timeout} s")
        time.sleep(0.2)
    took = time.monotonic() - t0
    st = _status(urls[victim]) or {}
    return {"target_height": target, "seconds": round(took, 2),
            "base_height": st.get("base_height")}


def _set_retain(d: Path, m: dict[str, Any], nodes: list[int], retain: int) -> None:
    from testnet import launcher

    for i in nodes:
        cfg = load_config(m["nodes"][i]["home"])
        write_config(dataclasses.replace(cfg, retain_blocks=retain))
        launcher.restart(d, i)


def _wait_pruned(urls: list[str], nodes: list[int], retain: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        sts = [_status(urls[i]) or {} for i in nodes]
        if all(st.get("base_height", 1) > max(1, st.get("height", 0) - retain - 200)
               for st in sts):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"nodes {nodes} did not prune within {timeout} s: {sts}")
        time.sleep(0.5)


def run(args: argparse.Namespace) -> int:
    from testnet import launcher

    d = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="bftnode-catchup-"))
    out: dict[str, Any] = {"txs": args.txs, "retain_blocks": args.retain}
    try:
        m = launcher.up(d, 4, open_chain=True, base_port=args.base_port, log_level="warning",
                        authenticated_state=True)
        urls = [n["rpc"] for n in m["nodes"]]
        t0 = time.monotonic()
        load = _load(urls, ["--txs", str(args.txs), "--clients", "8", "--batch", "50",
                            "--inflight", "400", "--keys", str(args.keys)])
        out["load"] = {k: load.get(k) for k in ("tx_per_s", "lost", "committed")}
        out["load_seconds"] = round(time.monotonic() - t0, 1)
        if args.compact_every:
            out["compacted_to"] = _revision(urls[0])
            _compact(urls[0], d / "compactor.key", out["compacted_to"])
        out["blocks"] = _height(urls[0])
        if not args.skip_replay:
            out["replay"] = _rejoin(d, m, 3, args.timeout)
        _set_retain(d, m, [0, 1, 2], args.retain)
        _load(urls[:3], ["--txs", "500", "--clients", "2", "--batch", "1", "--rate", "50"])
        _wait_pruned(urls, [0, 1, 2], args.retain, 300)
        out["peer_base_heights"] = [(_status(urls[i]) or {}).get("base_height") for i in range(3)]
        out["snapshot"] = _rejoin(d, m, 3, args.timeout)
        for k in ("replay", "snapshot"):
            if k in out:
                out[k]["us_per_tx"] = round(out[k]["seconds"] * 1e6 / max(1, args.txs), 1)
        if "replay" in out:
            out["speedup"] = round(out["replay"]["seconds"] / out["snapshot"]["seconds"], 2)
        if args.flat_seconds:
            out["flat"] = _flat(d, m, args)
    finally:
        try:
            launcher.down(d)
        except Exception as exc:
            print(f"bench-catchup: stopping the testnet failed: {exc}", file=sys.stderr)
        if not args.dir:
            shutil.rmtree(d, ignore_errors=True)
    print(json.dumps(out) if args.json else json.dumps(out, indent=2))
    return 0


def _flat(d: Path, m: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """Ledger directory sizes (bytes) of every node every `sample_seconds` under load."""
    homes = [load_config(n["home"]).data_path for n in m["nodes"]]
    urls = [n["rpc"] for n in m["nodes"]]
    _set_retain(d, m, [0, 1, 2, 3], args.flat_retain)
    samples: list[dict[str, Any]] = []
    stop = threading.Event()

    def sample() -> None:
        t0 = time.monotonic()
        while not stop.is_set():
            samples.append({"t": round(time.monotonic() - t0), "bytes": [_du(h) for h in homes],
                            "height": _height(urls[0]),
                            "base": [(_status(u) or {}).get("base_height") for u in urls]})
            stop.wait(args.sample_seconds)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    compactions: list[int] = []
    compact_failed: list[str] = []
    if args.compact_every:
        threading.Thread(target=_compactor, daemon=True, args=(
            urls[0], d / "compactor.key", args.compact_every, stop, compactions,
            compact_failed)).start()
    try:
        load = _load(urls, ["--rate", str(args.flat_rate), "--duration", str(args.flat_seconds),
                            "--clients", "8", "--batch", "50", "--timeout", "120",
                            "--keys", str(args.keys)])
    finally:
        stop.set()
        th.join()
    samples.append({"t": "end", "bytes": [_du(h) for h in homes], "height": _height(urls[0])})
    out = {"rate": args.flat_rate, "seconds": args.flat_seconds,
           "retain_blocks": args.flat_retain, "samples": samples,
           "tx_per_s": load.get("tx_per_s"), "lost": load.get("lost"),
           "keys": args.keys, "compactions": len(compactions),
           "compactions_failed": compact_failed}
    after = _rejoin(d, m, 3, args.timeout)  # a wiped node still rejoins
    out["rejoin_after"] = after
    return out
