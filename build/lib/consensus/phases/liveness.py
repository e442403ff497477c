"""Liveness without client traffic: what keeps heartbeat blocks (and so agreed time) flowing
after a fault heals when no request timer runs (docs/protocol.md, "Liveness rules").

Three rules, each closing one way an idle cluster used to stall for good:

- **Stale but vouched pre-prepares** (`_stale_vouched`, `_hold_stale`, `_retry_held_stale`).
  A backup drops a PRE-PREPARE whose time is older than skew + one request timeout
  (`normal.is_stale`), trusting request timers to replace a lagging primary. With no
  pending request no timer runs, so a heartbeat that went stale in flight (its replica was
  down or cut off) could never be voted by the replica that came back, and the others
  could never reach a quorum without it. We accept it anyway once f backups other than us
  have PREPAREd or COMMITted that very batch: with the primary that is f+1 replicas, at
  least one honest, and that one judged the time fresh. A stale PRE-PREPARE without such
  votes yet is held (a few, current view) and taken as soon as the votes arrive.
- **Stable checkpoints reach a peer that missed them** (`_resend_stable_checkpoint`). A
  replica that was cut off while the others' CHECKPOINTs flew catches up by block sync but
  has only its own vote for those checkpoints, so its low watermark stays behind and it
  buffers every new PRE-PREPARE above its high watermark. When a peer's STATUS shows a
  stable checkpoint below ours, we send it our own CHECKPOINT for ours (once per status
  interval): 2f+1 of them make it stable there and its window moves.
- **Idle primary watchdog** (`_idle_deadline`, `_on_idle_timeout`). A replica in normal
  mode with heartbeats on expects a block at least every heartbeat + request timeout. If
  none executes (and no request timer is in charge, and we are not merely behind the
  others), it starts a view change ("idle-timeout") - but only while it hears STATUS from
  2f peers: a replica cut off from a quorum blames its own links, not the primary, and its
  watch starts afresh (else it would sit alone in a view change once the links heal). This is PBFT's request timer applied
  to the heartbeat the primary owes: without it, a heartbeat no one else holds, stuck in
  flight, stalls an idle cluster forever. A replica alone in a view change (its VIEW-CHANGE
  below the f+1 join threshold) is not brought back into the lower view - it signed that
  it will not vote there - but keeps executing by block sync; the others join it as soon
  as they need a view change themselves (this watchdog included).

Pure and deterministic like the rest of the replica.
"""

from __future__ import annotations

from ..messages import Checkpoint, PrePrepare, Status
from .state import ReplicaState

MAX_HELD_STALE = 4  # stale pre-prepares held (current view) until peers' votes vouch for them


class LivenessMixin(ReplicaState):
    """The liveness rules that do not depend on client traffic."""

    _held_stale: dict[tuple[int, int], PrePrepare]  # (view, seq) -> a stale pre-prepare
    _cp_resent: dict[int, int]  # peer -> when we last sent it our stable checkpoint
    _idle_since_ms: int  # start of the idle watch (first tick, new view); -1 before a tick
    _heard_ms: dict[int, int]  # peer -> when its last STATUS arrived

    # ------------------------------------------------------------ stale but vouched

    def _stale_vouched(self, pp: PrePrepare) -> bool:
        """f backups other than us PREPAREd or COMMITted exactly this batch."""
        slot = self._log.get(pp.view, pp.seq)
        if slot is None:
            return False
        primary = self.config.primary(pp.view)
        voters = {m.replica for votes in (slot.prepares, slot.commits)
                  for m in votes.matching(pp.digest)}
        voters -= {primary, self.id}
        return len(voters) >= self.config.f

    def _hold_stale(self, pp: PrePrepare) -> None:
        held = self._held_stale
        for k in [k for k in held if k[0] != self._view or k[1] <= self._last_executed]:
            del held[k]
        held[(pp.view, pp.seq)] = pp
        while len(held) > MAX_HELD_STALE:
            del held[max(held, key=lambda k: k[1])]

    def _retry_held_stale(self, view: int, seq: int) -> None:
        """A vote for (view, seq) arrived: a held stale pre-prepare there may now be vouched."""
        pp = self._held_stale.get((view, seq))
        if pp is None:
            return
        slot = self._log.get(view, seq)
        if (view != self._view or self._in_vc or slot is None or slot.pre_prepare is not None
                or not self._stale_vouched(pp)):
            return
        del self._held_stale[(view, seq)]
        self.on_pre_prepare(pp.replica, pp)

    def _note_heard(self, peer: int) -> None:
        """A STATUS from `peer`: note it; after a silence, stuck slots are resent at once."""
        last = self._heard_ms.get(peer)
        if last is not None and self._now - last <= 2 * self.config.status_interval_ms:
            self._heard_ms[peer] = self._now
            return
        regained = not self._quorum_heard()
        self._heard_ms[peer] = self._now
        if regained and self._quorum_heard():  # a quorum reachable again: watch afresh
            self._idle_since_ms = max(self._idle_since_ms, self._now)
        for slot in self._log.slots():
            if slot.view == self._view and not slot.committed:
                slot.next_resend_ms = min(slot.next_resend_ms, self._now)

    # ------------------------------------------------------------ stable checkpoints

    def _resend_stable_checkpoint(self, to: int, st: Status) -> None:
        seq = self._stable_seq
        if (st.stable_seq >= seq or seq == 0
                or st.last_executed + self.config.watermark_window < seq):
            return  # not behind, nothing to give, or so far behind that block sync comes first
        if self._own_checkpoints.get(seq) != self._stable_digest:
            return  # we did not execute it ourselves: our vote would vouch for nothing
        if self._once_per_status_interval(self._cp_resent, to):
            self._send(to, self.auth.sign(Checkpoint(seq, self._stable_digest, self.id)))

    # ------------------------------------------------------------ idle primary watchdog

    def _idle_deadline(self) -> int | None:
        cfg = self.config
        if cfg.heartbeat_ms <= 0 or self._in_vc or self._pending or self._idle_since_ms < 0:
            return None  # no heartbeats owed, a view change under way, or the request timer
        return max(self._idle_since_ms, self._last_progress_ms) + cfg.heartbeat_ms + \
            cfg.timeout_request_ms

    def _quorum_heard(self) -> bool:
        """STATUS from 2f peers within the last two status intervals (we reach a quorum)."""
        recent = self._now - 2 * self.config.status_interval_ms
        return sum(1 for t in self._heard_ms.values() if t >= recent) >= self.config.quorum - 1

    def _quorum_reachable(self) -> bool:
        """Not known to be cut off: 2f peers heard recently or never heard yet (just after a
        start). The primary proposes heartbeats only then: one proposed into a partition goes
        stale before it can commit, and blocks the idle pipeline until a view change."""
        recent = self._now - 2 * self.config.status_interval_ms
        silent = sum(1 for t in self._heard_ms.values() if t < recent)
        return self.config.n - 1 - silent >= self.config.quorum - 1

    def _on_idle_timeout(self) -> None:
        if self._weak_target() > self._last_executed or not self._quorum_heard():
            # behind the others (block sync, not a new view) or cut off: watch afresh
            self._idle_since_ms = self._now
            return
        self._start_view_change(self._view + 1, "idle-timeout")
