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
