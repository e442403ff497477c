"""The JSON-RPC method registry and the shape of one call: `method` registers a handler with
its params schema (`METHODS`, `SCHEMAS`), `parse_call` validates one request object, and
`_response` / `_call_error` build answers. The handlers (bftnode.rpc.handlers) register here;
dispatch (bftnode.rpc.methods) reads the table. Error lines are logged at most
ERROR_LOG_PER_S a second per client address (`log_error`), the rest counted into the next.
Imports: stdlib, structlog, bftnode.rpc.{errors,node_api,params}.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import structlog

from .errors import INVALID_PARAMS, INVALID_REQUEST, RPCError
from .node_api import NodeAPI
from .params import Params, parse

log = structlog.get_logger("bftnode.rpc")


@dataclass
class CallContext:
    """Per-connection context: who is calling, a task spawner for fire-and-forget work, and an
    error counter hook (the server's prometheus counters)."""

    node: NodeAPI
    peer: str = "?"
    transport: str = "http"  # "http" | "websocket"
    spawn: Callable[[Callable[[], Awaitable[Any]]], None] | None = None
    trace_id: str | None = None  # from the X-Trace-Id header; else one new id per call
    on_error: Callable[[str, int], None] | None = None  # (method, code)
    on_bad_input: Callable[[str], None] | None = None  # (reason code) a payload refused whole
    extra: dict[str, Any] = field(default_factory=dict)


Handler = Callable[[CallContext, dict[str, Any]], Awaitable[Any]]


METHODS: dict[str, Handler] = {}  # name -> handler of the raw params object


SCHEMAS: dict[str, type[Params]] = {}  # name -> its params (bftnode.rpc.params)

WS_ONLY = ("subscribe", "unsubscribe")  # served by the WebSocket connection (bftnode.rpc.websocket)


P = TypeVar("P", bound=Params)


def method(
    name: str, schema: type[P]
) -> Callable[[Callable[[CallContext, P], Awaitable[Any]]], Callable[..., Awaitable[Any]]]:
    """Register `fn(ctx, params: schema)` as method `name`; its params are parsed first."""

    def register(fn: Callable[[CallContext, P], Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        async def handler(ctx: CallContext, params: dict[str, Any]) -> Any:
            return await fn(ctx, parse(schema, params))

        assert name not in METHODS, f"method {name!r} registered twice"
        METHODS[name] = handler
        SCHEMAS[name] = schema
        return fn

    return register


def _response(req_id: Any, result: Any = None, error: RPCError | None = None) -> dict[str, Any]:
    if error is not None:
        return {"jsonrpc": "2.0", "id": req_id, "error": error.to_json()}
    return {"jsonrpc": "2.0", "id": req_id, "result": result}


def _valid_id(req_id: Any) -> bool:
    return req_id is None or (isinstance(req_id, str | int | float) and not isinstance(req_id, bool))


def parse_call(obj: Any) -> tuple[Any, str, dict[str, Any], bool]:
    """Validate one request object -> (id, method, params as dict, is_notification)."""
    if not isinstance(obj, dict):
        raise RPCError(INVALID_REQUEST, "a JSON-RPC request must be an object")
    req_id = obj.get("id")
    if not _valid_id(req_id):
        raise RPCError(INVALID_REQUEST, "'id' must be a string, number or null")
    if obj.get("jsonrpc") != "2.0":
        raise RPCError(INVALID_REQUEST, "'jsonrpc' must be exactly \"2.0\"")
    name = obj.get("method")
    if not isinstance(name, str):
        raise RPCError(INVALID_REQUEST, "'method' must be a string")
    params = obj.get("params", {})
    if params is None:
        params = {}
    if isinstance(params, list):
        params = named(name, params) if params else {}
    if not isinstance(params, dict):
        raise RPCError(INVALID_PARAMS, "params must be an object of named params")
    return req_id, name, params, "id" not in obj


# CometBFT's positional order of a method's params; a method not named here takes named params
# only (a non-empty list is refused, saying so)
POSITIONAL: dict[str, tuple[str, ...]] = {
    "block": ("height",),
    "block_by_hash": ("hash",),
    "header": ("height",),
    "commit": ("height",),
    "block_results": ("height",),
    "blockchain": ("min_height", "max_height"),
    "tx": ("hash", "prove"),
    "broadcast_tx_async": ("tx",),
    "broadcast_tx_sync": ("tx",),
    "broadcast_tx_commit": ("tx",),
    "check_tx": ("tx",),
    "abci_query": ("path", "data", "height", "prove"),
    "unconfirmed_txs": ("limit",),
    "kv_get": ("key",),
    "tx_status": ("hash",),
    "tx_search": ("query", "prove", "page", "per_page", "order_by"),
}


def named(name: str, params: list[Any]) -> dict[str, Any]:
    """Positional params of `name` as named ones (CometBFT's order; null = not given)."""
    order = POSITIONAL.get(name)
    if order is None:
        raise RPCError(INVALID_PARAMS, f"method {clip(name)!r} takes named params only (an "
                                       "object)")
    if len(params) > len(order):
        raise RPCError(INVALID_PARAMS, f"method {name!r} takes at most {len(order)} positional "
                                       f"params ({', '.join(order)}), got {len(params)}")
    return {k: v for k, v in zip(order, params, strict=False) if v is not None}


def _safe_id(obj: Any) -> Any:
    """The id to answer with when the request object itself is invalid."""
    req_id = obj.get("id") if isinstance(obj, dict) else None
    return req_id if _valid_id(req_id) else None


def clip(text: str, limit: int = 200) -> str:
    """Client-supplied text for a log line: at most `limit` characters, and says how many more."""
    return text if len(text) <= limit else f"{text[:limit]}...(+{len(text) - limit} chars)"


def _count(ctx: CallContext, name: str, code: int) -> None:
    if ctx.on_error is not None:
        ctx.on_error(name if name in METHODS else "?", code)


def _call_error(ctx: CallContext, name: str, req_id: Any, notify: bool,
                err: RPCError) -> dict[str, Any] | None:
    _count(ctx, name, err.code)
    log_error("rpc.error", ctx.peer, method=clip(name), code=err.code, reason=clip(err.message))
    return None if notify else _response(req_id, error=err)


def client_ip(peer: str) -> str:
    host = peer.rsplit(":", 1)[0] if ":" in peer else peer
    return host.strip("[]") or "?"


# a client's bad calls are its to send, not ours to log each: a batch of 1,000 bad calls (or a
# WebSocket sending them in a loop) would otherwise write a log line per call
ERROR_LOG_PER_S = 10
_MAX_TRACKED = 10_000
_error_lines: dict[str, list[float]] = {}  # client ip -> [second it counts, lines, unlogged]


def log_error(event: str, peer: str, clock: Callable[[], float] = time.monotonic,
              level: str = "info", **fields: Any) -> bool:
    """Log `event` for a client's error, unless its address already had ERROR_LOG_PER_S lines
    this second (then it is counted, and the next line logged says `unlogged`). True if
    logged."""
    ip, now = client_ip(peer), clock()
    r = _error_lines.get(ip)
    if r is None:
        if len(_error_lines) >= _MAX_TRACKED:
            _error_lines.clear()
        r = _error_lines[ip] = [now, 0, 0]
    if now - r[0] >= 1.0:
        r[0], r[1] = now, 0
    if r[1] >= ERROR_LOG_PER_S:
        r[2] += 1
        return False
    r[1] += 1
    if r[2]:
        fields["unlogged"], r[2] = int(r[2]), 0
    getattr(log, level)(event, peer=peer, **fields)
    return True
