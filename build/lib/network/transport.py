"""The Transport contract of the validator mesh, plus the pieces every implementation shares.

Owns: `Transport` (ABC), `PeerSpec` (index, Ed25519 public key, multiaddr — from genesis),
`SendQueue` (bounded per-peer outbound queue, drop-oldest), `PeerCounters` (plain metric
counters exposed by `peer_stats()`), `InvalidTracker` (per-peer invalid-traffic rate limit),
`open_incoming` (the inbound channel, bounded in frames and in bytes per sender).

Peers are validator indices 0..n-1; payloads are opaque bytes. This module knows nothing of
PBFT and imports nothing of ours (not consensus, not bftnode, not storage).

Overflow policy: `send()` never blocks. Each peer has a queue bounded in frames and bytes; when
a new frame does not fit, the OLDEST queued frames are dropped (counted as
`drops["queue_full"]`). Rationale: consensus traffic is superseded by newer traffic (newer
views, higher sequence numbers), and a live peer catches up through retransmission/state
transfer; an unbounded queue towards a dead or stalled peer would grow memory forever.
"""

from __future__ import annotations

import collections
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import trio

from network.framing import DEFAULT_MAX_FRAME_SIZE, encode_frame

DEFAULT_QUEUE_MAX_FRAMES = 10_000
DEFAULT_QUEUE_MAX_BYTES = 32 * 1024 * 1024  # per peer; drop-oldest beyond (4 max-size frames)
DEFAULT_INCOMING_CAPACITY = 1024
# wire bytes one sender may have waiting in `incoming` (one bigger frame passes alone): a peer
# sending big frames fast waits on its own share, the others keep theirs
DEFAULT_INCOMING_PEER_BYTES = DEFAULT_MAX_FRAME_SIZE


@dataclass(frozen=True)
class PeerSpec:
    """One validator of the static membership, as listed in genesis."""

    index: int
    public_key: bytes  # raw Ed25519 public key, 32 bytes
    multiaddr: str  # e.g. "/ip4/127.0.0.1/tcp/26656" (a trailing /p2p/<id> is allowed)

    def __post_init__(self) -> None:
        if self.index < 0:
            raise ValueError(f"peer index must be >= 0, got {self.index}")
        if len(self.public_key) != 32:
            raise ValueError(f"peer {self.index}: Ed25519 public key must be 32 bytes")


@dataclass
class PeerCounters:
    """Plain per-peer counters; `as_dict()` is what `peer_stats()` returns per peer."""

    bytes_in: int = 0
    bytes_out: int = 0
    frames_in: int = 0
    frames_out: int = 0
    writes: int = 0  # write calls (frames_out / writes = coalescing factor)
    connects: int = 0  # outbound streams established
    reconnects: int = 0  # outbound streams established after the first one
    dial_failures: int = 0
    early_redials: int = 0  # backoff sleeps cut short because the peer dialled us
    inbound_streams: int = 0
    invalid: int = 0
    cooloffs: int = 0
    read_timeouts: int = 0  # inbound streams closed: the peer sent nothing for read_timeout_s
    write_timeouts: int = 0  # outbound streams given up: a write stalled for write_timeout_s
    drops: collections.Counter[str] = field(default_factory=collections.Counter)

    def as_dict(self) -> dict[str, Any]:
        return {
            "bytes_in": self.bytes_in,
            "bytes_out": self.bytes_out,
            "frames_in": self.frames_in,
            "frames_out": self.frames_out,
            "writes": self.writes,
            "connects": self.connects,
            "reconnects": self.reconnects,
            "dial_failures": self.dial_failures,
            "early_redials": self.early_redials,
            "inbound_streams": self.inbound_streams,
            "invalid": self.invalid,
            "cooloffs": self.cooloffs,
            "read_timeouts": self.read_timeouts,
            "write_timeouts": self.write_timeouts,
            "drops": dict(self.drops),
        }


class SendQueue:
    """Bounded FIFO of encoded frames for one peer. `put` never blocks; overflow drops oldest."""

    def __init__(self, max_frames: int = DEFAULT_QUEUE_MAX_FRAMES,
                 max_bytes: int = DEFAULT_QUEUE_MAX_BYTES) -> None:
        if max_frames < 1 or max_bytes < 1:
            raise ValueError("queue bounds must be positive")
        self.max_frames = max_frames
        self.max_bytes = max_bytes
        self._frames: collections.deque[bytes] = collections.deque()
        self._bytes = 0
        self._nonempty = trio.Event()

    def __len__(self) -> int:
        return len(self._frames)

    @property
    def nbytes(self) -> int:
        return self._bytes

    def put(self, frame: bytes) -> int:
        """Append one encoded frame; return how many old frames were dropped to make room."""
        dropped = 0
        size = len(frame)
        frames = self._frames
        while frames and (len(frames) >= self.max_frames or self._bytes + size > self.max_bytes):
            self._bytes -= len(frames.popleft())
            dropped += 1
        frames.append(frame)
        self._bytes += size
        self._nonempty.set()
        return dropped

    def requeue_front(self, batch: list[bytes]) -> int:
        """Put an unsent batch back at the head (after a failed write). Returns frames dropped:
        the bound is kept by discarding the oldest frames of `batch` itself."""
        dropped = 0
        for frame in reversed(batch):
            if len(self._frames) >= self.max_frames or self._bytes + len(frame) > self.max_bytes:
                dropped += 1
                continue
            self._frames.appendleft(frame)
            self._bytes += len(frame)
        if self._frames:
            self._nonempty.set()
        return dropped

    def drain(self, max_bytes: int) -> list[bytes]:
        """Pop queued frames up to `max_bytes` in total (always at least one if non-empty)."""
        out: list[bytes] = []
        total = 0
        frames = self._frames
        while frames and (not out or total + len(frames[0]) <= max_bytes):
            f = frames.popleft()
            total += len(f)
            out.append(f)
        self._bytes -= total
        if not frames:
            self._nonempty = trio.Event()
        return out

    def clear(self) -> int:
        n = len(self._frames)
        self._frames.clear()
        self._bytes = 0
        self._nonempty = trio.Event()
        return n

    async def wait_nonempty(self) -> None:
        await self._nonempty.wait()


class InvalidTracker:
    """Counts invalid traffic from one peer in a sliding window; says when to cool off."""

    def __init__(self, limit: int, window_s: float) -> None:
        self.limit = limit
        self.window_s = window_s
        self._times: collections.deque[float] = collections.deque()

    def strike(self, now: float) -> bool:
        """Record one invalid event; True if the peer exceeded `limit` within the window."""
        self._times.append(now)
        while self._times and self._times[0] < now - self.window_s:
            self._times.popleft()
        if len(self._times) > self.limit:
            self._times.clear()
            return True
        return False


class Transport(ABC):
    """Moves opaque byte frames between validator indices.

    Lifecycle: `async with transport:` (or `await nursery.start(transport.run)`); received frames
    arrive on `incoming` as `(sender_index, payload)`, where the sender is the authenticated
    peer, never a field claimed inside the payload. `send` and `broadcast` never block on a slow
    peer (bounded per-peer queue, drop-oldest). Sending to our own index loops back into
    `incoming` (dropped + counted if `incoming` is full).
    """

    index: int
    peer_indices: list[int]
    incoming: Any  # IncomingReceive (or a trio memory channel): (sender, payload) items
    max_frame_size: int = DEFAULT_MAX_FRAME_SIZE

    _nursery_cm: Any = None

    @abstractmethod
    async def send(self, to: int, data: bytes) -> None:
        """Enqueue `data` for peer `to`. Raises ValueError for an unknown peer or bad size."""

    async def broadcast(self, data: bytes) -> None:
        """Enqueue `data` for every peer except ourselves (encoded once)."""
        for i in self.peer_indices:
            if i != self.index:
                await self.send(i, data)

    @abstractmethod
    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run until cancelled; `task_status.started()` once frames can be sent and received."""

    @abstractmethod
    def peer_stats(self) -> dict[int, dict[str, Any]]:
        """Per-peer counters (bytes/frames in/out, drops by reason, reconnects, queue depth)."""

    @abstractmethod
    def queue_depth(self, peer: int) -> int:
        """Frames queued for `peer` and not yet written (cheap; for flow control upstream)."""

    @abstractmethod
    def report_invalid(self, peer: int, reason: str = "undecodable") -> None:
        """The consumer found a frame from `peer` invalid at a higher layer. Counted and
        rate-limited; a peer that keeps sending garbage is cut off for a cool-off period."""

    def _check_payload(self, to: int, data: bytes) -> bytes:
        if to not in self._valid_indices():
            raise ValueError(f"unknown peer index {to}")
        return encode_frame(data, self.max_frame_size)

    def _valid_indices(self) -> set[int]:
        return set(self.peer_indices)

    async def __aenter__(self) -> Transport:
        self._nursery_cm = trio.open_nursery()
        nursery = await self._nursery_cm.__aenter__()
        try:
            await nursery.start(self.run)
        except BaseException as exc:
            await self._nursery_cm.__aexit__(type(exc), exc, exc.__traceback__)
            raise
        self._nursery = nursery
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> bool | None:
        self._nursery.cancel_scope.cancel()
        return await self._nursery_cm.__aexit__(exc_type, exc, tb)


class _PeerBytes:
    """Bytes each sender has waiting in an incoming channel, with a wake-up per sender."""

    def __init__(self, share: int) -> None:
        self.share = share
        self.held: collections.Counter[int] = collections.Counter()
        self._room: dict[int, trio.Event] = {}

    def fits(self, peer: int, n: int) -> bool:
        held = self.held[peer]
        return held == 0 or held + n <= self.share

    async def wait_room(self, peer: int, n: int) -> None:
        while not self.fits(peer, n):
            event = self._room.get(peer)
            if event is None:
                event = self._room[peer] = trio.Event()
            await event.wait()

    def take(self, peer: int, n: int) -> None:
        self.held[peer] += n

    def give(self, peer: int, n: int) -> None:
        self.held[peer] -= n
        if self.held[peer] <= 0:
            del self.held[peer]
        event = self._room.pop(peer, None)
        if event is not None:
            event.set()


class IncomingSend:
    """Send side of `open_incoming`: a sender over its byte share waits (`send`) or is refused
    (`send_nowait` raises trio.WouldBlock), whatever room the channel has for others."""

    def __init__(self, inner: trio.MemorySendChannel, budget: _PeerBytes) -> None:
        self._inner = inner
        self._budget = budget

    def send_nowait(self, item: tuple[int, bytes]) -> None:
        peer, n = item[0], len(item[1])
        if not self._budget.fits(peer, n):
            raise trio.WouldBlock
        self._inner.send_nowait(item)
        self._budget.take(peer, n)

    async def send(self, item: tuple[int, bytes]) -> None:
        peer, n = item[0], len(item[1])
        await self._budget.wait_room(peer, n)
        self._budget.take(peer, n)
        try:
            await self._inner.send(item)
        except BaseException:
            self._budget.give(peer, n)
            raise

    def __getattr__(self, name: str) -> Any:  # close(), statistics(), clone()...
        return getattr(self._inner, name)


class IncomingReceive:
    """Receive side of `open_incoming` (an async iterator of (sender, payload), like a trio
    memory channel); taking a frame gives its bytes back to the sender's share."""

    def __init__(self, inner: trio.MemoryReceiveChannel, budget: _PeerBytes) -> None:
        self._inner = inner
        self._budget = budget

    def held_bytes(self, peer: int) -> int:
        return self._budget.held[peer]

    def receive_nowait(self) -> tuple[int, bytes]:
        item = self._inner.receive_nowait()
        self._budget.give(item[0], len(item[1]))
        return item

    async def receive(self) -> tuple[int, bytes]:
        item = await self._inner.receive()
        self._budget.give(item[0], len(item[1]))
        return item

    def __aiter__(self) -> IncomingReceive:
        return self

    async def __anext__(self) -> tuple[int, bytes]:
        try:
            return await self.receive()
        except trio.EndOfChannel:
            raise StopAsyncIteration from None

    def __getattr__(self, name: str) -> Any:  # close(), statistics()...
        return getattr(self._inner, name)


def open_incoming(capacity: int = DEFAULT_INCOMING_CAPACITY,
                  peer_bytes: int = DEFAULT_INCOMING_PEER_BYTES
                  ) -> tuple[IncomingSend, IncomingReceive]:
    """A transport's inbound channel: at most `capacity` frames, and per sender at most
    `peer_bytes` wire bytes (or one bigger frame) waiting."""
    send, recv = trio.open_memory_channel[tuple[int, bytes]](capacity)
    budget = _PeerBytes(peer_bytes)
    return IncomingSend(send, budget), IncomingReceive(recv, budget)
