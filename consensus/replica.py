"""The PBFT replica: the one `step(event) -> Output` of the consensus core.

Owns all replica state and the control flow: common checks done once per message (transport
sender == claimed replica, signature, view, watermark window, digest length), then dispatch by
mode and message type to `on_<message>` handlers; timers (`on_<name>_timeout`) fire from `Tick`.
Rules live in the pure helper modules (`normal`, `checkpoint`, `view_change`, `certificates`,
`log`, `quorum`). Invariants are asserted after every step (InvariantViolation).

Pure and deterministic: never imports time, random, I/O, threads or async; the only clock is
`Tick(now_ms)`. Must not import any other bftnode package.
"""

from __future__ import annotations

from collections import Counter, OrderedDict, deque
from typing import Any

from .auth import Authenticator
from .bodies import BatchBodies, header, lacks_body
from .certificates import (
    DIGEST_LEN,
    verify_committed_block,
    verify_new_view,
    verify_view_change,
)
from .checkpoint import CheckpointVotes
from .codec import GENESIS_CHAIN_DIGEST, batch_digest, chain_digest, signing_bytes
from .errors import InvariantViolation, LocalProtocolError
from .events import (
    ClientRequest,
    ClientRequests,
    ClientsLoaded,
    Conviction,
    Duplicate,
    Event,
    Evidence,
    Execute,
    FetchedBlocks,
    LoadClients,
    Output,
    OwnVote,
    PreparedCert,
    Prune,
    Receive,
    RecoveredState,
    Rejected,
    Send,
    ServeFetch,
    StableCheckpoint,
    Tick,
    ViewState,
)
from .evidence import (
    PROOF_KINDS,
    check_evidence,
    encode_proof,
    evidence_request,
    parse_evidence_op,
    verify_proof,
)
from .fair import FairQueue, SourceRates
from .log import MessageLog, Slot
from .messages import (
    SIGNED_REPLICA_MESSAGES,
    BlockSync,
    Checkpoint,
    Commit,
    Conflict,
    FetchBlocks,
    Forward,
    NewView,
    Prepare,
    PreparedProof,
    PrePrepare,
    Request,
    Status,
    ViewChange,
)
from .normal import (
    ClientTable,
    block_time,
    check_pre_prepare,
    check_request,
    expired,
    is_stale,
    split_batch,
)
from .peers import PeerFaults, held_bytes
from .request_timer import RequestTimer
from .types import Config, request_size
from .view_change import ViewChangeVotes, backoff_ms, build_new_view, stable_of

MAX_FETCH_BLOCKS = 64  # blocks per FetchBlocks / BlockSync
# executed batch digests kept below the stable checkpoint (~100 KB): a late BlockSync answer
# (a catch-up re-asks another peer, races ahead and checkpoints; the slow peer's answer lands
# a second later, hundreds of blocks behind) is still compared, so a forger is blamed
LATE_SYNC_KEEP = 1024
SERVES_PER_INTERVAL = 4  # FetchBlocks answered per peer per status interval
MAX_FORWARD_REQUESTS = 10_000
FUTURE_VIEWS = 2  # normal-case messages are buffered for at most this many views ahead
BULK_DELAY_MS = 100  # batch delay of a source over its admission rate (_batch_due_at)
REFORWARD_MAX = 32  # waiting requests relayed again per status interval
FORWARD_MAX_BYTES = 1024 * 1024  # a FORWARD is split beyond this many request bytes
RESEND_BACKOFF_MAX = 3  # a stuck slot's votes are resent after 1, 2, 4, 8, 8, ... intervals
VC_RESEND_BACKOFF_MAX = 2  # our VIEW-CHANGE is resent after 1, 2, 4, 4, ... intervals
CONFLICTS_PER_INTERVAL = 16  # CONFLICT messages sent to one peer per status interval
# VIEW-CHANGE, NEW-VIEW and BLOCK-SYNC messages (each up to a few hundred signatures to check)
# taken from one peer per status interval; an honest peer sends a few (resends back off)
COSTLY_PER_INTERVAL = 16
COSTLY = (ViewChange, NewView, BlockSync)

Key = tuple[bytes, int]


def _key(req: Request) -> Key:
    return (req.client_id, req.request_seq)


def _vote_key(msg: Any) -> tuple:
    if isinstance(msg, PrePrepare):
        return ("pre-prepare", msg.view, msg.seq)
    if isinstance(msg, Prepare):
        return ("prepare", msg.view, msg.seq)
    if isinstance(msg, Commit):
        return ("commit", msg.view, msg.seq)
    if isinstance(msg, ViewChange):
        return ("view-change", msg.new_view)
    if isinstance(msg, NewView):
        return ("new-view", msg.view)
    raise LocalProtocolError(f"not a vote: {type(msg).__name__}")


class Replica:
    """One PBFT replica. Feed it events with `step`; apply each Output in order."""

    def __init__(
        self,
        config: Config,
        replica_id: int,
        auth: Authenticator,
        restored: RecoveredState | None = None,
    ) -> None:
        if not 0 <= replica_id < config.n:
            raise LocalProtocolError(f"replica_id {replica_id} not in [0, {config.n})")
        if len(auth.replica_keys) != config.n:
            raise LocalProtocolError(
                f"authenticator has {len(auth.replica_keys)} replica keys, config.n={config.n}"
            )
        r = restored or RecoveredState()
        self.config = config
        self.id = replica_id
        self.auth = auth
        self._now = 0
        self._view = r.view
        self._in_vc = r.in_view_change
        sc = r.stable_checkpoint
        self._stable_seq = sc.seq if sc else 0
        self._stable_digest = sc.digest if sc else GENESIS_CHAIN_DIGEST
        self._stable_proof: tuple[Checkpoint, ...] = sc.proof if sc else ()
        self._log = MessageLog(config, low=self._stable_seq)
        self._last_executed = r.last_executed
        self._last_hash = r.last_block_hash
        self._last_time = r.last_time_ms
        self._clients = ClientTable(
            config.dedup_window, r.client_executed, config.max_clients, r.clients_complete
        )
        self._loading: set[bytes] = set()  # clients asked of the shell (LoadClients)
        # committed (certified) batches waiting for execution in seq order
        self._committed: dict[int, tuple[PrePrepare, tuple[Commit, ...]]] = {}
        # batch digest per executed seq > stable - LATE_SYNC_KEEP
        self._executed_digests: dict[int, bytes] = {}
        self._prepared: dict[int, PreparedProof] = {}  # highest-view prepared proof per seq
        self._bodies = BatchBodies()  # requests of the batches we accepted above stable
        self._own: dict[tuple, Any] = {}  # every vote we signed, by slot
        self._pending: dict[Key, tuple[Request, int]] = {}  # request -> arrival time
        # pool bytes by source (our clients: our id; a relay: its id) and each request's share
        self._pool_bytes: Counter[int] = Counter()
        self._pool_entry: dict[Key, tuple[int, int]] = {}  # key -> (source, bytes)
        self.pool_share_bytes = config.max_pending_bytes // config.n
        # admission rate per source (fair.py): relays' at the full burst, our clients' at half
        # of it, so what we relay stays inside what our peers admit from us
        self._rates = SourceRates(config.source_rate_requests, config.source_rate_bytes,
                                  config.source_burst_ms, config.n)
        self._forwarded_ms: dict[Key, int] = {}  # when each pending request was last relayed
        self._expiring: set[Key] = set()  # pending requests with a valid_until
        # pending, not in a batch of this view: oldest first, batched round-robin (fair.py)
        self._unproposed = FairQueue()
        self._proposed: set[Key] = set()
        self._flight: dict[int, set[int]] = {}  # our batches in flight: seq -> their sources
        self._to_forward: list[Request] = []
        # our clients' requests sent to the primary alone: (when to relay them to everyone,
        # their forwarding index), in forwarding order; see _relay_unproposed
        self._relay_due: OrderedDict[Key, tuple[int, int]] = OrderedDict()
        self._relay_idx = 0  # forwarding index of our last request sent to the primary
        self._relay_seen_idx = 0  # highest forwarding index the primary proposed (this view)
        self._relay_progress_ms = -(1 << 62)  # when the primary last proposed one of ours
        self._next_seq = max(self._last_executed, self._stable_seq) + 1
        self._last_proposal_time = self._last_time
        self._last_proposal_ms = 0
        self._checkpoints = CheckpointVotes(config)
        # our block hash at each checkpoint seq we executed: from a window below the stable
        # checkpoint up, bounded like the checkpoint votes (judges peers' checkpoints)
        self._own_checkpoints: dict[int, bytes] = {}
        self._vcs = ViewChangeVotes()
        self._new_view: NewView | None = None  # the NEW-VIEW of the current view (sent/accepted)
        self._failed_vcs = 0
        self._vc_resends = 0
        self._vc_next_resend_ms = 0
        self._rt = RequestTimer()  # progress on our oldest pending request (request_timer.py)
        self._vc_deadline: int | None = None
        self._next_status_ms = 0
        self._peer_executed: dict[int, int] = {}
        self._fetch_retry_ms = 0
        self._fetch_goal = 0  # highest height a peer claims, computed once per step
        self._fetch_asked: dict[int, int] = {}  # FetchBlocks sent per peer, this catch-up
        self._last_progress_ms = 0
        self._serves: dict[int, tuple[int, int]] = {}  # peer -> (window start, count)
        self._costly: dict[int, tuple[int, int]] = {}  # peer -> (window start, count)
        self._nv_resent: dict[int, int] = {}
        self._status_answered: dict[int, int] = {}  # peer -> when we last answered its Status
        self._vc_resent: dict[tuple[int, int], int] = {}
        self._buffer: deque[tuple[int, Any, int]] = deque()  # (sender, msg, arrival ms)
        self._arrival_ms: int | None = None  # set while replaying buffered messages
        self._buffered: Counter[int] = Counter()  # buffered messages per sender
        self._buffered_bytes: Counter[int] = Counter()  # held_bytes of them per sender
        self._buffer_max = max(1024, 3 * config.n * config.watermark_window)
        # per sender: two full batches (a view's first pre-prepares may beat its NEW-VIEW)
        self.buffer_share_bytes = max(2 * config.batch_max_bytes, 2 * 1024 * 1024)
        self.buffer_max_bytes = config.n * self.buffer_share_bytes
        self._faults = PeerFaults(config.status_interval_ms)
        self.dropped: Counter[str] = Counter()  # messages dropped without evidence, by reason
        self.view_change_reasons: Counter[str] = Counter()  # views we started, by why
        # committed evidence: replica -> (block seq, kind) of its conviction; never pardoned
        self._convicted: dict[int, tuple[int, str]] = {
            c.replica: (c.seq, c.kind) for c in r.convicted
        }
        self._validator_index = {k: i for i, k in enumerate(auth.replica_keys)}
        self._proof_filed: set[int] = set()  # accused replicas we filed a proof against
        self._evidence_seq = 0  # request_seq of our last evidence transaction
        # proof exchange: slots (view, seq, peer) we showed our pre-prepare to, and per-peer
        # budgets (window start, count) so a peer voting junk cannot make us spam it
        self._revealed: set[tuple[int, int, int]] = set()
        self._reveal_budget: dict[int, tuple[int, int]] = {}
        # replicas this replica never files evidence against (itself; a Byzantine wrapper adds
        # its colluders so its honest core does not convict them by accident)
        self.never_accuse: set[int] = {replica_id}
        self._out = Output()
        self._restore_votes(r)
        self._check_invariants()

    # ------------------------------------------------------------------ public properties

    @property
    def view(self) -> int:
        return self._view

    @property
    def in_view_change(self) -> bool:
        return self._in_vc

    @property
    def primary(self) -> int:
        return self.config.primary(self._view)

    @property
    def is_primary(self) -> bool:
        return self.primary == self.id

    @property
    def last_executed(self) -> int:
        return self._last_executed

    @property
    def last_time_ms(self) -> int:
        return self._last_time

    @property
    def stable_seq(self) -> int:
        return self._stable_seq

    @property
    def client_table(self) -> ClientTable:
        """The bounded client dedup table (read-only use: size and eviction counts)."""
        return self._clients

    @property
    def low_watermark(self) -> int:
        return self._log.low

    @property
    def high_watermark(self) -> int:
        return self._log.high

    @property
    def last_block_hash(self) -> bytes:
        return self._last_hash

    @property
    def pending_count(self) -> int:
        return len(self._pending)

    @property
    def convicted(self) -> dict[int, tuple[int, str]]:
        """Replicas convicted by committed evidence: replica -> (block height, kind)."""
        return dict(self._convicted)

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

    # ------------------------------------------------------------------ step

    def step(self, event: Event) -> Output:
        """Handle one event; return everything to persist, send, execute and reply."""
        self._out = Output()
        if isinstance(event, Tick):
            self._on_tick(event.now_ms)
        elif isinstance(event, Receive):
            self._on_receive(event.sender, event.message)
        elif isinstance(event, ClientRequest):
            self._on_client_request(event.request)
        elif isinstance(event, ClientRequests):
            for req in event.requests:
                self._on_client_request(req)
        elif isinstance(event, FetchedBlocks):
            self._on_fetched_blocks(event)
        elif isinstance(event, ClientsLoaded):
            self._on_clients_loaded(event)
        else:
            raise LocalProtocolError(f"unknown event {type(event).__name__}")
        self._after_step()
        out, self._out = self._out, Output()
        out.next_deadline_ms = self._next_deadline()
        return out

    def _after_step(self) -> None:
        if self._to_forward:
            self._forward_new(self._to_forward)
            self._to_forward = []
        if self._primary_skipped(self._view):
            # the primary of this view is convicted (executed just now, or before a restart)
            self._start_view_change(self._view + 1, "primary-convicted")
        self._maybe_propose()
        self._fetch_goal = self._fetch_target()  # once per step: used twice below
        self._maybe_fetch()
        self._check_invariants()

    # ------------------------------------------------------------------ output helpers

    def _broadcast(self, msg: Any) -> None:
        self._out.send.append(Send(None, msg))

    def _send(self, to: int, msg: Any) -> None:
        self._out.send.append(Send(to, msg))

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

    # ------------------------------------------------------------------ convictions

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

    def _sign_vote(self, msg: Any) -> Any | None:
        """Sign a vote exactly once per slot: persist it, and return it (the caller sends).

        Returns the earlier vote if it has the same content, None if it would conflict with a
        vote we already signed (e.g. before a restart) - we never equivocate."""
        key = _vote_key(msg)
        old = self._own.get(key)
        if old is not None:
            if signing_bytes(old) == signing_bytes(msg):
                return old
            self.dropped["refused-conflicting-own-vote"] += 1
            return None
        signed = self.auth.sign(msg)
        self._own[key] = signed
        self._out.persist.append(OwnVote(signed))
        return signed

    def _within_budget(self, budgets: dict[int, tuple[int, int]], peer: int, limit: int,
                       dropped: str) -> bool:
        """Take one of `limit` actions per peer per status interval (window start, count)."""
        start, count = budgets.get(peer, (self._now, 0))
        if self._now - start >= self.config.status_interval_ms:
            start, count = self._now, 0
        if count >= limit:
            self.dropped[dropped] += 1
            return False
        budgets[peer] = (start, count + 1)
        return True

    def _persist_view(self) -> None:
        self._out.persist.append(ViewState(self._view, self._in_vc))

    # ------------------------------------------------------------------ restore

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

    # ------------------------------------------------------------------ tick and timers

    def _on_tick(self, now_ms: int) -> None:
        self._now = max(self._now, now_ms)
        if self._rt.deadline is not None and self._now >= self._rt.deadline:
            self._on_request_timeout()
        if self._vc_deadline is not None and self._now >= self._vc_deadline:
            self._on_view_change_timeout()
        if self._now >= self._next_status_ms:
            self._on_status_timeout()
        self._relay_unproposed()

    def _on_request_timeout(self) -> None:
        rt, cfg = self._rt, self.config
        if self._in_vc or self.is_primary or not self._pending:
            rt.stop()
            return
        if rt.watch not in self._pending:  # executed in this very step: watch the next one
            rt.stop()
            self._arm_request_timer()
            return
        if self._weak_target() > self._last_executed:
            # we are behind the others: catch up by block sync instead of blaming the primary
            rt.deadline = self._now + cfg.timeout_request_ms
            return
        if rt.progressing(self._now, cfg.timeout_request_ms, len(self._pending), cfg.batch_max,
                          cfg.n):
            return  # a deep queue at a working primary: not a reason to depose it
        rt.stop()
        self._start_view_change(self._view + 1, "request-timeout")

    def _on_view_change_timeout(self) -> None:
        self._vc_deadline = None
        self._failed_vcs += 1
        self._start_view_change(self._view + 1, "view-change-timeout")

    def _on_status_timeout(self) -> None:
        self._next_status_ms = self._now + self.config.status_interval_ms
        self._broadcast(self._status())
        if self._in_vc:
            if self._now >= self._vc_next_resend_ms:  # lossy networks: keep asking, backing off
                self._vc_resends += 1
                self._vc_next_resend_ms = self._now + self.config.status_interval_ms * (
                    1 << min(self._vc_resends, VC_RESEND_BACKOFF_MAX))
                self._broadcast(self._own_view_change())
        else:
            self._retransmit_stuck_slots()
        self._reforward_old_requests()

    def _forward_new(self, reqs: list[Request]) -> None:
        """Requests our clients just gave us. PBFT's relay: a backup sends them to the
        primary only (the primary needs nothing: it proposes them), and relays them to every
        replica `forward_relay_ms` later if they are still pending then (see
        _relay_unproposed), so all replicas' request timers run against a primary that
        censors them; each tx then crosses the mesh once instead of twice (FORWARD, then the
        PRE-PREPARE). With forward_relay_ms = 0 or during a view change
        (primary unknown), to every replica at once."""
        relay_ms = self._relay_ms()
        if self._in_vc or relay_ms <= 0:
            self._send_forward(reqs, None)
            return
        due = self._now + relay_ms
        for req in reqs:
            self._relay_idx += 1
            self._relay_due[_key(req)] = (due, self._relay_idx)
        if not self.is_primary:
            self._send_forward(reqs, self.primary)

    def _send_forward(self, reqs: list[Request], to: int | None) -> None:
        """Signed Forwards of `reqs`, split at FORWARD_MAX_BYTES; to one replica or (None) all."""
        for chunk in _by_bytes(reqs, FORWARD_MAX_BYTES):
            fwd = self.auth.sign(Forward(chunk, self.id))
            if to is None:
                self._broadcast(fwd)
            else:
                self._send(to, fwd)

    def _relay_ms(self) -> int:
        # well before the request timer fires, whatever the configured timeouts
        return min(self.config.forward_relay_ms, self.config.timeout_request_ms // 4)

    def _relay_unproposed(self) -> None:
        """Relay to every replica our requests that the primary alone has and has not proposed
        forward_relay_ms after we sent them, unless it is visibly working through them in
        order: the primary batches in arrival order and our Forwards arrive in the order we
        sent them, so it is the request's turn soon if the primary proposed one of ours in the
        last forward_relay_ms and none sent after it. A primary that skips a request (proposes
        a later one of ours) or stops proposing ours gets it relayed. Under load this saves
        the broadcast of requests that merely queue at an honest primary. Entries leave
        `_relay_due` at their PRE-PREPARE or execution; a stalled batch is the request
        timers' and the view change's job."""
        relay_ms = self._relay_ms()
        working = self._now - self._relay_progress_ms < relay_ms
        again: list[Request] = []
        while self._relay_due:
            key, (due, idx) = next(iter(self._relay_due.items()))  # forwarding order = due order
            if due > self._now or (working and idx > self._relay_seen_idx):
                break
            del self._relay_due[key]
            entry = self._pending.get(key)
            if entry is not None:
                again.append(entry[0])
                self._forwarded_ms[key] = self._now
        self._send_forward(again, None)

    def _relay_proposed(self, key: Key) -> None:
        """The primary proposed `key`: no relay needed; note its progress through ours."""
        entry = self._relay_due.pop(key, None)
        if entry is not None:
            self._relay_progress_ms = self._now
            if entry[1] > self._relay_seen_idx:
                self._relay_seen_idx = entry[1]

    def _reforward_old_requests(self) -> None:
        """Lossy networks: relay requests that have waited long again. Our clients' to every
        replica, so each learns of them (and starts its request timer) even if the first
        Forward was lost; another relay's to the primary only (PBFT's backup rule: it may
        have refused them over that relay's rate), so a flooding relay's requests are not
        re-broadcast on our share. At most REFORWARD_MAX per status interval."""
        wait = max(self.config.timeout_request_ms, self.config.status_interval_ms)
        limit = min(self.config.batch_max, REFORWARD_MAX)
        mine: list[Request] = []
        others: list[Request] = []
        for key, (req, _) in self._pending.items():
            if self._now - self._forwarded_ms.get(key, 0) >= wait:
                (mine if self._pool_entry[key][0] == self.id else others).append(req)
                if len(mine) + len(others) >= limit:
                    break
        if self.is_primary or self._in_vc:
            others = []  # nobody to hand them to: they wait for their batch or the new view
        for req in mine + others:
            self._forwarded_ms[_key(req)] = self._now
        if mine:
            self._broadcast(self.auth.sign(Forward(tuple(mine), self.id)))
        if others:
            self._send(self.primary, self.auth.sign(Forward(tuple(others), self.id)))

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

    def _arm_request_timer(self) -> None:
        if self._in_vc or self.is_primary or not self._pending:
            self._rt.stop()
        elif self._rt.deadline is None:
            self._rt.arm(self._now, self.config.timeout_request_ms, next(iter(self._pending)),
                         len(self._pending), self.config.n)

    def _next_deadline(self) -> int | None:
        cands = [self._next_status_ms]
        if self._rt.deadline is not None:
            cands.append(self._rt.deadline)
        if self._vc_deadline is not None:
            cands.append(self._vc_deadline)
        if self._can_propose():
            # no deadline while the pipeline is full: an execution (a message) frees it
            if self._unproposed and self._pipeline_room(self._batch_would_be_full()):
                cands.append(self._batch_due_at())
            if self.config.heartbeat_ms > 0 and self._in_flight() == 0:
                cands.append(self._last_proposal_ms + self.config.heartbeat_ms)
        if self._fetch_goal > self._last_executed:
            stalled_at = self._last_progress_ms + self.config.status_interval_ms // 2
            cands.append(max(self._fetch_retry_ms, stalled_at))
        return max(min(cands), self._now + 1)

    # ------------------------------------------------------------------ client requests

    def _admit(self, req: Request, source: int | None = None) -> str | None:
        """Add a validly signed request to the pending pool, on `source`'s byte share (a
        relaying replica, the primary that proposed it, or us); a reason if it cannot be."""
        status = self._clients.status(req.client_id, req.request_seq)
        if status == "duplicate":
            return "duplicate"
        if status is not None:
            return status
        if expired(req, self._last_executed + 1):
            return "expired"
        key = _key(req)
        if key in self._pending:
            return "already pending"
        if len(self._pending) >= self.config.max_pending_requests:
            return "pool full"
        src = self.id if source is None else source
        size = held_bytes(req)
        if self._pool_bytes[src] + size > self.pool_share_bytes:
            return "pool full"
        self._pool_bytes[src] += size
        self._pool_entry[key] = (src, size)
        self._pending[key] = (req, self._now)
        self._forwarded_ms[key] = self._now
        if req.valid_until:
            self._expiring.add(key)
        if key not in self._proposed:
            self._unproposed.add(key, src, request_size(len(req.op)))
        self._arm_request_timer()
        return None

    def _is_admitted(self, req: Request) -> bool:
        entry = self._pending.get(_key(req))
        return entry is not None and entry[0] == req

    def _on_client_request(self, req: Request) -> None:
        reason = check_request(self.config, self.auth, req)
        if reason is None and not self._is_admitted(req):
            size = request_size(len(req.op))
            if not self._rates.take(self.id, self._now, size, half=True):
                self.dropped["client-request-over-rate"] += 1
                reason = "rate limited"
            else:
                reason = self._admit(req)
                if reason is None:
                    self._to_forward.append(req)
                    return
                self._rates.give(self.id, size)
        elif reason is None:
            reason = "already pending"
        if reason == "duplicate":
            self._out.reply.append(Duplicate(req.client_id, req.request_seq))
        elif reason != "already pending":
            self._out.reply.append(Rejected(req, reason))

    def on_forward(self, sender: int, fwd: Forward) -> None:
        """All or nothing: one invalid request refuses the whole FORWARD (one fault), checked
        before anything is admitted."""
        if len(fwd.requests) > MAX_FORWARD_REQUESTS:
            self._evidence("invalid-message", sender, "forward too large")
            return
        fresh = []
        room = self.pool_share_bytes - self._pool_bytes[sender]
        for i, req in enumerate(fwd.requests):
            if self._is_admitted(req):
                self.dropped["forwarded-request-already-pending"] += 1
                continue  # a relay of what we hold: no need to verify it again
            size = held_bytes(req)
            if size > room:  # over the relay's pool share: dropped unverified (no CPU spent)
                self.dropped["forwarded-request-over-share"] += 1
                continue
            if not self._rates.take(sender, self._now, request_size(len(req.op))):
                # unverified, like the rest of this FORWARD: the bucket refills with time only
                self.dropped["forwarded-request-over-rate"] += len(fwd.requests) - i
                break
            room -= size
            reason = check_request(self.config, self.auth, req)
            if reason is not None:
                self._evidence("invalid-message", sender, f"forwarded request: {reason}", req)
                return
            fresh.append(req)
        for req in fresh:
            if self._admit(req, sender) is not None:
                self.dropped["forwarded-request-not-admitted"] += 1

    # ------------------------------------------------------------------ receive: common checks

    def _on_receive(self, sender: int, msg: Any) -> None:
        if not 0 <= sender < self.config.n or sender == self.id:
            self.dropped["bad-sender"] += 1
            return
        if self._faults.cooling_off(sender, self._now):
            self.dropped["peer-cooling-off"] += 1
            return
        if isinstance(msg, COSTLY) and not self._within_budget(
                self._costly, sender, COSTLY_PER_INTERVAL, "costly-message-rate-limited"):
            return
        if not isinstance(msg, SIGNED_REPLICA_MESSAGES):
            self._evidence("invalid-message", sender, f"unexpected {type(msg).__name__}", msg)
            return
        if msg.replica != sender:
            self._evidence(
                "invalid-message", sender, f"claims replica {msg.replica} but came from {sender}"
            )
            return
        if not self.auth.verify(msg):
            self._evidence("bad-signature", sender, f"bad signature on {type(msg).__name__}")
            return
        self._dispatch(sender, msg)

    def _dispatch(self, sender: int, msg: Any) -> None:
        if isinstance(msg, PrePrepare | Prepare | Commit):
            if self._normal_gate(sender, msg):
                if isinstance(msg, PrePrepare):
                    self.on_pre_prepare(sender, msg)
                elif isinstance(msg, Prepare):
                    self.on_prepare(sender, msg)
                else:
                    self.on_commit(sender, msg)
        elif isinstance(msg, Checkpoint):
            self.on_checkpoint(sender, msg)
        elif isinstance(msg, ViewChange):
            self.on_view_change(sender, msg)
        elif isinstance(msg, NewView):
            self.on_new_view(sender, msg)
        elif isinstance(msg, Forward):
            self.on_forward(sender, msg)
        elif isinstance(msg, Status):
            self.on_status(sender, msg)
        elif isinstance(msg, FetchBlocks):
            self.on_fetch_blocks(sender, msg)
        elif isinstance(msg, BlockSync):
            self.on_block_sync(sender, msg)
        elif isinstance(msg, Conflict):
            self.on_conflict(sender, msg)

    def _normal_gate(self, sender: int, msg: PrePrepare | Prepare | Commit) -> bool:
        """View, mode and window checks shared by pre-prepare, prepare and commit."""
        if len(msg.digest) != DIGEST_LEN or msg.seq < 1 or msg.view < 0:
            self._evidence("invalid-message", sender, "malformed view/seq/digest", msg)
            return False
        if msg.view < self._view:
            self.dropped["old-view"] += 1
            return False
        if msg.view > self._view or (msg.view == self._view and self._in_vc):
            # a future view we may enter soon: keep it (bounded)
            return self._buffer_msg(sender, msg)
        if msg.seq <= self._log.low:
            self.dropped["below-low-watermark"] += 1
            return False
        if msg.seq > self._log.high:
            return self._buffer_msg(sender, msg)
        return True

    def _buffer_msg(self, sender: int, msg: Any) -> bool:
        """Keep a message we may need soon; bounded overall and per sender, and only for the
        next few views, so a faulty replica cannot crowd out the others' messages."""
        if msg.view > self._view + FUTURE_VIEWS:
            self.dropped["far-future-view"] += 1
            return False
        share = self._buffer_max // self.config.n
        size = held_bytes(msg)
        if (len(self._buffer) >= self._buffer_max or self._buffered[sender] >= share
                or self._buffered_bytes[sender] + size > self.buffer_share_bytes):
            self.dropped["buffer-full"] += 1
            return False
        arrival = self._now if self._arrival_ms is None else self._arrival_ms
        self._buffer.append((sender, msg, arrival))
        self._buffered[sender] += 1
        self._buffered_bytes[sender] += size
        return False

    def _replay_buffer(self) -> None:
        """Re-examine buffered messages (after a view change or a window move), judging their
        time against when they arrived, not now."""
        items, self._buffer = self._buffer, deque()
        self._buffered.clear()
        self._buffered_bytes.clear()
        outer = self._arrival_ms
        try:
            for sender, msg, arrival in items:
                if msg.view < self._view or msg.seq <= self._log.low:
                    continue
                self._arrival_ms = arrival
                if self._normal_gate(sender, msg):
                    self._dispatch(sender, msg)
        finally:
            self._arrival_ms = outer

    # ------------------------------------------------------------------ normal case

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
        if is_stale(self.config, pp, arrival):
            self.dropped["pre-prepare-stale"] += 1
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
        ev = slot.prepares.add(sender, p.digest, p)
        if ev:
            self._add_evidence(ev)
            return
        self._maybe_reveal(slot, sender, p.digest)
        self._check_slot(slot)

    def on_commit(self, sender: int, c: Commit) -> None:
        slot = self._log.slot(c.view, c.seq)
        ev = slot.commits.add(sender, c.digest, c)
        if ev:
            self._add_evidence(ev)
            return
        self._maybe_reveal(slot, sender, c.digest)
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

    # ------------------------------------------------------------------ proof exchange

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
        if full or cap == 0 or in_flight < cap:
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
                      self._now - self._last_proposal_ms >= cfg.heartbeat_ms):
                break  # heartbeats only on an idle pipeline
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

    # ------------------------------------------------------------------ execution

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
            self._rt.executed(len(run))
            if run:
                self._rates.executed(self._now, len(run),
                                     sum(request_size(len(r.op)) for r in run))
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

    def _forget_request(self, key: Key) -> None:
        if self._pending.pop(key, None) is not None:
            src, size = self._pool_entry.pop(key)
            self._pool_bytes[src] -= size
        self._relay_due.pop(key, None)
        self._forwarded_ms.pop(key, None)
        self._expiring.discard(key)
        self._unproposed.discard(key)
        self._proposed.discard(key)

    def _drop_expired(self) -> None:
        nxt = self._last_executed + 1
        gone = sorted(k for k in self._expiring if expired(self._pending[k][0], nxt))
        for key in gone:
            req = self._pending[key][0]
            self._forget_request(key)
            self._out.reply.append(Rejected(req, "expired"))
        if gone and not self._pending:
            self._rt.stop()

    # ------------------------------------------------------------------ checkpoints

    def on_checkpoint(self, sender: int, cp: Checkpoint) -> None:
        if (
            len(cp.state_digest) != DIGEST_LEN
            or cp.seq <= 0
            or cp.seq % self.config.checkpoint_interval != 0
        ):
            self._evidence("invalid-message", sender, "malformed checkpoint", cp)
            return
        if self._checkpoints.kept(cp) is None:  # a repeat was judged when it first came
            self._judge_checkpoint(sender, cp)
        if cp.seq <= self._stable_seq:
            return
        if self._checkpoints.beyond_horizon(cp.seq, max(self._stable_seq, self._last_executed)):
            self.dropped["checkpoint-beyond-horizon"] += 1
            return
        ev = self._checkpoints.add(cp)  # a bad one still counts: if 2f+1 agree, we are wrong
        if ev:
            self._add_evidence(ev)
            return
        self._check_stable(cp.seq)

    def _checkpoint_hash(self, seq: int) -> bytes | None:
        """Our block hash at checkpoint `seq` if we know it (executed, or proven stable)."""
        if seq == self._stable_seq and seq > 0:
            return self._stable_digest
        return self._own_checkpoints.get(seq)

    def _judge_checkpoint(self, sender: int, cp: Checkpoint) -> None:
        """A checkpoint whose digest differs from our block hash (or the proven stable digest)
        at its seq is evidence against its signer."""
        ours = self._checkpoint_hash(cp.seq)
        if ours is None or ours == cp.state_digest:
            return
        what = "the stable checkpoint" if cp.seq == self._stable_seq else "our block hash"
        self._evidence(
            "bad-checkpoint", sender,
            f"checkpoint {cp.seq} digest {cp.state_digest.hex()[:16]} differs from {what} "
            f"{ours.hex()[:16]}",
            cp,
        )

    def _remember_checkpoint_hash(self, seq: int, h: bytes) -> None:
        self._own_checkpoints[seq] = h
        while len(self._own_checkpoints) > self._checkpoints.max_seqs:
            del self._own_checkpoints[min(self._own_checkpoints)]

    def _check_stable(self, seq: int) -> None:
        if seq <= self._stable_seq:
            return
        found = self._checkpoints.proof(seq)
        if found is None:
            return
        digest, proof = found
        own = self._own_checkpoints.get(seq)
        if own is not None and own != digest:
            raise InvariantViolation(
                f"2f+1 replicas certify a different block hash at checkpoint {seq}"
            )
        if seq <= self._last_executed and own is None:
            return  # executed by sync below a checkpoint we did not sign: wait for the next
        self._advance_stable(seq, digest, proof)

    def _advance_stable(self, seq: int, digest: bytes, proof: tuple[Checkpoint, ...]) -> None:
        """Make `seq` the stable checkpoint (proof already verified) and collect garbage."""
        assert seq > self._stable_seq
        self._stable_seq, self._stable_digest, self._stable_proof = seq, digest, proof
        self._out.persist.append(StableCheckpoint(seq, digest, proof))
        self._out.persist.append(Prune(seq))
        self._log.gc(seq)
        self._checkpoints.gc(seq)
        self._bodies.gc(seq)
        keep_from = seq - self.config.watermark_window  # judge late checkpoints a window back
        for s in [s for s in self._own_checkpoints if s < keep_from]:
            del self._own_checkpoints[s]
        for s in [s for s in self._prepared if s <= seq]:
            del self._prepared[s]
        for s in [s for s in self._executed_digests if s <= seq - LATE_SYNC_KEEP]:
            del self._executed_digests[s]
        for k in [k for k in self._own if len(k) == 3 and k[2] <= seq]:
            del self._own[k]
        self._revealed = {k for k in self._revealed if k[1] > seq}
        if self._next_seq <= seq:
            self._next_seq = seq + 1
        self._replay_buffer()

    # ------------------------------------------------------------------ view change

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

    def _once_per_status_interval(self, last_sent: dict[int, int], to: int) -> bool:
        """True (and noted) if nothing was sent to `to` from `last_sent` within a status
        interval: per-peer rate limit of answers a peer's messages trigger."""
        last = last_sent.get(to)
        if last is not None and self._now - last < self.config.status_interval_ms:
            return False
        last_sent[to] = self._now
        return True

    def _status(self) -> Status:
        return self.auth.sign(
            Status(self._view, self._in_vc, self._last_executed, self._stable_seq, self.id))

    # ------------------------------------------------------------------ catch-up

    def on_status(self, sender: int, st: Status) -> None:
        if st.last_executed < 0 or st.stable_seq < 0 or st.view < 0:
            self._evidence("invalid-message", sender, "negative status fields", st)
            return
        self._peer_executed[sender] = st.last_executed
        if st.view < self._view or (st.view == self._view and st.in_view_change):
            self._maybe_resend_new_view(sender)
        if self._last_executed - st.last_executed > self.config.watermark_window // 2:
            self._answer_status(sender)

    def _answer_status(self, to: int) -> None:
        """A peer far behind (e.g. restarted from nothing) learns at once who is ahead, so its
        catch-up spreads over every peer from the start instead of the first one heard from.
        At most once per status interval per peer."""
        if self._once_per_status_interval(self._status_answered, to):
            self._send(to, self._status())

    def _weak_target(self) -> int:
        """A height at least one honest replica has executed: the (f+1)-th highest claim."""
        claims = sorted(self._peer_executed.values(), reverse=True)
        f = self.config.f
        target = claims[f] if len(claims) > f else 0
        weak = self._checkpoints.highest_weak()
        if weak is not None:
            target = max(target, weak[0])
        return max(target, self._stable_seq)

    def _fetch_target(self) -> int:
        """The highest height any peer claims (a liar only wastes one rate-limited fetch)."""
        return max(self._weak_target(), max(self._peer_executed.values(), default=0))

    def _maybe_fetch(self) -> None:
        target = self._fetch_goal
        behind = target - self._last_executed
        if behind <= 0:
            if self._fetch_asked:  # caught up: the next catch-up spreads its load afresh
                self._fetch_asked.clear()
            return
        if self._now < self._fetch_retry_ms:
            return
        stalled = self._now - self._last_progress_ms >= self.config.status_interval_ms // 2
        if not (stalled or behind > self.config.watermark_window // 2 or self._in_vc):
            return
        peers = sorted(p for p, e in self._peer_executed.items() if e > self._last_executed)
        weak = self._checkpoints.highest_weak()
        if weak is not None and weak[0] > self._last_executed:
            peers = sorted(set(peers) | {r for r in weak[1] if r != self.id})
        if not peers:
            return
        # a peer not heard from yet (e.g. just after our restart) is asked once too: it may
        # well be ahead, and one wasted retry interval per peer is the cost if it is not
        peers += [p for p in range(self.config.n) if p != self.id
                  and p not in self._peer_executed and p not in self._fetch_asked]
        # ask the peer asked least so far (ties: the first after our own id): catch-up load
        # spreads over the peers, and every peer that claims to be ahead is asked before any
        # is asked twice, so a forger among them is met (and convicted) rather than skipped
        # by whichever honest peer answers first
        order = [p for p in peers if p > self.id] + [p for p in peers if p < self.id]
        peer = min(order, key=lambda p: self._fetch_asked.get(p, 0))
        self._fetch_asked[peer] = self._fetch_asked.get(peer, 0) + 1
        start = self._last_executed + 1
        end = min(target, start + MAX_FETCH_BLOCKS - 1)
        self._send(peer, self.auth.sign(FetchBlocks(start, end, self.id)))
        self._fetch_retry_ms = self._now + self.config.status_interval_ms

    def on_fetch_blocks(self, sender: int, fb: FetchBlocks) -> None:
        if fb.from_seq < 1 or fb.to_seq < fb.from_seq:
            self._evidence("invalid-message", sender, "bad fetch range", fb)
            return
        if fb.from_seq > self._last_executed:
            return
        if not self._within_budget(self._serves, sender, SERVES_PER_INTERVAL,
                                   "fetch-rate-limited"):
            return
        end = min(fb.to_seq, fb.from_seq + MAX_FETCH_BLOCKS - 1, self._last_executed)
        self._out.fetch.append(ServeFetch(sender, fb.from_seq, end))

    def _on_clients_loaded(self, ev: ClientsLoaded) -> None:
        stale = ev.as_of < self._clients.evicted_through
        for client, seqs in ev.clients:
            self._loading.discard(client)
            if not stale:  # else storage may lack executions the table dropped: asked again
                self._clients.load(client, seqs)
        self._execute_ready()

    def _on_fetched_blocks(self, ev: FetchedBlocks) -> None:
        if not 0 <= ev.to < self.config.n or ev.to == self.id:
            raise LocalProtocolError(f"FetchedBlocks for bad replica {ev.to}")
        if ev.blocks:
            blocks = tuple(ev.blocks[:MAX_FETCH_BLOCKS])
            self._send(ev.to, self.auth.sign(BlockSync(blocks, self.id)))

    def on_block_sync(self, sender: int, bs: BlockSync) -> None:
        if len(bs.blocks) > MAX_FETCH_BLOCKS:
            self._evidence("bad-block-sync", sender, "too many blocks")
            return
        progressed = False
        for block in bs.blocks:
            pp = block.pre_prepare
            if pp.seq <= self._last_executed:
                # a late answer for blocks we already executed: an honest one matches our
                # digests (no work); one that differs must carry a valid certificate, else the
                # sender forged it (checked even after we caught up from someone else)
                ours = self._executed_digests.get(pp.seq)
                if ours is not None and ours != pp.digest:
                    reason = verify_committed_block(self.config, self.auth, block)
                    if reason:
                        self._evidence("bad-block-sync", sender, reason, block.pre_prepare)
                        return
                continue
            if pp.seq != self._last_executed + 1:
                break
            reason = verify_committed_block(self.config, self.auth, block)
            if reason:
                self._evidence("bad-block-sync", sender, reason, block.pre_prepare)
                return
            self._committed[pp.seq] = (pp, block.commits)
            self._execute_ready()
            progressed = True
        if progressed:
            self._fetch_retry_ms = self._now  # keep going while behind
            self._peer_executed[sender] = max(
                self._peer_executed.get(sender, 0), self._last_executed
            )

    # ------------------------------------------------------------------ invariants

    def _check_invariants(self) -> None:
        if self._log.low != self._stable_seq:
            raise InvariantViolation("low watermark differs from the stable checkpoint")
        if self._committed and min(self._committed) <= self._last_executed:
            raise InvariantViolation("an executed seq is still waiting for execution")
        if self._in_vc and self._new_view is not None:
            raise InvariantViolation("in view change with a NEW-VIEW for the view")
        if self.is_primary and not self._in_vc and self._next_seq <= self._stable_seq:
            raise InvariantViolation("primary would propose below the stable checkpoint")
        if len(self._pending) > self.config.max_pending_requests:
            raise InvariantViolation("pending pool exceeds its bound")
        if any(b > self.pool_share_bytes for b in self._pool_bytes.values()):
            raise InvariantViolation("a source's pending bytes exceed its share")
        if len(self._buffer) > self._buffer_max:
            raise InvariantViolation("message buffer exceeds its bound")
        if any(b > self.buffer_share_bytes for b in self._buffered_bytes.values()):
            raise InvariantViolation("a sender's buffered bytes exceed its share")


def _by_bytes(reqs: list[Request], limit: int) -> list[tuple[Request, ...]]:
    """Split `reqs` (in order) into chunks of at most `limit` request bytes (>= 1 each)."""
    chunks: list[tuple[Request, ...]] = []
    cur: list[Request] = []
    size = 0
    for r in reqs:
        n = request_size(len(r.op))
        if cur and size + n > limit:
            chunks.append(tuple(cur))
            cur, size = [], 0
        cur.append(r)
        size += n
    if cur:
        chunks.append(tuple(cur))
    return chunks
