"""The client's exceptions, and the one place a JSON-RPC error object becomes one of them.

Every failure the client raises is a `ClientError`; a node's JSON-RPC error answer is an
`RPCCallError` subclass chosen by its code (`raise_rpc_error`). Imports: stdlib,
bftnode.rpc.errors (the codes).
"""

from __future__ import annotations

from typing import Any

from ..rpc import errors as E


class ClientError(Exception):
    """Base of every client failure; `code` is the JSON-RPC error code when there is one."""

    def __init__(self, message: str, code: int | None = None, data: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.data = data


class RPCCallError(ClientError):
    """The node answered with a JSON-RPC error."""


class BadAnswer(RPCCallError, ValueError):
    """The node's answer is not JSON-RPC: not JSON, not an object (or array for a batch), or
    a batch answer lacking one of the calls. Also a ValueError, as a JSON decode error is."""


class TxRejected(RPCCallError):
    """The node refused the tx before ordering (bad op, stale request_seq, pool full...)."""


class ConflictingRequest(TxRejected):
    """This client's request_seq is already pending or committed with different content
    (`data["hash"]`: the refused tx); sign the new content with a new request_seq."""


class LeaseLost(ClientError):
    """The lease of a `lease()` block is gone or may be gone: a keepalive was refused (the
    lease is unknown), its TTL ran out by this client's clock before a keepalive was
    confirmed, or the chain reported it expired. `data`: {lease, reason}."""


class LockLost(LeaseLost):
    """The lease under a `lock()` block is lost, so the lock may be held by another client;
    `data` adds {lock, token}."""


class ClientQuotaExceeded(TxRejected):
    """The node's pool already holds this client's `max_pending` requests (genesis
    app.quotas): wait for some to commit, then send again."""


class TxTimeout(ClientError):
    """No node confirmed the commit in time; the tx may still commit (check with `tx`)."""


class BadSignature(RPCCallError):
    pass


class AppQueryError(RPCCallError):
    """An application read failed (data carries the app code/name)."""


class RateLimited(RPCCallError):
    """The node's read budget for this client address is spent; `retry_after` is how many
    seconds to wait (from the error's data)."""

    @property
    def retry_after(self) -> float:
        value = self.data.get("retry_after") if isinstance(self.data, dict) else None
        return float(value) if isinstance(value, int | float) else 1.0


class StaleRead(RPCCallError):
    """The node cannot serve the read as fresh as asked (`min_height` / `max_lag_ms`); `data`
    carries its height. Another node, or a later retry, may."""


class VerificationError(ClientError):
    """A node's answer could not be verified (bad or missing certificate, disagreeing nodes)."""


class ForgedAnswer(VerificationError):
    """The answer or its proof does not check against the pinned validators' certificate."""


class IncompleteAnswer(VerificationError):
    """The answer carries no proof, or its proof does not cover what the query reads."""


class StaleAnswer(VerificationError):
    """The proven state is older than the client accepts (a height below one already
    verified, or a block time beyond the staleness bound)."""


class NoNodeAvailable(ClientError):
    """Every node URL failed at the transport level."""


class SubscriptionClosed(ClientError):
    """The server closed a WebSocket subscription (`data` = its params: reason, code,
    resume_from_height)."""


class TxFailed(ClientError):
    """The tx committed but the application returned a non-zero code."""

    def __init__(self, message: str, code: int, result: dict[str, Any]) -> None:
        super().__init__(message, code, result)
        self.result = result


_BY_CODE: dict[int, type[RPCCallError]] = {
    E.TX_REJECTED: TxRejected, E.BAD_SIGNATURE: BadSignature, E.APP_ERROR: AppQueryError,
    E.RATE_LIMITED: RateLimited, E.STALE_READ: StaleRead,
    E.CONFLICTING_REQUEST: ConflictingRequest, E.CLIENT_QUOTA: ClientQuotaExceeded,
}


def rpc_error(err: Any) -> RPCCallError:
    """The exception for a JSON-RPC error object (`{"code", "message", "data"}`)."""
    if not isinstance(err, dict):
        return RPCCallError(f"malformed error object: {err!r}")
    code = err.get("code")
    cls = _BY_CODE.get(code, RPCCallError) if isinstance(code, int) else RPCCallError
    return cls(str(err.get("message", "")), code, err.get("data"))


def raise_rpc_error(err: Any) -> None:
    raise rpc_error(err)
