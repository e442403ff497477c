"""Buffered writes over a StateReader: later txs of a block see earlier txs' writes.

Owns `Overlay`, a StateReader that layers pending puts/deletes over a base reader, and can be
stacked (a tx overlay over the block overlay) and merged or dropped (atomic txs).
`iterate` semantics (shared with memory_state): keys with `prefix`, ascending; `start` keeps
keys >= start (or <= start when `reverse`); a pending value is read when the iteration reaches
its key, so a caller may write keys it has passed, never keys ahead. Pending keys are kept
sorted (new ones merged in when an iteration needs them), so one `iterate` costs O(log n) plus
the entries it hands out, however many writes a block holds. A tx's overlay carries a `Meter`
(budgets.py) charged for every entry it hands out. Imports: stdlib, storage.interface (types only),
bftnode.app.budgets (types only).
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator
from typing import TYPE_CHECKING

from storage.interface import DepthGuarded, DepthLimit, StateReader

if TYPE_CHECKING:
    from .budgets import Meter


class Overlay:
    """A StateReader with pending writes; `writes()` lists them sorted by key."""

    def __init__(self, base: StateReader, meter: Meter | None = None) -> None:
        self._base = base
        self.meter = meter
        self._pending: dict[bytes, bytes | None] = {}
        self._sorted: list[bytes] = []  # pending keys in order, except those in _unsorted
        self._unsorted: list[bytes] = []  # pending keys added since _sorted was last updated

    def get(self, key: bytes) -> bytes | None:
        value = self._pending[key] if key in self._pending else self._base.get(key)
        if self.meter is not None:
            self.meter.charge(1, len(key) + (len(value) if value is not None else 0))
        return value

    def put(self, key: bytes, value: bytes) -> None:
        if key not in self._pending:
            self._unsorted.append(key)
        self._pending[key] = value

    def delete(self, key: bytes) -> None:
        if key not in self._pending:
            self._unsorted.append(key)
        self._pending[key] = None

    def merge_into(self, parent: Overlay) -> None:
        """Move this overlay's writes into `parent` (the tx committed)."""
        theirs = parent._pending
        parent._unsorted.extend(k for k in self._pending if k not in theirs)
        theirs.update(self._pending)
        self._pending = {}
        self._sorted = []
        self._unsorted = []

    def writes(self) -> tuple[tuple[bytes, bytes | None], ...]:
        return tuple(sorted(self._pending.items()))

    def puts(self) -> list[bytes]:
        """The keys this overlay puts (not those it deletes), in the order first written."""
        return [k for k, v in self._pending.items() if v is not None]

    def depth_guard(self, height: int) -> DepthLimit | None:
        """The base reader's depth bound (storage.interface.DepthGuarded), if it has one."""
        base = self._base
        return base.depth_guard(height) if isinstance(base, DepthGuarded) else None

    def dirty(self) -> bool:
        return bool(self._pending)

    def iterate(
        self, prefix: bytes, start: bytes | None = None, reverse: bool = False
    ) -> Iterator[tuple[bytes, bytes]]:
        keys = self._keys()
        lo = bisect.bisect_left(keys, prefix)
        after = _after_prefix(prefix)
        hi = len(keys) if after is None else bisect.bisect_left(keys, after, lo)
        if start is not None:
            if reverse:
                hi = max(lo, min(hi, bisect.bisect_right(keys, start, lo, hi)))
            else:
                lo = min(hi, max(lo, bisect.bisect_left(keys, start, lo, hi)))
        pend = keys[lo:hi]  # a copy: later writes may reorder `keys` in place
        if reverse:
            pend.reverse()
        merged = _merge(self._base.iterate(prefix, start, reverse), pend, self._pending, reverse)
        if self.meter is None:
            yield from merged
            return
        charge = self.meter.charge
        for key, value in merged:
            charge(1, len(key) + len(value))
            yield key, value

    def _keys(self) -> list[bytes]:
        """The pending keys in order (a few new ones are inserted, many are sorted in)."""
        new = self._unsorted
        if new:
            self._unsorted = []
            if len(new) <= 16:
                for key in new:
                    bisect.insort(self._sorted, key)
            else:
                self._sorted += new
                self._sorted.sort()  # two sorted runs: a linear merge
        return self._sorted


def _after_prefix(prefix: bytes) -> bytes | None:
    """The least key greater than every key starting with `prefix`; None when every key
    >= prefix starts with it (prefix empty or all 0xff)."""
    stripped = prefix.rstrip(b"\xff")
    if not stripped:
        return None
    return stripped[:-1] + bytes([stripped[-1] + 1])


def _merge(
    base: Iterator[tuple[bytes, bytes]],
    keys: list[bytes],
    pending: dict[bytes, bytes | None],
    reverse: bool,
) -> Iterator[tuple[bytes, bytes]]:
    i = 0
    nxt = next(base, None)
    while nxt is not None or i < len(keys):
        if i < len(keys) and (
            nxt is None
            or (keys[i] >= nxt[0] if reverse else keys[i] <= nxt[0])
        ):
            key = keys[i]
            i += 1
            if nxt is not None and nxt[0] == key:
                nxt = next(base, None)  # shadowed by the pending write
            value = pending.get(key)
            if value is not None:
                yield key, value
        else:
            assert nxt is not None
            yield nxt
            nxt = next(base, None)
