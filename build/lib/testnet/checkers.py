"""Safety checkers shared by the simulator, crash tests and attack runner.

Pure functions over messages and executed logs; they report violations, never raise.
"""

from __future__ import annotations

from collections.abc import Iterable

from consensus import Checkpoint, Commit, NewView, Prepare, PrePrepare, ViewChange


def _vote_slot(msg) -> tuple | None:
    """The slot a signed vote occupies: two votes in one slot must agree."""
    if isinstance(msg, PrePrepare):
        return ("pre-prepare", msg.replica, msg.view, msg.seq)
    if isinstance(msg, Prepare):
        return ("prepare", msg.replica, msg.view, msg.seq)
    if isinstance(msg, Commit):
        return ("commit", msg.replica, msg.view, msg.seq)
    if isinstance(msg, Checkpoint):
        return ("checkpoint", msg.replica, msg.seq)
    if isinstance(msg, ViewChange):
        return ("view-change", msg.replica, msg.new_view)
    if isinstance(msg, NewView):
        return ("new-view", msg.replica, msg.view)
    return None


def _vote_value(msg) -> bytes:
    if isinstance(msg, Checkpoint):
        return msg.state_digest
    if isinstance(msg, PrePrepare | Prepare | Commit):
        return msg.digest
    # view-change / new-view: the whole content (a replica sends one per view)
    from consensus.codec import signing_bytes

    return signing_bytes(msg)


def find_equivocations(messages: Iterable) -> list[tuple]:
    """Pairs of messages by the same replica for the same slot with different content."""
    seen: dict[tuple, object] = {}
    found = []
    for msg in messages:
        slot = _vote_slot(msg)
        if slot is None:
            continue
        prev = seen.get(slot)
        if prev is None:
            seen[slot] = msg
        elif _vote_value(prev) != _vote_value(msg):
            found.append((prev, msg))
    return found


def find_divergence(logs: dict[int, dict[int, bytes]]) -> list[tuple[int, dict[int, bytes]]]:
    """Agreement: sequence numbers at which replicas executed different blocks.

    `logs` maps replica id -> {seq: block hash}. Returns [(seq, {replica: hash})].
    """
    by_seq: dict[int, dict[int, bytes]] = {}
    for rid, log in logs.items():
        for seq, h in log.items():
            by_seq.setdefault(seq, {})[rid] = h
    return sorted(
        (seq, hashes) for seq, hashes in by_seq.items() if len(set(hashes.values())) > 1
    )


# ---------------------------------------------------------------- incremental forms (simulator)


def vote_slot(msg) -> tuple | None:
    """Public form of the slot rule: (kind, replica, view/seq…) or None for non-votes."""
    return _vote_slot(msg)


def vote_value(msg) -> bytes:
    """What two votes in one slot must agree on."""
    return _vote_value(msg)


class EquivocationMonitor:
    """`find_equivocations` one message at a time (O(1) per vote), for checks after every step.

    `add(msg)` returns the earlier conflicting vote, or None."""

    def __init__(self) -> None:
        self._seen: dict[tuple, tuple[bytes, object]] = {}

    def add(self, msg) -> object | None:
        slot = _vote_slot(msg)
        if slot is None:
            return None
        value = _vote_value(msg)
        prev = self._seen.get(slot)
        if prev is None:
            self._seen[slot] = (value, msg)
            return None
        return prev[1] if prev[0] != value else None

    def __len__(self) -> int:
        return len(self._seen)


def find_checkpoint_divergence(
    stable: dict[int, dict[int, bytes]],
) -> list[tuple[int, dict[int, bytes]]]:
    """Checkpoint convergence: seqs at which replicas hold different stable digests.

    `stable` maps replica id -> {seq: stable checkpoint digest}."""
    return find_divergence(stable)


def find_duplicate_executions(executed: Iterable[tuple[bytes, int]]) -> list[tuple[bytes, int]]:
    """Exactly-once: (client_id, request_seq) pairs one replica executed more than once."""
    seen: set[tuple[bytes, int]] = set()
    dups = []
    for key in executed:
        if key in seen:
            dups.append(key)
        seen.add(key)
    return dups


def find_gaps(seqs: Iterable[int], start: int = 1) -> list[int]:
    """Total order: a replica executes seq start, start+1, … with no gap or repeat.

    Returns the first out-of-order seqs (empty when the sequence is gap-free)."""
    bad = []
    expect = start
    for s in seqs:
        if s != expect:
            bad.append(s)
        expect = s + 1
    return bad
