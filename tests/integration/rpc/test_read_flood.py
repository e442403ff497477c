"""A read flood against the primary of a real 4-process testnet (issue 27, item 1): 8
connections loop large kv_range batches while puts and a `status` poller go on. No view change
may follow; the put p50 with and without the flood and the status p99 are printed (the figures
of docs/operations.md, "Reads and rate limits"). Bounded: 600 keys of 200 B, 6 s without and 12 s with
the flood.

Run alone for the figures:
    .venv/bin/python -m pytest -q -s tests/integration/rpc/test_read_flood.py
"""

from __future__ import annotations

import statistics
import threading
import time

import httpx
import pytest

from bftnode.client import Client, TxRejected
from testnet.ports import free_port_base

pytestmark = pytest.mark.integration
KEYS, VALUE = 600, b"v" * 200
READERS, BATCH = 8, 20
QUIET_S, FLOOD_S = 6.0, 12.0


def _p(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else float("nan")


def _post(http: httpx.Client, url: str, payload) -> httpx.Response:
    return http.post(url, json=payload)


class _Load:
    """Puts (sequential, each waits for its commit) and a status poller, timed."""

    def __init__(self, url: str, key_path) -> None:
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
                _post(http, self.url, {"jsonrpc": "2.0", "id": 1, "method": "status"}).json()
                self.status.append(time.perf_counter() - t0)
                time.sleep(0.01)

    def run(self, seconds: float, extra=()) -> None:
        threads = [threading.Thread(target=self._put_loop), threading.Thread(
            target=self._status_loop), *extra]
        for t in threads:
            t.start()
        time.sleep(seconds)
        self.stop.set()
        for t in threads:
            t.join(60)


def _reader(url: str, stop: threading.Event, counts: dict) -> None:
    batch = [{"jsonrpc": "2.0", "id": i, "method": "kv_range",
              "params": {"key": "flood/", "limit": 10_000}} for i in range(BATCH)]
    with httpx.Client(timeout=60) as http:
        while not stop.is_set():
            for ans in _post(http, url, batch).json():
                key = "ok" if "result" in ans else str(ans["error"]["code"])
                counts[key] = counts.get(key, 0) + 1


def _views(urls: list[str]) -> list[tuple[int, bool]]:
    with httpx.Client(timeout=30) as http:
        out = []
        for u in urls:
            st = _post(http, u, {"jsonrpc": "2.0", "id": 1, "method": "status"}).json()["result"]
            out.append((st["view"], st["in_view_change"]))
        return out


def test_a_read_flood_on_the_primary_causes_no_view_change(tmp_path):
    from testnet import launcher

    d = tmp_path / "net"
    m = launcher.up(d, 4, base_port=free_port_base(8), log_level="warning")
    try:
        urls = [n["rpc"] for n in m["nodes"]]
        primary = urls[0]
        with Client(primary, tmp_path / "seed.key", verify="none") as c:
            for i in range(KEYS):
                while True:
                    try:
                        c.put(b"flood/%05d" % i, VALUE)
                        break
                    except TxRejected:  # the node's admission rate per client
                        time.sleep(0.2)
        views0 = _views(urls)
        assert all(v == (0, False) for v in views0), views0

        quiet = _Load(primary, tmp_path / "a.key")
        quiet.run(QUIET_S)

        flood = _Load(primary, tmp_path / "b.key")
        counts: dict[str, int] = {}
        readers = [threading.Thread(target=_reader, args=(primary, flood.stop, counts))
                   for _ in range(READERS)]
        t0 = time.perf_counter()
        flood.run(FLOOD_S, readers)
        took = time.perf_counter() - t0
        views1 = _views(urls)

        figures = {
            "put_p50_ms_quiet": round(statistics.median(quiet.puts) * 1000, 1),
            "put_p50_ms_flood": round(statistics.median(flood.puts) * 1000, 1),
            "puts_quiet": len(quiet.puts), "puts_flood": len(flood.puts),
            "status_p99_ms_quiet": round(_p(quiet.status, 0.99) * 1000, 1),
            "status_p99_ms_flood": round(_p(flood.status, 0.99) * 1000, 1),
            "status_calls_flood": len(flood.status),
            "kv_range_answers": counts, "flood_s": round(took, 1), "views_after": views1,
        }
        print("READ FLOOD", figures)
        assert views1 == views0, f"a view change under the read flood: {figures}"
        assert flood.puts and counts.get("ok", 0) > 0, figures
        assert counts.get("-32008", 0) > 0, f"the per-IP bucket never answered: {figures}"
        assert figures["put_p50_ms_flood"] <= 2.0 * figures["put_p50_ms_quiet"], (
            f"the read flood slowed puts more than 2x: {figures}")
    finally:
        launcher.down(d)
