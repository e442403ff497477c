"""Buffered writes over a StateReader: later txs of a block see earlier txs' writes.

Owns `Overlay`, a StateReader that layers pending puts/deletes over a base reader, and can be
stacked (a tx overlay over the block overlay) and merged or dropped (atomic txs).
`iterate` semantics (shared with memory_state): keys with `prefix`, ascending; `start` keeps
keys >= start (or <= start when `reverse`). A tx's overlay carries a `Meter` (budgets.py)
charged for every entry it hands out. Imports: stdlib, storage.interface (types only),
bftnode.app.budgets (types only).
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator
from typing import TYPE_CHECKING

from storage.interface import StateReader

if TYPE_CHECKING:
    from .budgets import Meter


class Overlay:
    """A StateReader with pending writes; `writes()` lists them sorted by key."""

    def __init__(self, base: StateReader, meter: Meter | None = None) -> None:
        self._base = base
        self.meter = meter
        self._pending: dict[bytes, bytes | None] = {}
        self._heads: set[bytes] = set()  # first bytes of pending keys: skip scans cheaply

    def get(self, key: bytes) -> bytes | None:
        value = self._pending[key] if key in self._pending else self._base.get(key)
        if self.meter is not None:
            self.meter.charge(1, len(key) + (len(value) if value is not None else 0))
        return value

    def put(self, key: bytes, value: bytes) -> None:
        self._pending[key] = value
        self._heads.add(key[:1])

    def delete(self, key: bytes) -> None:
        self._pending[key] = None
        self._heads.add(key[:1])

    def merge_into(self, parent: Overlay) -> None:
        """Move this overlay's writes into `parent` (the tx committed)."""
        parent._pending.update(self._pending)
        parent._heads |= self._heads
        self._pending = {}
        self._heads = set()

    def writes(self) -> tuple[tuple[bytes, bytes | None], ...]:
        return tuple(sorted(self._pending.items()))

    def dirty(self) -> bool:
        return bool(self._pending)

    def iterate(
        self, prefix: bytes, start: bytes | None = None, reverse: bool = False
    ) -> Iterator[tuple[bytes, bytes]]:
        if prefix and prefix[:1] not in self._heads:
            pend = []  # e.g. the per-block lease-expiry scan while only KV keys are pending
        else:
            pend = sorted(k for k in self._pending if k.startswith(prefix))
        if start is not None:
            if reverse:
                pend = pend[: bisect.bisect_right(pend, start)]
            else:
                pend = pend[bisect.bisect_left(pend, start) :]
        if reverse:
            pend.reverse()
        # Snapshot pending values now, so callers may write while iterating.
        pitems = [(k, self._pending[k]) for k in pend]
        merged = _merge(self._base.iterate(prefix, start, reverse), pitems, reverse)
        if self.meter is None:
            yield from merged
            return
        charge = self.meter.charge
        for key, value in merged:
            charge(1, len(key) + len(value))
            yield key, value


def _merge(
    base: Iterator[tuple[bytes, bytes]],
    pending: list[tuple[bytes, bytes | None]],
    reverse: bool,
) -> Iterator[tuple[bytes, bytes]]:
    i = 0
    nxt = next(base, None)
    while nxt is not None or i < len(pending):
        if i < len(pending) and (
            nxt is None
            or (pending[i][0] >= nxt[0] if reverse else pending[i][0] <= nxt[0])
        ):
            key, value = pending[i]
            i += 1
            if nxt is not None and nxt[0] == key:
                nxt = next(base, None)  # shadowed by the pending write
            if value is not None:
                yield key, value
        else:
            assert nxt is not None
            yield nxt
            nxt = next(base, None)
