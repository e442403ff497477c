"""JSON-RPC 2.0 error codes of the bftnode RPC and the `RPCError` exception.

Owns the numeric codes (standard ones plus our documented server codes, see docs/rpc.md); the
client library maps them back to exceptions. Imports: stdlib only.
"""

from __future__ import annotations

from typing import Any

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
# server codes (-32000 .. -32099)
TX_REJECTED = -32001  # the node refused the tx before ordering (reason in message/data)
TIMEOUT = -32002  # e.g. broadcast_tx_commit did not see the commit in time (tx may still commit)
BAD_SIGNATURE = -32003  # the tx's client signature does not verify for this chain
APP_ERROR = -32004  # an application query failed: data = {code, name} (bftnode.app.errors)
NOT_FOUND = -32005  # block / tx not found
TOO_LARGE = -32006  # body or batch over the limit
OVERLOADED = -32007  # server-side limit (too many subscriptions, queue full)
RATE_LIMITED = -32008  # this client IP's read bucket is empty: data = {retry_after} (seconds)
STALE_READ = -32009  # the node cannot serve min_height / max_lag_ms: data = {height, ...}
PRUNED = -32010  # the block (or tx's block) is below the lowest height kept: data = {base_height}
# this client's request_seq is pending or committed with other content: data = {hash, ...}
CONFLICTING_REQUEST = -32012
# the tx's client already has genesis app.quotas.max_pending requests in this node's pool
CLIENT_QUOTA = -32013

CODE_NAMES = {
    PARSE_ERROR: "parse_error",
    INVALID_REQUEST: "invalid_request",
    METHOD_NOT_FOUND: "method_not_found",
    INVALID_PARAMS: "invalid_params",
    INTERNAL_ERROR: "internal_error",
    TX_REJECTED: "tx_rejected",
    TIMEOUT: "timeout",
    BAD_SIGNATURE: "bad_signature",
    APP_ERROR: "app_error",
    NOT_FOUND: "not_found",
    TOO_LARGE: "too_large",
    OVERLOADED: "overloaded",
    RATE_LIMITED: "rate_limited",
    STALE_READ: "stale_read",
    PRUNED: "pruned",
    CONFLICTING_REQUEST: "conflicting_request",
    CLIENT_QUOTA: "client_quota",
}


def rejection_code(reason: str) -> int:
    """The code of a tx the node refused before ordering, by the pool's reason."""
    if reason.startswith("client quota"):
        return CLIENT_QUOTA
    if reason.startswith("conflicting request"):
        return CONFLICTING_REQUEST
    return TX_REJECTED


class RPCError(Exception):
    """An error answered to the caller as a JSON-RPC error object (never a crash)."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data

    @property
    def name(self) -> str:
        return CODE_NAMES.get(self.code, "error")

    def to_json(self) -> dict[str, Any]:
        err: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.data is not None:
            err["data"] = self.data
        return err

    def __repr__(self) -> str:
        return f"RPCError({self.code}, {self.message!r})"
