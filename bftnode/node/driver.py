"""The replica task and the ONE implementation of the Output ordering rule.

`apply_output(out, ports)` applies a replica's Output in the order every shell must keep:
persist -> send -> execute (and, behind the blocks, reply) -> evidence -> state certificates
and divergence alarms -> fetch -> snapshot -> load_clients, stepping the replica again for the
answers to fetch, snapshot and load_clients. The node
(`Node`, through `_NodePorts`), the simulator (testnet/sim) and the consensus tests' cluster
all drive it; they differ only in their `OutputPorts` (store, transport, executor, replies).
A synchronous shell's ports never suspend, so `run_sync` runs it without an event loop.

`DriverMixin` (part of `Node`) is the node's side: the message pump (peer frames -> bounded
inbox), the replica task (Tick + inbox -> one group of steps -> one merged Output ->
`apply_output`) and its ports: inline or threaded persists, encoded sends and the loopback,
the hand-off of blocks and replies to the executor task, evidence, client histories.
Imports: stdlib, trio, consensus, network.framing, bftnode.node.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import time
from collections.abc import Coroutine, Sequence
from typing import Any, Protocol, TypeVar

import trio

from consensus import (
    ClientRequests,
    ClientsLoaded,
    Commit,
    DecodeError,
    Duplicate,
    Event,
    Evidence,
    Execute,
    FetchBlocks,
    FetchedBlocks,
    LoadClients,
    Output,
    OwnVote,
    Prepare,
    PreparedCert,
    PrePrepare,
    Prune,
    Receive,
    Record,
    Rejected,
    Request,
    Send,
    StableCheckpoint,
    StateCertified,
    StateDivergence,
    Tick,
    ViewState,
    decode,
    encode,
    request_digest,
)
from consensus.evidence import PROOF_KINDS
from consensus.peers import decoded_bytes
from network.framing import FramingError

from .errors import TxRejected
from .executor import blocks_for_fetch, small_requests
from .ports import BlockSource
from .traces import TRACE_BYTE
from .waiters import Submitted

INBOX_SIZE = 10_000
# decoded bytes (consensus.peers.decoded_bytes: wire size plus 256 per request or vote) of the
# peer messages waiting in the inbox: past it the pump waits, so back-pressure reaches the
# transport's per-peer byte shares and the peers' bounded send queues. Counting decoded bytes,
# not wire bytes: a list of tiny structs decodes to ~10x its wire size. A node that stalled
# for seconds otherwise decoded its whole backlog at once, and the objects' peak stayed in its
# RSS (docs/performance.md). One message bigger than this passes alone.
INBOX_MAX_BYTES = 8 * 1024 * 1024
GROUP_MAX = 256  # events stepped per group commit (one persist, one send round, one commit)
LOOPBACK_MAX = 10_000  # our own messages waiting for the next group
QUIET_BYTES_PER_S = 1024 * 1024  # peer bytes taken per second below which a node is quiet

T = TypeVar("T")


class OutputPorts(Protocol):
    """What `apply_output` needs of a shell."""

    @property
    def blocks(self) -> BlockSource:
        """The stored blocks a peer's FetchBlocks is answered from (`blocks_for_fetch`)."""
        ...

    def step(self, event: Event) -> Output:
        """Step the replica (the answers to fetch and load_clients)."""
        ...

    async def drain(self) -> None:
        """Return once every block handed to `execute` so far is stored."""
        ...

    async def persist(self, records: Sequence[Record]) -> None:
        """Make the records (maybe none) durable in one synced batch; nothing is sent before
        it returns."""
        ...

    async def send(self, send: Send) -> None: ...

    async def execute(self, blocks: Sequence[Execute], replies: Sequence[Any]) -> None:
        """Execute and store the blocks in order, THEN answer the replies."""
        ...

    def evidence(self, ev: Evidence) -> None: ...

    def certified(self, c: StateCertified) -> None:
        """Store a block's state certificate."""
        ...

    def diverged(self, d: StateDivergence) -> None:
        """Raise the alarm: 2f+1 replicas certify other roots than this replica's."""
        ...

    async def client_histories(self, load: LoadClients) -> tuple[int, Any] | None:
        """storage's answer to LoadClients: (as of height, each client's dedup window); None
        if the shell answers later (it then steps ClientsLoaded itself)."""
        ...

    def applied(self, out: Output) -> None:
        """Observer: `out` (or a nested answer's Output) is fully applied."""
        ...


async def apply_output(out: Output, ports: OutputPorts) -> None:
    """The ordering rule: persist -> send -> execute -> reply -> evidence -> fetch ->
    load_clients. A vote is never sent before it is durable, a client is never answered before
    the block that decides the answer is stored."""
    if out.persist and any(isinstance(r, StableCheckpoint | Prune) for r in out.persist):
        # a checkpoint record prunes votes of blocks at or below it: those blocks must be
        # durable first (so a crash never leaves neither the votes nor the blocks)
        await ports.drain()
    await ports.persist(out.persist)  # even none: the point where nothing left the node yet
    for s in out.send:
        await ports.send(s)
    if out.execute or out.reply:
        await ports.execute(out.execute, out.reply)
    for ev in out.evidence:
        ports.evidence(ev)
    for c in out.certified:
        ports.certified(c)
    for d in out.divergence:
        ports.diverged(d)
    # optional ports (bftnode.node.snapshot): a shell without them serves no snapshot
    pruned = getattr(ports, "pruned_answer", None)
    for f in out.fetch:
        blocks = blocks_for_fetch(ports.blocks, f.from_seq, f.to_seq)
        base, floor = (0, 0) if blocks or pruned is None else pruned(f.from_seq)
        await apply_output(ports.step(FetchedBlocks(f.to, blocks, base, floor)), ports)
    snapshot = getattr(ports, "snapshot", None)
    for act in out.snapshot if snapshot is not None else ():
        answer = await snapshot(act)
        if answer is not None:
            await apply_output(ports.step(answer), ports)
    for lc in out.load_clients:
        # the bounded client table left these out: read them once every block the
        # replica executed is stored (rare: after an eviction or a capped restore)
        await ports.drain()
        answer = await ports.client_histories(lc)
        if answer is not None:
            await apply_output(ports.step(ClientsLoaded(*answer)), ports)
    ports.applied(out)


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine whose awaits never suspend (a synchronous shell's `apply_output`)."""
    try:
        coro.send(None)
    except StopIteration as done:
        return done.value
    coro.close()
    raise RuntimeError("a synchronous shell's port suspended")


def _small_persist(records: Sequence[Any]) -> bool:
    """True if `records` are cheap to write on the event loop: votes, view state and prepared
    certificates carrying few and small requests in all (executor.small_requests).
    Checkpoints, prunes (a range delete), convictions and view-change messages (certificates
    inside) go to the worker thread."""
    carried: list[Request] = []
    for rec in records:
        if isinstance(rec, PreparedCert):
            carried += rec.proof.pre_prepare.requests
        elif isinstance(rec, OwnVote):
            msg = rec.message
            if isinstance(msg, PrePrepare):
                carried += msg.requests
            elif not isinstance(msg, Prepare | Commit):
                return False
        elif not isinstance(rec, ViewState):
            return False
    return small_requests(carried)


@dataclasses.dataclass(frozen=True, slots=True)
class _Inbound(Receive):
    """A peer message as the pump queues it: its wire size counts against INBOX_MAX_BYTES
    until the replica task takes it."""

    size: int = 0


class _NodePorts:
    """A running node's OutputPorts."""

    __slots__ = ("node",)

    def __init__(self, node: Any) -> None:
        self.node = node

    @property
    def blocks(self) -> BlockSource:
        return self.node.store

    def step(self, event: Event) -> Output:
        return self.node.replica.step(event)

    async def drain(self) -> None:
        await self.node._drain_executor()

    async def persist(self, records: Sequence[Record]) -> None:
        await self.node._persist(records)

    async def send(self, send: Send) -> None:
        await self.node._send(send)

    async def execute(self, blocks: Sequence[Execute], replies: Sequence[Any]) -> None:
        node = self.node
        node._exec_queued += 1
        await node._exec_send.send((list(blocks), list(replies)))

    def evidence(self, ev: Evidence) -> None:
        self.node._on_evidence(ev)

    def pruned_answer(self, from_seq: int) -> tuple[int, int]:
        return self.node.snapshots.pruned_answer(from_seq)

    async def snapshot(self, act: Any) -> Any:
        return await self.node._snapshot_action(act)

    def certified(self, c: StateCertified) -> None:
        self.node._on_state_certified(c)

    def diverged(self, d: StateDivergence) -> None:
        self.node._on_state_divergence(d)

    async def client_histories(self, load: LoadClients) -> tuple[int, Any]:
        node = self.node
        # in a thread: a batch of returning clients can be thousands of index reads
        as_of, hist = await trio.to_thread.run_sync(node.store.client_histories,
                                                    load.client_ids)
        node._client_loads += len(hist)
        node.log.debug("client histories loaded", clients=len(hist), height=as_of)
        return as_of, hist

    def applied(self, out: Output) -> None:
        pass


class DriverMixin:
    """The replica task of `Node`: nothing else steps the replica, so there are no locks."""

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
        3.5-ms-fsync disk), while a node taking in megabytes a second from its quorum keeps
        reading its peers during the write. The f peers that sent the most are left out of
        the count: up to f Byzantine validators flooding at link speed (what an honest node
        mostly drops) would otherwise push every honest write off the loop (measured: +2-4 ms
        on an 8-ms put p50 under a relay flood)."""
        if self._inbox_recv.statistics().current_buffer_used:
            return False
        now = time.monotonic()
        start, _, last = self._in_window
        if now - start >= 1.0:
            self._roll_in_window(now)
            last = self._in_window[2]
        return last < QUIET_BYTES_PER_S

    def _roll_in_window(self, now: float) -> None:
        per_peer = self._in_window[1]
        counted = sorted(per_peer.values())[: max(0, len(per_peer) - self.consensus_config.f)]
        self._in_window = (now, {}, sum(counted))

    def _taken(self, item: Any) -> Any:
        """Account for an item taken from the inbox."""
        if type(item) is _Inbound:
            self._inbox_bytes -= item.size
            per_peer = self._in_window[1]
            per_peer[item.sender] = per_peer.get(item.sender, 0) + item.size
            self._inbox_room.set()
        return item

    async def _step(self, event: Event, submitted: Submitted | None = None) -> Output | None:
        """Step one event and apply its Output, blocks included (for callers outside the
        replica task)."""
        out = await self._step_group([submitted if submitted is not None else event])
        await self._drain_executor()
        return out

    async def _step_group(self, group: Sequence[Any]) -> Output | None:
        """Step the replica once per event, MERGE the Outputs and apply the merged Output once:
        one synced persist of every record -> every send -> every block (one synced commit) ->
        replies. Persisting a vote later than its step is safe: nothing leaves this node before
        the merged persist is durable, and a crash before it loses only unsent votes."""
        t0 = time.perf_counter()
        merged = Output()
        last: Output | None = None
        subs = [item for item in group if isinstance(item, Submitted)]
        sub_replies: list[Any] = []
        for item in group:
            if isinstance(item, Submitted):
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
        await apply_output(merged, self._ports)
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
        await apply_output(out, self._ports)

    # ------------------------------------------------------------------ the node's ports

    async def _persist(self, records: Sequence[Record]) -> None:
        if not records:
            return
        t0 = time.perf_counter()
        if (self._inline_persist.fast() or self._inbox_idle()) and _small_persist(records):
            self.store.persist(records)  # inline: cheaper than the thread hop
            self._inline_persist.took(time.perf_counter() - t0)
        else:
            await trio.to_thread.run_sync(self.store.persist, records)
        self.metrics.persist_seconds.observe(time.perf_counter() - t0)

    async def _send(self, s: Send) -> None:
        if isinstance(s.message, bytes | bytearray):  # raw bytes (the test harness's `flood`)
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
            "messages": [base64.b64encode(encode(m)).decode() for m in ev.messages[:4]],
        })

    # ------------------------------------------------------------------ transport -> replica

    async def _pump_incoming(self) -> None:
        async for peer, data in self.transport.incoming:
            if data and data[0] == TRACE_BYTE:  # not a consensus message: the shell's (traces.py)
                self._on_trace_note(peer, data)
                continue
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
            self._messages_in(type(msg).__name__).inc()
            n = decoded_bytes(msg, len(data))
            while self._inbox_bytes and self._inbox_bytes + n > INBOX_MAX_BYTES:
                self._inbox_room = trio.Event()  # set by the replica task as it takes items
                await self._inbox_room.wait()
            self._inbox_bytes += n
            await self._inbox_send.send(_Inbound(peer, msg, n))
