"""bftnode's PBFT core: a pure, deterministic state machine (events in, actions out).

Must not import time, random, socket, asyncio, threading, trio, plyvel, libp2p or any other
bftnode package.
"""

from .auth import (
    Authenticator,
    Ed25519Signer,
    Ed25519Verifier,
    FastSigner,
    FastVerifier,
    Signer,
    Verifier,
    sign_request,
)
from .codec import batch_digest, chain_digest, decode, digest, encode, request_digest
from .errors import ConsensusError, DecodeError, InvariantViolation, LocalProtocolError
from .events import (
    CheckSnapshotChunk,
    ClientRequest,
    ClientRequests,
    ClientsLoaded,
    Conviction,
    Duplicate,
    Event,
    Evidence,
    Execute,
    Executed,
    FetchedBlocks,
    LoadClients,
    Output,
    OwnVote,
    PreparedCert,
    Prune,
    Receive,
    Record,
    RecoveredState,
    Rejected,
    Send,
    ServeFetch,
    ServeSnapshot,
    SnapshotChecked,
    SnapshotRead,
    StableCheckpoint,
    StateCertified,
    StateDivergence,
    Tick,
    ViewState,
)
from .evidence import EvidenceOp, parse_evidence_op, verify_proof
from .messages import (
    BlocksPruned,
    BlockSync,
    Checkpoint,
    Commit,
    CommittedBlock,
    Conflict,
    FetchBlocks,
    FetchSnapshot,
    Forward,
    Message,
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
from .replica import Replica
from .types import ClientId, Config, Digest, ReplicaId, Seq, View
from .view_change import build_new_view

__all__ = [name for name in dir() if not name.startswith("_")]
