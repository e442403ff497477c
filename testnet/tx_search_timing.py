"""`python -m testnet.tx_search_timing --url URL [--key K]`: how long `tx_search` on an event
attribute takes on a running testnet, whatever the chain's length (it reads the tx-attribute
index, not the blocks). Puts one fresh probe key, waits for it to be found, then times
`--calls` searches for it and prints JSON: chain height, txs committed and the median / max
call time in ms. Only 127.0.0.1 testnets; bounded calls.
Imports: stdlib, httpx, bftnode.client.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import httpx

from bftnode.client import Client


def _search(http: httpx.Client, url: str, query: str) -> tuple[dict, float]:
    t0 = time.perf_counter()
    r = http.post(url, json={"jsonrpc": "2.0", "id": 1, "method": "tx_search",
                             "params": {"query": query}}).json()
    return r["result"], (time.perf_counter() - t0) * 1000


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m testnet.tx_search_timing")
    p.add_argument("--url", required=True, help="a node's RPC URL")
    p.add_argument("--calls", type=int, default=50, help="searches timed (1..1000)")
    a = p.parse_args(argv)
    calls = max(1, min(a.calls, 1000))
    key = f"probe/{time.time_ns()}"
    with tempfile.TemporaryDirectory() as d, Client(a.url, Path(d) / "k.key",
                                                     verify="none") as c:
        put = c.put(key, "1")
    query = f"kv.key='{key}'"
    with httpx.Client(timeout=30) as http:
        deadline = time.monotonic() + 30
        while _search(http, a.url, query)[0]["total_count"] < 1:
            if time.monotonic() > deadline:
                raise SystemExit("the probe was not found within 30 s")
            time.sleep(0.05)
        took = [_search(http, a.url, query)[1] for _ in range(calls)]
        status = http.post(a.url, json={"jsonrpc": "2.0", "id": 1, "method": "status"}).json()
    out = {"height": status["result"]["height"],
           "txs_committed": status["result"].get("txs_committed"),
           "probe_height": put["height"], "calls": calls,
           "kv_key_ms": {"median": round(statistics.median(took), 2),
                         "max": round(max(took), 2)}}
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
