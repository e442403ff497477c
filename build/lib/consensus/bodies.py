"""Batch bodies apart from their headers: what lets view changes stay small.

A PRE-PREPARE is signed over its header (view, seq, time, digest; `codec.signing_bytes` leaves
the requests out), and the digest commits to the batch, so a header proves what was proposed.
VIEW-CHANGE and NEW-VIEW carry headers only; a replica re-accepting a slot in a new view takes
the body from `BatchBodies` (every batch it accepted in the window) or, lacking it, catches the
block up from peers by block sync once they execute it (checked against the digest there).
Owns `BatchBodies`, `header` and `lacks_body`. Pure; imports stdlib and consensus only.
"""

from __future__ import annotations

import msgspec

from .codec import batch_digest
from .messages import PrePrepare, Request

BODIES_PER_SEQ = 2  # bodies kept per seq (the batches of the latest views that proposed one)


def header(pp: PrePrepare) -> PrePrepare:
    """The pre-prepare without its requests (same signature: it covers the header)."""
    return msgspec.structs.replace(pp, requests=()) if pp.requests else pp


def lacks_body(pp: PrePrepare) -> bool:
    """A header whose batch is not empty: its requests must come from elsewhere."""
    return not pp.requests and pp.digest != batch_digest(pp.time_ms, ())


class BatchBodies:
    """Requests of accepted batches by (seq, digest), for seqs above the stable checkpoint;
    at most BODIES_PER_SEQ per seq (the oldest added goes first)."""

    def __init__(self) -> None:
        self._by_seq: dict[int, dict[bytes, tuple[Request, ...]]] = {}

    def add(self, pp: PrePrepare) -> None:
        if not pp.requests:
            return
        bodies = self._by_seq.setdefault(pp.seq, {})
        if pp.digest in bodies:
            return
        bodies[pp.digest] = pp.requests
        while len(bodies) > BODIES_PER_SEQ:
            del bodies[next(iter(bodies))]

    def full(self, pp: PrePrepare) -> PrePrepare | None:
        """`pp` with its body: itself if it has one, else from the kept bodies, else None."""
        if not lacks_body(pp):
            return pp
        body = self._by_seq.get(pp.seq, {}).get(pp.digest)
        return None if body is None else msgspec.structs.replace(pp, requests=body)

    def gc(self, stable: int) -> None:
        for s in [s for s in self._by_seq if s <= stable]:
            del self._by_seq[s]

    def __len__(self) -> int:
        return sum(len(b) for b in self._by_seq.values())
