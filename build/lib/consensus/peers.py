"""What each peer may make this replica spend: fault budgets, cool-off and buffer shares.

Owns `PeerFaults` (invalid signed traffic per peer: a few evidence items per peer and kind per
status interval, the rest counted; past a budget the peer's messages are dropped unread for a
cool-off) and `held_bytes` (what a buffered message holds in memory, for byte shares). An honest
replica never sends invalid signed content, so these bounds only ever bite a faulty one.
Pure; imports stdlib and consensus only.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from .messages import BlockSync, Forward, NewView, PrePrepare, Request, ViewChange
from .types import request_size

FAULTS_PER_INTERVAL = 8  # invalid signed messages a peer may send per status interval...
COOL_OFF_INTERVALS = 8  # ...past that, its messages are dropped unread this long
REPORTS_PER_INTERVAL = 4  # evidence items surfaced per (peer, kind) per status interval
OBJECT_OVERHEAD = 256  # bytes a decoded message or request costs beyond its byte fields


def held_bytes(msg: Any) -> int:
    """Memory a decoded message holds (byte fields plus per-object overhead): the unit of the
    buffer's per-sender byte shares."""
    if isinstance(msg, Request):
        return request_size(len(msg.op)) + OBJECT_OVERHEAD
    if isinstance(msg, PrePrepare):
        return OBJECT_OVERHEAD + sum(
            request_size(len(r.op)) + OBJECT_OVERHEAD for r in msg.requests
        )
    return 2 * OBJECT_OVERHEAD


def _objects(msg: Any) -> int:
    """Decoded objects a message holds: requests and votes dominate (one level deep)."""
    if isinstance(msg, PrePrepare | Forward):
        return 1 + len(msg.requests)
    if isinstance(msg, BlockSync):
        return 1 + sum(2 + len(b.pre_prepare.requests) + len(b.commits) for b in msg.blocks)
    if isinstance(msg, ViewChange):
        return 1 + len(msg.checkpoint_proof) + sum(
            2 + len(p.pre_prepare.requests) + len(p.prepares) for p in msg.prepared)
    if isinstance(msg, NewView):
        return 1 + sum(_objects(vc) for vc in msg.view_changes) + sum(
            1 + len(pp.requests) for pp in msg.pre_prepares)
    return 1


def decoded_bytes(msg: Any, wire_len: int) -> int:
    """What a decoded message costs in memory, from its wire size: a list of tiny structs
    decodes to ~10x its bytes, so queues bounded in bytes count this, not the wire size."""
    return wire_len + OBJECT_OVERHEAD * _objects(msg)


class PeerFaults:
    """Per peer: faults this status interval, when its cool-off ends, totals; per (peer, kind):
    evidence items surfaced this interval. Bounded by n * kinds."""

    def __init__(self, interval_ms: int) -> None:
        self.interval_ms = interval_ms
        self.totals: Counter[int] = Counter()
        self.unreported: Counter[tuple[int, str]] = Counter()
        self.cool_offs: Counter[int] = Counter()
        self._window: dict[int, tuple[int, int]] = {}  # peer -> (interval start, faults)
        self._reports: dict[tuple[int, str], tuple[int, int]] = {}
        self._cool_until: dict[int, int] = {}

    def fault(self, peer: int, kind: str, now: int) -> bool:
        """Count one fault of `peer`; True if it should be surfaced as evidence."""
        self.totals[peer] += 1
        start, count = self._window.get(peer, (now, 0))
        if now - start >= self.interval_ms:
            start, count = now, 0
        count += 1
        self._window[peer] = (start, count)
        if count > FAULTS_PER_INTERVAL and not self.cooling_off(peer, now):
            self._cool_until[peer] = now + COOL_OFF_INTERVALS * self.interval_ms
            self.cool_offs[peer] += 1
        key = (peer, kind)
        rstart, reported = self._reports.get(key, (now, 0))
        if now - rstart >= self.interval_ms:
            rstart, reported = now, 0
        if reported >= REPORTS_PER_INTERVAL:
            self.unreported[key] += 1
            return False
        self._reports[key] = (rstart, reported + 1)
        return True

    def cooling_off(self, peer: int, now: int) -> bool:
        return now < self._cool_until.get(peer, -1)
