"""The typed state the phase mixins share, and the helpers every phase uses.

`Replica` (consensus/replica.py) is `ReplicaState` plus one mixin per protocol phase (intake,
proposal, normal_case, checkpoints, view_change, catch_up, evidence, restore); its `__init__`
sets the state declared here. Pure: no clock, I/O, threads or randomness.
"""

from __future__ import annotations

from collections import Counter, OrderedDict, deque
from typing import TYPE_CHECKING, Any

from ..auth import Authenticator
from ..bodies import BatchBodies
from ..checkpoint import CheckpointVotes
from ..codec import signing_bytes
from ..errors import LocalProtocolError
from ..events import Evidence, Output, OwnVote, Send
from ..fair import FairQueue, SourceRates, SparseFirst
from ..log import MessageLog, Slot
from ..messages import (
    Checkpoint,
    Commit,
    NewView,
    Prepare,
    PreparedProof,
    PrePrepare,
    Request,
    ViewChange,
)
from ..normal import ClientTable
from ..peers import PeerFaults
from ..request_timer import RequestTimer
from ..types import Config
from ..view_change import ViewChangeVotes

Key = tuple[bytes, int]  # a request: (client_id, request_seq)


class ReplicaState:
    """The state every phase mixin reads and writes, declared with its types.

    `Replica.__init__` (consensus/replica.py) sets each attribute and says what it holds;
    the mixins in this package only declare what they share, so a phase module can be read
    (and type-checked) on its own. Also the few helpers every phase uses: sending, signing
    our votes once per slot, per-peer budgets."""

    # identity and the output of the current step
    config: Config
    id: int
    auth: Authenticator
    _out: Output
    _now: int
    # view and mode
    _view: int
    _in_vc: bool
    # the log, checkpoints and execution
    _log: MessageLog
    _stable_seq: int
    _stable_digest: bytes
    _stable_proof: tuple[Checkpoint, ...]
    _checkpoints: CheckpointVotes
    _own_checkpoints: dict[int, bytes]
    _last_executed: int
    _last_hash: bytes
    _last_time: int
    _clients: ClientTable
    _loading: set[bytes]
    _committed: dict[int, tuple[PrePrepare, tuple[Commit, ...]]]
    _executed_digests: dict[int, bytes]
    _prepared: dict[int, PreparedProof]
    _bodies: BatchBodies
    _own: dict[tuple, Any]
    # the pending pool, admission and relay
    _pending: dict[Key, tuple[Request, int]]
    _pool_bytes: Counter[int]
    _pool_entry: dict[Key, tuple[int, int]]
    _pool_clients: Counter[bytes]
    pool_share_bytes: int
    _rates: SourceRates
    _sparse: SparseFirst
    _forwarded_ms: dict[Key, int]
    _expiring: set[Key]
    _to_forward: list[Request]
    _relay_due: OrderedDict[Key, tuple[int, int]]
    _relay_idx: int
    _relay_seen_idx: int
    _relay_progress_ms: int
    # proposing (primary)
    _unproposed: FairQueue
    _proposed: set[Key]
    _flight: dict[int, set[int]]
    _next_seq: int
    _last_proposal_time: int
    _last_proposal_ms: int
    # view change and timers
    _vcs: ViewChangeVotes
    _new_view: NewView | None
    _failed_vcs: int
    _vc_resends: int
    _vc_next_resend_ms: int
    _vc_deadline: int | None
    _vc_resent: dict[tuple[int, int], int]
    _nv_resent: dict[int, int]
    _rt: RequestTimer
    _next_status_ms: int
    view_change_reasons: Counter[str]
    last_request_timeout: dict[str, int] | None
    # catch-up
    _peer_executed: dict[int, int]
    _fetch_retry_ms: int
    _fetch_goal: int
    _fetch_asked: dict[int, int]
    _last_progress_ms: int
    _serves: dict[int, tuple[int, int]]
    _snapshot_serves: dict[int, tuple[int, int]]
    _status_answered: dict[int, int]
    # receive: per-peer budgets and the buffer of future messages
    _costly: dict[int, tuple[int, int]]
    _buffer: deque[tuple[int, Any, int]]
    _arrival_ms: int | None
    _buffered: Counter[int]
    _buffered_bytes: Counter[int]
    _buffer_max: int
    buffer_share_bytes: int
    buffer_max_bytes: int
    # faults, evidence and convictions
    _faults: PeerFaults
    dropped: Counter[str]
    _convicted: dict[int, tuple[int, str]]
    _validator_index: dict[bytes, int]
    _proof_filed: set[int]
    _evidence_seq: int
    _revealed: set[tuple[int, int, int]]
    _reveal_budget: dict[int, tuple[int, int]]
    never_accuse: set[int]

    # ------------------------------------------------------------------ output helpers

    def _broadcast(self, msg: Any) -> None:
        self._out.send.append(Send(None, msg))

    def _send(self, to: int, msg: Any) -> None:
        self._out.send.append(Send(to, msg))

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

    def _once_per_status_interval(self, last_sent: dict[int, int], to: int) -> bool:
        """True (and noted) if nothing was sent to `to` from `last_sent` within a status
        interval: per-peer rate limit of answers a peer's messages trigger."""
        last = last_sent.get(to)
        if last is not None and self._now - last < self.config.status_interval_ms:
            return False
        last_sent[to] = self._now
        return True

    # ------------------------------------------------------------------ seams between phases
    # What one phase calls of another, declared for readers and type checkers only: each is
    # defined in the module named in the comment above it (found there at run time).

    if TYPE_CHECKING:
        # consensus/replica.py
        def _arm_request_timer(self) -> None: ...
        def _replay_buffer(self) -> None: ...
        @property
        def is_primary(self) -> bool: ...
        @property
        def primary(self) -> int: ...

        # phases/checkpoints.py
        def _advance_stable(
            self, seq: int, digest: bytes, proof: tuple[Checkpoint, ...]
        ) -> None: ...
        def _check_stable(self, seq: int) -> None: ...
        def _judge_checkpoint(self, sender: int, cp: Checkpoint) -> None: ...
        def _remember_checkpoint_hash(self, seq: int, h: bytes) -> None: ...

        # phases/evidence.py
        def _add_evidence(self, ev: Evidence) -> None: ...
        def _check_evidence_at_execution(
            self, run: tuple[Request, ...], skipped: tuple[tuple[Request, str], ...]
        ) -> tuple[tuple[Request, ...], tuple[tuple[Request, str], ...]]: ...
        def _convict_from(self, seq: int, run: tuple[Request, ...]) -> None: ...
        def _evidence(self, kind: str, replica: int, reason: str, *msgs: Any) -> None: ...
        def _maybe_reveal(self, slot: Slot, peer: int, digest: bytes) -> None: ...
        def _primary_skipped(self, view: int) -> bool: ...
        def _skip_convicted(self, view: int) -> int: ...

        # phases/intake.py
        def _admit(self, req: Request, source: int | None = None) -> str | None: ...
        def _drop_expired(self) -> None: ...
        def _forget_request(self, key: Key) -> None: ...
        def _is_admitted(self, req: Request) -> bool: ...
        def _relay_proposed(self, key: Key) -> None: ...

        # phases/liveness.py
        def _quorum_reachable(self) -> bool: ...

        # phases/normal_case.py
        def _accept_pre_prepare(self, slot: Slot, pp: PrePrepare) -> None: ...
        def _execute_ready(self) -> None: ...

        # phases/proposal.py
        def _fair_entry(self, key: Key) -> tuple[Key, int, int]: ...


        # phases/view_change.py
        def _maybe_resend_new_view(self, to: int) -> None: ...


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
