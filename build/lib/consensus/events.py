"""Inputs to and outputs of `Replica.step`, and the records the shell must persist.

The shell applies each `Output` in this order: persist (one synced batch) -> send -> execute ->
reply. Imports: stdlib, msgspec.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import msgspec

from .messages import (
    Checkpoint,
    Commit,
    CommittedBlock,
    Message,
    NewView,
    Prepare,
    PreparedProof,
    PrePrepare,
    Request,
    SnapshotChunk,
    StateVote,
    ViewChange,
)

# ---------------------------------------------------------------- events (inputs)


@dataclass(frozen=True, slots=True)
class Tick:
    """Time passes. The only clock the replica knows (milliseconds, monotone per replica)."""

    now_ms: int


@dataclass(frozen=True, slots=True)
class Receive:
    """A message from replica `sender` (identity authenticated by the transport)."""

    sender: int
    message: Message


@dataclass(frozen=True, slots=True)
class ClientRequest:
    """A transaction submitted to this replica by a client (RPC)."""

    request: Request


@dataclass(frozen=True, slots=True)
class FetchedBlocks:
    """The shell's answer to a `ServeFetch`: committed blocks read from storage."""

    to: int
    blocks: tuple[CommittedBlock, ...]
    # the shell's lowest kept block, when the fetch started below it (else 0), and the
    # height it serves a snapshot at: the replica answers BLOCKS-PRUNED
    base: int = 0
    snapshot_seq: int = 0


@dataclass(frozen=True, slots=True)
class ClientRequests:
    """Several client transactions in one step (one RPC batch or one group of submissions):
    the replica relays all of them in ONE signed FORWARD instead of one per request."""

    requests: tuple[Request, ...]


@dataclass(frozen=True, slots=True)
class ClientsLoaded:
    """The shell's answer to `LoadClients`: each client's executed request_seqs (its dedup
    window; empty = none) as storage held them at height `as_of`."""

    as_of: int
    clients: tuple[tuple[bytes, tuple[int, ...]], ...]


@dataclass(frozen=True, slots=True)
class SnapshotRead:
    """The shell's answer to `ServeSnapshot`: the page to send (unsigned; `replica` is ours)."""

    to: int
    chunk: SnapshotChunk


@dataclass(frozen=True, slots=True)
class SnapshotChecked:
    """The shell's verdict on a `CheckSnapshotChunk`: `error` (the page or its certificate is
    bad), else the next page's first key, or None: the snapshot is installed."""

    peer: int
    height: int
    next_key: bytes | None
    error: str = ""


@dataclass(frozen=True, slots=True)
class Executed:
    """Block `seq` is stored with these post-execution roots (the shell, after the commit).
    With `Config.state_votes` on, the replica signs and broadcasts them as a StateVote."""

    seq: int
    block_hash: bytes
    state_root: bytes
    results_root: bytes


Event = (
    Tick | Receive | ClientRequest | ClientRequests | FetchedBlocks | ClientsLoaded | Executed
    | SnapshotRead | SnapshotChecked
)

# ---------------------------------------------------------------- persisted records


class _Rec(msgspec.Struct, frozen=True, array_like=True, tag=True):
    pass


class ViewState(_Rec, tag=101):
    view: int
    in_view_change: bool


class OwnVote(_Rec, tag=102):
    """A message this replica signed; reloaded on restart so it never signs a conflicting one."""

    message: PrePrepare | Prepare | Commit | ViewChange | NewView


class StableCheckpoint(_Rec, tag=103):
    seq: int
    digest: bytes
    proof: tuple[Checkpoint, ...]


class Prune(_Rec, tag=104):
    """Consensus records with seq <= `upto` are garbage (a stable checkpoint covers them)."""

    upto: int


class PreparedCert(_Rec, tag=105):
    """A prepared certificate this replica collected, persisted with (before sending) its
    COMMIT for the slot: after a restart its VIEW-CHANGE still carries the proof, so a batch
    that may have committed is never dropped at a view change. Kept by (view, seq) and
    pruned with the votes."""

    proof: PreparedProof


class Conviction(_Rec, tag=106):
    """Replica `replica` is proven faulty (kind "equivocation") by the evidence transaction
    executed at block `seq`. A deterministic function of the agreed log: every honest replica
    that executed block `seq` has the same conviction. Never revoked."""

    replica: int
    seq: int
    kind: str


Record = ViewState | OwnVote | StableCheckpoint | Prune | PreparedCert | Conviction

# ---------------------------------------------------------------- actions (outputs)


@dataclass(frozen=True, slots=True)
class Send:
    """Send `message` to replica `to`, or to every other replica when `to` is None."""

    to: int | None
    message: Message


@dataclass(frozen=True, slots=True)
class Execute:
    """A committed block, to be applied in `seq` order exactly once (with its certificate)."""

    seq: int
    view: int
    time_ms: int  # agreed block time: max(prev + 1, primary's proposal)
    requests: tuple[Request, ...]  # to execute (duplicates and expired already removed)
    skipped: tuple[tuple[Request, str], ...]  # in the batch but not executed, with the reason
    digest: bytes  # batch digest
    prev_hash: bytes
    block_hash: bytes
    pre_prepare: PrePrepare
    commits: tuple[Commit, ...]  # commit certificate (2f+1), empty for blocks restored by sync


@dataclass(frozen=True, slots=True)
class Rejected:
    """A client request refused before ordering, with a reason for the client."""

    request: Request
    reason: str


@dataclass(frozen=True, slots=True)
class Duplicate:
    """A request already executed: the shell answers with the stored result."""

    client_id: bytes
    request_seq: int


ReplyAction = Rejected | Duplicate


@dataclass(frozen=True, slots=True)
class Evidence:
    """Proof or suspicion of misbehaviour by `replica` (logged, counted, exposed)."""

    kind: str  # e.g. "equivocation", "bad-signature", "bad-new-view", "invalid-message"
    replica: int
    reason: str
    messages: tuple[Message, ...] = ()


@dataclass(frozen=True, slots=True)
class ServeFetch:
    """Read committed blocks [from_seq, to_seq] from storage and step `FetchedBlocks(to, …)`."""

    to: int
    from_seq: int
    to_seq: int


@dataclass(frozen=True, slots=True)
class LoadClients:
    """Once every block through `through` is committed, read these clients' executed
    request_seqs (the `dedup_window` below each one's highest) in the ledger and step
    `ClientsLoaded`.
    Emitted when the bounded client table lacks a client of the next batch to execute;
    execution waits for the answer."""

    client_ids: tuple[bytes, ...]
    through: int


@dataclass(frozen=True, slots=True)
class ServeSnapshot:
    """Read the page of our snapshot at `height` (0: the latest we serve) from `after_key` for
    replica `to`, then step `SnapshotRead` (or nothing, if we serve none)."""

    to: int
    height: int
    after_key: bytes


@dataclass(frozen=True, slots=True)
class CheckSnapshotChunk:
    """Verify a page of the snapshot we fetch (certificate, range proof), stage it, install the
    snapshot after its last page; then step `SnapshotChecked`."""

    sender: int
    chunk: SnapshotChunk


@dataclass(frozen=True, slots=True)
class StateCertified:
    """2f+1 StateVotes (exactly, sorted by replica) with equal roots for block `seq`: the
    shell stores them as the block's state certificate."""

    seq: int
    votes: tuple[StateVote, ...]


@dataclass(frozen=True, slots=True)
class StateDivergence:
    """Alarm: 2f+1 replicas certify other roots for block `seq` than this replica computed.
    Its state differs from the quorum's (a bug or a corrupted disk): the shell logs it at
    error level and counts it; the simulator reports it as a violation."""

    seq: int
    ours: tuple[bytes, bytes, bytes]  # (block_hash, state_root, results_root)
    certified: tuple[bytes, bytes, bytes]


@dataclass(slots=True)
class Output:
    persist: list[Record] = field(default_factory=list)
    send: list[Send] = field(default_factory=list)
    execute: list[Execute] = field(default_factory=list)
    reply: list[ReplyAction] = field(default_factory=list)
    evidence: list[Evidence] = field(default_factory=list)
    fetch: list[ServeFetch] = field(default_factory=list)
    load_clients: list[LoadClients] = field(default_factory=list)
    snapshot: list[ServeSnapshot | CheckSnapshotChunk] = field(default_factory=list)
    certified: list[StateCertified] = field(default_factory=list)
    divergence: list[StateDivergence] = field(default_factory=list)
    next_deadline_ms: int | None = None

    def extend(self, other: Output) -> None:
        self.persist.extend(other.persist)
        self.send.extend(other.send)
        self.execute.extend(other.execute)
        self.reply.extend(other.reply)
        self.evidence.extend(other.evidence)
        self.fetch.extend(other.fetch)
        self.load_clients.extend(other.load_clients)
        self.snapshot.extend(other.snapshot)
        self.certified.extend(other.certified)
        self.divergence.extend(other.divergence)
        if other.next_deadline_ms is not None and (
            self.next_deadline_ms is None or other.next_deadline_ms < self.next_deadline_ms
        ):
            self.next_deadline_ms = other.next_deadline_ms


@dataclass(frozen=True, slots=True)
class RecoveredState:
    """Everything a restarted replica needs, rebuilt by storage from its records and blocks."""

    view: int = 0
    in_view_change: bool = False
    own_votes: tuple[PrePrepare | Prepare | Commit | ViewChange | NewView, ...] = ()
    stable_checkpoint: StableCheckpoint | None = None
    last_executed: int = 0
    last_block_hash: bytes = bytes(32)
    last_time_ms: int = 0
    # request_seqs executed per client within the dedup window (see Config.dedup_window)
    client_executed: dict[bytes, tuple[int, ...]] = field(default_factory=dict)
    # False: some clients with history are not in client_executed (a capped restore); the
    # replica loads them on demand (LoadClients)
    clients_complete: bool = True
    # persisted prepared certificates above the stable checkpoint (any order, any view)
    prepared: tuple[PreparedProof, ...] = ()
    # convictions found in executed blocks (first per replica), in block order
    convicted: tuple[Conviction, ...] = ()
