"""View change: VIEW-CHANGE and NEW-VIEW handling.

`_start_view_change` moves to a new view (skipping convicted primaries) and sends our
VIEW-CHANGE; `on_view_change` applies the f+1 join rule and the 2f+1 quorum; the new primary
builds the NEW-VIEW (`_send_new_view`) and every replica checks it (`on_new_view`,
`_validate_new_view`) and enters the view (`_enter_new_view`). The pure rules (vote collection,
which batches a NEW-VIEW re-proposes, the timeout backoff) are `consensus.view_change`;
certificate checks are `consensus.certificates`. The timers that start a view change are in
`Replica` (`_on_request_timeout`, `_on_view_change_timeout`).
"""

from __future__ import annotations

from ..bodies import header
from ..certificates import verify_new_view, verify_view_change
from ..events import ViewState
from ..fair import FairQueue
from ..messages import NewView, PreparedProof, ViewChange
from ..view_change import backoff_ms, build_new_view, stable_of
from .state import ReplicaState, _key


class ViewChangeMixin(ReplicaState):
    """VIEW-CHANGE and NEW-VIEW handling."""

    def _persist_view(self) -> None:
        self._out.persist.append(ViewState(self._view, self._in_vc))

    def _start_view_change(self, new_view: int, reason: str) -> None:
        self.view_change_reasons[reason] += 1
        new_view = self._skip_convicted(new_view)
        assert new_view > self._view or (new_view == self._view and not self._in_vc)
        self._view, self._in_vc = new_view, True
        self._vc_resends = 0  # VIEW-CHANGEs carry whole pre-prepares: resend with backoff
        self._vc_next_resend_ms = self._now + self.config.status_interval_ms
        self._persist_view()
        self._rt.stop()
        self._vc_deadline = None
        self._new_view = None
        self._log.drop_views_below(new_view)
        self._proposed.clear()
        self._flight.clear()
        self._unproposed = FairQueue(self._fair_entry(k) for k in self._pending)
        # what we sent the old primary alone is relayed when due, whatever it did
        self._relay_seen_idx = self._relay_idx
        self._relay_progress_ms = -(1 << 62)
        signed = self._own_view_change()
        self._broadcast(signed)
        self._vcs.add(signed)
        self._vcs.forget_below(new_view)
        self._check_view_change_quorum()

    def _own_view_change(self) -> ViewChange:
        """Our VIEW-CHANGE for the current view: the one already signed (also before a
        restart), else a new one with our stable checkpoint and prepared proofs above it."""
        old = self._own.get(("view-change", self._view))
        if old is not None:
            return old
        prepared = tuple(  # headers: a VIEW-CHANGE's size does not grow with the batches
            PreparedProof(header(self._prepared[s].pre_prepare), self._prepared[s].prepares)
            for s in sorted(self._prepared) if s > self._stable_seq
        )
        vc = ViewChange(
            self._view, self._stable_seq, self._stable_digest, self._stable_proof, prepared,
            self.id,
        )
        signed = self._sign_vote(vc)
        assert signed is not None
        return signed

    def on_view_change(self, sender: int, vc: ViewChange) -> None:
        if vc.new_view < self._view or (vc.new_view == self._view and not self._in_vc):
            self._maybe_resend_new_view(sender)
            self._maybe_resend_view_change(sender, vc.new_view)
            return
        reason = verify_view_change(self.config, self.auth, vc)
        if reason:
            self._evidence("invalid-message", sender, f"view-change rejected: {reason}", vc)
            return
        if not self._vcs.add(vc):
            return
        target = self._vcs.join_target(self.config, self._view)
        if target is not None and target > self._view:
            self._start_view_change(target, "f+1-joined")  # the f+1 join rule
        else:
            self._check_view_change_quorum()

    def _check_view_change_quorum(self) -> None:
        if not self._in_vc:
            return
        votes = self._vcs.for_view(self._view)
        if len(votes) < self.config.quorum:
            return
        if self._vc_deadline is None:
            self._vc_deadline = self._now + backoff_ms(self.config, self._failed_vcs)
        if self.is_primary and self._new_view is None:
            self._send_new_view(votes)

    def _send_new_view(self, votes: list[ViewChange]) -> None:
        own = [v for v in votes if v.replica == self.id]
        if not own:
            return
        chosen = tuple(own + [v for v in votes if v.replica != self.id][: self.config.quorum - 1])
        pps = []
        for pp in build_new_view(self.config, self._view, chosen):
            signed = self._sign_vote(pp)
            if signed is None:
                return  # cannot re-sign a slot we signed differently; the timer moves on
            pps.append(signed)
        nv = self._sign_vote(NewView(self._view, chosen, tuple(pps), self.id))
        if nv is None:
            return
        self._broadcast(nv)
        self._enter_new_view(nv)

    def on_new_view(self, sender: int, nv: NewView) -> None:
        if nv.view < self._view or (nv.view == self._view and not self._in_vc):
            return
        if self._primary_skipped(nv.view):
            self.dropped["new-view-from-convicted-primary"] += 1
            return
        reason = self._validate_new_view(sender, nv)
        if reason:
            self._evidence("bad-new-view", sender, reason, nv)
            return
        self._enter_new_view(nv)

    def _validate_new_view(self, sender: int, nv: NewView) -> str | None:
        cfg = self.config
        if sender != cfg.primary(nv.view):
            return "new-view not from the primary of its view"
        if len(nv.view_changes) < cfg.quorum:
            return f"new-view has {len(nv.view_changes)} view-changes, needs {cfg.quorum}"
        seen: set[int] = set()
        for vc in nv.view_changes:
            if vc.new_view != nv.view:
                return f"view-change for view {vc.new_view} in new-view {nv.view}"
            if vc.replica in seen:
                return f"two view-changes from replica {vc.replica}"
            seen.add(vc.replica)
            if not self.auth.verify(vc):
                return f"bad view-change signature from replica {vc.replica}"
            reason = verify_view_change(cfg, self.auth, vc)
            if reason:
                return f"view-change of replica {vc.replica}: {reason}"
        expected = build_new_view(cfg, nv.view, nv.view_changes)
        return verify_new_view(cfg, self.auth, nv, expected)

    def _enter_new_view(self, nv: NewView) -> None:
        self._view, self._in_vc = nv.view, False
        self._persist_view()
        self._vc_deadline = None
        self._idle_since_ms = self._now  # the idle watchdog starts afresh (phases/liveness.py)
        self._new_view = nv
        self._log.drop_views_below(nv.view)
        self._vcs.forget_below(nv.view + 1)
        for k in [k for k in self._own if len(k) == 2 and k[1] < nv.view - 4]:
            del self._own[k]
        self._revealed = {k for k in self._revealed if k[0] >= nv.view}
        min_s, digest, proof = stable_of(nv.view_changes)
        if min_s > self._stable_seq:
            self._advance_stable(min_s, digest, proof)  # proof verified with the new-view
        self._proposed.clear()
        self._flight.clear()
        max_s = min_s
        for pp in nv.pre_prepares:
            max_s = max(max_s, pp.seq)
            if not self._log.in_window(pp.seq):
                continue
            pp = self._bodies.full(pp) or pp  # the body, if we accepted the batch before
            if pp.seq > self._last_executed:
                self._proposed.update(_key(r) for r in pp.requests)
            self._accept_pre_prepare(self._log.slot(pp.view, pp.seq), pp)
        self._unproposed = FairQueue(
            self._fair_entry(k) for k in self._pending if k not in self._proposed)
        if self.is_primary:
            self._next_seq = max(max_s, self._last_executed, self._stable_seq) + 1
            self._last_proposal_ms = self._now
            times = [pp.time_ms for pp in nv.pre_prepares]
            self._last_proposal_time = max([self._last_proposal_time, *times])
        self._rt.stop()
        self._arm_request_timer()
        self._replay_buffer()

    def _maybe_resend_view_change(self, to: int, view: int) -> None:
        """A replica still collecting VIEW-CHANGEs for a view we asked for and left: give it
        ours, so its quorum for that view can form (lossy networks)."""
        own = self._own.get(("view-change", view))
        theirs = self._vcs.latest(to)
        if own is None or view < self._view - 4 or (theirs and theirs.new_view > view):
            return  # nothing to give, too old, or they moved on already
        last = self._vc_resent.get((to, view))
        if last is not None and self._now - last < self.config.status_interval_ms:
            return
        if len(self._vc_resent) > 8 * self.config.n:
            self._vc_resent = {k: t for k, t in self._vc_resent.items() if k[1] >= view}
        self._vc_resent[(to, view)] = self._now
        self._send(to, own)

    def _maybe_resend_new_view(self, to: int) -> None:
        """A replica still asking for (or behind) our view: give it our NEW-VIEW again."""
        nv = self._new_view
        if nv is None or not self.is_primary or self._in_vc:
            return
        if self._once_per_status_interval(self._nv_resent, to):
            self._send(to, nv)
