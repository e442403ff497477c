"""A client's executed request_seqs as one state-tree record (keys G): its highest executed seq
`top`, the dedup window, and which seqs of (top - window, top) did NOT execute.

With the state tree on, this record is what proves a tx's status by (client, seq): a seq
above `top` or marked missing has not executed; one at `top`, or in the window and not
marked, has; one at or below `top - window` cannot be told (the window moved past it). One
record per client and block replaces a tree leaf per tx (the client index, keys C, stays in
the ledger as the lookup of a seq's tx hash, outside the tree).

Value bytes: top u64 | window u32 | missing, where `missing` is a big-endian integer of
minimal length (empty: none missing) whose bit i (from the least significant) means seq
`top - 1 - i` did not execute, for i < window - 1; seqs below 1 never count as missing.
Pure (stdlib only): the ledger writes it, the client verifier reads it.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable

_HEAD = struct.Struct(">QI")
MAX_WINDOW = 1 << 20  # a verifier parses at most this many bits (128 KiB)


class Seqs:
    """One client's executed seqs in its window (see the module docstring)."""

    __slots__ = ("top", "window", "missing")

    def __init__(self, top: int, window: int, missing: int = 0) -> None:
        self.top = top
        self.window = window
        self.missing = missing

    @classmethod
    def first(cls, seq: int, window: int) -> Seqs:
        """A client's first executed seq: every seq below it (in the window) is missing."""
        return cls(seq, window, (1 << min(seq - 1, window - 1)) - 1)

    def add(self, seq: int) -> None:
        """Seq `seq` executed (callers never add one twice; one at or below top - window is
        outside the record and changes nothing)."""
        top = self.top
        if seq > top:
            d = seq - top
            # older seqs shift up by d; top .. seq - 1 exclusive of the old top are missing
            self.top = seq
            self.missing = ((self.missing << d) | ((1 << (d - 1)) - 1)) & self._mask()
        elif seq < top:
            i = top - 1 - seq
            if i < self.window - 1:
                self.missing &= ~(1 << i)

    def _mask(self) -> int:
        # bits for seqs top-1 .. max(1, top-window+1)
        return (1 << max(0, min(self.window - 1, self.top - 1))) - 1

    def executed(self, seq: int) -> bool | None:
        """True/False if seq executed; None if the record cannot tell (at or below the
        window's floor top - window, or not a valid seq)."""
        if seq < 1 or seq <= self.top - self.window:
            return None
        if seq > self.top:
            return False
        if seq == self.top:
            return True
        return not (self.missing >> (self.top - 1 - seq)) & 1

    def seqs(self) -> tuple[int, ...]:
        """The executed seqs in (top - window, top], ascending."""
        lo = max(1, self.top - self.window + 1)
        return tuple(s for s in range(lo, self.top + 1) if self.executed(s))

    def encode(self) -> bytes:
        m = self.missing
        return _HEAD.pack(self.top, self.window) + (
            m.to_bytes((m.bit_length() + 7) >> 3, "big") if m else b"")

    @classmethod
    def decode(cls, raw: bytes) -> Seqs:
        """ValueError on anything but the canonical encoding of a valid record."""
        if len(raw) < _HEAD.size:
            raise ValueError(f"client seqs record of {len(raw)} bytes")
        top, window = _HEAD.unpack_from(raw)
        tail = raw[_HEAD.size:]
        if not 1 <= window <= MAX_WINDOW or top < 1:
            raise ValueError(f"client seqs record: top {top}, window {window}")
        if len(tail) > (window + 7) >> 3 or (tail and tail[0] == 0):
            raise ValueError("client seqs record: malformed missing bits")
        s = cls(top, window, int.from_bytes(tail, "big"))
        if s.missing & ~s._mask():
            raise ValueError("client seqs record: missing bits outside the window")
        return s

    @classmethod
    def of(cls, seqs: Iterable[int], window: int) -> Seqs | None:
        """The record of a set of executed seqs (None if empty)."""
        out: Seqs | None = None
        for seq in sorted(seqs):
            if out is None:
                out = cls.first(seq, window)
            else:
                out.add(seq)
        return out
