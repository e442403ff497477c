"""libp2p transport for the validator mesh: `Libp2pTransport`.

Owns the py-libp2p host (TCP + Noise + Yamux only; no plaintext, no secio, no TLS, no gossipsub),
the binding of validator indices to libp2p PeerIDs, one outbound stream + one writer task + one
bounded queue per peer, redial with exponential backoff and jitter, framing limits, invalid-traffic
cool-off and per-peer counters. Must not import anything of ours beyond `network` (bytes only;
no consensus, no bftnode, no storage).

Identity: the libp2p key IS the validator's Ed25519 key (from its 32-byte seed), so every PeerID
is fixed by genesis. Noise authenticates the remote PeerID during the handshake (and checks it
against the PeerID we dialled). Inbound streams are attributed to that authenticated PeerID;
a PeerID that is not a validator gets its stream reset and its connection closed.

Stream model: each node writes only on the stream it opened to a peer and reads only on streams
peers opened to it (unidirectional use of two long-lived streams). There is therefore exactly one
writer per direction and no simultaneous-open tie-breaking; a newer inbound stream from the same
peer replaces the older one (the peer restarted or redialled).

Host construction (key pair, PeerID, Noise + Yamux host) is network.libp2p_host; the shortcuts
on py-libp2p's hot paths are network.libp2p_patches, installed on import.
"""

from __future__ import annotations

import logging
import math
import os
import random
from dataclasses import dataclass, field
from typing import Any

import multiaddr
import structlog
import trio
from libp2p.abc import IHost, INetStream
from libp2p.custom_types import TProtocol
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo

from network.framing import DEFAULT_MAX_FRAME_SIZE, KEEPALIVE_FRAME, FrameDecoder, FramingError

# py-libp2p's import detaches its "libp2p" logger (no handler, no propagation): its warnings
# then reach stderr as bare text through logging.lastResort. Hand them to the root logger,
# which a node renders as JSON (bftnode.logging), unless LIBP2P_DEBUG set up libp2p's own.
if not os.environ.get("LIBP2P_DEBUG"):
    logging.getLogger("libp2p").propagate = True
from network.libp2p_host import (
    PROTOCOL_ID,
    _split_p2p,
    key_pair_from_seed,
    peer_id_from_public_key,
    resolve,
    secure_host,
)
from network.transport import (
    DEFAULT_INCOMING_CAPACITY,
    DEFAULT_INCOMING_PEER_BYTES,
    DEFAULT_QUEUE_MAX_BYTES,
    DEFAULT_QUEUE_MAX_FRAMES,
    InvalidTracker,
    PeerCounters,
    PeerSpec,
    SendQueue,
    Transport,
    open_incoming,
)

log = structlog.get_logger("network.libp2p")

__all__ = [
    "PROTOCOL_ID",
    "Libp2pTransport",
    "key_pair_from_seed",
    "peer_id_from_public_key",
    "secure_host",
]

READ_CHUNK = 256 * 1024


def _timer_slack(timeout_s: float) -> float:
    """How stale a stream's re-armed read/write deadline may get: a tenth of it, at most 1 s."""
    return min(1.0, timeout_s / 10)


@dataclass
class _Peer:
    spec: PeerSpec
    peer_id: ID
    addr: multiaddr.Multiaddr
    queue: SendQueue
    invalid: InvalidTracker
    stats: PeerCounters = field(default_factory=PeerCounters)
    outbound_up: bool = False
    inbound_scope: trio.CancelScope | None = None
    cooloff_until: float = float("-inf")
    # set when the peer opens a stream to us while our outbound one is down: it is up again,
    # so the outbound loop dials now instead of finishing its backoff sleep
    redial_now: trio.Event | None = None


class Libp2pTransport(Transport):
    """The validator mesh over py-libp2p. See the module docstring and docs/network.md."""

    def __init__(
        self,
        index: int,
        secret_key_seed: bytes,
        peers: list[PeerSpec],
        listen_multiaddr: str | None = None,
        *,
        protocol_id: str = PROTOCOL_ID,
        max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
        queue_max_frames: int = DEFAULT_QUEUE_MAX_FRAMES,
        queue_max_bytes: int = DEFAULT_QUEUE_MAX_BYTES,
        incoming_capacity: int = DEFAULT_INCOMING_CAPACITY,
        incoming_peer_bytes: int = DEFAULT_INCOMING_PEER_BYTES,
        max_write_bytes: int = 1024 * 1024,
        dial_timeout_s: float = 10.0,
        write_timeout_s: float = 10.0,
        keepalive_interval_s: float = 2.0,
        read_timeout_s: float = 15.0,
        backoff_initial_s: float = 0.1,
        backoff_max_s: float = 10.0,
        invalid_limit: int = 20,
        invalid_window_s: float = 10.0,
        cooloff_s: float = 30.0,
        host_restart_backoff_s: float = 1.0,
        rng: random.Random | None = None,
    ) -> None:
        by_index = {p.index: p for p in peers}
        if len(by_index) != len(peers):
            raise ValueError("duplicate peer index in peers")
        if index not in by_index:
            raise ValueError(f"our index {index} is not in peers")
        self.index = index
        self.peer_indices = sorted(by_index)
        self.protocol_id = TProtocol(protocol_id)
        self.max_frame_size = max_frame_size
        self.max_write_bytes = max_write_bytes
        self.dial_timeout_s = dial_timeout_s
        self.write_timeout_s = write_timeout_s
        self.keepalive_interval_s = keepalive_interval_s
        self.read_timeout_s = read_timeout_s
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.cooloff_s = cooloff_s
        self.host_restart_backoff_s = host_restart_backoff_s
        self._rng = rng or random.Random()
        self._log = log.bind(node=index)

        self.key_pair = key_pair_from_seed(secret_key_seed)
        own = by_index[index]
        if self.key_pair.public_key.to_bytes() != own.public_key:
            raise ValueError(f"secret key seed does not match genesis public key of {index}")
        self.peer_id = peer_id_from_public_key(own.public_key)
        self._listen, _ = _split_p2p(listen_multiaddr or own.multiaddr)

        self._peers: dict[int, _Peer] = {}
        self._index_by_id: dict[ID, int] = {}
        for spec in peers:
            pid = peer_id_from_public_key(spec.public_key)
            addr, claimed = _split_p2p(spec.multiaddr)
            if claimed is not None and claimed != pid.to_base58():
                raise ValueError(f"peer {spec.index}: /p2p/ id does not match its public key")
            if pid in self._index_by_id:
                raise ValueError(f"peer {spec.index}: public key listed twice")
            self._index_by_id[pid] = spec.index
            if spec.index != index:
                self._peers[spec.index] = _Peer(
                    spec, pid, addr, SendQueue(queue_max_frames, queue_max_bytes),
                    InvalidTracker(invalid_limit, invalid_window_s))

        self._incoming_send, self.incoming = open_incoming(incoming_capacity, incoming_peer_bytes)
        self._host: IHost | None = None
        self._started = False
        self.listen_addrs: list[multiaddr.Multiaddr] = []
        # Transport-wide counters (not attributable to a validator).
        self.counters: dict[str, int] = {
            "host_starts": 0, "host_failures": 0, "refused_unknown_peer": 0,
            "refused_self": 0, "loopback_dropped": 0,
        }

    # --- public API --------------------------------------------------------------------------

    async def send(self, to: int, data: bytes) -> None:
        frame = self._check_payload(to, data)
        if to == self.index:
            try:
                self._incoming_send.send_nowait((to, data))
            except trio.WouldBlock:
                self.counters["loopback_dropped"] += 1
                self._log.warning("frame_dropped", peer=to, reason="loopback_incoming_full")
            return
        self._enqueue(self._peers[to], frame)

    async def broadcast(self, data: bytes) -> None:
        frame = self._check_payload(self.index, data)  # encode once for all peers
        for peer in self._peers.values():
            self._enqueue(peer, frame)

    def queue_depth(self, peer: int) -> int:
        p = self._peers.get(peer)
        return len(p.queue) if p is not None else 0

    def report_invalid(self, peer: int, reason: str = "undecodable") -> None:
        p = self._peers.get(peer)
        if p is None:
            raise ValueError(f"unknown peer index {peer}")
        self._strike(p, reason)

    def peer_stats(self) -> dict[int, dict[str, Any]]:
        now = trio.current_time() if self._host is not None else float("-inf")
        out: dict[int, dict[str, Any]] = {}
        for i, p in self._peers.items():
            d = p.stats.as_dict()
            d["queue_depth"] = len(p.queue)
            d["queue_bytes"] = p.queue.nbytes
            d["outbound_connected"] = p.outbound_up
            d["inbound_connected"] = p.inbound_scope is not None
            d["cooling_off"] = now < p.cooloff_until
            out[i] = d
        return out

    def transport_stats(self) -> dict[str, int]:
        """Transport-wide counters (host restarts, refused non-validators, ...)."""
        return dict(self.counters)

    # --- lifecycle ---------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run the host under supervision: an error escaping libp2p rebuilds the host (same key,
        same port) after a pause instead of killing the node. A failure before the first start
        (e.g. port in use) is raised to the caller."""
        self._started = False
        while True:
            try:
                await self._run_host_once(task_status)
            except Exception as exc:  # supervision boundary: libp2p internals may raise anything
                self.counters["host_failures"] += 1
                if not self._started:
                    raise
                self._log.error("host_failed", peer=self.index, reason=repr(exc),
                          restart_in_s=self.host_restart_backoff_s)
            finally:
                self._host = None
                for p in self._peers.values():
                    p.outbound_up = False
            await trio.sleep(self.host_restart_backoff_s)

    async def _run_host_once(self, task_status: trio.TaskStatus[None]) -> None:
        host = secure_host(self.key_pair, self._listen)
        host.set_stream_handler(self.protocol_id, self._on_inbound_stream)
        async with host.run([self._listen]):
            self._host = host
            self.counters["host_starts"] += 1
            self.listen_addrs = list(host.get_transport_addrs())
            self._log.info("host_started", peer=self.index, addrs=[str(a) for a in self.listen_addrs],
                     peer_id=self.peer_id.to_base58())
            async with trio.open_nursery() as nursery:
                for p in self._peers.values():
                    nursery.start_soon(self._outbound_loop, host, p)
                if not self._started:
                    self._started = True
                    task_status.started()
                await trio.sleep_forever()

    # --- outbound ----------------------------------------------------------------------------

    def _enqueue(self, p: _Peer, frame: bytes) -> None:
        dropped = p.queue.put(frame)
        if dropped:
            p.stats.drops["queue_full"] += dropped
            self._log.debug("frame_dropped", peer=p.spec.index, reason="queue_full", count=dropped)

    def _jitter(self, delay: float) -> float:
        return delay * (0.5 + 0.5 * self._rng.random())

    async def _backoff_sleep(self, p: _Peer, seconds: float) -> None:
        """Sleep before the next dial; cut short when `p` dials us meanwhile."""
        p.redial_now = wake = trio.Event()
        try:
            with trio.move_on_after(seconds):
                await wake.wait()
        finally:
            p.redial_now = None
        if wake.is_set():
            p.stats.early_redials += 1

    async def _outbound_loop(self, host: IHost, p: _Peer) -> None:
        """Keep one outbound stream to `p` alive; redial with exponential backoff + jitter."""
        delay = self.backoff_initial_s
        while True:
            stream: INetStream | None = None
            try:
                with trio.fail_after(self.dial_timeout_s):
                    await host.connect(PeerInfo(p.peer_id, await resolve(p.addr)))
                    stream = await host.new_stream(p.peer_id, [self.protocol_id])
            except Exception as exc:
                p.stats.dial_failures += 1
                if stream is not None:
                    await self._reset(stream)
                wait = self._jitter(delay)
                self._log.debug("dial_failed", peer=p.spec.index, reason=repr(exc), retry_in_s=wait)
                await self._backoff_sleep(p, wait)
                delay = min(delay * 2, self.backoff_max_s)
                continue
            p.stats.connects += 1
            if p.stats.connects > 1:
                p.stats.reconnects += 1
            p.outbound_up = True
            delay = self.backoff_initial_s
            self._log.info("peer_connected", peer=p.spec.index, direction="outbound")
            reason = "closed"
            try:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._watch_outbound, p, stream, nursery.cancel_scope)
                    reason = await self._write_loop(p, stream)
                    nursery.cancel_scope.cancel()
            finally:
                p.outbound_up = False
                await self._reset(stream)
            self._log.info("peer_disconnected", peer=p.spec.index, direction="outbound", reason=reason)
            await self._backoff_sleep(p, self._jitter(self.backoff_initial_s))

    async def _write_loop(self, p: _Peer, stream: INetStream) -> str:
        """Coalesce everything queued for `p` into one write; keepalive when idle.
        Returns the reason the stream was given up.

        One cancel scope for the stream's life, its deadline re-armed at most every
        `_timer_slack(write_timeout_s)` while writes go on and lifted while idle, instead of a
        `fail_after` per write (a cancel scope cost ~30 us of CPU per use here; three per
        frame was ~6 % of a node's Python time at low load). So a stalled write is given up
        write_timeout_s - slack .. write_timeout_s after it started."""
        queue = p.queue
        slack = _timer_slack(self.write_timeout_s)
        batch: list[bytes] = []
        with trio.CancelScope() as scope:
            armed = -math.inf
            while True:
                if not len(queue):  # idle: no write to time, only the keepalive timer
                    scope.deadline, armed = math.inf, -math.inf
                    with trio.move_on_after(self.keepalive_interval_s):
                        await queue.wait_nonempty()
                batch = queue.drain(self.max_write_bytes)
                data = b"".join(batch) if batch else KEEPALIVE_FRAME
                now = trio.current_time()
                if now - armed >= slack:
                    scope.deadline, armed = now + self.write_timeout_s, now
                try:
                    await stream.write(data)
                except Exception as exc:
                    self._requeue(p, batch)
                    return repr(exc)
                p.stats.writes += 1
                p.stats.frames_out += len(batch)
                p.stats.bytes_out += len(data)
                batch = []
        # only our own deadline ends up here (an outer cancellation propagates)
        self._requeue(p, batch)
        p.stats.write_timeouts += 1
        return "write_timeout"

    @staticmethod
    def _requeue(p: _Peer, batch: list[bytes]) -> None:
        lost = p.queue.requeue_front(batch)
        if lost:
            p.stats.drops["queue_full"] += lost

    async def _watch_outbound(self, p: _Peer, stream: INetStream,
                              scope: trio.CancelScope) -> None:
        """Peers never write on the stream we opened: EOF or an error means it is dead."""
        try:
            while True:
                data = await stream.read(READ_CHUNK)
                if not data:
                    break
                self._strike(p, "data_on_outbound_stream")
        except Exception:
            pass
        scope.cancel()

    # --- inbound -----------------------------------------------------------------------------

    async def _on_inbound_stream(self, stream: INetStream) -> None:
        # Runs inside libp2p's nursery: nothing may escape, or it would take the swarm down.
        try:
            remote = stream.muxed_conn.peer_id
            idx = self._index_by_id.get(remote)
            if idx is None or idx == self.index:
                key = "refused_unknown_peer" if idx is None else "refused_self"
                self.counters[key] += 1
                self._log.warning("stream_refused", peer=str(remote), reason=key)
                await self._reset(stream)
                host = self._host
                if idx is None and host is not None:
                    with trio.move_on_after(self.dial_timeout_s):
                        await host.disconnect(remote)
                return
            p = self._peers[idx]
            p.stats.inbound_streams += 1
            if trio.current_time() < p.cooloff_until:
                p.stats.drops["cooloff_stream_refused"] += 1
                self._log.info("stream_refused", peer=idx, reason="cooling_off")
                await self._reset(stream)
                return
            if p.inbound_scope is not None:
                p.inbound_scope.cancel()  # newest stream from a peer wins
            if p.redial_now is not None:
                p.redial_now.set()  # the peer is up: dial it back now (see _backoff_sleep)
            with trio.CancelScope() as scope:
                p.inbound_scope = scope
                reason = "cancelled"
                try:
                    reason = await self._read_loop(p, stream)
                finally:
                    if p.inbound_scope is scope:
                        p.inbound_scope = None
                    await self._reset(stream)
                    self._log.info("inbound_closed", peer=idx, reason=reason)
        except Exception as exc:
            self._log.warning("inbound_stream_error", reason=repr(exc))
            await self._reset(stream)

    async def _read_loop(self, p: _Peer, stream: INetStream) -> str:
        decoder = FrameDecoder(self.max_frame_size)
        stats = p.stats
        send = self._incoming_send.send
        send_nowait = self._incoming_send.send_nowait
        idx = p.spec.index
        self._log.info("peer_connected", peer=idx, direction="inbound")
        # one cancel scope, re-armed at most every `slack` s (see _write_loop): a silent peer
        # is dropped read_timeout_s - slack .. read_timeout_s after its last bytes
        slack = _timer_slack(self.read_timeout_s)
        with trio.CancelScope() as scope:
            armed = -math.inf
            while True:
                now = trio.current_time()
                if now - armed >= slack:
                    scope.deadline, armed = now + self.read_timeout_s, now
                try:
                    data = await stream.read(READ_CHUNK)
                except Exception as exc:
                    return repr(exc)
                if not data:
                    try:
                        decoder.close()
                    except FramingError as exc:
                        self._strike(p, "truncated_frame")
                        return str(exc)
                    return "eof"
                stats.bytes_in += len(data)
                try:
                    frames = decoder.feed(data)
                except FramingError as exc:
                    stats.drops["oversized_frame"] += 1
                    self._log.warning("frame_rejected", peer=idx, reason=str(exc))
                    self._strike(p, "oversized_frame")
                    return "oversized_frame"
                for frame in frames:
                    stats.frames_in += 1
                    try:
                        send_nowait((idx, frame))
                    except trio.WouldBlock:
                        # our consumer is full: waiting for it is not the peer's silence
                        scope.deadline, armed = math.inf, -math.inf
                        await send((idx, frame))  # back-pressure: FIFO wake-up keeps peers fair
        stats.read_timeouts += 1
        return "read_timeout"

    # --- invalid traffic ---------------------------------------------------------------------

    def _strike(self, p: _Peer, reason: str) -> None:
        p.stats.invalid += 1
        p.stats.drops[f"invalid:{reason}"] += 1
        self._log.info("invalid_traffic", peer=p.spec.index, reason=reason)
        now = trio.current_time()
        if p.invalid.strike(now):
            p.stats.cooloffs += 1
            p.cooloff_until = now + self.cooloff_s
            self._log.warning("peer_cooloff", peer=p.spec.index, reason=reason, seconds=self.cooloff_s)
            if p.inbound_scope is not None:
                p.inbound_scope.cancel()

    async def _reset(self, stream: INetStream) -> None:
        with trio.CancelScope(shield=True), trio.move_on_after(2.0):
            try:
                await stream.reset()
            except Exception:
                pass
