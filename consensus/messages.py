"""Wire messages of the PBFT protocol (msgspec Structs: frozen, compact, tagged).

Owns the message shapes only; signing lives in `auth`, bytes in `codec`.
Every replica message carries `replica` (the claimed signer) and `sig` (Ed25519 over the
canonical encoding of the message with `sig=b""`). Imports: stdlib, msgspec.
"""

from __future__ import annotations

import msgspec


class _Msg(msgspec.Struct, frozen=True, array_like=True, tag=True, omit_defaults=False):
    pass


class Request(_Msg, tag=1):
    """A client transaction. `client_id` is the client's Ed25519 public key."""

    client_id: bytes
    request_seq: int
    op: bytes
    valid_until: int = 0  # last sequence number (height) at which it may commit; 0 = no limit
    sig: bytes = b""


class PrePrepare(_Msg, tag=2):
    view: int
    seq: int
    time_ms: int  # the primary's proposed block time
    requests: tuple[Request, ...]
    digest: bytes  # batch_digest(time_ms, requests)
    replica: int
    sig: bytes = b""


class Prepare(_Msg, tag=3):
    view: int
    seq: int
    digest: bytes
    replica: int
    sig: bytes = b""


class Commit(_Msg, tag=4):
    view: int
    seq: int
    digest: bytes
    replica: int
    sig: bytes = b""


class Checkpoint(_Msg, tag=5):
    seq: int
    state_digest: bytes  # chain digest after executing `seq`
    replica: int
    sig: bytes = b""


class PreparedProof(_Msg, tag=6):
    """A pre-prepare plus 2f matching prepares from distinct backups (a prepared certificate)."""

    pre_prepare: PrePrepare
    prepares: tuple[Prepare, ...]


class ViewChange(_Msg, tag=7):
    new_view: int
    stable_seq: int
    stable_digest: bytes
    checkpoint_proof: tuple[Checkpoint, ...]  # 2f+1 checkpoints for stable_seq (empty at 0)
    prepared: tuple[PreparedProof, ...]  # for every seq > stable_seq prepared in any view
    replica: int
    sig: bytes = b""


class NewView(_Msg, tag=8):
    view: int
    view_changes: tuple[ViewChange, ...]  # 2f+1, distinct senders
    pre_prepares: tuple[PrePrepare, ...]  # re-proposals and null requests, seq ascending
    replica: int
    sig: bytes = b""


class Forward(_Msg, tag=9):
    """Client requests relayed between replicas (each request is client-signed)."""

    requests: tuple[Request, ...]
    replica: int
    sig: bytes = b""


class Status(_Msg, tag=10):
    """Periodic gossip used for catch-up and retransmission."""

    view: int
    in_view_change: bool
    last_executed: int
    stable_seq: int
    replica: int
    sig: bytes = b""


class CommittedBlock(_Msg, tag=11):
    """A batch with its commit certificate (2f+1 commits for its view/seq/digest)."""

    pre_prepare: PrePrepare
    commits: tuple[Commit, ...]


class FetchBlocks(_Msg, tag=12):
    from_seq: int
    to_seq: int
    replica: int
    sig: bytes = b""


class BlockSync(_Msg, tag=13):
    """Committed blocks sent in answer to FetchBlocks (verified by their certificates)."""

    blocks: tuple[CommittedBlock, ...]
    replica: int
    sig: bytes = b""


class Conflict(_Msg, tag=14):
    """Proof exchange: a backup shows a peer that voted another digest for a slot the
    PRE-PREPARE it accepted there (signed by the primary of that view). Two such pre-prepares
    with different digests prove the primary equivocated."""

    pre_prepare: PrePrepare
    replica: int
    sig: bytes = b""


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
)
