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


class Meter:
    """Entries and bytes a tx has read, against the tx budget and its current op's budget."""

    __slots__ = ("entries", "nbytes", "_entry_cap", "_byte_cap", "_op_entries", "_op_bytes")

    def __init__(self) -> None:
        self.entries = 0
        self.nbytes = 0
        self.start_op()

    def start_op(self) -> None:
        """The next reads belong to a new op: it gets the op budget, within what the tx has left."""
        self._op_entries = self.entries
        self._op_bytes = self.nbytes
        self._entry_cap = min(TX_SCAN_ENTRIES, self.entries + OP_SCAN_ENTRIES)
        self._byte_cap = min(TX_READ_BYTES, self.nbytes + OP_READ_BYTES)

    def charge(self, entries: int, nbytes: int) -> None:
        self.entries += entries
        self.nbytes += nbytes
        if self.entries > self._entry_cap or self.nbytes > self._byte_cap:
            raise AppError(BUDGET_EXCEEDED, self._over())

    def _over(self) -> str:
        if self.entries > TX_SCAN_ENTRIES:
            return f"tx read more than {TX_SCAN_ENTRIES} state entries"
        if self.nbytes > TX_READ_BYTES:
            return f"tx read more than {TX_READ_BYTES} bytes of state"
        if self.entries - self._op_entries > OP_SCAN_ENTRIES:
            return f"op read more than {OP_SCAN_ENTRIES} state entries"
        return f"op read more than {OP_READ_BYTES} bytes of state"


def check_result(size: int) -> None:
    if size > TX_RESULT_BYTES:
        raise AppError(BUDGET_EXCEEDED, f"result of {size} bytes exceeds {TX_RESULT_BYTES}")
