"""MemoryStore: the ledger in a dict, for the simulator, with crash and torn-write faults.

Owns a sorted in-memory KV engine with LevelDB's durability model: a `sync=True` batch is
durable when it returns and makes every earlier batch durable too; `sync=False` batches are
lost on `crash(lose_unsynced=True)`. Fault injection: `tear_next_write(keep_ops)` applies only
a prefix of the next batch and raises SimulatedCrash (the "process" died mid-write). Runs the
same ledger code as LevelDBStore (storage.ledger), so `recover()` is identical.
Imports: stdlib, consensus (via storage.ledger). Deterministic: no clock, no randomness.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from .interface import StorageError
from .ledger import DEFAULT_DEDUP_WINDOW, LedgerStore, Op
from .merkle_tree import DEFAULT_RETAIN


class SimulatedCrash(StorageError):
    """An injected fault stopped a write midway; call `crash()` then `recover()`."""


class _SortedReader:
    def __init__(self, data: dict[bytes, bytes], order: list[bytes]) -> None:
        self._data = data
        self._order = order

    def get(self, key: bytes) -> bytes | None:
        return self._data.get(key)

    def _range(self, start: bytes, stop: bytes | None) -> list[bytes]:
        lo = bisect.bisect_left(self._order, start)
        hi = len(self._order) if stop is None else bisect.bisect_left(self._order, stop)
        return self._order[lo:hi]  # a copy: safe while writes go on

    def items(
        self, start: bytes, stop: bytes | None, reverse: bool = False
    ) -> Iterator[tuple[bytes, bytes]]:
        ks = self._range(start, stop)
        if reverse:
            ks.reverse()
        for k in ks:
            v = self._data.get(k)
            if v is not None:
                yield k, v


class _MemoryKV(_SortedReader):
    def __init__(self) -> None:
        super().__init__({}, [])
        self._lock = threading.RLock()
        self._undo: list[tuple[bytes, bytes | None]] = []  # since the last synced batch
        self._tear_after: int | None = None
        self.crashed = False
        self.writes = 0

    def _set(self, key: bytes, value: bytes | None) -> None:
        old = self._data.get(key)
        if value is None:
            if old is not None:
                del self._data[key]
                i = bisect.bisect_left(self._order, key)
                del self._order[i]
        else:
            if old is None:
                bisect.insort(self._order, key)
            self._data[key] = value
        self._undo.append((key, old))

    def write(self, ops: Sequence[Op], sync: bool) -> None:
        with self._lock:
            if self.crashed:
                raise StorageError("memory store crashed: call crash() and recover() first")
            self.writes += 1
            if self._tear_after is not None:
                keep, self._tear_after = self._tear_after, None
                for k, v in ops[:keep]:
                    self._set(k, v)
                self._undo.clear()  # the torn prefix reached the disk
                self.crashed = True
                raise SimulatedCrash(f"injected torn write: {min(keep, len(ops))}/{len(ops)} ops")
            for k, v in ops:
                self._set(k, v)
            if sync:
                self._undo.clear()

    def get(self, key: bytes) -> bytes | None:
        with self._lock:
            return self._data.get(key)

    def items(
        self, start: bytes, stop: bytes | None, reverse: bool = False
    ) -> Iterator[tuple[bytes, bytes]]:
        with self._lock:
            ks = self._range(start, stop)
        if reverse:
            ks.reverse()
        for k in ks:
            with self._lock:
                v = self._data.get(k)
            if v is not None:
                yield k, v

    @contextmanager
    def snapshot(self) -> Iterator[_SortedReader]:
        with self._lock:
            snap = _SortedReader(dict(self._data), list(self._order))
        yield snap

    def crash(self, lose_unsynced: bool) -> None:
        with self._lock:
            if lose_unsynced:
                for k, old in reversed(self._undo):
                    if old is None:
                        if k in self._data:
                            del self._data[k]
                            del self._order[bisect.bisect_left(self._order, k)]
                    else:
                        if k not in self._data:
                            bisect.insort(self._order, k)
                        self._data[k] = old
            self._undo.clear()
            self._tear_after = None
            self.crashed = False

    def close(self) -> None:
        pass


class MemoryStore(LedgerStore):
    """storage.Store in memory (simulator). Same key layout, checks and recovery as LevelDB."""

    def __init__(
        self,
        chain_id: bytes = b"sim",
        genesis_hash: bytes = bytes(32),
        dedup_window: int = DEFAULT_DEDUP_WINDOW,
        strict_votes: bool = True,
        name: str = "memory",
        authenticated_state: bool = False,
        state_versions: int = DEFAULT_RETAIN,
    ) -> None:
        self._mem = _MemoryKV()
        super().__init__(
            self._mem, chain_id, genesis_hash, True, dedup_window, strict_votes, where=name,
            authenticated_state=authenticated_state, state_versions=state_versions,
        )

    def crash(self, lose_unsynced: bool = True) -> None:
        """Simulate power loss: drop unsynced writes (if asked) and forget in-memory caches.
        Afterwards the store behaves as if reopened: call `recover()`."""
        self._mem.crash(lose_unsynced)
        self._load_tip()

    def tear_next_write(self, keep_ops: int) -> None:
        """Fault: the next batch applies only its first `keep_ops` ops, then SimulatedCrash."""
        if keep_ops < 0:
            raise ValueError("keep_ops must be >= 0")
        self._mem._tear_after = keep_ops

    def corrupt(self, key: bytes, value: bytes | None) -> None:
        """Fault: overwrite (or delete) one raw key behind the ledger's back."""
        self._mem.write([(key, value)], sync=True)

    def raw_items(self) -> list[tuple[bytes, bytes]]:
        """Every raw (key, value), for tests and debugging."""
        return list(self._mem.items(b"", None))

    @property
    def crashed(self) -> bool:
        return self._mem.crashed
