"""`python -m testnet read-flood`: a read flood against the primary of a real 4-process
testnet (issue 27's acceptance). Readers (>= 8 HTTP connections) loop JSON-RPC batches of
full-page `kv_range` calls and batches of `blockchain` calls (each the widest range the RPC
allows, MAX_BLOCKCHAIN_RANGE headers) while one client puts sequentially (each put waits for
its commit) and another hammers `status` back to back. The same puts and status calls run
first without the flood; the figures are put p50 with and without the flood, status p50/p99,
the answers of each read kind (ok or error code) and the highest view on any node. Passes when
no node left view 0, put p50 under the flood <= 2x without it and status p99 < 200 ms.

The flood runs in a process of its own so that decoding its answers does not take the GIL
from the threads that time puts and status. One driver (`measure`) serves both this command and tests/integration/rpc/test_read_flood.py.
Load is bounded: a fixed number of threads for a fixed time, only to 127.0.0.1.

Imports: stdlib, httpx, msgspec, bftnode.client, bftnode.rpc (limits), testnet.launcher, testnet.ports.
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx
import msgspec

from bftnode.client import Client, TxRejected
from bftnode.rpc.read_views import MAX_BLOCKCHAIN_RANGE

STATUS_P99_MS = 200.0
PUT_P50_RATIO = 2.0


@dataclass(frozen=True)
class FloodSpec:
    keys: int = 1000  # one full kv_range page (read_page_limit)
    value_bytes: int = 200
    readers: int = 8
    kv_batch: int = 20  # kv_range calls per batch (each a full page)
    chain_batch: int = 100  # blockchain calls per batch (each MAX_BLOCKCHAIN_RANGE headers)
    quiet_s: float = 20.0
    flood_s: float = 60.0


def _p(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else float("nan")


def _ms(x: float) -> float:
    return round(x * 1000, 1)


def _call(http: httpx.Client, url: str, method: str, params: dict | None = None) -> Any:
    body = {"jsonrpc": "2.0", "id": 1, "method": method, **({"params": params} if params else {})}
    return http.post(url, json=body).json()["result"]


def seed(url: str, key_dir: Path, keys: int, value_bytes: int, writers: int = 8) -> None:
    """Put `keys` keys flood/NNNNN (each waits for its commit), from `writers` client keys."""
    value = b"v" * value_bytes

    def write(w: int) -> None:
        with Client(url, key_dir / f"seed{w}.key", verify="none") as c:
            for i in range(w, keys, writers):
                deadline = time.monotonic() + 60
                while True:
                    try:
                        c.put(b"flood/%05d" % i, value)
                        break
                    except TxRejected:  # the node's admission rate per client
                        if time.monotonic() > deadline:
                            raise
                        time.sleep(0.2)

    _threads([threading.Thread(target=write, args=(w,)) for w in range(writers)], 300)


def _threads(threads: list[threading.Thread], join_s: float) -> None:
    for t in threads:
        t.start()
    for t in threads:
        t.join(join_s)


class _Load:
    """Sequential puts (each waits for its commit) and a back-to-back `status` hammer."""

    def __init__(self, url: str, key_path: Path) -> None:
        self.url, self.key_path = url, key_path
        self.stop = threading.Event()
        self.puts: list[float] = []
        self.status: list[float] = []

    def _put_loop(self) -> None:
        with Client(self.url, self.key_path, verify="none") as c:
            i = 0
            while not self.stop.is_set():
                t0 = time.perf_counter()
                c.put(f"load/{i % 50}", str(i))
                self.puts.append(time.perf_counter() - t0)
                i += 1

    def _status_loop(self) -> None:
        with httpx.Client(timeout=30) as http:
            while not self.stop.is_set():
                t0 = time.perf_counter()
                _call(http, self.url, "status")
                self.status.append(time.perf_counter() - t0)

    def run(self, seconds: float) -> float:
        threads = [threading.Thread(target=self._put_loop),
                   threading.Thread(target=self._status_loop)]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        self.stop.wait(seconds)
        self.stop.set()
        for t in threads:
            t.join(120)
        return time.perf_counter() - t0

    def figures(self, tag: str) -> dict[str, Any]:
        return {f"put_p50_ms_{tag}": _ms(statistics.median(self.puts)) if self.puts else None,
                f"puts_{tag}": len(self.puts),
                f"status_p50_ms_{tag}": _ms(_p(self.status, 0.5)),
                f"status_p99_ms_{tag}": _ms(_p(self.status, 0.99)),
                f"status_calls_{tag}": len(self.status)}


class _Reader:
    """One connection looping a batch of full-page kv_range calls, then a batch of
    blockchain calls over ranges spread across the chain; counts answers per kind."""

    def __init__(self, url: str, spec: FloodSpec, height: int, stop: Any) -> None:
        self.url, self.stop = url, stop
        self.counts: dict[str, dict[str, int]] = {"kv_range": {}, "blockchain": {}}
        self.kv = [{"jsonrpc": "2.0", "id": i, "method": "kv_range",
                    "params": {"key": "flood/", "limit": 10_000}} for i in range(spec.kv_batch)]
        span = max(1, height - MAX_BLOCKCHAIN_RANGE)
        self.chain = [{"jsonrpc": "2.0", "id": i, "method": "blockchain", "params": {
            "min_height": 1 + (i * 37) % span,
            "max_height": 1 + (i * 37) % span + MAX_BLOCKCHAIN_RANGE - 1}}
            for i in range(spec.chain_batch)]

    def loop(self) -> None:
        with httpx.Client(timeout=60) as http:
            while not self.stop.is_set():
                for kind, batch in (("kv_range", self.kv), ("blockchain", self.chain)):
                    answers = msgspec.json.decode(http.post(self.url, json=batch).content)
                    tally = self.counts[kind]
                    for ans in answers if isinstance(answers, list) else [answers]:
                        key = "ok" if "result" in ans else str(ans["error"]["code"])
                        tally[key] = tally.get(key, 0) + 1


def _flood(url: str, spec: FloodSpec, height: int, stop: Any, conn: Any) -> None:
    """The flood, in a process of its own (its decoding must not take the GIL from the
    threads that time puts and status): spec.readers connections until `stop` is set; sends
    the summed answer counts back over `conn`."""
    readers = [_Reader(url, spec, height, stop) for _ in range(spec.readers)]
    conn.send("started")
    _threads([threading.Thread(target=r.loop) for r in readers], 120)
    answers: dict[str, dict[str, int]] = {"kv_range": {}, "blockchain": {}}
    for r in readers:
        for kind, tally in r.counts.items():
            for k, n in tally.items():
                answers[kind][k] = answers[kind].get(k, 0) + n
    conn.send(answers)


def views(urls: list[str]) -> list[tuple[int, bool]]:
    """(view, in_view_change) of every node."""
    with httpx.Client(timeout=30) as http:
        return [(int(s["view"]), bool(s["in_view_change"]))
                for s in (_call(http, u, "status") for u in urls)]


def view_changes_started(urls: list[str]) -> list[dict[str, int]]:
    """Every node's view changes started since it started, by reason (health's replica)."""
    with httpx.Client(timeout=30) as http:
        return [_call(http, u, "health")["replica"]["view_change"]["started"] for u in urls]


def measure(urls: list[str], key_dir: Path, spec: FloodSpec) -> dict[str, Any]:
    """Quiet phase, then the flood on urls[0] (the primary of view 0); the figures, with
    `failures` (empty when every acceptance bound holds)."""
    primary = urls[0]
    views0 = views(urls)
    quiet = _Load(primary, key_dir / "quiet.key")
    quiet.run(spec.quiet_s)
    with httpx.Client(timeout=30) as http:
        height = int(_call(http, primary, "status")["height"])
    flood = _Load(primary, key_dir / "flood.key")
    mp = multiprocessing.get_context("spawn")
    stop, (ours, theirs) = mp.Event(), mp.Pipe()
    proc = mp.Process(target=_flood, args=(primary, spec, height, stop, theirs), daemon=True)
    proc.start()
    try:
        if not ours.poll(60):
            raise RuntimeError("the flood process did not start")
        ours.recv()
        took = flood.run(spec.flood_s)
        stop.set()
        if not ours.poll(180):
            raise RuntimeError("the flood process did not report")
        answers = ours.recv()
    finally:
        stop.set()
        proc.join(10)
        if proc.is_alive():
            proc.kill()
    views1 = views(urls)
    fig: dict[str, Any] = {**quiet.figures("quiet"), **flood.figures("flood"),
                           "answers": answers, "flood_s": round(took, 1),
                           "height_at_flood": height, "views_before": views0,
                           "views_after": views1, "max_view": max(v for v, _ in views1),
                           "view_changes_started": view_changes_started(urls),
                           "spec": asdict(spec)}
    fig["put_p50_ratio"] = (round(fig["put_p50_ms_flood"] / fig["put_p50_ms_quiet"], 2)
                            if fig["put_p50_ms_flood"] and fig["put_p50_ms_quiet"] else None)
    fig["failures"] = failures(fig)
    return fig


def failures(fig: dict[str, Any]) -> list[str]:
    out = []
    if fig["views_after"] != fig["views_before"]:
        out.append(f"view change under the flood: {fig['views_before']} -> {fig['views_after']}")
    if fig["put_p50_ratio"] is None or fig["put_p50_ratio"] > PUT_P50_RATIO:
        out.append(f"put p50 under the flood is {fig['put_p50_ratio']}x the quiet one")
    if not fig["status_p99_ms_flood"] < STATUS_P99_MS:
        out.append(f"status p99 under the flood is {fig['status_p99_ms_flood']} ms")
    for kind in ("kv_range", "blockchain"):
        if not fig["answers"][kind].get("ok"):
            out.append(f"no {kind} read was answered")
    return out


def add_read_flood_arguments(p: argparse.ArgumentParser) -> None:
    d = FloodSpec()
    p.add_argument("--duration", type=float, default=d.flood_s, help="seconds of flood")
    p.add_argument("--quiet", type=float, default=d.quiet_s,
                   help="seconds of the same puts and status calls without the flood, first")
    p.add_argument("--readers", type=int, default=d.readers, help="flooding connections")
    p.add_argument("--keys", type=int, default=d.keys, help="keys kv_range pages over")
    p.add_argument("--kv-batch", type=int, default=d.kv_batch)
    p.add_argument("--chain-batch", type=int, default=d.chain_batch)
    p.add_argument("--json", action="store_true", help="print one JSON object")


def run_read_flood(args: argparse.Namespace) -> int:
    from testnet.fresh import fresh_testnet, print_figures

    spec = FloodSpec(keys=args.keys, readers=args.readers, kv_batch=args.kv_batch,
                     chain_batch=args.chain_batch, quiet_s=args.quiet, flood_s=args.duration)
    with fresh_testnet("read-flood-") as (tmp, urls):
        seed(urls[0], tmp, spec.keys, spec.value_bytes)
        fig = measure(urls, tmp, spec)
    return print_figures(fig, args.json)
