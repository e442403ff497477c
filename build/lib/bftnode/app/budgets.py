"""What one op, one tx and one block may cost the state machine, and the meter that enforces it.

Owns the budget constants (documented in docs/consistency.md, "Budgets") and `Meter`, which
an Overlay charges for every state entry it hands to a tx (a `get` or one iterated entry).
Every count is a function of the op and the state only, so every correct replica stops a tx
at the same entry with the same result: code BUDGET_EXCEEDED, no writes.
Imports: stdlib, bftnode.app.errors. Must not import consensus, storage or any I/O.
"""

from __future__ import annotations

from .errors import BUDGET_EXCEEDED, AppError

MiB = 1024 * 1024

# ---------------------------------------------------------------- op bytes (before decoding)
MAX_OP_BYTES = 2 * MiB  # = the RPC's largest tx; an op is part of a tx
MAX_OP_DEPTH = 8  # msgpack containers nested in an op (a valid txn needs 3)
MAX_OP_ITEMS = 8192  # array elements + map keys and values in all (a valid op needs < 7000)

# ---------------------------------------------------------------- reads at execution
OP_SCAN_ENTRIES = 20_000  # state entries one op (or one op inside a txn) may read
OP_READ_BYTES = 4 * MiB  # key + value bytes of those entries
TX_SCAN_ENTRIES = 50_000  # the same for a whole tx
TX_READ_BYTES = 8 * MiB

# ---------------------------------------------------------------- results
TX_RESULT_BYTES = MiB + 64 * 1024  # encoded result: one largest value and its metadata
MAX_ERROR_CHARS = 1024  # an error message in a result is cut to this

# ---------------------------------------------------------------- per block
COMPACT_STEP_ENTRIES = 2048  # history entries compaction examines per block
LEASE_EXPIRIES_PER_BLOCK = 1024  # leases removed at the start of a block; the rest next block
BLOCK_SCAN_ENTRIES = 100_000  # state entries all txs of a block may read (~0.25 s on LevelDB)
BLOCK_READ_BYTES = 32 * MiB
BLOCK_RESULT_BYTES = 16 * MiB  # encoded results of all txs of a block
# What every tx may spend however much of the block is gone, so small txs always run.
TX_FLOOR_ENTRIES = 64
TX_FLOOR_READ_BYTES = 64 * 1024
TX_FLOOR_RESULT_BYTES = 4 * 1024


class BlockBudget:
    """What a block's txs have spent of the block budget; each tx is metered within what is left
    (never below the floors), in block order, so every replica stops the same tx at the same entry."""

    __slots__ = ("entries", "nbytes", "result_bytes")

    def __init__(self) -> None:
        self.entries = 0
        self.nbytes = 0
        self.result_bytes = 0

    def meter(self) -> Meter:
        """A meter for the block's next tx."""
        return Meter(
            min(TX_SCAN_ENTRIES, max(TX_FLOOR_ENTRIES, BLOCK_SCAN_ENTRIES - self.entries)),
            min(TX_READ_BYTES, max(TX_FLOOR_READ_BYTES, BLOCK_READ_BYTES - self.nbytes)),
        )

    def result_cap(self) -> int:
        return min(TX_RESULT_BYTES,
                   max(TX_FLOOR_RESULT_BYTES, BLOCK_RESULT_BYTES - self.result_bytes))

    def spend(self, meter: Meter, result_bytes: int) -> None:
        """Charge the tx just run (failed or not: its reads were made)."""
        self.entries += meter.entries
        self.nbytes += meter.nbytes
        self.result_bytes += result_bytes


class Meter:
    """Entries and bytes a tx has read, against the tx budget and its current op's budget."""

    __slots__ = ("entries", "nbytes", "tx_entries", "tx_bytes", "_entry_cap", "_byte_cap",
                 "_op_entries", "_op_bytes")

    def __init__(self, tx_entries: int = TX_SCAN_ENTRIES, tx_bytes: int = TX_READ_BYTES) -> None:
        self.entries = 0
        self.nbytes = 0
        self.tx_entries = tx_entries  # the tx budget, cut to what its block has left
        self.tx_bytes = tx_bytes
        self.start_op()

    def start_op(self) -> None:
        """The next reads belong to a new op: it gets the op budget, within what the tx has left."""
        self._op_entries = self.entries
        self._op_bytes = self.nbytes
        self._entry_cap = min(self.tx_entries, self.entries + OP_SCAN_ENTRIES)
        self._byte_cap = min(self.tx_bytes, self.nbytes + OP_READ_BYTES)

    def charge(self, entries: int, nbytes: int) -> None:
        self.entries += entries
        self.nbytes += nbytes
        if self.entries > self._entry_cap or self.nbytes > self._byte_cap:
            raise AppError(BUDGET_EXCEEDED, self._over())

    def _over(self) -> str:
        if self.entries > self.tx_entries:
            if self.tx_entries < TX_SCAN_ENTRIES:
                return (f"tx read more than the {self.tx_entries} state entries its block had "
                        f"left (block budget {BLOCK_SCAN_ENTRIES}); retry in a later block")
            return f"tx read more than {TX_SCAN_ENTRIES} state entries"
        if self.nbytes > self.tx_bytes:
            if self.tx_bytes < TX_READ_BYTES:
                return (f"tx read more than the {self.tx_bytes} bytes of state its block had "
                        f"left (block budget {BLOCK_READ_BYTES}); retry in a later block")
            return f"tx read more than {TX_READ_BYTES} bytes of state"
        if self.entries - self._op_entries > OP_SCAN_ENTRIES:
            return f"op read more than {OP_SCAN_ENTRIES} state entries"
        return f"op read more than {OP_READ_BYTES} bytes of state"


def check_result(size: int, cap: int = TX_RESULT_BYTES) -> None:
    if size > cap:
        if cap < TX_RESULT_BYTES:
            raise AppError(BUDGET_EXCEEDED, f"result of {size} bytes exceeds the {cap} its block "
                           f"had left (block budget {BLOCK_RESULT_BYTES}); retry in a later block")
        raise AppError(BUDGET_EXCEEDED, f"result of {size} bytes exceeds {TX_RESULT_BYTES}")
