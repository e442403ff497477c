"""State readers for proven application reads: the node's `RecordingReader` (serves a query
from the authenticated state tree at one version and records a range proof for every key range
the query reads) and the client's `ProvenReader` (serves the same query ONLY from ranges whose
proofs verified; a read outside them is an incomplete answer).

Both speak the app's `StateReader` (get, forward iterate) in app keys; the tree's keys are the
ledger keys, `S` + app key (storage.keys.STATE). A range is (lo, hi, limit) in tree keys: its
proof (storage.merkle_proof.verify_range) shows the entries are ALL the keys of [lo, hi), or,
when `limit` entries came back, all of [lo, last + 0x00). Iterations are proven in pages that
grow (PAGE_FIRST, then x4 up to PAGE_MAX entries), so a query that stops early after a few keys
proves few more. Imports: stdlib, storage (keys, merkle_proof), bftnode.app.layout.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from storage import keys
from storage.merkle_proof import ProofError, successor, verify_range

from . import layout as L

PAGE_FIRST = 8
PAGE_MAX = 1024
MAX_RANGES = 4096  # ranges one answer may prove (a query reads within the tx budget anyway)

# prove(lo, hi, limit) -> (root, entries, proof), tree keys
Prover = Callable[[bytes, bytes | None, int | None], tuple[bytes, list[tuple[bytes, bytes]], bytes]]


class IncompleteRead(Exception):
    """The query read a key outside every proven range (the answer's proof is incomplete)."""


@dataclass(frozen=True)
class ProvenRange:
    lo: bytes  # tree keys
    hi: bytes | None
    limit: int | None
    entries: tuple[tuple[bytes, bytes], ...]
    proof: bytes

    @property
    def end(self) -> bytes | None:
        """Up to where the range is proven complete (exclusive; None: unbounded)."""
        if self.limit is not None and len(self.entries) >= self.limit and self.entries:
            return successor(self.entries[-1][0])
        return self.hi


def tree_span(prefix: bytes, start: bytes | None) -> tuple[bytes, bytes | None]:
    """[lo, hi) in tree keys of a forward `iterate(prefix, start)` (as storage.kv does)."""
    lo = keys.STATE + prefix
    hi = keys.prefix_end(lo)
    if start is not None and keys.STATE + start > lo:
        lo = keys.STATE + start
    return lo, hi


class RecordingReader:
    """A StateReader over the tree at one version (through `prove`) that records a proven
    range for every read."""

    def __init__(self, prove: Prover) -> None:
        self._prove = prove
        self.ranges: list[ProvenRange] = []
        self.root: bytes | None = None

    def _read(self, lo: bytes, hi: bytes | None, limit: int | None) -> list[tuple[bytes, bytes]]:
        if len(self.ranges) >= MAX_RANGES:
            raise IncompleteRead(f"query reads more than {MAX_RANGES} ranges")
        root, entries, proof = self._prove(lo, hi, limit)
        if self.root is None:
            self.root = root
        elif root != self.root:
            raise AssertionError("ranges of one query proven against different roots")
        self.ranges.append(ProvenRange(lo, hi, limit, tuple(entries), proof))
        return entries

    def get(self, key: bytes) -> bytes | None:
        tk = keys.STATE + key
        for r in self.ranges:  # a key read again, or inside a range already proven
            end = r.end
            if r.lo <= tk and (end is None or tk < end):
                return dict(r.entries).get(tk)
        got = self._read(tk, successor(tk), None)
        return got[0][1] if got else None

    def iterate(self, prefix: bytes, start: bytes | None = None, reverse: bool = False
                ) -> Iterator[tuple[bytes, bytes]]:
        lo, hi = tree_span(prefix, start)
        if reverse:  # no app query iterates backwards: prove the whole span, then walk it
            got = [] if hi is not None and lo >= hi else self._read(lo, hi, None)
            for k, v in reversed(got):
                yield k[1:], v
            return
        page = PAGE_FIRST
        while hi is None or lo < hi:
            got = self._read(lo, hi, page)
            for k, v in got:
                yield k[1:], v
            if len(got) < page:
                return
            lo = successor(got[-1][0])
            page = min(page * 4, PAGE_MAX)


def check_ranges(root: bytes, ranges: Sequence[ProvenRange]) -> None:
    """Verify every range's proof against `root`; raises ProofError."""
    if len(ranges) > MAX_RANGES:
        raise ProofError(f"more than {MAX_RANGES} ranges")
    for r in ranges:
        verify_range(root, r.lo, r.hi, r.entries, r.proof, r.limit)


class ProvenReader:
    """A StateReader serving only verified ranges (check_ranges first)."""

    def __init__(self, ranges: Sequence[ProvenRange]) -> None:
        self._ranges = sorted(ranges, key=lambda r: r.lo)

    def _covering(self, tk: bytes) -> ProvenRange | None:
        for r in self._ranges:
            end = r.end
            if r.lo <= tk and (end is None or tk < end):
                return r
        return None

    def get(self, key: bytes) -> bytes | None:
        return self.tree_get(keys.STATE + key)

    def tree_get(self, tk: bytes) -> bytes | None:
        """The value of a tree key (None: proven absent); IncompleteRead if not covered."""
        r = self._covering(tk)
        if r is None:
            raise IncompleteRead(f"the proof does not cover key {tk[1:]!r}")
        return dict(r.entries).get(tk)

    def iterate(self, prefix: bytes, start: bytes | None = None, reverse: bool = False
                ) -> Iterator[tuple[bytes, bytes]]:
        lo, hi = tree_span(prefix, start)
        out: list[tuple[bytes, bytes]] = []
        pos = lo
        while hi is None or pos < hi:
            r = self._covering(pos)
            if r is None:
                raise IncompleteRead(f"the proof does not cover the keys from {pos[1:]!r}")
            end = r.end
            part = [(k[1:], v) for k, v in r.entries
                    if k >= pos and (end is None or k < end) and (hi is None or k < hi)]
            if reverse:
                out += part
            else:
                yield from part
            if end is None:
                break
            pos = end
        if reverse:
            yield from reversed(out)


def block_time(reader: object) -> int:
    """The agreed time of the state's last block (stored by the app: layout.TIME); read
    through `reader`, so a proven query proves its own time."""
    return L.from_u64(reader.get(L.TIME))  # type: ignore[attr-defined]
