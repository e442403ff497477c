"""`python -m testnet client-flood`: fair admission under a write flood (issue 30's acceptance).
On a fresh 4-node local testnet one well-behaved client puts sequentially (each put waits for
its commit) to one node, first for a quiet period, then while `--flooders` client keys (10 by
default) submit pre-signed puts at full speed (JSON-RPC batch arrays of broadcast_tx_sync, back
to back, refused ones sent again) to every node in turn, the well-behaved client's node too.
The figures: the well-behaved client's put p50/p99 in both periods and their ratio, what the
flood got (accepted, refused by reason), and the views. Passes when the put p50 under the flood
is at most 2x the quiet one.

The flood runs in a process of its own so that its HTTP work does not take the GIL from the
thread that times the puts. Bounded: `--flooders` keys of `--txs` pre-signed puts each, for
`--duration` seconds, only to 127.0.0.1. One driver (`measure`) serves this command and the
tests. Imports: stdlib, httpx, bftnode (client, keys, app.ops, genesis, home), consensus,
testnet.launcher, testnet.ports.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx

from bftnode.app import ops
from bftnode.client import BadAnswer, Client, RPCCallError, TxRejected, TxTimeout
from bftnode.client import core as C
from bftnode.keys import NodeKey
from consensus import Request, sign_request

PUT_P50_RATIO = 2.0


@dataclass(frozen=True)
class FloodSpec:
    flooders: int = 10  # client keys flooding
    txs: int = 20_000  # pre-signed puts per flooding key (enough to last the flood)
    batch: int = 50  # puts per JSON-RPC batch array
    value_bytes: int = 64
    quiet_s: float = 10.0
    flood_s: float = 20.0
    honest_node: int = 1  # the node the well-behaved client talks to (0 = view 0's primary)


def _p(xs: list[float], q: float) -> float | None:
    xs = sorted(xs)
    return round(xs[min(len(xs) - 1, int(q * len(xs)))] * 1000, 1) if xs else None


def _call(http: httpx.Client, url: str, method: str, params: dict | None = None) -> Any:
    body = {"jsonrpc": "2.0", "id": 1, "method": method, **({"params": params} if params else {})}
    return http.post(url, json=body).json()["result"]


# ---------------------------------------------------------------- the well-behaved client


class Honest:
    """Sequential puts; a refused put is tried again (a new tx) and timed from the first try."""

    def __init__(self, url: str, key_path: Path, value_bytes: int) -> None:
        self.url, self.key_path, self.value = url, key_path, b"h" * value_bytes
        self.refused: Counter[str] = Counter()
        self.i = 0

    def run(self, seconds: float) -> list[float]:
        took: list[float] = []
        end = time.monotonic() + seconds
        with Client(self.url, self.key_path, verify="none") as c:
            while time.monotonic() < end:
                t0 = time.perf_counter()
                while True:
                    try:
                        c.put(f"honest/{self.i % 50}".encode(), self.value)
                        break
                    except TxRejected as exc:
                        self.refused[_reason(exc.message)] += 1
                        time.sleep(0.02)
                    except TxTimeout:  # timed as it is (>= the client's timeout), next put
                        self.refused["timeout"] += 1
                        break
                took.append(time.perf_counter() - t0)
                self.i += 1
        return took


def _reason(message: str) -> str:
    return message.removeprefix("tx rejected: ").split(":")[0][:40]


# ---------------------------------------------------------------- the flood


def _presign(domain: bytes, key: NodeKey, n: int, value: bytes, tag: int) -> list[Request]:
    signer = key.signer()
    return [sign_request(domain, signer, Request(key.public_key, s + 1,
                                                 ops.put(b"flood/%d/%d" % (tag, s % 1000), value)))
            for s in range(n)]


class _Stop:
    """When a flooding thread stops: the driver's `stop` event, the deadline (bounded in time
    even if the driver never says stop), or the driver gone (this process orphaned: a driver
    killed by a signal does not stop its daemon children)."""

    def __init__(self, event: Any, seconds: float) -> None:
        self.event, self.end, self.parent = event, time.monotonic() + seconds, os.getppid()

    def __call__(self) -> bool:
        return (self.event.is_set() or time.monotonic() > self.end
                or os.getppid() != self.parent)


def _flooder(url: str, reqs: list[Request], batch: int, stop: _Stop, tally: Counter) -> None:
    """Send every request not yet accepted, batch after batch, until all are or `stop()`."""
    todo = list(reqs)
    with httpx.Client(timeout=30) as http:
        while todo and not stop():
            again: list[Request] = []
            for i in range(0, len(todo), batch):
                if stop():
                    return
                chunk = todo[i:i + batch]
                payload = C.batch_request([("broadcast_tx_sync", {"tx": C.tx_param(r)})
                                           for r in chunk])
                tally["sent"] += len(chunk)
                try:
                    resp = http.post(url, content=C.encode_json(payload), headers=C.JSON_HEADERS)
                    answers = C.batch_results(resp.content, payload)
                except (httpx.HTTPError, RPCCallError) as exc:
                    tally[f"error {type(exc).__name__}"] += len(chunk)
                    again += chunk
                    continue
                for r, a in zip(chunk, answers, strict=True):
                    if isinstance(a, RPCCallError) and not isinstance(a, BadAnswer):
                        reason = _reason(a.message)
                        tally[f"refused {a.code} {reason}"] += 1
                        if not reason.startswith("request_seq too old"):  # else never again
                            again.append(r)
                    elif isinstance(a, BadAnswer):
                        again.append(r)
                    else:
                        tally["accepted"] += 1
            todo = again
    if not todo:
        tally["all_accepted"] += 1  # this key ran out of puts before the flood's end


def _flood(urls: list[str], domain: bytes, spec: FloodSpec, stop: Any, conn: Any) -> None:
    """The flood, in a process of its own: pre-sign, report "started", flood until `stop`,
    send the summed tally back over `conn`."""
    value = b"f" * spec.value_bytes
    keys = [NodeKey.generate() for _ in range(spec.flooders)]
    signed = [_presign(domain, k, spec.txs, value, i) for i, k in enumerate(keys)]
    tallies = [Counter() for _ in keys]
    until = _Stop(stop, spec.flood_s + 30)
    threads = [threading.Thread(target=_flooder, args=(urls[i % len(urls)], signed[i],
                                                       spec.batch, until, tallies[i]))
               for i in range(len(keys))]
    conn.send("started")
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(spec.flood_s + 120)
    total: Counter[str] = Counter()
    for t in tallies:
        total.update(t)
    conn.send({"tally": dict(total), "busy_s": round(time.monotonic() - t0, 1)})


# ---------------------------------------------------------------- the run


def views(urls: list[str]) -> list[int]:
    with httpx.Client(timeout=30) as http:
        return [int(_call(http, u, "status")["view"]) for u in urls]


def replicas(urls: list[str]) -> list[dict[str, Any]]:
    """Each node's pool, drop counters and view changes (health's replica section)."""
    out = []
    with httpx.Client(timeout=30) as http:
        for u in urls:
            r = _call(http, u, "health").get("replica", {})
            out.append({k: r.get(k) for k in ("view", "pending_requests", "dropped")}
                       | {"view_changes": r.get("view_change", {}).get("started")})
    return out


class Sampler:
    """The primary's pipeline every 0.5 s while the flood runs (where a put's time goes)."""

    FIELDS = ("proposed_in_flight", "pending_requests", "unproposed_requests")

    def __init__(self, url: str) -> None:
        self.url, self.stop = url, threading.Event()
        self.samples: list[dict[str, int]] = []
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        with httpx.Client(timeout=10) as http:
            while not self.stop.wait(0.5):
                try:
                    r = _call(http, self.url, "health").get("replica", {})
                except (httpx.HTTPError, KeyError, ValueError):
                    continue
                self.samples.append({k: int(r.get(k) or 0) for k in self.FIELDS})

    def figures(self) -> dict[str, dict[str, float]]:
        out = {}
        for k in self.FIELDS:
            xs = sorted(s[k] for s in self.samples)
            out[k] = {"p50": xs[len(xs) // 2], "max": xs[-1]} if xs else {}
        return out


def measure(urls: list[str], domain: bytes, key_dir: Path, spec: FloodSpec) -> dict[str, Any]:
    """The quiet period, then the flood; the figures with `failures` (empty = pass)."""
    views0 = views(urls)
    honest = Honest(urls[spec.honest_node], key_dir / "honest.key", spec.value_bytes)
    honest.run(1.0)  # warm up: the connection, the chain info
    quiet = honest.run(spec.quiet_s)
    mp = multiprocessing.get_context("spawn")
    stop, (ours, theirs) = mp.Event(), mp.Pipe()
    proc = mp.Process(target=_flood, args=(urls, domain, spec, stop, theirs), daemon=True)
    proc.start()
    try:
        if not ours.poll(120):
            raise RuntimeError("the flood process did not start")
        ours.recv()
        t0 = time.monotonic()
        sampler = Sampler(urls[0])
        sampler.thread.start()
        flooded = honest.run(spec.flood_s)
        sampler.stop.set()
        took = time.monotonic() - t0
        stop.set()
        if not ours.poll(180):
            raise RuntimeError("the flood process did not report")
        flood = ours.recv()
    finally:
        stop.set()
        proc.join(10)
        if proc.is_alive():
            proc.kill()
    views1 = views(urls)
    fig: dict[str, Any] = {
        "put_p50_ms_quiet": _p(quiet, 0.5), "put_p99_ms_quiet": _p(quiet, 0.99),
        "puts_quiet": len(quiet),
        "put_p50_ms_flood": _p(flooded, 0.5), "put_p99_ms_flood": _p(flooded, 0.99),
        "puts_flood": len(flooded),
        "put_deciles_ms_quiet": [_p(quiet, q / 10) for q in range(1, 10)],
        "put_deciles_ms_flood": [_p(flooded, q / 10) for q in range(1, 10)],
        "honest_refused": dict(honest.refused),
        "flood": flood["tally"],
        "flood_accepted_per_s": round(flood["tally"].get("accepted", 0) / max(took, 1e-9), 1),
        "flood_s": round(took, 1),
        "primary_under_flood": sampler.figures(),
        "views_before": views0, "views_after": views1, "replicas_after": replicas(urls),
        "spec": asdict(spec),
    }
    q, f = fig["put_p50_ms_quiet"], fig["put_p50_ms_flood"]
    fig["put_p50_ratio"] = round(f / q, 2) if q and f else None
    fig["failures"] = failures(fig)
    return fig


def failures(fig: dict[str, Any]) -> list[str]:
    out = []
    if fig["put_p50_ratio"] is None or fig["put_p50_ratio"] > PUT_P50_RATIO:
        out.append(f"put p50 under the flood is {fig['put_p50_ratio']}x the quiet one "
                   f"(bound {PUT_P50_RATIO}x)")
    if not fig["flood"].get("accepted"):
        out.append("the flood got nothing accepted: it did not load the chain")
    if fig["flood"].get("all_accepted"):
        out.append(f"{fig['flood']['all_accepted']} flooding keys ran out of puts before the "
                   "flood's end: use more --txs")
    return out


def add_client_flood_arguments(p: argparse.ArgumentParser) -> None:
    d = FloodSpec()
    p.add_argument("--flooders", type=int, default=d.flooders, help="flooding client keys")
    p.add_argument("--txs", type=int, default=d.txs, help="pre-signed puts per flooding key")
    p.add_argument("--batch", type=int, default=d.batch, help="puts per JSON-RPC batch array")
    p.add_argument("--duration", type=float, default=d.flood_s, help="seconds of flood")
    p.add_argument("--quiet", type=float, default=d.quiet_s,
                   help="seconds of the same puts without the flood, first")
    p.add_argument("--honest-node", type=int, default=d.honest_node,
                   help="the node the well-behaved client talks to (0 = the first primary)")
    p.add_argument("--max-pending", type=int, default=0, metavar="N",
                   help="genesis app.quotas.max_pending (0 = the default)")
    p.add_argument("--consensus", action="append", default=[], metavar="NAME=INT",
                   help="a genesis consensus parameter, e.g. max_full_in_flight=4 (repeatable)")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def run_client_flood(args: argparse.Namespace) -> int:
    from bftnode.home import create_local_chain
    from testnet.fresh import fresh_testnet, print_figures

    spec = FloodSpec(flooders=args.flooders, txs=args.txs, batch=args.batch,
                     quiet_s=args.quiet, flood_s=args.duration, honest_node=args.honest_node)
    consensus = {k: int(v) for k, v in (c.split("=", 1) for c in args.consensus)}

    def quotas(d: Path, base: int) -> None:  # an open chain (no permission checks), that bound
        create_local_chain(d, 4, base_port=base, log_level="warning", consensus=consensus,
                           app={"quotas": {"max_pending": args.max_pending}})

    with fresh_testnet("client-flood-", quotas if args.max_pending else None,
                       consensus=consensus or None) as (tmp, urls):
        with httpx.Client(timeout=30) as http:
            domain = _call(http, urls[0], "validators")["chain_id"].encode()
        fig = measure(urls, domain, tmp, spec)
    return print_figures(fig, args.json)
