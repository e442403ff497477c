"""bftnode's ledger storage: LevelDB for nodes, an in-memory twin for the simulator.

Owns blocks with their commit certificates, the tx index, the client dedup window, the
application key/value state and the crash-safe consensus log (own votes, view, checkpoint).
The API is synchronous (call it from trio.to_thread); one writer at a time, thread-safe reads.
Imports: stdlib, plyvel, msgspec, structlog and consensus (types/codec/messages/events) only.
"""

from .interface import (
    BlockCommit,
    CorruptionError,
    StateCertificate,
    StateChunk,
    StateReader,
    StorageError,
    Store,
    StoredBlock,
    TxResult,
)
from .ledger import DEFAULT_DEDUP_WINDOW, SCHEMA_VERSION, LedgerStore
from .leveldb import LevelDBStore, open_store
from .memory import MemoryStore, SimulatedCrash
from .merkle_proof import ProofError, verify_absence, verify_membership, verify_range
from .merkle_tree import StaleVersion
from .results_root import result_leaf, results_proof, results_root, verify_result

__all__ = [
    "BlockCommit",
    "CorruptionError",
    "DEFAULT_DEDUP_WINDOW",
    "LedgerStore",
    "LevelDBStore",
    "MemoryStore",
    "SCHEMA_VERSION",
    "SimulatedCrash",
    "StateCertificate",
    "StateChunk",
    "StateReader",
    "StorageError",
    "Store",
    "StoredBlock",
    "TxResult",
    "open_store",
    "ProofError",
    "StaleVersion",
    "verify_absence",
    "verify_membership",
    "verify_range",
    "result_leaf",
    "results_proof",
    "results_root",
    "verify_result",
]
