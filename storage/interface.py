"""The storage Protocol every store implements (LevelDB for nodes, memory for the simulator).

Owns the narrow interface between the node and its disk: atomic synced writes of consensus
records, atomic commit of a block with its certificate, state changes and tx index, recovery,
and reads. Imports: stdlib, msgspec, consensus (types only).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import msgspec

from consensus import CommittedBlock, Execute, Record, RecoveredState, StateVote

COMPRESSIONS = ("snappy", "none")
"""LevelDB table compressions a store may be opened with (`compression=`)."""


class StorageError(Exception):
    """A storage problem with a clear message (locked, missing, corrupt, wrong chain/schema)."""


class CorruptionError(StorageError):
    """Stored data fails verification (torn write, broken hash chain, undecodable record)."""


class StateReader(Protocol):
    """Read access to the application's key-value state (a live view or a snapshot)."""

    def get(self, key: bytes) -> bytes | None: ...

    def iterate(
        self, prefix: bytes, start: bytes | None = None, reverse: bool = False
    ) -> Iterator[tuple[bytes, bytes]]: ...


class DepthLimit(Protocol):
    """One block's bound on the state tree's depth (storage.merkle_depth.DepthGuard)."""

    max_depth: int

    def admit(self, app_keys: Sequence[bytes],
              exempt: Callable[[bytes], bool] | None = None) -> bytes | None:
        """Admit the keys a tx puts; the first one refused (none admitted) or None."""
        ...


@runtime_checkable
class DepthGuarded(Protocol):
    """Optional on a StateReader: the depth bound of the state tree for executing block
    `height` (None: no tree, nothing is refused)."""

    def depth_guard(self, height: int) -> DepthLimit | None: ...


class TxResult(msgspec.Struct, frozen=True):
    """Outcome of one executed transaction, indexed by hash and by (client_id, request_seq).
    A struct, not a frozen dataclass: one per executed tx, built ~8x faster."""

    tx_hash: bytes
    client_id: bytes
    request_seq: int
    height: int
    index: int  # position in the block
    code: int  # 0 = ok; non-zero = application error (still committed, never re-executed)
    result: bytes  # application-defined (msgpack/JSON bytes)


@dataclass(frozen=True, slots=True)
class BlockCommit:
    """Everything one committed block changes, written in ONE atomic synced batch."""

    execute: Execute  # the consensus block (header fields, txs, commit certificate)
    results: tuple[TxResult, ...]
    state_writes: tuple[tuple[bytes, bytes | None], ...]  # app state puts (None = delete)
    state_root: bytes = bytes(32)
    events: bytes | None = None  # the block's app events, encoded by the node (None: not kept)
    # the block's tx-attribute index entries (attr, value, tx index, tx hash): written in its
    # batch while the index is contiguous (storage.tx_attrs); None: this block is not indexed
    attrs: tuple[tuple[bytes, bytes, int, bytes], ...] | None = None


@dataclass(frozen=True, slots=True)
class StateCertificate:
    """2f+1 validators' signatures over a block's post-execution roots: `votes` are the
    StateVotes (exactly 2f+1, sorted by replica) for (seq, block_hash, state_root,
    results_root). Verify each with consensus.Authenticator.verify against the genesis keys."""

    seq: int
    block_hash: bytes
    state_root: bytes
    results_root: bytes
    votes: tuple[StateVote, ...]


@dataclass(frozen=True, slots=True)
class StoredBlock:
    height: int
    hash: bytes
    prev_hash: bytes
    digest: bytes
    time_ms: int
    view: int
    state_root: bytes
    txs: tuple  # tuple[consensus.Request, ...] as executed
    committed: CommittedBlock  # pre-prepare + commit certificate, for sync and client proofs
    results_root: bytes = bytes(32)  # storage.results_root over the block's tx results
    state_certificate: StateCertificate | None = None  # None until 2f+1 roots arrive


@dataclass(frozen=True, slots=True)
class StateChunk:
    """A slice of the application state as of one block (export_state / import_state)."""

    height: int
    block_hash: bytes
    items: tuple[tuple[bytes, bytes], ...]


class Store(Protocol):
    """Synchronous; one writer at a time is assumed; reads are thread-safe (the node calls it
    through trio.to_thread)."""

    def persist(self, records: Sequence[Record]) -> None:
        """Write consensus records atomically and durably (sync) before anything is sent."""

    def commit_block(self, commit: BlockCommit) -> None:
        """Append the next block (height = last + 1) with everything it changes, atomically."""

    def recover(self, max_clients: int | None = None) -> RecoveredState:
        """Rebuild the replica's durable state; raises CorruptionError on bad data.
        `max_clients` caps the client dedup windows restored (None: all)."""

    def client_histories(
        self, client_ids: Sequence[bytes]
    ) -> tuple[int, tuple[tuple[bytes, tuple[int, ...]], ...]]:
        """(height, each client's executed request_seqs in its dedup window), the windows
        reflecting every block through that height (answers consensus.LoadClients)."""

    def height(self) -> int: ...

    def block(self, height: int) -> StoredBlock | None: ...

    def committed_block(self, height: int) -> CommittedBlock | None: ...

    def block_height(self, block_hash: bytes) -> int | None:
        """The height of the stored block with this hash; None if not stored (or pruned)."""

    def tx(self, tx_hash: bytes) -> TxResult | None: ...

    def block_roots(self, height: int) -> tuple[bytes, bytes] | None:
        """(state_root, results_root) in the header of block `height`; None if not stored."""

    def put_state_certificate(self, seq: int, votes: Sequence[StateVote]) -> None:
        """Store the state certificate of block `seq` (2f+1 StateVotes with equal roots)."""

    def state_certificate(self, seq: int) -> StateCertificate | None: ...

    def latest_certified(self) -> int:
        """The highest height with a stored state certificate (0 if none)."""

    def tx_by_client(self, client_id: bytes, request_seq: int) -> TxResult | None: ...

    def client_floor(self, client_id: bytes) -> int:
        """The client's floor: its request_seqs at or below it have no client-index entry
        any more (storage.keys F; 0: none removed, always 0 with the state tree off)."""

    def state(self) -> StateReader:
        """The live application state (reads see every committed block)."""

    def snapshot(self) -> AbstractContextManager[StateReader]:
        """A consistent read view that later commits do not change."""

    def blocks(self, start: int, stop: int | None = None) -> Iterator[StoredBlock]:
        """Stored blocks with start <= height < stop (stop None: to the end), ascending."""

    def export_state(self, chunk_items: int = 1024) -> Iterator[StateChunk]:
        """The whole application state from one consistent snapshot, in chunks."""

    def import_state(
        self,
        height: int,
        block_hash: bytes,
        items: Iterable[tuple[bytes, bytes] | StateChunk],
        committed_block: CommittedBlock,
        prev_hash: bytes | None = None,
    ) -> None:
        """Replace the application state with a transferred one at `height` (state transfer)."""

    # pruning and certified snapshots (storage.ledger_prune, storage.ledger_snapshot)

    def base_height(self) -> int:
        """The lowest height whose block is stored (height + 1 when none is)."""

    def prune_blocks(self, below: int, max_blocks: int = 64) -> int:
        """Delete up to `max_blocks` of the oldest blocks below `below` (never the last one);
        returns the new base height."""

    def open_snapshot(self) -> Any:
        """A held consistent view to serve snapshot pages from (close() it when done)."""

    def snapshot_page(self, held: Any, height: int, after_key: bytes, max_items: int = ...,
                      max_bytes: int = ...) -> Any:
        """The state tree's page at `height` from `after_key` (storage.snapshot.SnapshotPage)."""

    def begin_import(self, height: int) -> None: ...

    def import_page(self, items: tuple[tuple[bytes, bytes], ...]) -> None: ...

    def finish_import(self, height: int, block_hash: bytes, committed_block: CommittedBlock,
                      prev_hash: bytes, state_root: bytes,
                      results_root: bytes = ...) -> None:
        """Install the staged snapshot; CorruptionError if it does not hash to `state_root`."""

    def close(self) -> None: ...
