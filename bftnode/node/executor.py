"""Blocks: execute and commit them, and serve them to peers catching up.

Shared by the node and the simulator: `execute_and_commit` (the app over the state, then ONE
atomic commit of the group, `Store.commit_blocks`) and `blocks_for_fetch` (the stored blocks a
peer's FetchBlocks gets, bounded in count and bytes). The node's side is `ExecutorMixin`: its
executor task takes each group of blocks (and the replies behind them) in order, commits them
in runs of at most EXEC_CHUNK_REQUESTS requests (small runs inline on the event loop, bigger
ones in a worker thread), then moves the height and resolves the commit waiters.
Imports: stdlib, trio, consensus, storage, bftnode.app.overlay (lazily), bftnode.node.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import trio

from consensus import CommittedBlock, Execute, InvariantViolation, Request, request_digest
from consensus.types import request_size
from storage.interface import BlockCommit, StateReader, TxResult

from . import app_events, tx_attrs
from .ports import (
    Application,
    AuthenticatedState,
    BlockEffects,
    BlockSource,
    HeldExecutionState,
    Store,
)

FETCH_MAX_BLOCKS = 64
# request bytes per BlockSync answer (past its first block): 64 blocks of 100 txs with 1-KB
# values are ~8 MB, at the 8 MiB message limit; the peer asks again from where it stopped
FETCH_MAX_BYTES = 4 * 1024 * 1024
EXEC_QUEUE_GROUPS = 64  # groups of blocks waiting for the executor task
# requests per synced block commit (at least one block): a catching-up node's group of 64
# fetched blocks is executed as several commits, not one WriteBatch of ~10 MB
EXEC_CHUNK_REQUESTS = 2_000

# A persist, or a group of blocks to execute and commit, of at most this many requests runs
# on the event loop: the worker-thread hop (wake-up, GIL hand-off, result delivery) cost
# ~0.4-1 ms of CPU on this 2-vCPU machine, more than a small synced batch (~0.3 ms) or a few
# txs of the app block the loop. At 200 tx/s (5-tx blocks): node CPU/tx -15 % (persists)
# and -10 % more (execution); docs/performance.md at 072d7af. Saturated batches (100 txs)
# keep the thread, so the loop serves the network during their fsyncs.
INLINE_MAX_REQUESTS = 20
# ...and of at most this many request bytes: one large write can stall LevelDB for seconds
# (a full memtable waits for its flush and for level-0 compaction), which on the loop stops
# the replica, its votes and its peers' reads too (measured: a 2.4 s inline persist of a
# PreparedCert carrying one 2 MiB request made a primary "silent" and its backups change view)
INLINE_MAX_BYTES = 64 * 1024
# ...and only while such writes stay fast here: a synced write costs what the disk's fsync
# costs (0.3 ms on one VM, 3.5 ms on another), and on the loop it stops the network and RPC
# tasks too, so the next group is smaller and more fsyncs follow (measured under a relay
# flood: 1,235 inline persists took 4.3 s of a primary's 24 s). EWMA of the inline ones;
# with nothing waiting in the inbox they stay inline (see Node._inbox_idle).
INLINE_MAX_SECONDS = 0.001

PRUNE_SLACK_BLOCKS = 16  # with retain_blocks: prune once this many blocks are past the bound

Executed = tuple[tuple[TxResult, ...], BlockEffects]


def blocks_for_fetch(store: BlockSource, from_seq: int, to_seq: int,
                     max_bytes: int = FETCH_MAX_BYTES) -> tuple[CommittedBlock, ...]:
    """Committed blocks from_seq..to_seq for a peer catching up, up to the first missing one:
    at most FETCH_MAX_BLOCKS and, past the first block, at most `max_bytes` of request bytes
    (so the BlockSync stays under the message limit whatever the tx sizes)."""
    blocks: list[CommittedBlock] = []
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


def execute_and_commit(store: Store, app: Application, exs: Sequence[Execute],
                       tx_index: bool = True) -> list[Executed]:
    """The app over the live state (plus the writes of the earlier blocks of this group,
    through an overlay), then ONE atomic synced commit of them all, with their tx-attribute
    index entries unless not `tx_index` (bftnode.node.tx_attrs). With the state tree on,
    one commit per block: each block's depth bound reads the tree of the block before."""
    if len(exs) > 1 and isinstance(store, AuthenticatedState) and store.authenticated_state:
        return [d for ex in exs for d in execute_and_commit(store, app, (ex,), tx_index)]
    if isinstance(store, HeldExecutionState):
        with store.execution_state() as state:  # its reads end before commit_blocks writes
            return _execute_and_commit_on(store, app, state, exs, tx_index)
    return _execute_and_commit_on(store, app, store.state(), exs, tx_index)


def _execute_and_commit_on(store: Store, app: Application, state: StateReader,
                           exs: Sequence[Execute], tx_index: bool) -> list[Executed]:
    overlay = None
    if len(exs) > 1:
        from bftnode.app.overlay import Overlay

        overlay = state = Overlay(state)
    commits: list[BlockCommit] = []
    done: list[Executed] = []
    for ex in exs:
        effects = app.execute_block(state, ex.seq, ex.time_ms, ex.requests)
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
        attrs = (tuple(tx_attrs.entries(app, [r.tx_hash for r in results], effects.events))
                 if tx_index else None)
        commits.append(BlockCommit(ex, results, writes,
                                   events=app_events.encode(app, effects.events), attrs=attrs))
        done.append((results, effects))
    store.commit_blocks(commits)
    return done


def _small_blocks(exs: Sequence[Execute]) -> bool:
    """True if a group of blocks is cheap to execute and commit on the event loop."""
    return small_requests([r for ex in exs for r in ex.requests])


def small_requests(requests: Sequence[Request]) -> bool:
    """At most INLINE_MAX_REQUESTS requests of at most INLINE_MAX_BYTES op bytes in all."""
    return len(requests) <= INLINE_MAX_REQUESTS and (
        sum(len(r.op) for r in requests) <= INLINE_MAX_BYTES)


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


class InlineCost:
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


class ExecutorMixin:
    """The node's executor task (part of `Node`)."""

    async def _executor_task(self) -> None:
        """Executes and commits the blocks of each group in order, then answers the group's
        replies (a Duplicate's answer is read from the store, so it must follow the block)."""
        async for exs, replies in self._exec_recv:
            if exs:
                await self._execute_group(exs)
                self._flush_certificates()  # those that formed during the block write
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

    async def _execute_group(self, exs: Sequence[Execute]) -> None:
        """Execute consecutive blocks and commit them in synced batches of at most
        EXEC_CHUNK_REQUESTS requests (one batch per run), then resolve waiters block by
        block."""
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
        retain = self.config.retain_blocks if self.config is not None else 0
        if retain and self.store.base_height() <= self._height - retain - PRUNE_SLACK_BLOCKS:
            stable = getattr(self.replica, "stable_seq", 0)
            await trio.to_thread.run_sync(self.snapshots.prune_step, retain, stable)
        if self._tx_index and tx_attrs.behind(self.store):  # missed ones: a bounded step
            await trio.to_thread.run_sync(tx_attrs.catch_up, self.store, self.app)

    async def _execute(self, ex: Execute) -> None:
        await self._execute_group([ex])

    def _execute_and_commit_group(self, exs: list[Execute]) -> list[Executed]:
        """Runs in a worker thread (a small group: on the event loop, see
        INLINE_MAX_REQUESTS)."""
        self._trimmer.maybe()  # now and then: RSS stays flat (see memory.py)
        return execute_and_commit(self.store, self.app, exs, self._tx_index)

    def _after_execute(self, ex: Execute, results: tuple[TxResult, ...],
                       effects: Any) -> None:
        self._height = ex.seq
        self.last_block_hash = ex.block_hash
        self.last_block_time_ms = ex.time_ms
        self.metrics.blocks.inc()
        self.metrics.txs.inc(len(results))
        self.metrics.height.set(ex.seq)
        self._resolve_committed(ex, results)
        self._feed_executed(ex.seq, ex.block_hash)
        self.log.debug("block committed", height=ex.seq, view=ex.view, txs=len(results),
                       block_hash=ex.block_hash.hex()[:16])
        self._keep_app_events(ex.seq, tuple(effects.events))
        old, self._height_changed = self._height_changed, trio.Event()
        old.set()
