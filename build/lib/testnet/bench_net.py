"""`python -m testnet bench-net [--json]`: frames/s and round-trip latency of the libp2p mesh.

Measures `network.Libp2pTransport` (Noise + Yamux over TCP on 127.0.0.1) for 200 B and 16 KiB
frames between 2 hosts and among 4 hosts, and, in the same run, a raw trio TCP mesh that uses
the same framing, the same bounded per-peer queues and the same coalescing writer, so the ratio
isolates what py-libp2p (Noise, Yamux, multistream) costs. All hosts share one process and one
CPU core, as the raw baseline does. A benchmark, not a test: bounded run time (< 60 s by default).

Imports network only (testnet may import anything; this command needs nothing else).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import socket
import statistics
import struct
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import structlog
import trio
from nacl.signing import SigningKey

from network.framing import FrameDecoder, encode_frame
from network.libp2p import Libp2pTransport
from network.transport import PeerSpec, SendQueue

SIZES = (200, 16 * 1024)
QUEUE_FRAMES = 100_000
PACE_DEPTH = 512  # producers wait while any peer queue is deeper than this


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--duration", type=float, default=1.0,
                        help="seconds of load per throughput measurement (default 1.0)")
    parser.add_argument("--pings", type=int, default=200,
                        help="max round trips per latency measurement (default 200)")
    parser.add_argument("--profile", metavar="FILE", default=None,
                        help="write a pyinstrument text profile of the libp2p runs to FILE")


def run(args: argparse.Namespace) -> int:
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    logging.getLogger("libp2p").setLevel(logging.CRITICAL)  # expected dial races at start
    profiler = None
    if args.profile:
        from pyinstrument import Profiler  # optional dev dependency

        profiler = Profiler(async_mode="disabled")
    try:
        result = trio.run(_bench, args.duration, args.pings, profiler)
    finally:
        if profiler is not None:
            if profiler.is_running:
                profiler.stop()
            with open(args.profile, "w") as f:
                f.write(profiler.output_text(unicode=False, color=False, show_all=False))
    if args.json:
        print(json.dumps(result, sort_keys=True))
    else:
        _print_table(result)
    return 0


# --- a raw trio TCP mesh with the same framing and queueing --------------------------------


class RawTcpMesh:
    """One endpoint of a plaintext TCP full mesh: same framing, queues and coalescing writer as
    Libp2pTransport, nothing else (no crypto, no muxer, no multistream). Benchmark only."""

    def __init__(self, index: int, ports: list[int]) -> None:
        self.index = index
        self.ports = ports
        self.peer_indices = list(range(len(ports)))
        self._queues = {i: SendQueue(QUEUE_FRAMES, 1 << 30) for i in self.peer_indices
                        if i != index}
        self._send, self.incoming = trio.open_memory_channel[tuple[int, bytes]](1024)

    def queue_depth(self, peer: int) -> int:
        return len(self._queues[peer])

    async def send(self, to: int, data: bytes) -> None:
        self._queues[to].put(encode_frame(data))

    async def broadcast(self, data: bytes) -> None:
        frame = encode_frame(data)
        for q in self._queues.values():
            q.put(frame)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(self.ports[self.index], host="127.0.0.1")
        async with trio.open_nursery() as nursery:
            nursery.start_soon(trio.serve_listeners, self._on_inbound, listeners)
            for peer in self._queues:
                nursery.start_soon(self._writer, peer)
            task_status.started()

    async def _writer(self, peer: int) -> None:
        while True:
            try:
                stream = await trio.open_tcp_stream("127.0.0.1", self.ports[peer])
                break
            except OSError:
                await trio.sleep(0.02)
        stream.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        await stream.send_all(struct.pack(">I", self.index))
        q = self._queues[peer]
        while True:
            await q.wait_nonempty()
            await stream.send_all(b"".join(q.drain(1 << 20)))

    async def _on_inbound(self, stream: trio.SocketStream) -> None:
        stream.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        head = b""
        while len(head) < 4:
            chunk = await stream.receive_some(4 - len(head))
            if not chunk:
                return
            head += chunk
        (peer,) = struct.unpack(">I", head)
        decoder = FrameDecoder()
        while data := await stream.receive_some(256 * 1024):
            for frame in decoder.feed(data):
                await self._send.send((peer, frame))


# --- cluster setup -------------------------------------------------------------------------


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


@asynccontextmanager
async def _cluster(kind: str, n: int) -> AsyncIterator[list[Any]]:
    ports = _free_ports(n)
    if kind == "raw_tcp":
        nodes: list[Any] = [RawTcpMesh(i, ports) for i in range(n)]
    else:
        seeds = [os.urandom(32) for _ in range(n)]
        specs = [PeerSpec(i, bytes(SigningKey(s).verify_key), f"/ip4/127.0.0.1/tcp/{p}")
                 for i, (s, p) in enumerate(zip(seeds, ports, strict=True))]
        nodes = [Libp2pTransport(i, seeds[i], specs, queue_max_frames=QUEUE_FRAMES,
                                 queue_max_bytes=1 << 30, backoff_initial_s=0.02,
                                 backoff_max_s=0.2) for i in range(n)]
    async with trio.open_nursery() as nursery:
        for node in nodes:
            await nursery.start(node.run)
        await _warm_up(nodes)
        yield nodes
        nursery.cancel_scope.cancel()


async def _warm_up(nodes: list[Any]) -> None:
    """Wait until every directed link delivers (connections and streams are up)."""
    with trio.fail_after(20):
        for node in nodes:
            await node.broadcast(b"warm")
        for node in nodes:
            for _ in range(len(nodes) - 1):
                await node.incoming.receive()


# --- measurements --------------------------------------------------------------------------


async def _throughput(nodes: list[Any], size: int, duration: float) -> float:
    """Frames/s delivered: with 2 nodes node 0 streams to node 1; with more, all broadcast."""
    payload = b"x" * size
    producers = [nodes[0]] if len(nodes) == 2 else nodes
    expected = 0
    received = 0
    stop = trio.Event()
    all_in = trio.Event()

    async def consume(node: Any) -> None:
        nonlocal received
        async for _ in node.incoming:
            received += 1
            if stop.is_set() and received >= expected:
                all_in.set()

    async def produce(node: Any) -> None:
        nonlocal expected
        fanout = len(nodes) - 1
        peers = [i for i in node.peer_indices if i != node.index]
        while not stop.is_set():
            for _ in range(32):
                await node.broadcast(payload)
            expected += 32 * fanout
            while max(node.queue_depth(i) for i in peers) > PACE_DEPTH:
                await trio.sleep(0.0005)

    async with trio.open_nursery() as nursery:
        for node in nodes:
            nursery.start_soon(consume, node)
        start = trio.current_time()
        for node in producers:
            nursery.start_soon(produce, node)
        await trio.sleep(duration)
        stop.set()
        if received >= expected:
            all_in.set()
        with trio.move_on_after(30):
            await all_in.wait()
        elapsed = trio.current_time() - start
        nursery.cancel_scope.cancel()
    return received / elapsed


async def _latency(nodes: list[Any], size: int, pings: int, budget_s: float) -> list[float]:
    """Round trips from node 0: ping every peer, time until the LAST echo is back."""
    pad = b"p" * max(0, size - 9)
    rtts: list[float] = []

    async def echo(node: Any) -> None:
        async for sender, payload in node.incoming:
            if payload[:1] == b"P":
                await node.send(sender, b"R" + payload[1:])

    async with trio.open_nursery() as nursery:
        for node in nodes[1:]:
            nursery.start_soon(echo, node)
        deadline = trio.current_time() + budget_s
        for seq in range(pings):
            if trio.current_time() > deadline:
                break
            t0 = trio.current_time()
            await nodes[0].broadcast(b"P" + seq.to_bytes(8, "big") + pad)
            pending = len(nodes) - 1
            with trio.move_on_after(2.0):  # a lost ping (stream reset under load) is skipped
                while pending:
                    _, payload = await nodes[0].incoming.receive()
                    if payload[:1] == b"R" and int.from_bytes(payload[1:9], "big") == seq:
                        pending -= 1
            if not pending:
                rtts.append(trio.current_time() - t0)
        nursery.cancel_scope.cancel()
    return rtts


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _bench(duration: float, pings: int, profiler: Any) -> dict[str, Any]:
    results: dict[str, Any] = {"cases": []}
    t_start = trio.current_time()
    for n in (2, 4):
        per_kind: dict[str, dict[int, dict[str, float]]] = {}
        for kind in ("libp2p", "raw_tcp"):
            per_kind[kind] = {}
            async with _cluster(kind, n) as nodes:
                if profiler is not None and kind == "libp2p":
                    profiler.start()  # after warm-up: measure the steady state only
                for size in SIZES:
                    fps = await _throughput(nodes, size, duration)
                    rtts = await _latency(nodes, size, pings, budget_s=duration)
                    per_kind[kind][size] = {
                        "frames_per_s": round(fps, 1),
                        "mbytes_per_s": round(fps * size / 1e6, 2),
                        "rtt_p50_ms": round(statistics.median(rtts) * 1e3, 3),
                        "rtt_p99_ms": round(_pct(rtts, 0.99) * 1e3, 3),
                        "pings": len(rtts),
                    }
                    if kind == "libp2p":
                        stats = nodes[0].peer_stats()
                        out = sum(s["frames_out"] for s in stats.values())
                        writes = sum(s["writes"] for s in stats.values())
                        per_kind[kind][size]["frames_per_write"] = round(out / max(writes, 1), 1)
                if profiler is not None and kind == "libp2p":
                    profiler.stop()
        for size in SIZES:
            lp, raw = per_kind["libp2p"][size], per_kind["raw_tcp"][size]
            results["cases"].append({
                "hosts": n, "frame_bytes": size, "libp2p": lp, "raw_tcp": raw,
                "throughput_ratio_libp2p_over_raw": round(lp["frames_per_s"]
                                                          / raw["frames_per_s"], 3),
                "rtt_p50_ratio_libp2p_over_raw": round(lp["rtt_p50_ms"] / raw["rtt_p50_ms"], 2),
            })
    results["wall_s"] = round(trio.current_time() - t_start, 1)
    results["python"] = sys.version.split()[0]
    return results


def _print_table(result: dict[str, Any]) -> None:
    print("bench-net: one process, all hosts on 127.0.0.1 (libp2p = Noise+Yamux; raw = plain TCP,"
          " same framing/queues)")
    head = (f"{'hosts':>5} {'frame':>6} | {'libp2p f/s':>11} {'raw f/s':>11} {'ratio':>6} | "
            f"{'libp2p rtt p50':>14} {'raw rtt p50':>11} {'ratio':>6} | {'frames/write':>12}")
    print(head)
    print("-" * len(head))
    for c in result["cases"]:
        lp, raw = c["libp2p"], c["raw_tcp"]
        print(f"{c['hosts']:>5} {c['frame_bytes']:>6} | {lp['frames_per_s']:>11.0f} "
              f"{raw['frames_per_s']:>11.0f} {c['throughput_ratio_libp2p_over_raw']:>6.2f} | "
              f"{lp['rtt_p50_ms']:>11.2f} ms {raw['rtt_p50_ms']:>8.2f} ms "
              f"{c['rtt_p50_ratio_libp2p_over_raw']:>6.1f} | {lp.get('frames_per_write', 0):>12}")
    print(f"wall time {result['wall_s']} s")
