"""PBFT's normal case: PRE-PREPARE, PREPARE and COMMIT handling, then in-order execution.

Where a pre-prepare is checked: `on_pre_prepare` here (sender is the primary, no conflict with
what we accepted or voted, not stale), after the common checks of `Replica._on_receive` /
`_normal_gate` (signature, view, watermarks); its content rules (batch digest, requests, time)
are the pure `normal.check_pre_prepare`. `_check_slot` turns quorums into our COMMIT and into a
committed batch; `_execute_ready` emits `Execute` for committed batches in seq order and takes
checkpoints. `_retransmit_stuck_slots` resends our votes on lossy networks.
"""

from __future__ import annotations

from ..bodies import lacks_body
from ..codec import chain_digest
from ..errors import InvariantViolation
from ..events import ClientsLoaded, Execute, LoadClients, PreparedCert
from ..log import Slot
from ..messages import Checkpoint, Commit, Prepare, PrePrepare
from ..normal import block_time, check_pre_prepare, is_stale, split_batch
from ..quorum import VoteSet
from ..types import request_size
from .state import ReplicaState, _key

RESEND_BACKOFF_MAX = 3  # a stuck slot's votes are resent after 1, 2, 4, 8, 8, ... intervals


class NormalCaseMixin(ReplicaState):
    """Pre-prepare, prepare, commit and execution of committed batches."""

    def on_pre_prepare(self, sender: int, pp: PrePrepare) -> None:
        if sender != self.primary:
            self._evidence("invalid-message", sender, "pre-prepare from a backup", pp)
            return
        if pp.seq <= self._last_executed and self._executed_digests.get(pp.seq) != pp.digest:
            # the batch at an executed seq is fixed forever: an honest replica never votes for
            # another one there (nor for one it cannot compare, after a restart)
            self.dropped["pre-prepare-at-executed-seq"] += 1
            return
        slot = self._log.get(pp.view, pp.seq)  # created only once the pre-prepare is accepted
        if slot is not None and slot.pre_prepare is not None:
            if slot.pre_prepare.digest != pp.digest:
                self._evidence(
                    "equivocation", sender, "two pre-prepares for one view and seq",
                    slot.pre_prepare, pp,
                )
            return
        own = self._own.get(("prepare", pp.view, pp.seq))
        if own is not None and own.digest != pp.digest:
            self.dropped["pre-prepare-conflicts-own-prepare"] += 1  # e.g. after a restart
            return
        if lacks_body(pp):
            # a header alone only enters through a NEW-VIEW (backed by a prepared certificate);
            # here it is a retransmitted re-proposal at best: nothing to vote on
            self.dropped["pre-prepare-without-body"] += 1
            return
        arrival = self._now if self._arrival_ms is None else self._arrival_ms
        if is_stale(self.config, pp, arrival) and not self._stale_vouched(pp):
            self.dropped["pre-prepare-stale"] += 1
            self._hold_stale(pp)  # taken once f peers' votes vouch for it (phases/liveness.py)
            return
        reason = check_pre_prepare(
            self.config, self.auth, pp, arrival, already_verified=self._is_admitted
        )
        if reason:
            self._evidence("invalid-message", sender, f"pre-prepare rejected: {reason}", pp)
            return
        self._accept_pre_prepare(self._log.slot(pp.view, pp.seq), pp)

    def _accept_pre_prepare(self, slot: Slot, pp: PrePrepare) -> None:
        slot.pre_prepare = pp
        self._bodies.add(pp)
        slot.since_ms = self._now
        if not self.is_primary:
            # requests we learn of only through the batch: keep them, so our request timer
            # runs and a next primary re-proposes them if this batch never prepares
            relay = bool(self._relay_due)
            for req in pp.requests:
                key = _key(req)
                if relay:
                    self._relay_proposed(key)
                if key not in self._pending and self._admit(req, pp.replica) is None:
                    self._unproposed.discard(key)
                    self._proposed.add(key)
            vote = self._sign_vote(Prepare(pp.view, pp.seq, pp.digest, self.id))
            if vote is not None:
                slot.prepares.add(self.id, vote.digest, vote)
                self._broadcast(vote)
            for votes in (slot.prepares, slot.commits):  # votes that came before the pre-prepare
                for r in list(votes.voters()):
                    self._maybe_reveal(slot, r, votes.get(r).digest)
        self._check_slot(slot)

    def on_prepare(self, sender: int, p: Prepare) -> None:
        if sender == self.primary:
            self._evidence("invalid-message", sender, "the primary sent a prepare", p)
            return
        slot = self._log.slot(p.view, p.seq)
        self._on_vote(slot, slot.prepares, sender, p)

    def on_commit(self, sender: int, c: Commit) -> None:
        slot = self._log.slot(c.view, c.seq)
        self._on_vote(slot, slot.commits, sender, c)

    def _on_vote(self, slot: Slot, votes: VoteSet, sender: int, vote: Prepare | Commit) -> None:
        """A PREPARE or COMMIT: a conflicting second vote is evidence; else it may vouch for
        a held stale pre-prepare, reveal a body, and complete the slot."""
        ev = votes.add(sender, vote.digest, vote)
        if ev:
            self._add_evidence(ev)
            return
        if slot.pre_prepare is None:
            self._retry_held_stale(vote.view, vote.seq)
        self._maybe_reveal(slot, sender, vote.digest)
        self._check_slot(slot)

    def _check_slot(self, slot: Slot) -> None:
        pp = slot.pre_prepare
        if pp is None:
            return
        if not slot.prepared and slot.prepare_count(self.config) >= self.config.quorum - 1:
            slot.prepared = True
            old = self._prepared.get(slot.seq)
            if old is None or old.pre_prepare.view <= slot.view:
                proof = slot.proof(self.config)
                self._prepared[slot.seq] = proof
                # durable with (so before) our COMMIT: a restart must not forget it
                self._out.persist.append(PreparedCert(proof))
            vote = self._sign_vote(Commit(pp.view, pp.seq, pp.digest, self.id))
            if vote is not None:
                slot.commits.add(self.id, vote.digest, vote)
                self._broadcast(vote)
        if slot.prepared and not slot.committed and slot.commit_count() >= self.config.quorum:
            slot.committed = True
            if slot.seq > self._last_executed:
                commits = tuple(slot.commits.matching(pp.digest)[: self.config.quorum])
                self._committed[slot.seq] = (pp, commits)
                self._execute_ready()

    def _retransmit_stuck_slots(self) -> None:
        """Lossy networks: resend our own votes for slots of this view that have not
        committed for a status interval (the paper assumes retransmission below PBFT) - only
        to the peers whose own messages do not show they are past needing them: a peer that
        PREPAREd or COMMITted has the PRE-PREPARE, one that COMMITted is prepared, one whose
        STATUS reports the seq executed needs nothing. (Re-broadcasting whole PRE-PREPAREs to
        everyone flooded a loaded mesh with 100-400-tx batches.)"""
        peers = [j for j in range(self.config.n) if j != self.id]
        for slot in self._log.slots():
            if (
                slot.view != self._view
                or slot.committed
                or slot.pre_prepare is None
                or slot.seq <= self._last_executed
                or self._now - slot.since_ms < self.config.status_interval_ms
                or self._now < slot.next_resend_ms
            ):
                continue
            # back off per slot: on a loaded (not lossy) mesh the votes are merely queued, and
            # resending 100-400-tx PRE-PREPAREs every interval made the backlog grow
            slot.resends += 1
            slot.next_resend_ms = self._now + self.config.status_interval_ms * (
                1 << min(slot.resends, RESEND_BACKOFF_MAX))
            d = slot.pre_prepare.digest
            done = {j for j in peers if self._peer_executed.get(j, 0) >= slot.seq}
            committed = done | {m.replica for m in slot.commits.matching(d)}
            has_pp = committed | {m.replica for m in slot.prepares.matching(d)}
            for kind, skip in (("pre-prepare", has_pp), ("prepare", committed),
                               ("commit", done)):
                vote = self._own.get((kind, slot.view, slot.seq))
                if vote is None:
                    continue
                for j in peers:
                    if j not in skip:
                        self._send(j, vote)

    def _execute_ready(self) -> None:
        executed_requests = False
        while self._last_executed + 1 in self._committed:
            seq = self._last_executed + 1
            pp, commits = self._committed[seq]
            if lacks_body(pp):  # re-proposed as a header in a NEW-VIEW
                full = self._bodies.full(pp)
                if full is None:  # peers that hold it execute it; block sync brings it here
                    self.dropped["execution-waiting-for-batch-body"] += 1
                    break
                pp = full
            missing = self._clients.missing(r.client_id for r in pp.requests)
            if missing:  # the bounded table left them out: storage has their history
                ask = tuple(c for c in missing if c not in self._loading)
                if ask:
                    self._loading.update(ask)
                    self._out.load_clients.append(LoadClients(ask, self._last_executed))
                break
            del self._committed[seq]
            self._flight.pop(seq, None)
            run, skipped = split_batch(pp.requests, seq, self._clients)
            if any(b"evidence" in r.op for r in run):
                run, skipped = self._check_evidence_at_execution(run, skipped)
            prev = self._last_hash
            h = chain_digest(prev, seq, pp.digest)
            t = block_time(self._last_time, pp.time_ms)
            self._out.execute.append(
                Execute(seq, pp.view, t, run, skipped, pp.digest, prev, h, pp, commits)
            )
            for req in run:
                self._clients.record(req.client_id, req.request_seq)
            self._clients.evict(seq)
            self._convict_from(seq, run)
            for req in pp.requests:
                key = _key(req)
                if self._clients.status(*key) is not None:
                    self._forget_request(key)
            self._last_executed, self._last_hash, self._last_time = seq, h, t
            self._executed_digests[seq] = pp.digest
            self._last_progress_ms = self._now
            executed_requests = executed_requests or bool(run)
            run_bytes = sum(request_size(len(r.op)) for r in run)
            self._rt.executed(len(run), run_bytes)
            if run:
                self._rates.executed(self._now, len(run), run_bytes)
            if seq == self._stable_seq and h != self._stable_digest:
                raise InvariantViolation(
                    f"executed block {seq} hash differs from the proven stable checkpoint"
                )
            if seq % self.config.checkpoint_interval == 0 and seq > self._stable_seq:
                self._remember_checkpoint_hash(seq, h)
                for theirs in self._checkpoints.votes(seq):  # arrived before we executed
                    self._judge_checkpoint(theirs.replica, theirs)
                cp = self.auth.sign(Checkpoint(seq, h, self.id))
                self._broadcast(cp)
                self._checkpoints.add(cp)
                self._check_stable(seq)
        self._drop_expired()
        if executed_requests:
            if self._rt.watch not in self._pending:  # ours executed: watch the next oldest
                self._rt.stop()
            self._arm_request_timer()
            if not self._in_vc:
                self._failed_vcs = 0  # a new view worked: reset the backoff

    def _on_clients_loaded(self, ev: ClientsLoaded) -> None:
        stale = ev.as_of < self._clients.evicted_through
        for client, seqs in ev.clients:
            self._loading.discard(client)
            if not stale:  # else storage may lack executions the table dropped: asked again
                self._clients.load(client, seqs)
        self._execute_ready()
