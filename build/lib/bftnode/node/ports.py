"""The node's collaborators, typed: what `Node` needs of a store, an application, a transport
and a replica. Every real implementation satisfies these (storage.LevelDBStore and
MemoryStore, bftnode.app.KVApplication, network.Libp2pTransport and MemoryTransport,
consensus.Replica); tests plug in their own. Optional capabilities are their own
`runtime_checkable` Protocols, checked once with `isinstance`.
Imports: stdlib, trio (types), consensus, storage, bftnode.app.application.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol, runtime_checkable

import trio

from bftnode.app.application import Application, BlockEffects
from consensus import Authenticator, CommittedBlock, Config, RecoveredState
from consensus.core import ReplicaCore
from storage.interface import BlockCommit, StateReader
from storage.interface import Store as _LedgerStore

__all__ = ["Application", "AuthenticatedState", "BlockEffects", "BlockSource",
           "HeldExecutionState", "PeerStats",
           "ReadViews", "ReplicaFactory", "ReplicaLike", "Store", "Transport"]


class Store(_LedgerStore, Protocol):
    """storage.interface.Store plus the group commit every ledger store has (LedgerStore)."""

    def commit_blocks(self, commits: Sequence[BlockCommit]) -> None:
        """Consecutive blocks in ONE atomic synced batch."""
        ...


@runtime_checkable
class HeldExecutionState(Protocol):
    """Optional: a store that can hold one state reader open for a whole group's execution
    (LevelDBStore: one iterator and snapshot instead of one per read)."""

    def execution_state(self) -> AbstractContextManager[StateReader]: ...


@runtime_checkable
class AuthenticatedState(Protocol):
    """Optional: a store that may keep the state tree (every LedgerStore). With it on, a
    block's execution reads the tree of the block before (the depth bound,
    storage.merkle_depth), so blocks are executed and committed one by one."""

    @property
    def authenticated_state(self) -> bool: ...


@runtime_checkable
class ReadViews(Protocol):
    """Optional: a store that opens a consistent view at its committed height for a read
    worker thread (every LedgerStore: storage.read_view.ReadView)."""

    def read_view(self) -> AbstractContextManager[Any]: ...


class BlockSource(Protocol):
    """What block serving (`blocks_for_fetch`) reads."""

    def committed_block(self, height: int) -> CommittedBlock | None: ...


class Transport(Protocol):
    """The validator mesh as the node uses it (network.Transport implements it)."""

    incoming: AsyncIterator[tuple[int, bytes]]

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None: ...

    async def send(self, to: int, data: bytes) -> None: ...

    async def broadcast(self, data: bytes) -> None: ...

    def report_invalid(self, peer: int, reason: str = "undecodable") -> None: ...


@runtime_checkable
class PeerStats(Protocol):
    """Optional: per-peer connection counters for `net_info` (network.Transport has them)."""

    def peer_stats(self) -> dict[int, dict[str, Any]]: ...


class ReplicaLike(ReplicaCore, Protocol):
    """What the node reads of a replica: consensus.core.ReplicaCore (step, view,
    in_view_change, stable_seq, client_table, convicted, health)."""


# (consensus config, validator index, authenticator, restored state) -> a replica
ReplicaFactory = Callable[[Config, int, Authenticator, RecoveredState], ReplicaLike]
