"""`python -m testnet bench`: end-to-end throughput and commit latency of a fresh local testnet,
measured through the public JSON-RPC only.

Starts N real node processes with `testnet.launcher.up` in a fresh directory, pre-signs
`--txs` put transactions for `--clients` client keys, and submits them concurrently: over HTTP
as JSON-RPC batch arrays of `broadcast_tx_sync` (default), or with `--ws` as pipelined
`broadcast_tx_sync` calls over one WebSocket per client. Commit times come from a `blocks`
subscription (WebSocket) on node 0; latency = first sight of the tx in a committed block minus
its FIRST submission time. Like PBFT clients, the bench resends (same signed bytes, another
node) acknowledged txs that stay uncommitted for `--retry` seconds — a tx accepted into one
node's pool is not promised to commit without that (`retransmitted` counts resends).
Afterwards the ledger of another node is read back with `blockchain` to check that every
acknowledged tx is there exactly once (`lost`, `duplicates`) and that the two nodes agree on
every block hash (`divergent_blocks`). Prints one JSON object with `--json`; exit code 1 when
anything was lost, duplicated or divergent.

Imports: stdlib, trio, httpx, httpx_ws, bftnode (keys, app.ops), consensus, testnet.launcher.
"""

from __future__ import annotations

import argparse
import base64
import json
import math
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import trio

from bftnode.app import ops
from bftnode.keys import NodeKey
from consensus import Request, encode, request_digest, sign_request

SETTLE_TIMEOUT_S = 60.0


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--nodes", type=int, default=4, help="validators (3f+1)")
    p.add_argument("--txs", type=int, default=2000, help="transactions to submit")
    p.add_argument("--clients", type=int, default=8, help="concurrent clients (own keys)")
    p.add_argument("--ws", action="store_true",
                   help="submit over WebSocket (pipelined) instead of HTTP batch arrays")
    p.add_argument("--batch", type=int, default=25, help="txs per HTTP JSON-RPC batch array")
    p.add_argument("--window", type=int, default=64, help="in-flight calls per WebSocket")
    p.add_argument("--value-bytes", type=int, default=64, help="size of each put's value")
    p.add_argument("--rate", type=float, default=0.0,
                   help="offered load in tx/s over all clients (0 = as fast as possible); "
                        "latency is only meaningful below saturation")
    p.add_argument("--dir", help="testnet directory (default: a fresh temporary one)")
    p.add_argument("--base-port", type=int, default=27600)
    p.add_argument("--keep", action="store_true", help="leave the testnet running")
    p.add_argument("--url", action="append", default=[],
                   help="bench an already-running testnet at these RPC URLs instead")
    p.add_argument("--timeout", type=float, default=SETTLE_TIMEOUT_S,
                   help="seconds to wait for acknowledged txs to commit")
    p.add_argument("--retry", type=float, default=5.0, metavar="SECONDS",
                   help="like a PBFT client, resend (the same signed tx, to another node) any "
                        "acknowledged tx not committed after this long; 0 = never")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def add_bench_arguments(p: argparse.ArgumentParser) -> None:
    add_arguments(p)


def percentile(sorted_ms: list[float], q: float) -> float | None:
    if not sorted_ms:
        return None
    k = max(0, min(len(sorted_ms) - 1, math.ceil(q / 100 * len(sorted_ms)) - 1))
    return round(sorted_ms[k], 2)


class Bench:
    def __init__(self, urls: list[str], args: argparse.Namespace) -> None:
        self.urls = urls
        self.args = args
        self.submitted: dict[bytes, float] = {}  # tx hash -> submit time (monotonic)
        self.acked: set[bytes] = set()
        self.rejected: Counter[str] = Counter()
        self.committed: dict[bytes, float] = {}  # tx hash -> first seen committed
        self.all_done = trio.Event()
        self.start_height = 0
        self.observed_height = 0
        self.next_height = 1
        self.errors: list[str] = []
        self.t0 = 0.0
        self.requests: dict[bytes, Request] = {}
        self.retransmitted = 0

    async def pace(self, sent: int) -> None:
        """Wait until this client may send its `sent`-th tx at the offered rate."""
        rate = getattr(self.args, "rate", 0.0) or 0.0
        if rate > 0:
            due = self.t0 + sent / (rate / self.args.clients)
            delay = due - time.monotonic()
            if delay > 0:
                await trio.sleep(delay)

    # -- preparation
    async def chain(self, http: httpx.AsyncClient) -> tuple[bytes, int]:
        st = await rpc(http, self.urls[0], "status")
        return st["chain_id"].encode(), int(st["height"])

    def sign_all(self, domain: bytes) -> list[list[Request]]:
        value = b"v" * self.args.value_bytes
        per_client: list[list[Request]] = []
        n = self.args.txs
        run = time.time_ns()
        for c in range(self.args.clients):
            key = NodeKey.generate()
            signer = key.signer()
            reqs = []
            for j in range(c, n, self.args.clients):
                op = ops.put(f"bench/{run}/{j}".encode(), value)
                req = sign_request(domain, signer, Request(signer.public_key, j + 1, op))
                self.requests[request_digest(req)] = req
                reqs.append(req)
            per_client.append(reqs)
        return per_client

    # -- commit observer
    async def observe(self, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Follow committed blocks on node 0; reconnects (resuming from the next height) when
        the WebSocket drops or the server closes the subscription."""
        from httpx_ws import HTTPXWSException

        self.next_height = self.start_height + 1
        started = False
        async with httpx.AsyncClient() as http:
            while not (self.all_done.is_set() and self.acked <= self.committed.keys()):
                try:
                    await self._observe_once(http, None if started else task_status)
                    started = True
                except (HTTPXWSException, httpx.HTTPError, OSError) as exc:
                    if not started:
                        raise
                    self.errors.append(f"observer: {type(exc).__name__}: {exc}")
                    await trio.sleep(0.5)

    async def _observe_once(self, http: httpx.AsyncClient, task_status: Any) -> None:
        """One subscription from `self.next_height`, until done or closed by the server."""
        from httpx_ws import aconnect_ws

        url = "ws" + self.urls[0][4:] + "/websocket"
        async with aconnect_ws(url, http, max_message_size_bytes=16 << 20,
                               queue_size=4096) as ws:
            await ws.send_text(json.dumps({
                "jsonrpc": "2.0", "id": 1, "method": "subscribe",
                "params": {"topic": "blocks", "from_height": self.next_height}}))
            if task_status is not None:
                task_status.started()
            while True:
                msg = json.loads(await ws.receive_text())
                if msg.get("method") == "subscription":
                    now = time.monotonic()
                    blk = msg["params"]["result"]
                    self.next_height = blk["height"] + 1
                    self.observed_height = blk["height"]
                    for th in blk.get("tx_hashes", []):
                        self.committed.setdefault(bytes.fromhex(th), now)
                    if self.all_done.is_set() and self.acked <= self.committed.keys():
                        return
                elif msg.get("method") == "subscription_closed":
                    self.next_height = int(msg["params"]["resume_from_height"])
                    return  # resubscribe from where the server stopped
                elif "error" in msg:
                    raise RuntimeError(f"subscribe failed: {msg['error']}")

    # -- submitters
    async def http_client(self, http: httpx.AsyncClient, url: str, reqs: list[Request]) -> None:
        b = max(1, self.args.batch)
        for i in range(0, len(reqs), b):
            chunk = reqs[i:i + b]
            await self.pace(i)
            payload = []
            for k, r in enumerate(chunk):
                payload.append({"jsonrpc": "2.0", "id": k, "method": "broadcast_tx_sync",
                                "params": {"tx": base64.b64encode(encode(r)).decode()}})
            now = time.monotonic()
            hashes = [request_digest(r) for r in chunk]
            for th in hashes:
                self.submitted[th] = now
            try:
                resp = await http.post(url + "/", json=payload)
                answers = resp.json()
            except (httpx.HTTPError, ValueError) as exc:
                self.errors.append(f"{url}: {type(exc).__name__}: {exc}")
                continue
            if isinstance(answers, dict):
                self.rejected[answers.get("error", {}).get("message", "?")[:80]] += len(chunk)
                continue
            for a in answers:
                self._ack(hashes[a["id"]], a)

    async def ws_client(self, url: str, reqs: list[Request]) -> None:
        from httpx_ws import HTTPXWSException

        try:
            await self._ws_client(url, reqs)
        except (HTTPXWSException, httpx.HTTPError, OSError, ValueError) as exc:
            # unanswered txs stay un-acknowledged (not counted as lost); the error is reported
            self.errors.append(f"{url} websocket: {type(exc).__name__}: {exc}")

    async def _ws_client(self, url: str, reqs: list[Request]) -> None:
        from httpx_ws import aconnect_ws

        window = trio.Semaphore(max(1, self.args.window))
        hashes = [request_digest(r) for r in reqs]
        async with httpx.AsyncClient() as http, aconnect_ws(
            "ws" + url[4:] + "/websocket", http, max_message_size_bytes=16 << 20
        ) as ws:

            async def reader() -> None:
                for _ in reqs:
                    a = json.loads(await ws.receive_text())
                    self._ack(hashes[a["id"]], a)
                    window.release()

            async with trio.open_nursery() as nursery:
                nursery.start_soon(reader)
                for k, r in enumerate(reqs):
                    await self.pace(k)
                    await window.acquire()
                    self.submitted[hashes[k]] = time.monotonic()
                    await ws.send_text(json.dumps({
                        "jsonrpc": "2.0", "id": k, "method": "broadcast_tx_sync",
                        "params": {"tx": base64.b64encode(encode(r)).decode()}}))

    def _ack(self, th: bytes, answer: dict[str, Any]) -> None:
        if "result" in answer and answer["result"].get("status") in ("accepted", "committed"):
            self.acked.add(th)
        else:
            self.rejected[str(answer.get("error", {}).get("message", "?"))[:80]] += 1

    async def retransmit(self, http: httpx.AsyncClient, round_: int) -> None:
        """Resend acknowledged-but-uncommitted txs (same signed bytes: executed at most once)
        to a different node each round, as a PBFT client does on its request timeout."""
        pending = [h for h in self.acked if h not in self.committed]
        for i in range(0, len(pending), 50):
            url = self.urls[(round_ + i // 50) % len(self.urls)]
            payload = [{"jsonrpc": "2.0", "id": k, "method": "broadcast_tx_sync",
                        "params": {"tx": base64.b64encode(encode(self.requests[h])).decode()}}
                       for k, h in enumerate(pending[i:i + 50])]
            try:
                await http.post(url + "/", json=payload)
            except httpx.HTTPError as exc:
                self.errors.append(f"retransmit to {url}: {type(exc).__name__}")
            self.retransmitted += len(payload)

    # -- the run
    async def run(self) -> dict[str, Any]:
        limits = httpx.Limits(max_connections=self.args.clients * 2 + 8)
        async with httpx.AsyncClient(timeout=60, limits=limits) as http:
            domain, self.start_height = await self.chain(http)
            per_client = self.sign_all(domain)
            t_end = None
            async with trio.open_nursery() as nursery:
                await nursery.start(self.observe)
                t0 = self.t0 = time.monotonic()
                async with trio.open_nursery() as submitters:
                    for c, reqs in enumerate(per_client):
                        url = self.urls[c % len(self.urls)]
                        if self.args.ws:
                            submitters.start_soon(self.ws_client, url, reqs)
                        else:
                            submitters.start_soon(self.http_client, http, url, reqs)
                t_submitted = time.monotonic()
                self.all_done.set()
                retry_s = getattr(self.args, "retry", 0.0) or 0.0
                last_try, rounds = time.monotonic(), 0
                with trio.move_on_after(self.args.timeout) as settle:
                    while not self.acked <= self.committed.keys():
                        await trio.sleep(0.05)
                        # backoff: a slow (not lossy) cluster is not flooded with resends
                        if retry_s and time.monotonic() - last_try >= retry_s * 2**rounds:
                            rounds += 1
                            await self.retransmit(http, rounds)
                            last_try = time.monotonic()
                nursery.cancel_scope.cancel()
            timed_out = settle.cancelled_caught
            t_end = max((self.committed[h] for h in self.acked if h in self.committed),
                        default=time.monotonic())
            return await self.report(http, t0, t_submitted, t_end, timed_out)

    async def report(self, http: httpx.AsyncClient, t0: float, t_sub: float, t_end: float,
                     timed_out: bool) -> dict[str, Any]:
        # read the ledger back from ANOTHER node than the observer, and compare block hashes
        check_url = self.urls[1 % len(self.urls)]
        top = int((await rpc(http, check_url, "status"))["height"])
        with trio.move_on_after(30):  # let the checked node execute what node 0 has shown us
            while top < self.observed_height:
                await trio.sleep(0.05)
                top = int((await rpc(http, check_url, "status"))["height"])
        top = min(top, int((await rpc(http, self.urls[0], "status"))["height"]))
        seen: Counter[bytes] = Counter()
        divergent = 0
        for hi in range(top, self.start_height, -100):
            lo = max(self.start_height + 1, hi - 99)
            a = await rpc(http, check_url, "blockchain", min_height=lo, max_height=hi)
            b = await rpc(http, self.urls[0], "blockchain", min_height=lo, max_height=hi)
            hashes_b = {m["height"]: m["hash"] for m in b["blocks"]}
            for meta in a["blocks"]:
                for th in meta["tx_hashes"]:
                    seen[bytes.fromhex(th)] += 1
                if meta["height"] in hashes_b and hashes_b[meta["height"]] != meta["hash"]:
                    divergent += 1
        lost = [h for h in self.acked if seen[h] == 0]
        dups = [h for h in self.acked if seen[h] > 1]
        lat = sorted((self.committed[h] - self.submitted[h]) * 1000 for h in self.acked
                     if h in self.committed and h in self.submitted)
        committed = sum(1 for h in self.acked if h in self.committed)
        elapsed = max(t_end - t0, 1e-9)
        return {
            "nodes": len(self.urls), "txs": self.args.txs, "clients": self.args.clients,
            "mode": "ws" if self.args.ws else f"http-batch-{self.args.batch}",
            "offered_rate": getattr(self.args, "rate", 0.0) or None,
            "acked": len(self.acked), "committed": committed,
            "rejected": sum(self.rejected.values()),
            "reject_reasons": dict(self.rejected.most_common(5)),
            "lost": len(lost), "duplicates": len(dups), "divergent_blocks": divergent,
            "retransmitted": self.retransmitted,
            "settle_timeout": timed_out,
            "tx_per_s": round(committed / elapsed, 1),
            "submit_tx_per_s": round(len(self.submitted) / max(t_sub - t0, 1e-9), 1),
            "p50_ms": percentile(lat, 50), "p90_ms": percentile(lat, 90),
            "p99_ms": percentile(lat, 99), "max_ms": round(lat[-1], 2) if lat else None,
            "elapsed_s": round(elapsed, 3),
            "blocks": top - self.start_height, "height": top,
            "errors": self.errors[:5],
        }


async def rpc(http: httpx.AsyncClient, url: str, method: str, **params: Any) -> Any:
    r = await http.post(url + "/", json={"jsonrpc": "2.0", "id": 1, "method": method,
                                         "params": params})
    body = r.json()
    if "error" in body:
        raise RuntimeError(f"{url} {method}: {body['error'].get('message')}")
    return body["result"]


def run(args: argparse.Namespace) -> int:
    if args.txs < 1 or args.clients < 1:
        print("bench: --txs and --clients must be >= 1", file=sys.stderr)
        return 2
    from testnet import launcher

    tmp = None
    d: Path | None = None
    urls = list(args.url)
    try:
        if not urls:
            d = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="bftnode-bench-"))
            tmp = d if not args.dir else None
            if not args.json:
                print(f"starting {args.nodes} nodes in {d} ...", file=sys.stderr)
            m = launcher.up(d, args.nodes, base_port=args.base_port, log_level="warning")
            urls = [n["rpc"] for n in m["nodes"]]
        result = trio.run(Bench(urls, args).run)
    except launcher.LauncherError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 1
    finally:
        if d is not None and not args.keep:
            try:
                launcher.down(d)
            except Exception as exc:  # report, still clean up the temporary directory
                print(f"bench: stopping the testnet failed: {exc}", file=sys.stderr)
            if tmp is not None:
                shutil.rmtree(tmp, ignore_errors=True)
    if args.json:
        print(json.dumps(result))
    else:
        for k, v in result.items():
            print(f"{k:>18}: {v}")
    ok = result["lost"] == 0 and result["duplicates"] == 0 and result["divergent_blocks"] == 0
    return 0 if ok else 1


def run_bench(args: argparse.Namespace) -> int:
    return run(args)
