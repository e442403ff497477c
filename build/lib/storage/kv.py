"""The tiny KV engine the ledger is written against, and the readers over it.

`KV` is what LevelDBStore (plyvel) and MemoryStore (a sorted dict) provide: atomic ordered
batches, range reads, snapshots. `KVStateReader` is the application's `StateReader` over the S
keyspace; `Pending` is one batch being built, with read-your-writes.
Imports: stdlib, storage.keys.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Protocol

from . import keys

if TYPE_CHECKING:
    from .interface import DepthLimit

Op = tuple[bytes, bytes | None]  # (key, value); None = delete


class KVReader(Protocol):
    def get(self, key: bytes) -> bytes | None: ...

    def items(
        self, start: bytes, stop: bytes | None, reverse: bool = False
    ) -> Iterator[tuple[bytes, bytes]]:
        """Pairs with start <= key < stop (stop None: unbounded), ascending or descending."""


class KV(KVReader, Protocol):
    def write(self, ops: Sequence[Op], sync: bool) -> None:
        """Apply all ops atomically (in order); durable before returning when sync."""

    def snapshot(self) -> AbstractContextManager[KVReader]: ...

    def close(self) -> None: ...


# ------------------------------------------------------------------ state readers


class KVStateReader:
    """StateReader over the S keyspace of a KV reader (live view or snapshot). `guards`:
    the ledger's depth bound per height (LedgerCore.depth_guard), for the readers blocks
    execute on."""

    def __init__(self, reader: KVReader, prefix: bytes = keys.STATE,
                 guards: Callable[[int], DepthLimit | None] | None = None) -> None:
        self._r = reader
        self._p = prefix
        self._guards = guards

    def depth_guard(self, height: int) -> DepthLimit | None:
        """The state tree's depth bound for executing block `height` (None: no tree)."""
        return None if self._guards is None else self._guards(height)

    def get(self, key: bytes) -> bytes | None:
        return self._r.get(self._p + key)

    def iterate(
        self, prefix: bytes, start: bytes | None = None, reverse: bool = False
    ) -> Iterator[tuple[bytes, bytes]]:
        """App keys starting with `prefix`; `start` is the first key yielded (inclusive) in the
        iteration direction."""
        lo = self._p + prefix
        hi = keys.prefix_end(lo)
        if start is not None:
            s = self._p + start
            if reverse:
                nxt = s + b"\x00"  # smallest key > s
                hi = nxt if hi is None or nxt < hi else hi
            elif s > lo:
                lo = s
        if hi is not None and lo >= hi:
            return
        n = len(self._p)
        for k, v in self._r.items(lo, hi, reverse):
            yield k[n:], v


class Pending:
    """Ops of one batch with read-your-writes, so records later in a batch see earlier ones."""

    def __init__(self, kv: KVReader) -> None:
        self.kv = kv
        self.ops: list[Op] = []
        self.overlay: dict[bytes, bytes | None] = {}

    def get(self, key: bytes) -> bytes | None:
        if key in self.overlay:
            return self.overlay[key]
        return self.kv.get(key)

    def put(self, key: bytes, value: bytes) -> None:
        self.ops.append((key, value))
        self.overlay[key] = value

    def delete(self, key: bytes) -> None:
        self.ops.append((key, None))
        self.overlay[key] = None

    def keys_with_prefix(self, prefix: bytes, on_disk: set[bytes] | None = None) -> list[bytes]:
        """Live keys under `prefix` after this batch; `on_disk` (the keys known to be stored
        under it) saves a LevelDB scan that would walk every tombstone of earlier deletes."""
        if on_disk is None:
            found = {k for k, _ in self.kv.items(prefix, keys.prefix_end(prefix))}
        else:
            found = {k for k in on_disk if k.startswith(prefix)}
        for k, v in self.overlay.items():
            if k.startswith(prefix):
                if v is None:
                    found.discard(k)
                else:
                    found.add(k)
        return sorted(found)
