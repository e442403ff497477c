"""Evidence and convictions.

Invalid signed traffic becomes `Evidence` for the shell and counts against the peer
(`_evidence`, `peers.PeerFaults`); two conflicting signed messages are a proof, which we put on
the ledger as a validator-signed evidence transaction (`_file_proof`, `_submit_evidence`). The
proof exchange (`_maybe_reveal`, `on_conflict`) shows a peer our pre-prepare when it voted
another digest. Committed proofs convict their replica at execution (`_convict_from`), and the
primary rotation skips convicted replicas (`_skip_convicted`). The pure proof format and checks
are `consensus.evidence`.
"""

from __future__ import annotations

from typing import Any

from ..bodies import header
from ..events import Conviction, Evidence
from ..evidence import (
    PROOF_KINDS,
    check_evidence,
    encode_proof,
    evidence_request,
    parse_evidence_op,
    verify_proof,
)
from ..log import Slot
from ..messages import Conflict, PrePrepare, Request
from .state import ReplicaState

CONFLICTS_PER_INTERVAL = 16  # CONFLICT messages sent to one peer per status interval


class EvidenceMixin(ReplicaState):
    """Evidence, the proof exchange (CONFLICT) and convictions."""

    def _evidence(self, kind: str, replica: int, reason: str, *msgs: Any) -> None:
        """Evidence of invalid signed traffic: counted against the peer (cool-off past its
        budget) and surfaced a few times per peer and kind per interval; proofs always."""
        if kind not in PROOF_KINDS and 0 <= replica < self.config.n and replica != self.id:
            if not self._faults.fault(replica, kind, self._now):
                self.dropped["evidence-over-peer-budget"] += 1
                return
        self._add_evidence(Evidence(kind, replica, reason, tuple(msgs)))

    def peer_faults(self, peer: int) -> int:
        """Invalid signed messages `peer` sent us so far."""
        return self._faults.totals[peer]

    def cooling_off(self, peer: int) -> bool:
        """True while `peer`'s messages are dropped unread (it exceeded its fault budget)."""
        return self._faults.cooling_off(peer, self._now)

    def _add_evidence(self, ev: Evidence) -> None:
        """Surface evidence to the shell, and put a proof (two conflicting signed messages) on
        the ledger once per accused replica. Other kinds stay local (log, metrics, the
        `evidence` RPC): the ledger takes only evidence that proves itself."""
        self._out.evidence.append(ev)
        if ev.replica in self.never_accuse or not 0 <= ev.replica < self.config.n:
            return
        if ev.kind in PROOF_KINDS and len(ev.messages) == 2:
            self._file_proof(ev)

    def _file_proof(self, ev: Evidence) -> None:
        accused = ev.replica
        if accused in self._convicted or accused in self._proof_filed:
            return
        proof = encode_proof(*(header(m) if isinstance(m, PrePrepare) else m
                               for m in ev.messages))  # headers: small, still signed
        if verify_proof(self.auth, accused, proof) is not None:
            self.dropped["evidence-not-a-proof"] += 1  # e.g. a vote we cannot re-check
            return
        if self._submit_evidence(accused, ev.kind, ev.reason, proof):
            self._proof_filed.add(accused)

    def _submit_evidence(self, accused: int, kind: str, reason: str, proof: bytes) -> bool:
        """Sign an evidence transaction with our validator key and order it like a client
        request (our pool, relayed to every replica). False if it cannot be admitted."""
        self._evidence_seq = max(self._now, self._evidence_seq + 1)
        req = evidence_request(self.auth, accused, kind, reason, proof, self._evidence_seq)
        if len(req.op) > self.config.max_request_bytes:
            self.dropped["evidence-too-large"] += 1
            return False
        if self._admit(req) is not None:
            self.dropped["evidence-not-admitted"] += 1
            return False
        self._to_forward.append(req)
        return True

    def _skippable(self) -> set[int]:
        """Convicted replicas the rotation skips: none once more than f are convicted (valid
        proofs cannot convict more than f replicas unless validator keys leaked)."""
        if len(self._convicted) > self.config.f:
            return set()
        return set(self._convicted)

    def _primary_skipped(self, view: int) -> bool:
        return bool(self._convicted) and self.config.primary(view) in self._skippable()

    def _skip_convicted(self, view: int) -> int:
        """The smallest view >= `view` whose primary is not convicted."""
        skip = self._skippable()
        while self.config.primary(view) in skip:
            view += 1
        return view

    def _convict_from(self, seq: int, run: tuple[Request, ...]) -> None:
        """Scan a block's executed requests for validator-signed equivocation proofs; each
        valid one convicts its accused replica at `seq` (deterministic: the agreed log, the
        validator keys and signature checks only)."""
        for req in run:
            if req.client_id not in self._validator_index:
                continue
            op = parse_evidence_op(req.op)
            if op is None or op.kind not in PROOF_KINDS or op.accused in self._convicted:
                continue
            if not 0 <= op.accused < self.config.n:
                continue
            if verify_proof(self.auth, op.accused, op.proof) is not None:
                self.dropped["committed-evidence-invalid"] += 1
                continue
            self._convicted[op.accused] = (seq, op.kind)
            self._out.persist.append(Conviction(op.accused, seq, op.kind))
            if len(self._convicted) == self.config.f + 1:
                self._evidence(
                    "keys-compromised", op.accused,
                    f"{len(self._convicted)} replicas convicted, more than f={self.config.f}: "
                    "validator keys are compromised; no longer skipping convicted primaries",
                )

    def _check_evidence_at_execution(
        self, run: tuple[Request, ...], skipped: tuple[tuple[Request, str], ...]
    ) -> tuple[tuple[Request, ...], tuple[tuple[Request, str], ...]]:
        """Evidence proves itself again at execution (deterministic: keys, agreed log): an
        invalid one, or a second one against an already convicted replica (one record per
        offence), is skipped with its reason and records nothing."""
        keep: list[Request] = []
        extra: list[tuple[Request, str]] = []
        accused: set[int] = set(self._convicted)
        for req in run:
            op = parse_evidence_op(req.op)
            if op is None:
                keep.append(req)
                continue
            reason = check_evidence(self.auth, self.config.n, req)
            if reason is None and op.accused in accused:
                reason = "evidence already recorded"
            if reason is None:
                accused.add(op.accused)
                keep.append(req)
            else:
                extra.append((req, "invalid evidence: " + reason))
        return tuple(keep), skipped + tuple(extra)

    def _maybe_reveal(self, slot: Slot, peer: int, digest: bytes) -> None:
        """A peer voted another digest than the pre-prepare we accepted for this slot: show
        it our signed pre-prepare (once per slot and peer, budgeted per peer), so that if the
        primary equivocated the peer holds two conflicting pre-prepares - a proof."""
        pp = slot.pre_prepare
        primary = self.config.primary(slot.view)
        if pp is None or pp.digest == digest or primary in (self.id, peer) or peer == self.id:
            return
        key = (slot.view, slot.seq, peer)
        if key in self._revealed:
            return
        if not self._within_budget(self._reveal_budget, peer, CONFLICTS_PER_INTERVAL,
                                   "conflict-rate-limited"):
            return
        self._revealed.add(key)
        self._send(peer, self.auth.sign(Conflict(header(pp), self.id)))

    def on_conflict(self, sender: int, c: Conflict) -> None:
        """A peer shows us the pre-prepare it accepted for a slot where we accepted another:
        if the same primary signed both, that is a proof of equivocation."""
        pp = c.pre_prepare
        slot = self._log.get(pp.view, pp.seq) if self._log.in_window(pp.seq) else None
        ours = slot.pre_prepare if slot is not None else None
        if ours is None or ours.digest == pp.digest:
            self.dropped["conflict-without-conflict"] += 1  # nothing of ours to compare
            return
        if pp.replica != self.config.primary(pp.view) or not self.auth.verify(pp):
            self._evidence(
                "bad-conflict", sender,
                "conflict carries a pre-prepare not signed by the primary of its view", c,
            )
            return
        if ours.replica != pp.replica:
            return  # cannot happen with a verified pre-prepare of the same view
        self._evidence(
            "equivocation", pp.replica,
            f"two pre-prepares for view {pp.view} seq {pp.seq} (the other shown by replica "
            f"{sender})",
            ours, pp,
        )
