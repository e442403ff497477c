"""View-change rules: the pure NEW-VIEW construction, bounded backoff, and VIEW-CHANGE
bookkeeping (latest valid VIEW-CHANGE per replica, the f+1 join rule, the 2f+1 quorum).

`build_new_view` is used by the new primary to build NEW-VIEW and by every backup to check it,
so both compute exactly the same pre-prepares. Pure; imports stdlib and consensus only.
"""

from __future__ import annotations

from collections.abc import Iterable

from .codec import GENESIS_CHAIN_DIGEST, batch_digest
from .messages import Checkpoint, PreparedProof, PrePrepare, ViewChange
from .types import Config

NULL_BATCH_TIME_MS = 0  # a null batch's proposed time; block time becomes prev + 1


def stable_of(
    view_changes: Iterable[ViewChange],
) -> tuple[int, bytes, tuple[Checkpoint, ...]]:
    """min-s of the paper: the highest stable checkpoint among the view-changes, with proof."""
    best: tuple[int, bytes, tuple[Checkpoint, ...]] = (0, GENESIS_CHAIN_DIGEST, ())
    for vc in view_changes:
        if vc.stable_seq > best[0]:
            best = (vc.stable_seq, vc.stable_digest, vc.checkpoint_proof)
    return best


def build_new_view(
    config: Config, view: int, view_changes: tuple[ViewChange, ...]
) -> tuple[PrePrepare, ...]:
    """The pre-prepares (unsigned, sig=b"", headers only) the primary of `view` must send in
    NEW-VIEW.

    min-s = highest stable seq in the view-changes; max-s = highest prepared seq. Every seq in
    (min-s, max-s] gets the batch prepared in the highest view (ties: smallest digest, which
    cannot happen with valid proofs), or a null batch when no view-change has it prepared.
    """
    min_s = stable_of(view_changes)[0]
    best: dict[int, PreparedProof] = {}
    for vc in view_changes:
        for proof in vc.prepared:
            pp = proof.pre_prepare
            if pp.seq <= min_s:
                continue
            cur = best.get(pp.seq)
            if cur is None or (pp.view, _neg(pp.digest)) > (
                cur.pre_prepare.view,
                _neg(cur.pre_prepare.digest),
            ):
                best[pp.seq] = proof
    max_s = max(best, default=min_s)
    primary = config.primary(view)
    null_digest = batch_digest(NULL_BATCH_TIME_MS, ())
    out: list[PrePrepare] = []
    for seq in range(min_s + 1, max_s + 1):
        proof = best.get(seq)
        if proof is None:
            out.append(PrePrepare(view, seq, NULL_BATCH_TIME_MS, (), null_digest, primary))
        else:
            pp = proof.pre_prepare  # re-proposed as a header: bodies travel apart
            out.append(PrePrepare(view, seq, pp.time_ms, (), pp.digest, primary))
    return tuple(out)


def _neg(digest: bytes) -> bytes:
    # larger tuple wins above; invert the digest so the smallest digest wins a tie
    return bytes(255 - b for b in digest)


def backoff_ms(config: Config, failed_view_changes: int) -> int:
    """View-change timeout: doubles per consecutive failed view change, capped."""
    base = config.timeout_view_change_ms
    return min(config.timeout_max_ms, base << min(failed_view_changes, 32))


class ViewChangeVotes:
    """Valid VIEW-CHANGEs by replica and view, the last `per_replica` views of each replica
    (bounded by n * per_replica). A replica that moved on still counts for the views it asked
    for before, so a quorum for a lower view can still form when its messages arrive late."""

    def __init__(self, per_replica: int = 4) -> None:
        self._by_replica: dict[int, dict[int, ViewChange]] = {}
        self.per_replica = per_replica

    def add(self, vc: ViewChange) -> bool:
        """Keep `vc` unless this replica's VIEW-CHANGE for that view is already known."""
        views = self._by_replica.setdefault(vc.replica, {})
        if vc.new_view in views:
            return False
        views[vc.new_view] = vc
        if len(views) > self.per_replica:
            del views[min(views)]
        return True

    def for_view(self, view: int) -> list[ViewChange]:
        return [
            self._by_replica[r][view]
            for r in sorted(self._by_replica)
            if view in self._by_replica[r]
        ]

    def join_target(self, config: Config, own_view: int) -> int | None:
        """f+1 replicas asked for views above ours: at least one honest did, so move to the
        smallest view that f+1 of them vouch for (this makes a view-change storm converge)."""
        higher = sorted(
            max(views) for views in self._by_replica.values() if views and max(views) > own_view
        )
        if len(higher) < config.weak_quorum:
            return None
        # the highest v such that f+1 replicas asked for a view >= v (f of them may lie high)
        return higher[len(higher) - config.weak_quorum]

    def latest(self, replica: int) -> ViewChange | None:
        views = self._by_replica.get(replica)
        return views[max(views)] if views else None

    def forget_below(self, view: int) -> None:
        for views in self._by_replica.values():
            for v in [v for v in views if v < view]:
                del views[v]
