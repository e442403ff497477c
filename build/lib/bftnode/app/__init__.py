"""The replicated application: MVCC KV, leases, FIFO locks with fencing tokens, elections.

Pure and deterministic (no clock, randomness or I/O; time is the agreed block time).
The node (bftnode.node) calls `KVApplication().execute_block(...)` / `.query(...)`; clients build op
bytes with `ops`. Imports: stdlib, msgspec, consensus (Request), storage.interface.
"""

from . import budgets, ops
from .application import QUERY_METHODS, Application, BlockEffects, KVApplication
from .errors import AppError, AppInvariantError
from .events import AppEvent
from .memory_state import MemoryState

__all__ = [
    "Application",
    "AppError",
    "AppEvent",
    "AppInvariantError",
    "BlockEffects",
    "KVApplication",
    "MemoryState",
    "QUERY_METHODS",
    "budgets",
    "ops",
]
