"""The PBFT replica: the one `step(event) -> Output` of the consensus core.

`Replica` owns all replica state (`__init__`) and the control flow: common checks done once
per message (transport sender == claimed replica, signature, view, watermark window, digest
length: `_on_receive`, `_normal_gate`), then dispatch by message type (`_dispatch`) to the
`on_<message>` handlers; timers (`_on_<name>_timeout`) fire from `Tick`. Invariants are asserted
after every step (InvariantViolation).

The handlers live in one mixin per protocol phase (`consensus/phases/`: intake, proposal,
normal_case, checkpoints, view_change, catch_up, evidence, restore), over the typed shared state
`phases.state.ReplicaState`; every method is still a method of `Replica`. Rules live in the pure
helper modules (`normal`, `checkpoint`, `view_change`, `certificates`, `log`, `quorum`).

Pure and deterministic: never imports time, random, I/O, threads or async; the only clock is
`Tick(now_ms)`. Must not import any other bftnode package.
"""

from __future__ import annotations

from collections import Counter, OrderedDict, deque
from typing import Any

from .auth import Authenticator
from .bodies import BatchBodies
from .certificates import DIGEST_LEN
from .checkpoint import CheckpointVotes
from .codec import GENESIS_CHAIN_DIGEST
from .errors import InvariantViolation, LocalProtocolError
from .events import (
    ClientRequest,
    ClientRequests,
    ClientsLoaded,
    Event,
    Executed,
    FetchedBlocks,
    Output,
    Receive,
    RecoveredState,
    SnapshotChecked,
    SnapshotRead,
    Tick,
)
from .fair import FairQueue, SourceRates, SparseFirst
from .log import MessageLog
from .messages import (
    SIGNED_REPLICA_MESSAGES,
    BlocksPruned,
    BlockSync,
    Checkpoint,
    Commit,
    Conflict,
    FetchBlocks,
    FetchSnapshot,
    Forward,
    NewView,
    Prepare,
    PreparedProof,
    PrePrepare,
    Request,
    SnapshotChunk,
    StateVote,
    Status,
    ViewChange,
)
from .normal import ClientTable
from .peers import PeerFaults, held_bytes
from .phases.catch_up import CatchUpMixin
from .phases.checkpoints import CheckpointsMixin
from .phases.evidence import EvidenceMixin
from .phases.intake import MAX_FORWARD_REQUESTS, IntakeMixin
from .phases.liveness import LivenessMixin
from .phases.normal_case import NormalCaseMixin
from .phases.proposal import ProposalMixin
from .phases.report import ReportMixin
from .phases.restore import RestoreMixin
from .phases.snapshot import SnapshotMixin
from .phases.state import Key, ReplicaState
from .phases.state_roots import StateRootsMixin
from .phases.view_change import ViewChangeMixin
from .primary_watch import PrimaryWatch
from .request_timer import RequestTimer
from .state_votes import StateVotes
from .types import Config
from .view_change import ViewChangeVotes

# MAX_FORWARD_REQUESTS (phases/intake.py) is re-exported: the Byzantine strategies and the
# heavy-load test read it from here
__all__ = ["MAX_FORWARD_REQUESTS", "Replica"]

FUTURE_VIEWS = 2  # normal-case messages are buffered for at most this many views ahead
VC_RESEND_BACKOFF_MAX = 2  # our VIEW-CHANGE is resent after 1, 2, 4, 4, ... intervals
# VIEW-CHANGE, NEW-VIEW and BLOCK-SYNC messages (each up to a few hundred signatures to check)
# taken from one peer per status interval; an honest peer sends a few (resends back off)
COSTLY_PER_INTERVAL = 16
COSTLY = (ViewChange, NewView, BlockSync)


class Replica(
    IntakeMixin,
    ProposalMixin,
    NormalCaseMixin,
    CheckpointsMixin,
    ViewChangeMixin,
    CatchUpMixin,
    SnapshotMixin,
    EvidenceMixin,
    RestoreMixin,
    LivenessMixin,
    ReportMixin,
    StateRootsMixin,
    ReplicaState,
):
    """One PBFT replica. Feed it events with `step`; apply each Output in order.

    The `on_<message>` handlers and their helpers are inherited from the phase mixins in
    `consensus/phases/` (one module per protocol phase); `ReplicaState` declares the state
    set here, with its types."""

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
        self._pool_clients: Counter[bytes] = Counter()  # pending requests per client id
        # admission rate per source (fair.py): relays' at the full burst, our clients' at half
        # of it, so what we relay stays inside what our peers admit from us
        self._rates = SourceRates(config.source_rate_requests, config.source_rate_bytes,
                                  config.source_burst_ms, config.n)
        self._sparse = SparseFirst(config.sparse_backlog)  # busy clients wait (fair.py)
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
        self._state_votes = StateVotes(config)  # StateVotes and certificates (state_roots)
        self._own_roots: dict[int, bytes] = {}
        self._own_votes: dict[int, tuple[StateVote, int]] = {}  # (signed vote, sent at)
        self._late_heard: dict[int, dict[int, int]] = {}  # state_roots._answer_late_vote
        self._vcs = ViewChangeVotes()
        self._new_view: NewView | None = None  # the NEW-VIEW of the current view (sent/accepted)
        self._failed_vcs = 0
        self._vc_resends = 0
        self._vc_next_resend_ms = 0
        self._rt = RequestTimer()  # progress on our oldest pending request (request_timer.py)
        self._watch = PrimaryWatch(config)  # is the primary silent? (primary_watch.py)
        self._vc_deadline: int | None = None
        self._next_status_ms = 0
        self._peer_executed: dict[int, int] = {}
        self._fetch_retry_ms = 0
        self._fetch_goal = 0  # highest height a peer claims, computed once per step
        self._fetch_asked: dict[int, int] = {}  # FetchBlocks sent per peer, this catch-up
        self._last_progress_ms = 0
        self._serves: dict[int, tuple[int, int]] = {}  # peer -> (window start, count)
        self._snapshot_serves: dict[int, tuple[int, int]] = {}  # the same, for snapshot pages
        self._costly: dict[int, tuple[int, int]] = {}  # peer -> (window start, count)
        self._nv_resent: dict[int, int] = {}
        self._status_answered: dict[int, int] = {}  # peer -> when we last answered its Status
        # liveness without client traffic (phases/liveness.py)
        self._held_stale: dict[tuple[int, int], PrePrepare] = {}
        self._cp_resent: dict[int, int] = {}
        self._idle_since_ms = -1
        self._heard_ms: dict[int, int] = {}
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
        self.last_request_timeout: dict[str, int] | None = None  # the last one's figures
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

    def pending_requests(self, limit: int) -> list[Request]:
        """Up to `limit` requests waiting to commit here, oldest first (the RPC's
        unconfirmed_txs)."""
        out: list[Request] = []
        for req, _ in self._pending.values():
            if len(out) >= limit:
                break
            out.append(req)
        return out

    @property
    def convicted(self) -> dict[int, tuple[int, str]]:
        """Replicas convicted by committed evidence: replica -> (block height, kind)."""
        return dict(self._convicted)

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
        elif isinstance(event, SnapshotRead):
            self._on_snapshot_read(event)
        elif isinstance(event, SnapshotChecked):
            self._on_snapshot_checked(event)
        elif isinstance(event, ClientsLoaded):
            self._on_clients_loaded(event)
        elif isinstance(event, Executed):
            self._on_executed(event)
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

    # ------------------------------------------------------------------ tick and timers

    def _on_tick(self, now_ms: int) -> None:
        self._now = max(self._now, now_ms)
        if self._idle_since_ms < 0:
            self._idle_since_ms = self._now
        idle = self._idle_deadline()
        if idle is not None and self._now >= idle:
            self._on_idle_timeout()
        if self._rt.deadline is not None and self._now >= self._rt.deadline:
            self._on_request_timeout()
        if (not self._in_vc and not self.is_primary and self._weak_target() <= self._last_executed
                and self._watch.suspect(self._now, self._view, self.primary, self.id,
                                        self.config.f)):
            self._start_view_change(self._view + 1, "primary-silent")  # crashed or cut off
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
                          cfg.n, cfg.batch_max_bytes):
            return  # a deep queue at a working primary: not a reason to depose it
        # what the timer saw (health: why this replica suspected the primary)
        self.last_request_timeout = {
            "at_ms": self._now, "view": self._view, "watched_seq": rt.watch[1] if rt.watch else 0,
            "waited_ms": self._now - self._pending[rt.watch][1], "pending": len(self._pending),
            "executed_in_period": rt.in_period, "bytes_in_period": rt.in_period_bytes,
            "executed_since_watch": rt.since_watch, "budget": rt.budget,
            "last_executed": self._last_executed}
        rt.stop()
        self._start_view_change(self._view + 1, "request-timeout")

    def _on_view_change_timeout(self) -> None:
        self._vc_deadline = None
        self._failed_vcs += 1
        self._start_view_change(self._view + 1, "view-change-timeout")

    def _on_status_timeout(self) -> None:
        self._next_status_ms = self._now + self.config.status_interval_ms
        self._snapshot_timeout()
        self._broadcast(self._status())
        self._resend_state_votes()
        if self._in_vc:
            if self._now >= self._vc_next_resend_ms:  # lossy networks: keep asking, backing off
                self._vc_resends += 1
                self._vc_next_resend_ms = self._now + self.config.status_interval_ms * (
                    1 << min(self._vc_resends, VC_RESEND_BACKOFF_MAX))
                self._broadcast(self._own_view_change())
        else:
            self._retransmit_stuck_slots()
        self._reforward_old_requests()

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
        elif not self._in_vc and not self.is_primary:
            silent = self._watch.deadline(self._now, self._view, self.primary)
            cands += [silent] if silent is not None else []
        idle = self._idle_deadline()
        if idle is not None:
            cands.append(idle)
        if self._can_propose():
            # no deadline while the pipeline is full: an execution (a message) frees it
            if self._unproposed and self._pipeline_room(self._batch_would_be_full()):
                cands.append(self._batch_due_at())
            if self.config.heartbeat_ms > 0 and self._in_flight() == 0 and self._quorum_reachable():
                cands.append(self._last_proposal_ms + self.config.heartbeat_ms)
        if self._fetch_goal > self._last_executed:
            stalled_at = self._last_progress_ms + self.config.status_interval_ms // 2
            cands.append(max(self._fetch_retry_ms, stalled_at))
        return max(min(cands), self._now + 1)

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
        if isinstance(msg, Forward) and self.forward_over_rate(sender, msg):
            return
        if isinstance(msg, StateVote) and not self._state_vote_wanted(msg):
            return
        if not self.auth.verify(msg):
            self._evidence("bad-signature", sender, f"bad signature on {type(msg).__name__}")
            return
        self._watch.heard_from(sender, self._now)
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
        elif isinstance(msg, BlocksPruned):
            self.on_blocks_pruned(sender, msg)
        elif isinstance(msg, FetchSnapshot):
            self.on_fetch_snapshot(sender, msg)
        elif isinstance(msg, SnapshotChunk):
            self.on_snapshot_chunk(sender, msg)
        elif isinstance(msg, StateVote):
            self.on_state_vote(sender, msg)

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
