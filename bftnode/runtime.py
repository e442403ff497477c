"""The node runtime: one trio nursery per node running the transport, the message pump, the
replica task and (when `bftnode.rpc` is available) the RPC server.

Owns `Node` (implements the RPC layer's NodeAPI: status, submit, wait_commit, block, tx, query,
subscribe, ...), `build_node(config)` (every start-up check, with a clear `StartupError` and
nothing written on failure) and the Output ordering rule. ONE task owns the Replica and applies
each Output in order: persist (one synced batch) -> send -> execute (app + one atomic block
commit per block) -> reply -> evidence -> fetch. Nothing else touches the replica, so there are
no locks. Imports: stdlib, trio, structlog, msgspec, consensus, storage, network, bftnode.
"""

from __future__ import annotations

import base64
import collections
import contextlib
import dataclasses
import hashlib
import math
import socket
import time
from collections.abc import AsyncIterator, Callable, Sequence
from functools import partial
from typing import Any

import msgspec
import trio

from consensus import (
    Authenticator,
    ClientRequests,
    ClientsLoaded,
    Commit,
    DecodeError,
    Duplicate,
    Ed25519Signer,
    Ed25519Verifier,
    Event,
    Evidence,
    Execute,
    FetchBlocks,
    FetchedBlocks,
    InvariantViolation,
    Output,
    OwnVote,
    Prepare,
    PreparedCert,
    PrePrepare,
    Prune,
    Receive,
    Rejected,
    Request,
    StableCheckpoint,
    Tick,
    ViewState,
    decode,
    digest,
    encode,
    request_digest,
    sign_request,
)
from consensus.core import ReplicaCore
from consensus.evidence import PROOF_KINDS
from consensus.peers import decoded_bytes
from consensus.types import request_size
from network.framing import FramingError
from storage.interface import BlockCommit, StorageError, Store, StoredBlock, TxResult

from .config import NodeConfig
from .genesis import Genesis, GenesisError, load_genesis
from .keys import KeyFileError, NodeKey, load_key_file
from .logging import PeerFaultLog, current_trace_id, get_logger, trace_context
from .memory import Trimmer
from .metrics import NodeMetrics
from .rpc.node_api import SubmitResult

FETCH_MAX_BLOCKS = 64
# request bytes per BlockSync answer (past its first block): 64 blocks of 100 txs with 1-KB
# values are ~8 MB, at the 8 MiB message limit; the peer asks again from where it stopped
FETCH_MAX_BYTES = 4 * 1024 * 1024
INBOX_SIZE = 10_000
# decoded bytes (consensus.peers.decoded_bytes: wire size plus 256 per request or vote) of the
# peer messages waiting in the inbox: past it the pump waits, so back-pressure reaches the
# transport's per-peer byte shares and the peers' bounded send queues. Counting decoded bytes,
# not wire bytes: a list of tiny structs decodes to ~10x its wire size. A node that stalled
# for seconds otherwise decoded its whole backlog at once, and the objects' peak stayed in its
# RSS (docs/performance.md). One message bigger than this passes alone.
INBOX_MAX_BYTES = 8 * 1024 * 1024
APP_EVENTS_KEPT = 1000  # heights of app events kept for subscribers...
APP_EVENTS_MAX = 20_000  # ...and at most this many events (the oldest heights go first)
MIN_REVISION_WAIT_S = 2.0
TRACES_KEPT = 10_000
EXEC_QUEUE_GROUPS = 64  # groups of blocks waiting for the executor task
# requests per synced block commit (at least one block): a catching-up node's group of 64
# fetched blocks is executed as several commits, not one WriteBatch of ~10 MB
EXEC_CHUNK_REQUESTS = 2_000
EVIDENCE_KEPT = 1000
GROUP_MAX = 256  # events stepped per group commit (one persist, one send round, one commit)
LOOPBACK_MAX = 10_000  # our own messages waiting for the next group


# A persist, or a group of blocks to execute and commit, of at most this many requests runs
# on the event loop: the worker-thread hop (wake-up, GIL hand-off, result delivery) cost
# ~0.4-1 ms of CPU on this 2-vCPU machine, more than a small synced batch (~0.3 ms) or a few
# txs of the app block the loop. At 200 tx/s (5-tx blocks): node CPU/tx -15 % (persists)
# and -10 % more (execution); docs/performance.md at 072d7af. Saturated batches (100 txs)
# keep the thread, so the loop serves the network during their fsyncs.
INLINE_MAX_REQUESTS = 20
# ...and only while such writes stay fast here: a synced write costs what the disk's fsync
# costs (0.3 ms on one VM, 3.5 ms on another), and on the loop it stops the network and RPC
# tasks too, so the next group is smaller and more fsyncs follow (measured under a relay
# flood: 1,235 inline persists took 4.3 s of a primary's 24 s). EWMA of the inline ones;
# with nothing waiting in the inbox they stay inline (see Node._inbox_idle).
INLINE_MAX_SECONDS = 0.001
QUIET_BYTES_PER_S = 1024 * 1024  # peer bytes taken per second below which a node is quiet

VERIFIED_CACHE_SIZE = 32_768  # (key, message, signature) triples known to verify


class CachingVerifier:
    """A Verifier that remembers the triples that verified (bounded, oldest evicted first).

    A client's signature is checked by the RPC layer (`verify_tx`) and again by the replica
    (`check_request`), and retransmitted txs arrive again; each Ed25519 verify costs ~67 us on
    this machine, a BLAKE2b of the triple ~1 us. Only successes are cached (a bad signature
    never becomes good), keyed by a 256-bit digest of the exact bytes, so a hit proves the same
    bytes verified before. Used from the trio thread only (RPC handlers and the replica task).
    """

    def __init__(self, inner: Any, size: int = VERIFIED_CACHE_SIZE) -> None:
        self._inner = inner
        self._size = size
        # FIFO via OrderedDict: evicting a plain dict's first key with next(iter(d)) walks
        # the dead slots of earlier evictions (O(n) per miss once full: 10% of a node's CPU)
        self._ok: collections.OrderedDict[bytes, None] = collections.OrderedDict()
        self.hits = 0
        self.misses = 0

    def verify(self, public_key: bytes, data: bytes, sig: bytes) -> bool:
        h = hashlib.blake2b(sig, digest_size=32, key=public_key[:64])
        h.update(data)
        k = h.digest()
        if k in self._ok:
            self.hits += 1
            return True
        self.misses += 1
        ok = self._inner.verify(public_key, data, sig)
        if ok:
            self._ok[k] = None
            if len(self._ok) > self._size:
                self._ok.popitem(last=False)
        return ok

    def __len__(self) -> int:
        return len(self._ok)


class StartupError(Exception):
    """The node cannot start; the message says why (bad config, port in use, locked DB...)."""


class TxRejected(Exception):
    """A submitted transaction was refused before or instead of execution."""

    def __init__(self, reason: str, tx_hash: bytes = b"") -> None:
        super().__init__(reason)
        self.reason = reason
        self.tx_hash = tx_hash


def blocks_for_fetch(store: Any, from_seq: int, to_seq: int,
                     max_bytes: int = FETCH_MAX_BYTES) -> tuple[Any, ...]:
    """Committed blocks from_seq..to_seq for a peer catching up, up to the first missing one:
    at most FETCH_MAX_BLOCKS and, past the first block, at most `max_bytes` of request bytes
    (so the BlockSync stays under the message limit whatever the tx sizes)."""
    blocks: list[Any] = []
    size = 0
    for h in range(from_seq, min(to_seq, from_seq + FETCH_MAX_BLOCKS - 1) + 1):
        cb = store.committed_block(h)
        if cb is None:
            break
        size += sum(request_size(len(r.op)) for r in cb.pre_prepare.requests)
        if blocks and size > max_bytes:
            break
        blocks.append(cb)
    return tuple(blocks)


def _labelled(cache: dict[str, Any], family: Any, label: str) -> Any:
    """A labelled metric child, cached (prometheus' labels() costs a lock + dict lookup)."""
    c = cache.get(label)
    if c is None:
        c = cache[label] = family.labels(label)
    return c


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclasses.dataclass
class _Waiter:
    done: trio.Event = dataclasses.field(default_factory=trio.Event)
    result: dict | None = None
    error: TxRejected | None = None

    def resolve(self, result: dict) -> None:
        if not self.done.is_set():
            self.result = result
            self.done.set()

    def fail(self, error: TxRejected) -> None:
        if not self.done.is_set():
            self.error = error
            self.done.set()


@dataclasses.dataclass
class _Submit:
    request: Request
    accepted: _Waiter


def _hex(b: bytes) -> str:
    return b.hex()


def _b64(b: bytes) -> str:
    return base64.b64encode(b).decode()


def _jsonable(value: Any) -> Any:
    """Application events / results to plain JSON values (bytes as UTF-8 or base64)."""
    try:
        from bftnode.app import ops

        return ops.jsonable(value)
    except Exception:
        return msgspec.to_builtins(value, enc_hook=repr)


def _small_persist(records: Sequence[Any]) -> bool:
    """True if `records` are cheap to write on the event loop: votes, view state and prepared
    certificates carrying at most INLINE_MAX_REQUESTS requests in all. Checkpoints,
    prunes (a range delete), convictions and view-change messages (certificates inside) go to
    the worker thread."""
    carried = 0
    for rec in records:
        if isinstance(rec, PreparedCert):
            carried += len(rec.proof.pre_prepare.requests)
        elif isinstance(rec, OwnVote):
            msg = rec.message
            if isinstance(msg, PrePrepare):
                carried += len(msg.requests)
            elif not isinstance(msg, Prepare | Commit):
                return False
        elif not isinstance(rec, ViewState):
            return False
    return carried <= INLINE_MAX_REQUESTS


class _InlineCost:
    """Whether small synced writes are still cheap enough for the event loop: an EWMA of the
    inline ones against INLINE_MAX_SECONDS; while over it, every 64th goes inline again to
    re-measure (the disk may have recovered)."""

    __slots__ = ("ewma", "skipped")

    def __init__(self) -> None:
        self.ewma = 0.0
        self.skipped = 0

    def fast(self) -> bool:
        if self.ewma <= INLINE_MAX_SECONDS:
            return True
        self.skipped += 1
        return self.skipped % 64 == 0

    def took(self, seconds: float) -> None:
        self.ewma = 0.8 * self.ewma + 0.2 * seconds


def _small_blocks(exs: Sequence[Execute]) -> bool:
    """True if a group of blocks is cheap to execute and commit on the event loop."""
    return sum(len(ex.requests) for ex in exs) <= INLINE_MAX_REQUESTS


@dataclasses.dataclass(frozen=True, slots=True)
class _Inbound(Receive):
    """A peer message as the pump queues it: its wire size counts against INBOX_MAX_BYTES
    until the replica task takes it."""

    size: int = 0


def _chunks(exs: Sequence[Execute], max_requests: int) -> list[list[Execute]]:
    """Consecutive blocks cut into runs of at most `max_requests` requests (a bigger block
    is a run of its own)."""
    out: list[list[Execute]] = []
    run: list[Execute] = []
    n = 0
    for ex in exs:
        if run and ex.requests and n + len(ex.requests) > max_requests:
            out.append(run)
            run, n = [], 0
        run.append(ex)
        n += len(ex.requests)
    if run:
        out.append(run)
    return out


class Node:
    """A running (or ready to run) bftnode validator. Implements the RPC layer's NodeAPI."""

    def __init__(
        self,
        *,
        index: int,
        genesis: Genesis,
        key: NodeKey,
        store: Store,
        transport: Any,
        app: Any,
        config: NodeConfig | None = None,
        client_key: NodeKey | None = None,
        replica_factory: Callable[..., Any] | None = None,
        clock_ms: Callable[[], int] = wall_ms,
        tick_ms: int = 10,
        serve_rpc: bool | None = None,
    ) -> None:
        self.index = index
        self.genesis = genesis
        self.chain_id = genesis.chain_id
        self.domain = genesis.domain
        self.consensus_config = genesis.config()
        self.key = key
        self.node_id = key.public_key.hex()
        self.store = store
        self.transport = transport
        self.app = app
        self.config = config
        self.metrics = NodeMetrics(index)
        self.log = get_logger(node=index)
        self._fault_log = PeerFaultLog(self.log)
        self._clock_ms = clock_ms
        self._last_now = 0
        self._tick_ms = tick_ms
        self._trimmer = Trimmer()
        self._client_loads = 0
        self._serve_rpc = serve_rpc if serve_rpc is not None else (
            config is not None and config.rpc_port != 0
        )
        # shared by the RPC layer (verify_tx) and the replica: each signature verified once
        self.tx_verifier = CachingVerifier(Ed25519Verifier())
        self.auth = Authenticator(
            genesis.domain, Ed25519Signer(key.seed), self.tx_verifier, genesis.replica_keys()
        )
        restored = store.recover(max_clients=self.consensus_config.max_clients)
        factory = replica_factory or _default_replica_factory
        self.replica: ReplicaCore = factory(self.consensus_config, index, self.auth, restored)
        self._height = restored.last_executed
        self.last_block_hash = restored.last_block_hash
        self.last_block_time_ms = restored.last_time_ms
        self._view_seen = restored.view
        # client side of the embedding API: a local key signing ops submitted via submit_op()
        self._client = client_key or NodeKey.from_seed(digest(b"embedded-client:" + key.seed))
        self._client_seq = time.time_ns() // 1000
        # shared state between the replica task and callers (all on the trio thread)
        self._inbox_send, self._inbox_recv = trio.open_memory_channel[Any](INBOX_SIZE)
        self._inbox_bytes = 0  # wire bytes of the peer messages (_Inbound) in the inbox
        self._inline_persist = _InlineCost()  # may small persists run on the loop?
        self._in_window = (0.0, 0, 0)  # (window start, bytes taken in it, last window's bytes)
        self._inline_commit = _InlineCost()  # ... and small block commits?
        self._inbox_room = trio.Event()
        self._commit_waiters: dict[bytes, list[_Waiter]] = collections.defaultdict(list)
        self._by_client: dict[tuple[bytes, int], set[bytes]] = collections.defaultdict(set)
        # height -> events, ascending heights (OrderedDict: O(1) eviction from the front)
        self._app_events: collections.OrderedDict[int, tuple] = collections.OrderedDict()
        self._app_events_total = 0
        self._traces: collections.OrderedDict[bytes, str] = collections.OrderedDict()
        self._evidence: collections.deque[dict] = collections.deque(maxlen=EVIDENCE_KEPT)
        self._loopback: collections.deque[Receive] = collections.deque()
        self._out_counters: dict[str, Any] = {}
        self._in_counters: dict[str, Any] = {}
        self._inbox_depth = self.metrics.queue_depth.labels("inbox")
        self._inbox_bytes_gauge = self.metrics.queue_depth.labels("inbox_bytes")
        self._height_changed = trio.Event()
        # executor pipeline: blocks (and the replies behind them) are executed and committed
        # by their own task, in order, so the replica task steps the next group while the
        # previous one's block commit (fsync) runs; bounded (back-pressure on the replica)
        self._exec_send, self._exec_recv = trio.open_memory_channel[Any](EXEC_QUEUE_GROUPS)
        self._exec_queued = 0
        self._exec_done = 0
        self._exec_progress = trio.Event()
        self.started = trio.Event()
        self.stopped = trio.Event()
        self.rpc_url: str | None = None
        self._cancel: trio.CancelScope | None = None
        self._closed = False

    # ------------------------------------------------------------------ lifecycle

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Run until cancelled. Closes the store on the way out (after the current write)."""
        try:
            with trio.CancelScope() as scope:
                self._cancel = scope
                async with trio.open_nursery() as nursery:
                    await _start_transport(nursery, self.transport)
                    nursery.start_soon(self._pump_incoming)
                    nursery.start_soon(self._executor_task)
                    await nursery.start(self._replica_task)
                    if self._serve_rpc:
                        await self._start_rpc(nursery)
                    self.started.set()
                    self.log.info("node started", chain_id=self.chain_id, height=self._height,
                                  view=self._view_seen, rpc=self.rpc_url)
                    task_status.started()
        finally:
            self.close()
            self.stopped.set()

    def stop(self) -> None:
        if self._cancel is not None:
            self._cancel.cancel()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self.store.close()
            self.log.info("node stopped", height=self._height)

    async def _start_rpc(self, nursery: trio.Nursery) -> None:
        try:
            from bftnode.rpc.limits import RPCLimits
            from bftnode.rpc.server import RPCStartupError, serve_rpc
        except ImportError as exc:
            self.log.warning("rpc server not available", reason=str(exc))
            return
        assert self.config is not None
        host, port = self.config.rpc_host, self.config.rpc_port
        try:
            url = await nursery.start(partial(serve_rpc, self, host, port,
                                              limits=RPCLimits.from_config(self.config)))
        except (OSError, RPCStartupError) as exc:
            raise StartupError(f"cannot serve RPC on {host}:{port}: {exc}") from exc
        self.rpc_url = url if isinstance(url, str) else f"http://{host}:{port}"

    # ------------------------------------------------------------------ the replica task

    def _now(self) -> int:
        now = max(self._clock_ms(), self._last_now)  # monotone per replica
        self._last_now = now
        return now

    async def _replica_task(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        await self._step_group([Tick(self._now())])
        task_status.started()
        tick_s = self._tick_ms / 1000
        next_tick = trio.current_time() + tick_s
        deadline_ms: int | None = None
        while True:
            now_t = trio.current_time()
            group: list[Any] = []
            # Time must advance even when the inbox never empties (under load): a replica whose
            # clock lags proposes stale block times that its peers reject.
            ticked = now_t >= next_tick or (
                deadline_ms is not None and self._clock_ms() >= deadline_ms)
            if ticked:
                next_tick = now_t + tick_s
                group.append(Tick(self._now()))
            elif not self._loopback:
                try:  # under load an event is waiting: take it without a cancel scope (~30 us)
                    group.append(self._taken(self._inbox_recv.receive_nowait()))
                    await trio.lowlevel.checkpoint()  # still yield once per group, as receive()
                except trio.WouldBlock:
                    wake = next_tick
                    if deadline_ms is not None:
                        wake = min(wake, now_t + max(0, deadline_ms - self._clock_ms()) / 1000)
                    with trio.move_on_at(wake):
                        group.append(self._taken(await self._inbox_recv.receive()))
                    if not group:
                        continue
            self._drain_into(group)
            out = await self._step_group(group)
            if out is not None:
                deadline_ms = out.next_deadline_ms
                if ticked and deadline_ms is not None and deadline_ms <= self._last_now:
                    deadline_ms = None  # already due: the next regular tick serves it (no spin)

    def _drain_into(self, group: list[Any]) -> None:
        """Group commit (etcd's Ready batching): take every event already waiting, up to
        GROUP_MAX, so that one synced persist, one send round and one block commit serve them
        all. Our own messages (loopback) come first: they were produced before the inbox's."""
        while self._loopback and len(group) < GROUP_MAX:
            group.append(self._loopback.popleft())
        while len(group) < GROUP_MAX:
            try:
                group.append(self._taken(self._inbox_recv.receive_nowait()))
            except trio.WouldBlock:
                break

    def _inbox_idle(self) -> bool:
        """Nothing waits for the replica and little arrives: a slow synced write on the loop
        then blocks no one (at 200 tx/s the thread hop cost +3.6 ms p50 and +22 ms p99 on a
        3.5-ms-fsync disk), while a node taking in megabytes a second (a relay flood) keeps
        reading its peers during the write."""
        if self._inbox_recv.statistics().current_buffer_used:
            return False
        now = time.monotonic()
        if now - self._in_window[0] >= 1.0:
            self._in_window = (now, 0, self._in_window[1])
        return self._in_window[2] < QUIET_BYTES_PER_S

    def _taken(self, item: Any) -> Any:
        """Account for an item taken from the inbox."""
        if type(item) is _Inbound:
            self._inbox_bytes -= item.size
            start, got, last = self._in_window
            self._in_window = (start, got + item.size, last)
            self._inbox_room.set()
        return item

    async def _step(self, event: Event, submitted: _Submit | None = None) -> Output | None:
        """Step one event and apply its Output, blocks included (for callers outside the
        replica task)."""
        out = await self._step_group([submitted if submitted is not None else event])
        await self._drain_executor()
        return out

    async def _executor_task(self) -> None:
        """Executes and commits the blocks of each group in order, then answers the group's
        replies (a Duplicate's answer is read from the store, so it must follow the block)."""
        async for exs, replies in self._exec_recv:
            if exs:
                await self._execute_group(exs)
            for r in replies:
                self._on_reply(r)
            self._exec_done += 1
            done, self._exec_progress = self._exec_progress, trio.Event()
            done.set()

    async def _drain_executor(self) -> None:
        """Wait until every group handed to the executor so far is executed and committed."""
        target = self._exec_queued
        while self._exec_done < target:
            await self._exec_progress.wait()

    async def _step_group(self, group: Sequence[Any]) -> Output | None:
        """Step the replica once per event, MERGE the Outputs and apply the merged Output once:
        one synced persist of every record -> every send -> every block (one synced commit) ->
        replies. Persisting a vote later than its step is safe: nothing leaves this node before
        the merged persist is durable, and a crash before it loses only unsent votes."""
        t0 = time.perf_counter()
        merged = Output()
        last: Output | None = None
        subs = [item for item in group if isinstance(item, _Submit)]
        sub_replies: list[Any] = []
        for item in group:
            if isinstance(item, _Submit):
                if item is not subs[0]:
                    continue
                # every submission of the group in ONE step: one signed FORWARD for them all
                out = self.replica.step(ClientRequests(tuple(s.request for s in subs)))
                sub_replies = list(out.reply)
            else:
                out = self.replica.step(item)
            merged.extend(out)
            last = out
        if last is None:
            return None
        merged.next_deadline_ms = last.next_deadline_ms  # the replica's state after the group
        await self._apply(merged)
        rejected = {r.request: r.reason for r in sub_replies if isinstance(r, Rejected)}
        dups = {(r.client_id, r.request_seq) for r in sub_replies if isinstance(r, Duplicate)}
        for sub in subs:
            req = sub.request
            reason = rejected.get(req)
            if reason is not None:
                sub.accepted.fail(TxRejected(reason, request_digest(req)))
            else:
                sub.accepted.resolve({"duplicate": (req.client_id, req.request_seq) in dups})
        self.metrics.step_seconds.observe(time.perf_counter() - t0)
        self.metrics.group_events.observe(len(group))
        self._update_gauges()
        self._inbox_depth.set(self._inbox_recv.statistics().current_buffer_used)
        self._inbox_bytes_gauge.set(self._inbox_bytes)
        return merged

    async def _apply(self, out: Output) -> None:
        """The ordering rule: persist -> send -> execute -> reply -> evidence -> fetch."""
        if out.persist:
            if any(isinstance(r, StableCheckpoint | Prune) for r in out.persist):
                # a checkpoint record prunes votes of blocks at or below it: those blocks must
                # be durable first (so a crash never leaves neither the votes nor the blocks)
                await self._drain_executor()
            t0 = time.perf_counter()
            if (self._inline_persist.fast() or self._inbox_idle()) and _small_persist(
                    out.persist):
                self.store.persist(out.persist)  # inline: cheaper than the thread hop
                self._inline_persist.took(time.perf_counter() - t0)
            else:
                await trio.to_thread.run_sync(self.store.persist, out.persist)
            self.metrics.persist_seconds.observe(time.perf_counter() - t0)
        for s in out.send:
            if isinstance(s.message, bytes | bytearray):  # byzantine `flood`: raw garbage
                data, kind = bytes(s.message), "raw"
            else:
                data, kind = encode(s.message), type(s.message).__name__
            self._messages_out(kind).inc()
            if isinstance(s.message, FetchBlocks):  # catching up: rare, and worth seeing
                self.log.info("fetching blocks", peer=s.to, from_seq=s.message.from_seq,
                              to_seq=s.message.to_seq)
            try:
                if s.to is None:
                    await self.transport.broadcast(data)
                elif s.to == self.index:
                    # stepped in the next group (never through the bounded inbox: the replica
                    # task waiting on its own full inbox would deadlock)
                    if len(self._loopback) >= LOOPBACK_MAX:
                        raise ValueError("loopback queue full")
                    self._loopback.append(Receive(self.index, s.message))
                else:
                    await self.transport.send(s.to, data)
            except (FramingError, ValueError) as exc:  # e.g. oversized: refuse it, keep going
                self.metrics.rejected.labels("unsendable").inc()
                self.log.warning("message not sent", peer=s.to, kind=kind, reason=str(exc)[:200])
        if out.execute or out.reply:
            self._exec_queued += 1
            await self._exec_send.send((list(out.execute), list(out.reply)))
        for ev in out.evidence:
            self._on_evidence(ev)
        for f in out.fetch:
            blocks = blocks_for_fetch(self.store, f.from_seq, f.to_seq)
            sub = self.replica.step(FetchedBlocks(f.to, blocks))
            await self._apply(sub)
        for lc in out.load_clients:
            # the bounded client table left these out: read them once every block the
            # replica executed is stored (rare: after an eviction or a capped restore)
            await self._drain_executor()
            # in a thread: a batch of returning clients can be thousands of index reads
            as_of, hist = await trio.to_thread.run_sync(self.store.client_histories,
                                                        lc.client_ids)
            self._client_loads += len(hist)
            self.log.debug("client histories loaded", clients=len(hist), height=as_of)
            sub = self.replica.step(ClientsLoaded(as_of, hist))
            await self._apply(sub)

    def _messages_out(self, kind: str) -> Any:
        return _labelled(self._out_counters, self.metrics.messages_out, kind)

    async def _execute_group(self, exs: Sequence[Execute]) -> None:
        """Execute consecutive blocks and commit them in synced batches of at most
        EXEC_CHUNK_REQUESTS requests (one batch per run when the store has `commit_blocks`),
        then resolve waiters block by block."""
        for i, ex in enumerate(exs):
            if ex.seq != self._height + 1 + i:
                raise InvariantViolation(
                    f"execute of block {ex.seq} after height {self._height + i}")
        for run in _chunks(exs, EXEC_CHUNK_REQUESTS):
            t0 = time.perf_counter()
            if (self._inline_commit.fast() or self._inbox_idle()) and _small_blocks(run):
                done = self._execute_and_commit_group(run)  # inline: see INLINE_MAX_REQUESTS
                self._inline_commit.took(time.perf_counter() - t0)
            else:
                done = await trio.to_thread.run_sync(self._execute_and_commit_group, run)
            self.metrics.commit_seconds.observe(time.perf_counter() - t0)
            self.metrics.blocks_per_commit.observe(len(run))
            for ex, (results, effects) in zip(run, done, strict=True):
                self._after_execute(ex, results, effects)

    async def _execute(self, ex: Execute) -> None:
        await self._execute_group([ex])

    def _after_execute(self, ex: Execute, results: tuple[TxResult, ...], effects: Any) -> None:
        self._height = ex.seq
        self.last_block_hash = ex.block_hash
        self.last_block_time_ms = ex.time_ms
        self.metrics.blocks.inc()
        self.metrics.txs.inc(len(results))
        self.metrics.height.set(ex.seq)
        for tr in results:
            tid = self._traces.pop(tr.tx_hash, None)
            if tid is not None:
                with trace_context(tid):
                    self.log.info("tx committed", tx=_hex(tr.tx_hash)[:16], height=ex.seq,
                                  view=ex.view, code=tr.code)
            for w in self._commit_waiters.pop(tr.tx_hash, ()):
                w.resolve({"tx_result": tr})
            self._by_client.pop((tr.client_id, tr.request_seq), None)
        for req, reason in ex.skipped:
            self.metrics.txs_skipped.labels(reason).inc()
            self._answer_from_store(req.client_id, req.request_seq, request_digest(req), reason)
        self.log.debug("block committed", height=ex.seq, view=ex.view, txs=len(results),
                       block_hash=_hex(ex.block_hash)[:16])
        evs = tuple(getattr(effects, "events", ()))
        self._app_events[ex.seq] = evs
        self._app_events_total += len(evs)
        # bounded in heights AND events: a loaded node's 1,000 blocks held ~100k events
        while self._app_events and (len(self._app_events) > APP_EVENTS_KEPT or (
                self._app_events_total > APP_EVENTS_MAX and len(self._app_events) > 1)):
            self._app_events_total -= len(self._app_events.popitem(last=False)[1])
        old, self._height_changed = self._height_changed, trio.Event()
        old.set()

    def _execute_and_commit_group(
        self, exs: list[Execute]
    ) -> list[tuple[tuple[TxResult, ...], Any]]:
        """Runs in a worker thread (a small group: on the event loop, see INLINE_MAX_REQUESTS):
        the app over the live state (plus the writes of the earlier blocks of this group,
        through an overlay), then ONE atomic synced commit of them all."""
        self._trimmer.maybe()  # now and then: RSS stays flat (see memory.py)
        held = getattr(self.store, "execution_state", None)
        if held is None:
            return self._execute_and_commit_on(self.store.state(), exs)
        with held() as state:  # its reads end before commit_blocks writes the state
            return self._execute_and_commit_on(state, exs)

    def _execute_and_commit_on(
        self, state: Any, exs: list[Execute]
    ) -> list[tuple[tuple[TxResult, ...], Any]]:
        overlay = None
        if len(exs) > 1:
            from bftnode.app.overlay import Overlay

            overlay = state = Overlay(state)
        commits: list[BlockCommit] = []
        done: list[tuple[tuple[TxResult, ...], Any]] = []
        for ex in exs:
            effects = self.app.execute_block(state, ex.seq, ex.time_ms, ex.requests)
            if len(effects.results) != len(ex.requests):
                raise InvariantViolation(
                    f"application returned {len(effects.results)} results for "
                    f"{len(ex.requests)} txs"
                )
            results = tuple(
                TxResult(
                    tx_hash=request_digest(r), client_id=r.client_id, request_seq=r.request_seq,
                    height=ex.seq, index=i, code=code, result=res,
                )
                for i, (r, (code, res)) in enumerate(
                    zip(ex.requests, effects.results, strict=True))
            )
            writes = tuple(effects.writes)
            if overlay is not None:
                for k, v in writes:
                    if v is None:
                        overlay.delete(k)
                    else:
                        overlay.put(k, v)
            commits.append(BlockCommit(ex, results, writes))
            done.append((results, effects))
        commit_blocks = getattr(self.store, "commit_blocks", None)
        if commit_blocks is not None:
            commit_blocks(commits)
        else:  # a store without group commit: one synced batch per block
            for c in commits:
                self.store.commit_block(c)
        return done

    def _answer_from_store(self, client_id: bytes, seq: int, tx_hash: bytes, reason: str) -> None:
        hashes = self._by_client.pop((client_id, seq), set()) | {tx_hash}
        stored = self.store.tx_by_client(client_id, seq)
        for h in hashes:
            for w in self._commit_waiters.pop(h, ()):
                if stored is not None:
                    w.resolve({"tx_result": stored, "duplicate": True})
                else:
                    w.fail(TxRejected(reason, h))

    def _on_reply(self, r: Any) -> None:
        if isinstance(r, Rejected):
            h = request_digest(r.request)
            self.metrics.rejected.labels(f"tx:{r.reason.split(':')[0][:40]}").inc()
            self.log.info("tx rejected", tx=_hex(h)[:16], reason=r.reason)
            self._by_client.get((r.request.client_id, r.request.request_seq), set()).discard(h)
            for w in self._commit_waiters.pop(h, ()):
                w.fail(TxRejected(r.reason, h))
        elif isinstance(r, Duplicate):
            self._answer_from_store(r.client_id, r.request_seq, b"", "duplicate")

    def _on_evidence(self, ev: Evidence) -> None:
        self.metrics.evidence.labels(ev.kind, str(ev.replica)).inc()
        self._fault_log.warning("evidence", ev.replica, ev.reason, kind=ev.kind)
        if ev.kind not in PROOF_KINDS and ev.replica != self.index:
            # invalid signed traffic counts against the sender like undecodable frames do
            with contextlib.suppress(Exception):
                self.transport.report_invalid(ev.replica, ev.kind)
        self._evidence.append({
            "kind": ev.kind, "replica": ev.replica, "reason": ev.reason,
            "height": self._height, "time_ms": self._last_now,
            "messages": [_b64(encode(m)) for m in ev.messages[:4]],
        })

    def _update_gauges(self) -> None:
        r = self.replica
        view = r.view
        if view != self._view_seen:
            self.metrics.view_changes.inc(max(0, view - self._view_seen))
            self.log.info("view changed", view=view, primary=view % self.consensus_config.n)
            self._view_seen = view
        self.metrics.view.set(view)
        self.metrics.in_view_change.set(1 if r.in_view_change else 0)
        self.metrics.stable_checkpoint.set(r.stable_seq)
        table = r.client_table
        if table is not None:
            self.metrics.client_table.labels("size").set(len(table))
            self.metrics.client_table.labels("evictions").set(table.evictions)
            self.metrics.client_table.labels("loads").set(self._client_loads)

    # ------------------------------------------------------------------ transport -> replica

    async def _pump_incoming(self) -> None:
        async for peer, data in self.transport.incoming:
            try:
                msg = decode(data)
            except DecodeError as exc:
                self.metrics.rejected.labels("undecodable").inc()
                self._fault_log.warning("dropped undecodable message", peer, str(exc)[:200])
                with contextlib.suppress(Exception):
                    self.transport.report_invalid(peer)
                continue
            if isinstance(msg, Request):
                # clients talk to us over RPC, never as bare requests on the validator mesh
                self.metrics.rejected.labels("unexpected-request").inc()
                self._fault_log.warning("dropped message", peer, "bare request from a peer")
                with contextlib.suppress(Exception):
                    self.transport.report_invalid(peer, "bare-request")
                continue
            _labelled(self._in_counters, self.metrics.messages_in, type(msg).__name__).inc()
            n = decoded_bytes(msg, len(data))
            while self._inbox_bytes and self._inbox_bytes + n > INBOX_MAX_BYTES:
                self._inbox_room = trio.Event()  # set by the replica task as it takes items
                await self._inbox_room.wait()
            self._inbox_bytes += n
            await self._inbox_send.send(_Inbound(peer, msg, n))

    # ------------------------------------------------------------------ NodeAPI: writes

    async def submit(self, request: Request) -> SubmitResult:
        """Hand a client-signed request to the replica task (CheckTx semantics): "accepted" once
        it is in the pool, "committed" with the ORIGINAL result if this (client_id, request_seq)
        already executed, "rejected" with a reason otherwise."""
        early = self._precheck(request)
        if isinstance(early, SubmitResult):
            return early
        await self._inbox_send.send(early)
        return await self._submitted(early)

    async def submit_many(self, requests: Sequence[Request]) -> list[SubmitResult]:
        """`submit` for each request, in order, as one hand-off: all go into the inbox before
        the first wait, so the replica task takes them in one group (one FORWARD)."""
        early = [self._precheck(r) for r in requests]
        for e in early:
            if isinstance(e, _Submit):
                # without yielding between items (an awaited send is a checkpoint): the replica
                # task must find them all in one group, else they split over several FORWARDs
                # and blocks (measured: 88 -> 78 txs per block, +6 % CPU per tx)
                try:
                    self._inbox_send.send_nowait(e)
                except trio.WouldBlock:  # inbox full: back-pressure as `submit` has
                    await self._inbox_send.send(e)
        return [e if isinstance(e, SubmitResult) else await self._submitted(e) for e in early]

    def _precheck(self, request: Request) -> SubmitResult | _Submit:
        """What `submit` decides before the replica task: an answer, or the item to queue."""
        tx_hash = request_digest(request)
        done = self.store.tx_by_client(request.client_id, request.request_seq)
        if done is not None:
            return SubmitResult("committed", done.tx_hash, result=done)
        check = getattr(self.app, "check_tx", None)
        reason = check(request.op) if check is not None else None
        if reason is not None:
            self.metrics.rejected.labels("check_tx").inc()
            self.log.info("tx rejected", tx=_hex(tx_hash)[:16], reason=reason)
            return SubmitResult("rejected", tx_hash, reason=reason)
        tid = current_trace_id()
        if tid is not None:  # carried into the replica task's log line for this tx's commit
            self._traces[tx_hash] = tid
            while len(self._traces) > TRACES_KEPT:
                self._traces.popitem(last=False)
        return _Submit(request, _Waiter())

    async def _submitted(self, sub: _Submit) -> SubmitResult:
        request = sub.request
        tx_hash = request_digest(request)
        if not sub.accepted.done.is_set():  # submit_many: the rest of a batch is answered by
            await sub.accepted.done.wait()  # then; wait() on a set Event still yields (~10 us)
        if sub.accepted.error is not None:
            return SubmitResult("rejected", tx_hash, reason=sub.accepted.error.reason)
        if sub.accepted.result is not None and sub.accepted.result.get("duplicate"):
            done = self.store.tx_by_client(request.client_id, request.request_seq)
            if done is not None:
                return SubmitResult("committed", done.tx_hash, result=done)
        return SubmitResult("accepted", tx_hash)

    def _watch(self, tx_hash: bytes, client: tuple[bytes, int] | None = None) -> _Waiter:
        w = _Waiter()
        self._commit_waiters[tx_hash].append(w)
        if client is not None:
            self._by_client[client].add(tx_hash)
        return w

    def _unwatch(self, tx_hash: bytes, w: _Waiter) -> None:
        lst = self._commit_waiters.get(tx_hash)
        if lst is not None and w in lst:
            lst.remove(w)
            if not lst:
                del self._commit_waiters[tx_hash]

    async def wait_commit(self, tx_hash: bytes, timeout: float) -> TxResult | None:
        """The tx's result once committed (immediately if it already is); None on timeout.
        The store check and the registration happen in one trio step: no commit is missed."""
        stored = self.store.tx(tx_hash)
        if stored is not None:
            return stored
        w = self._watch(tx_hash)
        try:
            with trio.move_on_after(timeout):
                await w.done.wait()
        finally:
            self._unwatch(tx_hash, w)
        if w.result is None:
            return None
        return w.result["tx_result"]

    async def submit_and_wait(self, request: Request, timeout: float = 30.0) -> TxResult:
        """Submit and wait for the commit; raises TxRejected or trio.TooSlowError."""
        h = request_digest(request)
        w = self._watch(h, (request.client_id, request.request_seq))
        try:
            res = await self.submit(request)
            if res.status == "rejected":
                raise TxRejected(res.reason, h)
            if res.status == "committed":
                assert res.result is not None
                return res.result
            with trio.fail_after(timeout):
                await w.done.wait()
        finally:
            self._unwatch(h, w)
            self._by_client.pop((request.client_id, request.request_seq), None)
        if w.error is not None:
            raise w.error
        assert w.result is not None
        return w.result["tx_result"]

    def sign_op(self, op: bytes, valid_until: int = 0) -> Request:
        """Sign `op` with the node's embedded-client key (the embedding API's submit)."""
        self._client_seq += 1
        req = Request(client_id=self._client.public_key, request_seq=self._client_seq, op=op,
                      valid_until=valid_until)
        return sign_request(self.domain, self._client.signer(), req)

    # ------------------------------------------------------------------ NodeAPI: reads

    def height(self) -> int:
        return self._height

    def status(self) -> dict:
        r = self.replica
        view = r.view
        return {
            "node_id": self.node_id,
            "validator_index": self.index,
            "chain_id": self.chain_id,
            "domain": _hex(self.domain),
            "genesis_hash": _hex(self.genesis.hash()),
            "view": view,
            "primary": view % self.consensus_config.n,
            "in_view_change": bool(r.in_view_change),
            "height": self._height,
            "last_block_hash": _hex(self.last_block_hash),
            "last_block_time_ms": self.last_block_time_ms,
            "stable_checkpoint": r.stable_seq,
            "validators": self.consensus_config.n,
            "peers": sum(1 for p in self.net_info()["peers"] if p["connected"]),
            "txs_committed": int(self.metrics.value("bftnode_txs_committed_total")),
            "rpc": self.rpc_url,
            "p2p": self.config.p2p_listen if self.config else None,
            "why": self._why(),
        }

    def _why(self) -> str:
        """The replica's one-line explanation of what it waits for ("" when nothing is stuck)."""
        try:
            return str(self.replica.health().get("why", ""))
        except Exception:  # diagnostics only; never let it break status
            return ""

    def health(self) -> dict:
        try:
            info = dict(self.replica.health())
        except Exception as exc:  # health is diagnostics; never let it break the RPC
            info = {"error": repr(exc)}
        peers = sum(1 for p in self.net_info()["peers"] if p["connected"])
        running = self.started.is_set() and not self.stopped.is_set()
        ok = running and peers >= self.consensus_config.quorum - 1
        why = [] if ok else (["not running"] if not running else [f"only {peers} peers connected"])
        return {"ok": ok, "why": why, "height": self._height, "peers": peers,
                "replica": _jsonable(info)}

    def net_info(self) -> dict:
        ps = getattr(self.transport, "peer_stats", None)
        stats = ps() if callable(ps) else {}
        peers = []
        for v in self.genesis.validators:
            if v.index == self.index:
                continue
            st = stats.get(v.index, {}) if isinstance(stats, dict) else {}
            peers.append({"index": v.index, "node_id": v.public_key, "multiaddr": v.p2p_multiaddr,
                          "connected": _connected(st), "stats": _jsonable(st)})
        return {"listening": self.started.is_set(), "n_peers": len(peers), "peers": peers}

    def validators(self) -> list[dict]:
        return [dataclasses.asdict(v) for v in self.genesis.validators]

    def evidence(self) -> list[dict]:
        return list(self._evidence)

    def convicted(self) -> list[dict]:
        """Replicas convicted by evidence committed to the ledger: [{replica, height, kind}]."""
        conv = self.replica.convicted
        return [{"replica": r, "height": h, "kind": k} for r, (h, k) in sorted(conv.items())]

    def metrics_text(self) -> bytes:
        v = self.tx_verifier
        self.metrics.sig_cache.labels("hits").set(v.hits)
        self.metrics.sig_cache.labels("misses").set(v.misses)
        self.metrics.sig_cache.labels("size").set(len(v))
        self.metrics.peers.set(sum(1 for p in self.net_info()["peers"] if p["connected"]))
        return self.metrics.text()

    def block(self, height: int) -> StoredBlock | None:
        return self.store.block(height)

    def tx(self, tx_hash: bytes) -> TxResult | None:
        return self.store.tx(tx_hash)

    def tx_by_client(self, client_id: bytes, request_seq: int) -> TxResult | None:
        return self.store.tx_by_client(client_id, request_seq)

    def app_events(self, height: int) -> Sequence[Any] | None:
        return self._app_events.get(height)

    async def query(self, method: str, params: dict) -> dict:
        """Application read at the last committed block, from a consistent snapshot.
        `min_revision` waits briefly for the state to reach it (else FUTURE_REVISION)."""
        params = dict(params)
        min_rev = params.pop("min_revision", None)
        if min_rev:
            with trio.move_on_after(MIN_REVISION_WAIT_S):
                while self._query_sync("revision", {}).get("revision", 0) < min_rev:
                    await self.wait_height(self._height + 1, MIN_REVISION_WAIT_S)
            rev = self._query_sync("revision", {}).get("revision", 0)
            if rev < min_rev:
                from bftnode.app.errors import FUTURE_REVISION, AppError

                raise AppError(FUTURE_REVISION,
                               f"node is at revision {rev}, below min_revision {min_rev}")
        return self._query_sync(method, params)

    def _query_sync(self, method: str, params: dict) -> dict:
        height, time_ms = self._height, self.last_block_time_ms
        with self.store.snapshot() as snap:
            return self.app.query(snap, method, params, height, time_ms)

    async def wait_height(self, height: int, timeout: float | None = None) -> int:
        """The current height as soon as it is >= `height`, or at `timeout` (maybe lower)."""
        with trio.move_on_after(math.inf if timeout is None else timeout):
            while self._height < height:
                await self._height_changed.wait()
        return self._height

    async def subscribe(self, from_height: int | None = None) -> AsyncIterator[StoredBlock]:
        """Committed blocks in height order, from `from_height` (default: the next one).
        Pull-based (reads the store), so a slow consumer never loses a block."""
        h = self._height + 1 if from_height is None else max(1, from_height)
        while True:
            await self.wait_height(h)
            b = self.store.block(h)
            if b is not None:
                yield b
            h += 1


# ---------------------------------------------------------------------- helpers


def _connected(stats: Any) -> bool:
    if not isinstance(stats, dict):
        return False
    if "connected" in stats:
        return bool(stats["connected"])
    return bool(stats.get("outbound_connected") or stats.get("inbound_connected"))


def _resolve_replica_class() -> Callable[..., Any]:
    try:
        from consensus import Replica  # type: ignore[attr-defined]
    except ImportError as exc:
        raise StartupError(f"consensus.Replica is not available: {exc}") from exc
    return Replica


def _default_replica_factory(config: Any, index: int, auth: Authenticator,
                             restored: Any) -> ReplicaCore:
    return _resolve_replica_class()(config, index, auth, restored)


async def _start_transport(nursery: trio.Nursery, transport: Any) -> None:
    """Start a network.Transport whichever lifecycle it offers (run(task_status) or async with)."""
    if hasattr(transport, "run"):
        await nursery.start(transport.run)
    elif hasattr(transport, "__aenter__"):
        ready = trio.Event()

        async def hold(*, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
            async with transport:
                task_status.started()
                ready.set()
                await trio.sleep_forever()

        await nursery.start(hold)


def check_port_free(host: str, port: int, what: str) -> None:
    if port == 0:
        return
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            raise StartupError(f"{what} port {host}:{port} is not available: {exc.strerror}") from None


def _multiaddr_host_port(addr: str) -> tuple[str, int]:
    parts = addr.split("/")
    return parts[2], int(parts[4])


def load_startup_files(config: NodeConfig) -> tuple[NodeKey, Genesis]:
    """Key + genesis, cross-checked against the config; StartupError with the reason."""
    try:
        key = load_key_file(config.key_path)
        genesis = load_genesis(config.genesis_path)
    except (KeyFileError, GenesisError) as exc:
        raise StartupError(str(exc)) from exc
    if genesis.chain_id != config.chain_id:
        raise StartupError(
            f"wrong genesis: {config.genesis_path} is for chain {genesis.chain_id!r} but the "
            f"config's chain_id is {config.chain_id!r}"
        )
    n = len(genesis.validators)
    if config.node_index >= n:
        raise StartupError(f"field 'node_index': {config.node_index} but genesis has {n} validators")
    want = genesis.validators[config.node_index].public_key
    if key.public_key.hex() != want.lower():
        raise StartupError(
            f"key {config.key_path} (public key {key.public_key.hex()[:16]}...) is not validator "
            f"{config.node_index} of the genesis ({want[:16]}...)"
        )
    return key, genesis


def build_node(config: NodeConfig, *, app: Any = None, transport: Any = None,
               store: Store | None = None, replica_factory: Callable[..., Any] | None = None,
               client_key: NodeKey | None = None,
               wrap_transport: Callable[[Any], Any] | None = None) -> Node:
    """Every start-up check, then the real parts (LevelDB store, libp2p transport, KV app).
    `replica_factory(consensus_config, index, auth, restored)` makes the replica (default
    `consensus.Replica`); `wrap_transport(transport) -> transport` wraps the transport.
    Raises StartupError with a clear message; nothing is written unless all checks pass."""
    key, genesis = load_startup_files(config)
    if transport is None:
        host, port = _multiaddr_host_port(config.p2p_listen)
        check_port_free(host, port, "p2p")
    if config.rpc_port:
        check_port_free(config.rpc_host, config.rpc_port, "RPC")
    if app is None:
        try:
            from bftnode.app import KVApplication
        except ImportError as exc:
            raise StartupError(f"bftnode.app.KVApplication is not available: {exc}") from exc
        app = KVApplication(validators=genesis.replica_keys())
    if transport is None:
        try:
            from network import Libp2pTransport, PeerSpec
        except ImportError as exc:
            raise StartupError(f"network.Libp2pTransport is not available: {exc}") from exc
        peers = [PeerSpec(v.index, v.public_key_bytes, v.p2p_multiaddr) for v in genesis.validators]
        transport = Libp2pTransport(config.node_index, key.seed, peers, config.p2p_listen)
    if wrap_transport is not None:
        transport = wrap_transport(transport)
    if replica_factory is None:  # resolve before anything is written
        replica_factory = _resolve_replica_class()
    opened_here = store is None
    if store is None:
        try:
            from storage import open_store
            from storage.leveldb import staggered_memtable_bytes
        except ImportError as exc:
            raise StartupError(f"storage.open_store is not available: {exc}") from exc
        try:
            store = open_store(str(config.data_path), genesis.chain_id.encode(), genesis.hash(),
                               True, dedup_window=genesis.config().dedup_window,
                               sync_blocks=config.sync_blocks,
                               compression=config.compression, fsync=config.fsync,
                               max_open_files=config.max_open_files,
                               memtable_bytes=staggered_memtable_bytes(config.node_index))
        except StorageError as exc:
            raise StartupError(f"cannot open the database {config.data_path}: {exc}") from exc
        if not config.fsync:
            get_logger(node=config.node_index).warning(
                "fsync disabled", reason="config fsync = false: a kill -9 loses nothing, a "
                "power cut can lose the last votes (the node may then equivocate)")
    try:
        return Node(index=config.node_index, genesis=genesis, key=key, store=store,
                    transport=transport, app=app, config=config,
                    client_key=client_key, replica_factory=replica_factory,
                    tick_ms=config.tick_ms)
    except StorageError as exc:
        if opened_here:
            store.close()
        raise StartupError(f"cannot recover from {config.data_path}: {exc}") from exc
    except BaseException:
        if opened_here:
            store.close()
        raise
