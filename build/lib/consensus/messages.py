"""Wire messages of the PBFT protocol (msgspec Structs: frozen, compact, tagged).

Owns the message shapes only; signing lives in `auth`, bytes in `codec`.
Every replica message carries `replica` (the claimed signer) and `sig` (Ed25519 over the
canonical encoding of the message with `sig=b""`). Imports: stdlib, msgspec.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

# Wire bounds: what our own encoders can produce, checked at decode (so no handler ever sees a
# seq past 2^63, a 33-byte digest or a list longer than any honest message carries).
# `Config` refuses settings our messages could not fit in.
MAX_REPLICAS = 1024  # validators per chain
MAX_WINDOW = 4096  # prepared proofs in a VIEW-CHANGE, pre-prepares in a NEW-VIEW
MAX_BATCH_REQUESTS = 10_000  # requests in a PRE-PREPARE or a FORWARD
MAX_SYNC_BLOCKS = 64  # committed blocks in a BLOCK-SYNC answer
DIGEST_BYTES = 32
SIG_BYTES = 64  # Ed25519 (empty while signing)

U63 = Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]
ReplicaNo = Annotated[int, msgspec.Meta(ge=0, lt=MAX_REPLICAS)]
Digest = Annotated[bytes, msgspec.Meta(min_length=DIGEST_BYTES, max_length=DIGEST_BYTES)]
Sig = Annotated[bytes, msgspec.Meta(max_length=SIG_BYTES)]
PublicKey = Annotated[bytes, msgspec.Meta(max_length=32)]


class _Msg(
    msgspec.Struct, frozen=True, array_like=True, tag=True, omit_defaults=False,
    forbid_unknown_fields=True,
):
    pass


class Request(_Msg, tag=1):
    """A client transaction. `client_id` is the client's Ed25519 public key."""

    client_id: PublicKey
    request_seq: U63
    op: bytes
    valid_until: U63 = 0  # last sequence number (height) at which it may commit; 0 = no limit
    sig: Sig = b""


class PrePrepare(_Msg, tag=2):
    view: U63
    seq: U63
    time_ms: U63  # the primary's proposed block time
    requests: Annotated[tuple[Request, ...], msgspec.Meta(max_length=MAX_BATCH_REQUESTS)]
    digest: Digest  # batch_digest(time_ms, requests)
    replica: ReplicaNo
    sig: Sig = b""


class Prepare(_Msg, tag=3):
    view: U63
    seq: U63
    digest: Digest
    replica: ReplicaNo
    sig: Sig = b""


class Commit(_Msg, tag=4):
    view: U63
    seq: U63
    digest: Digest
    replica: ReplicaNo
    sig: Sig = b""


class Checkpoint(_Msg, tag=5):
    seq: U63
    state_digest: Digest  # chain digest after executing `seq`
    replica: ReplicaNo
    sig: Sig = b""


class PreparedProof(_Msg, tag=6):
    """A pre-prepare plus 2f matching prepares from distinct backups (a prepared certificate)."""

    pre_prepare: PrePrepare
    prepares: Annotated[tuple[Prepare, ...], msgspec.Meta(max_length=MAX_REPLICAS)]


class ViewChange(_Msg, tag=7):
    new_view: U63
    stable_seq: U63
    stable_digest: Digest
    checkpoint_proof: Annotated[tuple[Checkpoint, ...], msgspec.Meta(max_length=MAX_REPLICAS)]  # 2f+1 checkpoints for stable_seq (empty at 0)
    prepared: Annotated[tuple[PreparedProof, ...], msgspec.Meta(max_length=MAX_WINDOW)]  # for every seq > stable_seq prepared in any view
    replica: ReplicaNo
    sig: Sig = b""


class NewView(_Msg, tag=8):
    view: U63
    view_changes: Annotated[tuple[ViewChange, ...], msgspec.Meta(max_length=MAX_REPLICAS)]  # 2f+1, distinct senders
    pre_prepares: Annotated[tuple[PrePrepare, ...], msgspec.Meta(max_length=MAX_WINDOW)]  # re-proposals and null requests, seq ascending
    replica: ReplicaNo
    sig: Sig = b""


class Forward(_Msg, tag=9):
    """Client requests relayed between replicas (each request is client-signed)."""

    requests: Annotated[tuple[Request, ...], msgspec.Meta(max_length=MAX_BATCH_REQUESTS)]
    replica: ReplicaNo
    sig: Sig = b""


class Status(_Msg, tag=10):
    """Periodic gossip used for catch-up and retransmission."""

    view: U63
    in_view_change: bool
    last_executed: U63
    stable_seq: U63
    replica: ReplicaNo
    sig: Sig = b""


class CommittedBlock(_Msg, tag=11):
    """A batch with its commit certificate (2f+1 commits for its view/seq/digest)."""

    pre_prepare: PrePrepare
    commits: Annotated[tuple[Commit, ...], msgspec.Meta(max_length=MAX_REPLICAS)]


class FetchBlocks(_Msg, tag=12):
    from_seq: U63
    to_seq: U63
    replica: ReplicaNo
    sig: Sig = b""


class BlockSync(_Msg, tag=13):
    """Committed blocks sent in answer to FetchBlocks (verified by their certificates)."""

    blocks: Annotated[tuple[CommittedBlock, ...], msgspec.Meta(max_length=MAX_SYNC_BLOCKS)]
    replica: ReplicaNo
    sig: Sig = b""


class Conflict(_Msg, tag=14):
    """Proof exchange: a backup shows a peer that voted another digest for a slot the
    PRE-PREPARE it accepted there (signed by the primary of that view). Two such pre-prepares
    with different digests prove the primary equivocated."""

    pre_prepare: PrePrepare
    replica: ReplicaNo
    sig: Sig = b""


class StateVote(_Msg, tag=15):
    """A replica's post-execution roots of block `seq` (sent after the block is stored, with
    `Config.state_votes` on); 2f+1 equal ones certify the roots (consensus.state_votes)."""

    seq: U63
    block_hash: Digest
    state_root: Digest
    results_root: Digest
    replica: ReplicaNo
    sig: Sig = b""


MAX_SNAPSHOT_KEY = 8192  # a tree key: an app key (<= 4 KiB) with its keyspace and namespace
MAX_SNAPSHOT_ITEMS = 16_384  # entries in a SNAPSHOT-CHUNK
SnapshotKey = Annotated[bytes, msgspec.Meta(max_length=MAX_SNAPSHOT_KEY)]


class BlocksPruned(_Msg, tag=16):
    """Answer to a FETCH-BLOCKS below the sender's lowest kept block: fetch a snapshot."""

    base: U63  # the lowest block the sender keeps
    snapshot_seq: U63  # the height it serves a snapshot at (0: none)
    replica: ReplicaNo
    sig: Sig = b""


class FetchSnapshot(_Msg, tag=17):
    """Ask for the page of the state at `height` (0: the peer's choice) from `after_key`."""

    height: U63
    after_key: SnapshotKey
    replica: ReplicaNo
    sig: Sig = b""


class SnapshotChunk(_Msg, tag=18):
    """One page of a certified snapshot (storage.snapshot): tree entries from `after_key` in
    key order and their range proof; the first page (after_key b"") also carries the block at
    `height` with its commit certificate, its prev hash and the roots' certificate."""

    height: U63
    after_key: SnapshotKey
    items: Annotated[tuple[tuple[SnapshotKey, bytes], ...],
                     msgspec.Meta(max_length=MAX_SNAPSHOT_ITEMS)]
    proof: bytes
    more: bool
    block: CommittedBlock | None
    prev_hash: bytes
    certificate: Annotated[tuple[StateVote, ...], msgspec.Meta(max_length=MAX_REPLICAS)]
    replica: ReplicaNo
    sig: Sig = b""


Message = (
    Request
    | PrePrepare
    | Prepare
    | Commit
    | Checkpoint
    | ViewChange
    | NewView
    | Forward
    | Status
    | FetchBlocks
    | BlockSync
    | Conflict
    | StateVote
    | BlocksPruned
    | FetchSnapshot
    | SnapshotChunk
)

SIGNED_REPLICA_MESSAGES = (
    PrePrepare,
    Prepare,
    Commit,
    Checkpoint,
    ViewChange,
    NewView,
    Forward,
    Status,
    FetchBlocks,
    BlockSync,
    Conflict,
    StateVote,
    BlocksPruned,
    FetchSnapshot,
    SnapshotChunk,
)
