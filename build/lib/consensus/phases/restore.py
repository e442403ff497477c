"""Restore after a restart: the persisted own votes and prepared certificates (`RecoveredState`)
re-enter the replica's log, so it never signs a conflicting vote and its next VIEW-CHANGE
carries what it prepared.
"""

from __future__ import annotations

from ..events import RecoveredState
from ..messages import Commit, NewView, Prepare, PrePrepare, ViewChange
from .state import ReplicaState, _vote_key


class RestoreMixin(ReplicaState):
    """Re-entering persisted votes and prepared certificates."""

    def _restore_prepared(self, r: RecoveredState) -> None:
        """Re-enter persisted prepared certificates (highest view per seq) so our next
        VIEW-CHANGE carries them; those of the current view also refill their log slot."""
        for proof in sorted(r.prepared, key=lambda p: (p.pre_prepare.seq, p.pre_prepare.view)):
            pp = proof.pre_prepare
            if pp.seq <= self._stable_seq:
                continue
            self._prepared[pp.seq] = proof  # sorted: a higher view overwrites a lower one
            self._bodies.add(pp)
            if pp.view != self._view or self._in_vc or not self._log.in_window(pp.seq):
                continue
            slot = self._log.slot(pp.view, pp.seq)
            if slot.pre_prepare is None:
                slot.pre_prepare = pp
            if slot.pre_prepare.digest == pp.digest:
                for p in proof.prepares:
                    slot.prepares.add(p.replica, p.digest, p)

    def _restore_votes(self, r: RecoveredState) -> None:
        self._restore_prepared(r)
        for m in r.own_votes:
            self._own[_vote_key(m)] = m
        for m in r.own_votes:
            if isinstance(m, PrePrepare | Prepare | Commit):
                if m.view != self._view or not self._log.in_window(m.seq) or self._in_vc:
                    continue
                slot = self._log.slot(m.view, m.seq)
                if isinstance(m, PrePrepare):
                    slot.pre_prepare = m
                    if m.replica == self.id:
                        self._next_seq = max(self._next_seq, m.seq + 1)
                        self._last_proposal_time = max(self._last_proposal_time, m.time_ms)
                elif isinstance(m, Prepare):
                    slot.prepares.add(self.id, m.digest, m)
                else:
                    slot.commits.add(self.id, m.digest, m)
            elif isinstance(m, ViewChange) and m.new_view == self._view:
                self._vcs.add(m)
            elif isinstance(m, NewView) and m.view == self._view and not self._in_vc:
                self._new_view = m
