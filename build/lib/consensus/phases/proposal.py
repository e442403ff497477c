"""The primary's proposals: batching pending requests into PRE-PREPAREs.

When a batch is due (`_batch_due_at`, `_pipeline_room`), which pending requests it takes
(round-robin over sources, `fair.FairQueue`), and the signed PRE-PREPARE (`_propose`),
including heartbeats on an idle pipeline.
"""

from __future__ import annotations

from ..codec import batch_digest
from ..messages import PrePrepare, Request
from ..normal import expired
from ..types import request_size
from .state import Key, ReplicaState, _key

BULK_DELAY_MS = 100  # batch delay of a source over its admission rate (_batch_due_at)


class ProposalMixin(ReplicaState):
    """Batching and proposing, on the primary of the current view."""

    def _can_propose(self) -> bool:
        return (
            self.is_primary
            and not self._in_vc
            and self._next_seq <= self._log.high
        )

    def _in_flight(self) -> int:
        """Batches this primary proposed (or re-proposed) that it has not executed yet."""
        return max(0, self._next_seq - 1 - self._last_executed)

    def _batch_would_be_full(self) -> bool:
        return (len(self._unproposed) >= self.config.batch_max
                or self._unproposed.nbytes >= self.config.batch_max_bytes)

    def _fair_entry(self, key: Key) -> tuple[Key, int, int]:
        return key, self._pool_entry[key][0], request_size(len(self._pending[key][0].op))

    def _pipeline_room(self, full: bool) -> bool:
        """Pipeline depth: a non-full batch waits while `max_in_flight` batches are in flight
        (so requests pile up into bigger batches under load). A full batch cannot grow by
        waiting, so only the high watermark bounds it: a backlog drains at full speed.
        0 = no cap."""
        cap = self.config.max_in_flight
        in_flight = self._in_flight()
        if full:
            full_cap = self.config.max_full_in_flight
            return full_cap == 0 or in_flight < full_cap
        if cap == 0 or in_flight < cap:
            return True
        # a source with nothing in flight does not wait behind the others' batches: it gets a
        # batch of its own now (one more in flight per such source), so a relay's steady load
        # does not add its batches to our clients' latency
        if in_flight >= cap + self.config.n - 1:
            return False
        busy: set[int] = set()
        for seq, sources in self._flight.items():
            if seq > self._last_executed:
                busy |= sources
        return not self._unproposed.sources() <= busy

    def _batch_due_at(self) -> int:
        """When a batch is due without being full: a source's oldest waiting request waited
        batch_delay_ms - or BULK_DELAY_MS for a source sending past its admission rate, whose
        requests rather ride in the batches the others' requests start (each batch costs every
        replica its votes and fsyncs)."""
        due: int | None = None
        for src, key in self._unproposed.oldest_by_source():
            delay = BULK_DELAY_MS if self._rates.throttled(src, self._now) else \
                self.config.batch_delay_ms
            at = self._pending[key][1] + delay
            due = at if due is None or at < due else due
        return self._now if due is None else due

    def _maybe_propose(self) -> None:
        cfg = self.config
        while self._can_propose():
            batch: list[Request] = []
            if self._unproposed:
                due = self._batch_due_at() <= self._now
                full = self._batch_would_be_full()
                if not full and not due:
                    break
                if not self._pipeline_room(full):
                    break
                size = 0
                while len(batch) < cfg.batch_max:
                    key = self._unproposed.pick()  # round-robin over sources, then clients
                    if key is None:
                        break
                    req = self._pending[key][0]
                    size += request_size(len(req.op))
                    if batch and size > cfg.batch_max_bytes:
                        break
                    self._unproposed.take(key)
                    if expired(req, self._next_seq):
                        continue  # dropped from the pool after the next execution
                    batch.append(req)
                    self._proposed.add(key)
                    if self._relay_due:
                        self._relay_proposed(key)
                if not batch:
                    continue
            elif not (cfg.heartbeat_ms > 0 and self._in_flight() == 0 and
                      self._now - self._last_proposal_ms >= cfg.heartbeat_ms
                      and self._quorum_reachable()):
                # heartbeats only on an idle pipeline, and only while a quorum hears us: one
                # proposed into a partition goes stale before it can commit (liveness.py)
                break
            self._propose(tuple(batch))

    def _propose(self, requests: tuple[Request, ...]) -> None:
        t = max(self._now, self._last_proposal_time + 1)
        pp = PrePrepare(self._view, self._next_seq, t, requests, batch_digest(t, requests), self.id)
        signed = self._sign_vote(pp)
        self._next_seq += 1
        self._last_proposal_time = t
        if len(self._flight) > 2 * self.config.watermark_window:
            self._flight = {q: v for q, v in self._flight.items() if q > self._last_executed}
        self._flight[pp.seq] = {self._pool_entry[_key(r)][0] for r in requests
                                if _key(r) in self._pool_entry}
        self._last_proposal_ms = self._now
        if signed is None:
            return
        self._broadcast(signed)
        self._accept_pre_prepare(self._log.slot(signed.view, signed.seq), signed)
