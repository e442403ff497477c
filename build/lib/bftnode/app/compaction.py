"""History compaction in bounded steps: the `compact` op moves the compact revision at once;
the history below it is dropped a bounded number of entries per block.

State (layout.py): `m/compact` is the compact revision (reads below it fail COMPACTED from the
compact op on). While a pass runs, `m/compact_pass` holds [target, resume, pending, again]:
per key, history older than the newest entry <= `target` is dropped, and that entry too if it
is a tombstone; `resume` is the next history key to examine; `pending` the newest entry <=
target seen so far of the key being walked (nil if none); `again` says a later compact arrived
mid-pass, so one more pass from the start follows (keys already walked keep entries between
the two targets until then). Leftover entries below the compact revision never change a read
at or above it, so a half-done pass is invisible to clients.
Pure. Imports: stdlib, bftnode.app.{layout,errors,events,kv,overlay}.
"""

from __future__ import annotations

from . import kv
from . import layout as L
from .errors import COMPACTED, FUTURE_REVISION, AppError
from .events import TxContext
from .overlay import Overlay


def compact(ctx: TxContext, revision: int) -> dict:
    """The compact op: a constant amount of work. Does not advance the revision."""
    cur = ctx.revision - 1
    old = kv.compact_revision(ctx.state)
    if revision > cur:
        raise AppError(FUTURE_REVISION, f"cannot compact to {revision}: current is {cur}")
    if revision <= old:
        raise AppError(COMPACTED, f"already compacted to {old}")
    ctx.state.put(L.COMPACT, L.u64(revision))
    raw = ctx.state.get(L.COMPACT_PASS)
    if raw is None:
        run = [revision, L.HIST, None, False]
    else:
        run = L.unpack(raw)
        run[0], run[3] = revision, True
    ctx.state.put(L.COMPACT_PASS, L.pack(run))
    return {"compact_revision": revision}


def step(state: Overlay, budget: int) -> int:
    """Examine at most `budget` history entries of the running pass (if any) and drop what it
    may; returns the number of entries dropped. The same state gives the same writes."""
    assert budget > 0, budget
    raw = state.get(L.COMPACT_PASS)
    if raw is None:
        return 0
    target, resume, pending, again = L.unpack(raw)
    pending_key = L.parse_hist_key(pending)[0] if pending is not None else None
    examined = dropped = 0
    for hk, _ in state.iterate(L.HIST, start=resume):
        if examined == budget:
            state.put(L.COMPACT_PASS, L.pack([target, hk, pending, again]))
            return dropped
        examined += 1
        key, rev = L.parse_hist_key(hk)
        if pending is not None and key != pending_key:
            dropped += _drop_if_tombstone(state, pending)
            pending = None
        if rev <= target:
            if pending is not None:
                state.delete(pending)  # an older entry of the same key, both <= target
                dropped += 1
            pending, pending_key = hk, key
    if pending is not None:
        dropped += _drop_if_tombstone(state, pending)
    if again:
        state.put(L.COMPACT_PASS, L.pack([kv.compact_revision(state), L.HIST, None, False]))
    else:
        state.delete(L.COMPACT_PASS)
    return dropped


def running(state) -> bool:
    """Whether a compaction pass still has history to walk."""
    return state.get(L.COMPACT_PASS) is not None


def _drop_if_tombstone(state: Overlay, hk: bytes) -> int:
    """The newest entry <= target of a key stays readable, unless it says the key was deleted."""
    data = state.get(hk)
    assert data is not None, hk
    if L.unpack(data)[0] is None:
        state.delete(hk)
        return 1
    return 0
