"""Report: `health()`, what a replica is doing and waiting for (status pages, `why` lines
in stuck tests and the node's health). Reads the state only; changes nothing.
"""

from __future__ import annotations

from ..view_change import backoff_ms
from .state import ReplicaState


class ReportMixin(ReplicaState):
    """`health()` and its one-line `why`."""

    def health(self) -> dict:
        """Why the replica is (not) making progress, for status pages and stuck tests."""
        cfg = self.config
        in_flight = {}
        for slot in self._log.slots():
            if slot.view != self._view or slot.committed or slot.seq <= self._last_executed:
                continue
            in_flight[slot.seq] = {
                "pre_prepare": slot.pre_prepare is not None,
                "prepares": slot.prepare_count(cfg),
                "missing_prepares": max(0, cfg.quorum - 1 - slot.prepare_count(cfg)),
                "commits": slot.commit_count(),
                "missing_commits": max(0, cfg.quorum - slot.commit_count()),
            }
        mode = "view-change" if self._in_vc else "normal"
        return {
            "mode": mode,
            "view": self._view,
            "primary": self.primary,
            "now_ms": self._now,
            "last_executed": self._last_executed,
            "stable_seq": self._stable_seq,
            "watermarks": (self._log.low, self._log.high),
            "pending_requests": len(self._pending),
            "unproposed_requests": len(self._unproposed),
            "in_flight": in_flight,
            "proposed_in_flight": self._in_flight() if self.is_primary else 0,
            "committed_waiting": sorted(self._committed),
            "request_timer_deadline_ms": self._rt.deadline,
            "request_timer_extended": self._rt.extended,
            "view_change": {
                "started": dict(self.view_change_reasons),
                "last_request_timeout": self.last_request_timeout,
                "failed_attempts": self._failed_vcs,
                "timeout_ms": backoff_ms(cfg, self._failed_vcs),
                "deadline_ms": self._vc_deadline,
                "votes_for_view": len(self._vcs.for_view(self._view)),
                "quorum": cfg.quorum,
            },
            "peers_executed": dict(sorted(self._peer_executed.items())),
            "buffered": len(self._buffer),
            "dropped": dict(self.dropped),
            "convicted": {r: {"height": s, "kind": k} for r, (s, k) in self._convicted.items()},
            "skipped_in_rotation": sorted(self._skippable()),
            "why": self._why(in_flight),
        }

    def _why(self, in_flight: dict[int, dict]) -> str:
        """One line saying what the replica is waiting for (empty when nothing is stuck)."""
        cfg = self.config
        if len(self._convicted) > cfg.f:
            return (f"{len(self._convicted)} replicas convicted (more than f={cfg.f}): validator "
                    "keys are compromised; the primary rotation no longer skips anyone")
        skip = ""
        if self._convicted:
            skip = f" (rotation skips convicted replica(s) {sorted(self._convicted)})"
        if self._in_vc:
            votes = len(self._vcs.for_view(self._view))
            return (f"view change to view {self._view}: {votes}/{cfg.quorum} VIEW-CHANGE votes, "
                    f"waiting for NEW-VIEW from replica {self.primary} "
                    f"(timeout {backoff_ms(cfg, self._failed_vcs)} ms, "
                    f"attempt {self._failed_vcs + 1}){skip}")
        ahead = max(self._peer_executed.values(), default=0)
        if ahead > self._last_executed + 1:
            return f"catching up: executed {self._last_executed}, peers report {ahead}"
        for seq, slot in sorted(in_flight.items()):
            if not slot["pre_prepare"]:
                return f"seq {seq}: no PRE-PREPARE from primary {self.primary} yet"
            if slot["missing_prepares"]:
                return f"seq {seq}: missing {slot['missing_prepares']} PREPARE(s) for a quorum"
            if slot["missing_commits"]:
                return f"seq {seq}: missing {slot['missing_commits']} COMMIT(s) for a quorum"
        if self._pending and not self.is_primary and self._rt.deadline is not None:
            left = max(0, self._rt.deadline - self._now)
            return (f"{len(self._pending)} request(s) waiting for primary {self.primary} to "
                    f"propose; view change in {left} ms if none commits")
        return ""
