"""In-process transport for fast async tests of the node: `MemoryNetwork` + `MemoryTransport`.

Same `Transport` contract as the libp2p transport (bounded per-peer queues with drop-oldest,
one delivery task per link, bounded `incoming` with back-pressure, invalid-traffic cool-off),
with per-link fault knobs: drop probability, fixed delay, and partitions. Randomness comes from
a seeded `random.Random`, so a failing test replays.

Imports nothing of ours.
"""

from __future__ import annotations

import collections
import random
from collections.abc import Iterable
from typing import Any

import structlog
import trio

from network.transport import (
    DEFAULT_INCOMING_CAPACITY,
    DEFAULT_INCOMING_PEER_BYTES,
    DEFAULT_QUEUE_MAX_BYTES,
    DEFAULT_QUEUE_MAX_FRAMES,
    InvalidTracker,
    PeerCounters,
    SendQueue,
    Transport,
    open_incoming,
)

log = structlog.get_logger("network.memory")


class MemoryNetwork:
    """A set of `n` in-process endpoints with per-link knobs. Links are directed (src, dst)."""

    def __init__(self, n: int, *, seed: int = 0,
                 queue_max_frames: int = DEFAULT_QUEUE_MAX_FRAMES,
                 queue_max_bytes: int = DEFAULT_QUEUE_MAX_BYTES,
                 incoming_capacity: int = DEFAULT_INCOMING_CAPACITY) -> None:
        if n < 1:
            raise ValueError("a network needs at least one endpoint")
        self.n = n
        self.rng = random.Random(seed)
        self._drop: dict[tuple[int, int], float] = {}
        self._delay: dict[tuple[int, int], float] = {}
        self._blocked: set[tuple[int, int]] = set()
        self._transports: dict[int, MemoryTransport] = {}
        self._queue_max_frames = queue_max_frames
        self._queue_max_bytes = queue_max_bytes
        self._incoming_capacity = incoming_capacity

    def transport(self, index: int) -> MemoryTransport:
        """The endpoint for validator `index` (created once)."""
        if not 0 <= index < self.n:
            raise ValueError(f"index {index} out of range 0..{self.n - 1}")
        if index not in self._transports:
            self._transports[index] = MemoryTransport(
                self, index, queue_max_frames=self._queue_max_frames,
                queue_max_bytes=self._queue_max_bytes,
                incoming_capacity=self._incoming_capacity)
        return self._transports[index]

    # --- fault knobs -------------------------------------------------------------------------

    def _links(self, src: int | None, dst: int | None) -> Iterable[tuple[int, int]]:
        for s in range(self.n) if src is None else [src]:
            for d in range(self.n) if dst is None else [dst]:
                if s != d:
                    yield (s, d)

    def set_drop(self, probability: float, src: int | None = None, dst: int | None = None) -> None:
        """Drop each frame on the matching links with `probability` (None = every node)."""
        if not 0.0 <= probability <= 1.0:
            raise ValueError("drop probability must be within [0, 1]")
        for link in self._links(src, dst):
            self._drop[link] = probability

    def set_delay(self, seconds: float, src: int | None = None, dst: int | None = None) -> None:
        """Deliver frames on the matching links `seconds` late (FIFO order is kept)."""
        if seconds < 0:
            raise ValueError("delay must be >= 0")
        for link in self._links(src, dst):
            self._delay[link] = seconds

    def partition(self, *groups: Iterable[int]) -> None:
        """Only nodes in the same group can talk; nodes in no group are isolated."""
        member = {i: g for g, nodes in enumerate(groups) for i in nodes}
        self._blocked = {
            (s, d) for s, d in self._links(None, None)
            if member.get(s, -1 - s) != member.get(d, -1 - d)
        }

    def isolate(self, node: int) -> None:
        self._blocked |= set(self._links(node, None)) | set(self._links(None, node))

    def heal(self) -> None:
        """Remove partitions, drops and delays."""
        self._blocked.clear()
        self._drop.clear()
        self._delay.clear()

    def blocked(self, src: int, dst: int) -> bool:
        return (src, dst) in self._blocked

    def delay(self, src: int, dst: int) -> float:
        return self._delay.get((src, dst), 0.0)

    def should_drop(self, src: int, dst: int) -> bool:
        p = self._drop.get((src, dst), 0.0)
        return p > 0.0 and self.rng.random() < p


class MemoryTransport(Transport):
    """One endpoint of a `MemoryNetwork`. Frames are delivered only while `run` is running
    on both ends; a frame to a stopped endpoint is dropped (counted as `peer_down`)."""

    def __init__(self, network: MemoryNetwork, index: int, *,
                 queue_max_frames: int = DEFAULT_QUEUE_MAX_FRAMES,
                 queue_max_bytes: int = DEFAULT_QUEUE_MAX_BYTES,
                 incoming_capacity: int = DEFAULT_INCOMING_CAPACITY,
                 incoming_peer_bytes: int = DEFAULT_INCOMING_PEER_BYTES,
                 invalid_limit: int = 20, invalid_window_s: float = 10.0,
                 cooloff_s: float = 30.0) -> None:
        self.network = network
        self.index = index
        self.peer_indices = list(range(network.n))
        self.cooloff_s = cooloff_s
        self._incoming_send, self.incoming = open_incoming(incoming_capacity, incoming_peer_bytes)
        self._queues = {i: SendQueue(queue_max_frames, queue_max_bytes)
                        for i in self.peer_indices if i != index}
        self._deliver_at = {i: collections.deque[float]() for i in self._queues}
        self._stats = {i: PeerCounters() for i in self.peer_indices if i != index}
        self._invalid = {i: InvalidTracker(invalid_limit, invalid_window_s)
                         for i in self.peer_indices if i != index}
        self._cooloff_until = dict.fromkeys(self._stats, -1.0)
        self.running = False

    async def send(self, to: int, data: bytes) -> None:
        frame = self._check_payload(to, data)
        if to == self.index:
            try:
                self._incoming_send.send_nowait((to, data))
            except trio.WouldBlock:
                log.warning("loopback_dropped", peer=to, reason="incoming_full")
            return
        stats = self._stats[to]
        if self.network.blocked(self.index, to):
            stats.drops["partitioned"] += 1
            return
        if self.network.should_drop(self.index, to):
            stats.drops["injected"] += 1
            return
        # Due times run parallel to the queue; drop-oldest removes the same number from both.
        dropped = self._queues[to].put(frame)
        times = self._deliver_at[to]
        times.append(trio.current_time() + self.network.delay(self.index, to))
        if dropped:
            for _ in range(dropped):
                times.popleft()
            stats.drops["queue_full"] += dropped

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            async with trio.open_nursery() as nursery:
                for peer in self._queues:
                    nursery.start_soon(self._link_task, peer)
                self.running = True
                task_status.started()
        finally:
            self.running = False

    async def _link_task(self, peer: int) -> None:
        queue = self._queues[peer]
        stats = self._stats[peer]
        times = self._deliver_at[peer]
        while True:
            await queue.wait_nonempty()
            (frame,) = queue.drain(0)  # one frame at a time keeps delays per frame exact
            due = times.popleft()
            now = trio.current_time()
            if due > now:
                await trio.sleep_until(due)
            dest = self.network._transports.get(peer)
            if dest is None or not dest.running:
                stats.drops["peer_down"] += 1
                continue
            if self.network.blocked(self.index, peer):
                stats.drops["partitioned"] += 1
                continue
            await dest._receive(self.index, frame[4:])
            stats.frames_out += 1
            stats.writes += 1
            stats.bytes_out += len(frame)

    async def _receive(self, sender: int, payload: bytes) -> None:
        stats = self._stats[sender]
        if trio.current_time() < self._cooloff_until[sender]:
            stats.drops["cooloff"] += 1
            return
        stats.frames_in += 1
        stats.bytes_in += len(payload) + 4
        # Back-pressure: a slow consumer slows only the links feeding it.
        await self._incoming_send.send((sender, payload))

    def queue_depth(self, peer: int) -> int:
        q = self._queues.get(peer)
        return len(q) if q is not None else 0

    def report_invalid(self, peer: int, reason: str = "undecodable") -> None:
        if peer not in self._stats:
            raise ValueError(f"unknown peer index {peer}")
        stats = self._stats[peer]
        stats.invalid += 1
        stats.drops[f"invalid:{reason}"] += 1
        now = trio.current_time()
        if self._invalid[peer].strike(now):
            stats.cooloffs += 1
            self._cooloff_until[peer] = now + self.cooloff_s
            log.warning("peer_cooloff", peer=peer, reason=reason, seconds=self.cooloff_s)

    def peer_stats(self) -> dict[int, dict[str, Any]]:
        out: dict[int, dict[str, Any]] = {}
        for peer, c in self._stats.items():
            d = c.as_dict()
            d["queue_depth"] = len(self._queues[peer])
            d["queue_bytes"] = self._queues[peer].nbytes
            d["connected"] = self.running and peer in self.network._transports and \
                self.network._transports[peer].running and not self.network.blocked(
                    self.index, peer)
            out[peer] = d
        return out
