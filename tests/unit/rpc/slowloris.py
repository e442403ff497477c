"""Slowloris measurement of the RPC server: N slow connections (half send their request head,
half their body, at one byte per second) against a real server in its own process with the
default limits, while a normal client calls `status` every 0.25 s.

    python -m tests.unit.rpc.slowloris [--connections 1000] [--addresses K] [--json]

Prints when each slow connection was closed (by kind), the normal client's latencies and
what the server logged; exits 1 if a slow connection outlived its deadline + slack, or a
`status` took 1 s or more. The slow clients come from K addresses 127.0.0.2.. (default: 250
per address, under the per-address cap of 256; with fewer addresses the cap refuses the
rest with 503 at once), the normal client from 127.0.0.1. For tests only (the slow test in
test_rpc_slowloris.py runs it)."""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import trio

from .slow_clients import BODY_HEAD, SLOW_HEAD, connect, trickle

REPO = Path(__file__).resolve().parents[3]
SLACK_S = 1.5  # over the deadline: scheduling and the 1-byte/s pace's granularity
PER_ADDRESS = 250  # default spread of the slow clients
STATUS_EVERY_S = 0.25
STATUS_LIMIT_S = 1.0


def serve() -> None:
    """--serve: a FakeNode behind serve_rpc with the default limits; prints its URL."""
    from bftnode.logging import configure_logging
    from bftnode.rpc.server import serve_rpc

    from .fake_node import FakeNode

    configure_logging("info")  # to stderr (the parent keeps it in a file)

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            url = await nursery.start(serve_rpc, FakeNode(), "127.0.0.1", 0)
            print(url, flush=True)

    trio.run(main)


async def measure(connections: int, log_path: Path, addresses: int | None = None) -> dict:
    from bftnode.rpc.limits import RPCLimits

    limits = RPCLimits()
    with log_path.open("wb") as log:
        proc = await trio.lowlevel.open_process(
            [sys.executable, "-m", "tests.unit.rpc.slowloris", "--serve"],
            stdout=subprocess.PIPE, stderr=log, cwd=REPO)
        try:
            assert proc.stdout is not None
            with trio.fail_after(30):
                line = b""
                while not line.endswith(b"\n"):
                    chunk = await proc.stdout.receive_some(1024)
                    assert chunk, "the server exited before it printed its URL"
                    line += chunk
            port = int(line.decode().strip().rsplit(":", 1)[1])
            addresses = addresses or -(-connections // PER_ADDRESS)
            result = await _attack(port, connections, addresses, limits)
            result["server_metrics"] = await _refusal_counts(port)
        finally:
            proc.terminate()
            await proc.wait()
    text = log_path.read_text(errors="replace")
    result["server_log"] = {
        "body_timeouts": text.count("rpc.body_timeout"),
        "connections_refused": text.count("rpc.connection_refused"),
        "tracebacks": text.count("Traceback"),
        "errors": sum('"level": "error"' in ln or "[ERROR]" in ln for ln in text.splitlines()),
    }
    deadline = {"head": limits.header_timeout_s, "body": limits.body_timeout_s}
    result["ok"] = (
        all(k["open_at_limit"] == 0 and k["max_s"] <= deadline[name] + SLACK_S
            for name, k in result["slow"].items())
        and result["status"]["max_ms"] < STATUS_LIMIT_S * 1000
        and result["status"]["failed"] == 0
        and result["server_log"]["tracebacks"] == 0
    )
    return result


async def _refusal_counts(port: int) -> dict:
    """The server's own count of refused connections (its log lines are rate-limited)."""
    async with httpx.AsyncClient(timeout=5) as c:
        text = (await c.get(f"http://127.0.0.1:{port}/metrics")).text
    found = re.findall(r'^bftnode_rpc_connections_refused_total\{reason="([^"]+)"\} (\S+)$',
                       text, re.MULTILINE)
    return {"connections_refused": {reason: int(float(n)) for reason, n in found}}


async def _attack(port: int, connections: int, addresses: int, limits) -> dict:
    outcomes: dict[str, list] = {"head": [], "body": []}
    latencies: list[float] = []
    failed = 0
    limit = max(limits.header_timeout_s, limits.body_timeout_s) + 10
    opened = trio.Event()
    done = trio.Event()

    async def slow(i: int, task_status=trio.TASK_STATUS_IGNORED) -> None:
        conn = await connect(port, f"127.0.0.{2 + i % addresses}")
        task_status.started()
        if i % 2:
            out = await trickle(conn, SLOW_HEAD, 1.0, limit)
            outcomes["head"].append(out)
        else:
            out = await trickle(conn, b"[" * 4096, 1.0, limit, prefix=BODY_HEAD)
            outcomes["body"].append(out)

    async def normal_client() -> None:
        nonlocal failed
        await opened.wait()
        while not done.is_set():
            t0 = time.monotonic()
            try:
                async with httpx.AsyncClient(timeout=5) as c:  # a fresh connection each time
                    r = await c.post(f"http://127.0.0.1:{port}/",
                                     json={"jsonrpc": "2.0", "id": 1, "method": "status"})
                    assert r.json()["result"]["node_id"]
            except Exception:
                failed += 1
            latencies.append(time.monotonic() - t0)
            with trio.move_on_after(STATUS_EVERY_S):
                await done.wait()

    start = time.monotonic()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(normal_client)
        async with trio.open_nursery() as attackers:
            for i in range(connections):
                await attackers.start(slow, i)
            opened_after = time.monotonic() - start
            opened.set()
        done.set()

    def summary(outs: list) -> dict:
        closed = sorted(o.closed_after for o in outs if o.closed_after is not None)
        return {
            "connections": len(outs),
            "open_at_limit": len(outs) - len(closed),
            "min_s": round(closed[0], 2) if closed else None,
            "p50_s": round(statistics.median(closed), 2) if closed else None,
            "max_s": round(closed[-1], 2) if closed else None,
            "answers": sorted({str(o.status) for o in outs}),
        }

    return {
        "connections": connections,
        "addresses": addresses,
        "opened_in_s": round(opened_after, 2),
        "deadlines_s": {"head": limits.header_timeout_s, "body": limits.body_timeout_s},
        "slow": {k: summary(v) for k, v in outcomes.items()},
        "status": {
            "calls": len(latencies),
            "failed": failed,
            "p50_ms": round(statistics.median(latencies) * 1000, 1) if latencies else None,
            "max_ms": round(max(latencies) * 1000, 1) if latencies else None,
        },
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--connections", type=int, default=1000)
    p.add_argument("--addresses", type=int, default=None,
                   help="client addresses the slow connections come from")
    p.add_argument("--json", action="store_true")
    p.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.serve:
        serve()
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        result = trio.run(measure, args.connections, Path(tmp) / "server.log", args.addresses)
    if args.json:
        print(json.dumps(result))
    else:
        print(json.dumps(result, indent=2))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
