"""The Python client of a bftnode chain: `Client` (sync) and `AsyncClient` (asyncio or trio),
both over JSON-RPC 2.0, both thin fronts over one sans-I/O core.

Owns: the client key file and request_seqs (`keys`), signing txs for the chain's domain,
retrying safely (the SAME signed tx: executed at most once), failover between node URLs, and
trusting a commit only with a verified commit certificate (2f+1 valid Commits over a block
that contains the tx, against the validator set from `validators`) or, failing that, f+1
matching replies from different nodes. High-level helpers: put/get/delete/range/txn, leases
(with a keepalive context manager), locks (context manager yielding the fencing token),
elections, watches over WebSocket that resume by themselves (`watch`: docs/client.md).

Layout: `errors` (exceptions), `keys` (key and seq files), `core` (request building, THE
answer parser, failover and retry decisions, certificate checks: pure), `flows` (every
operation once, as a generator over `core` yielding Post/Sleep), `sync` (`Client`) and `aio`
(`AsyncClient`): each only performs Post and Sleep, and gets its methods generated from
`flows`; `verify` checks proven answers (docs/rpc.md "Proofs") against the validator set
pinned by a genesis file. Imports: stdlib, httpx, httpx_ws, anyio, msgspec, consensus,
bftnode.keys, bftnode.app (the pure queries the verifier re-runs), bftnode.rpc.errors, storage
only for its pure proof code (merkle_proof, keys). Must not import trio, network or the node.
"""

from __future__ import annotations

from .aio import AsyncClient
from .core import (
    DEFAULT_URL,
    ChainInfo,
    chain_info_from,
    verify_commit_certificate,
)
from .errors import (
    AppQueryError,
    BadAnswer,
    BadSignature,
    ClientError,
    ClientQuotaExceeded,
    ConflictingRequest,
    ForgedAnswer,
    IncompleteAnswer,
    LeaseLost,
    LockLost,
    NoNodeAvailable,
    RateLimited,
    RPCCallError,
    StaleAnswer,
    StaleRead,
    SubscriptionClosed,
    TxFailed,
    TxRejected,
    TxTimeout,
    VerificationError,
)
from .holds import HeldLease, HeldLock
from .keys import SEQ_RESERVE, SeqAllocator, default_key_path, load_or_create_key
from .outcomes import DEFAULT_VALID_BLOCKS
from .sync import Client
from .verify import ProofVerifier, chain_from_genesis, find_genesis
from .watch import WatchGap

__all__ = [
    "DEFAULT_URL", "SEQ_RESERVE", "AppQueryError", "AsyncClient", "BadAnswer", "BadSignature",
    "ChainInfo", "Client", "ClientError", "NoNodeAvailable", "RPCCallError", "RateLimited",
    "SeqAllocator", "StaleRead", "SubscriptionClosed", "TxFailed", "TxRejected", "TxTimeout", "VerificationError",
    "chain_info_from", "default_key_path", "load_or_create_key", "verify_commit_certificate",
    "ForgedAnswer", "IncompleteAnswer", "StaleAnswer", "ProofVerifier", "chain_from_genesis",
    "find_genesis", "ConflictingRequest", "LeaseLost", "LockLost", "HeldLease", "HeldLock",
    "DEFAULT_VALID_BLOCKS", "ClientQuotaExceeded", "WatchGap",
]
