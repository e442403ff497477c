"""Application error codes: the `code` of a tx result and of a failed query.

Owns the numeric codes only. Imports: stdlib. Must not import anything of ours.
"""

from __future__ import annotations

OK = 0
BAD_OP = 1  # undecodable or invalid op (also rejected by check_tx)
NOT_FOUND = 2  # lease / lock / election does not exist
COMPACTED = 3  # requested revision was compacted away
FUTURE_REVISION = 4  # requested revision is newer than the current one
PERMISSION = 5  # the signing client does not own the lease
CONFLICT = 6  # stale or wrong fencing token, or lease already in use
LIMIT = 7  # a size or queue limit was hit
UNKNOWN_METHOD = 8  # query method not known
BUDGET_EXCEEDED = 9  # the tx read or would return more than its budget (bftnode.app.budgets)
INTERNAL = 10  # a bug: executing the op raised an unexpected exception (logged)
DEPTH_LIMIT = 11  # a new key would sit too deep in the state tree (storage.merkle_depth)
QUOTA = 12  # the signing client would hold more keys, bytes or leases than allowed (quotas.py)

CODE_NAMES = {
    OK: "ok",
    BAD_OP: "bad_op",
    NOT_FOUND: "not_found",
    COMPACTED: "compacted",
    FUTURE_REVISION: "future_revision",
    PERMISSION: "permission_denied",
    CONFLICT: "conflict",
    LIMIT: "limit",
    UNKNOWN_METHOD: "unknown_method",
    BUDGET_EXCEEDED: "budget_exceeded",
    INTERNAL: "internal_error",
    DEPTH_LIMIT: "depth_limit",
    QUOTA: "quota_exceeded",
}


class AppError(Exception):
    """A deterministic application-level failure: becomes a non-zero tx code or a query error."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    @property
    def name(self) -> str:
        return CODE_NAMES.get(self.code, "error")

    def __repr__(self) -> str:
        return f"AppError({self.code}, {self.message!r})"


class AppInvariantError(Exception):
    """The caller broke the contract (heights/times going backwards): stop, do not guess."""
