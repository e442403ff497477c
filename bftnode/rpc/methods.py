"""The JSON-RPC 2.0 method table and dispatch: parsed JSON in, JSON-able answers out.

Owns the method registry (`METHODS`, with each method's params schema in `SCHEMAS`),
request/batch validation and the mapping of every failure to a JSON-RPC error: a bad input is
a documented error code (its params are parsed once, by `bftnode.rpc.params`); -32603 is a bug
in the node or here (logged with its stack trace), and costs only the call that met it.
Transport-free: `bftnode.rpc.server` feeds it parsed JSON from HTTP and WebSocket. The methods
themselves live in `bftnode.rpc.handlers`, the JSON shapes in `bftnode.rpc.shapes`.

Imports: stdlib, msgspec, structlog, trio (batch concurrency only), bftnode.logging,
bftnode.rpc. Must not import starlette, hypercorn or bftnode.node.
"""

from __future__ import annotations

from typing import Any

import msgspec
import structlog
import trio

from ..logging import trace_context
from .bounds import BadPayload, check_json_bounds
from .errors import (
    INTERNAL_ERROR,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    PARSE_ERROR,
    RATE_LIMITED,
    TOO_LARGE,
    RPCError,
)
from .limits import RPCLimits
from .registry import (
    METHODS,
    SCHEMAS,
    WS_ONLY,
    CallContext,
    _call_error,
    _count,
    _response,
    _safe_id,
    clip,
    log_error,
    method,
    parse_call,
)
from .shapes import b64, block_json, commit_json, jsonable, result_json, tx_json

log = structlog.get_logger("bftnode.rpc")

MAX_BATCH = 1000

_json_decoder = msgspec.json.Decoder()
_json_encoder = msgspec.json.Encoder()
DEFAULT_LIMITS = RPCLimits()








# ---------------------------------------------------------------- dispatch










async def call_one(ctx: CallContext, obj: Any) -> dict[str, Any] | None:
    """Run one request object; returns its response (None for a notification)."""
    req_id: Any = _safe_id(obj)
    name = "?"
    notify = False
    try:
        req_id, name, params, notify = parse_call(obj)
        handler = METHODS.get(name)
        if handler is None:
            if name in WS_ONLY:
                raise RPCError(METHOD_NOT_FOUND, f"{name!r} is only available over /websocket")
            raise RPCError(METHOD_NOT_FOUND, f"method {name!r} not found; see docs/rpc.md")
        if ctx.trace_id is not None:  # the node binds it into its log lines for the tx
            with trace_context(ctx.trace_id):
                result = await handler(ctx, params)
        else:  # untraced: no id generated, no per-tx "tx committed" log line (hot path)
            result = await handler(ctx, params)
        hook = getattr(ctx.node, "answer_hook", None)  # a testnet seam (lying-reads); None
        if hook is not None:
            result = hook(name, params, result)
        return None if notify else _response(req_id, result)
    except RPCError as err:
        if err.code == RATE_LIMITED:  # counted and logged sparsely by read_guard.note_refused
            _count(ctx, name, err.code)
            return None if notify else _response(req_id, error=err)
        return _call_error(ctx, name, req_id, notify, err)
    except Exception as exc:  # a bug in a handler or the node: answer, log, keep serving
        _count(ctx, name, INTERNAL_ERROR)
        log.exception("rpc.internal_error", peer=ctx.peer, method=clip(name))
        err = RPCError(INTERNAL_ERROR, f"internal error in {name!r}: {type(exc).__name__}: {exc}")
        return None if notify else _response(req_id, error=err)




async def dispatch(
    ctx: CallContext, payload: Any
) -> dict[str, Any] | list[dict[str, Any]] | None:
    """Run a parsed JSON-RPC payload (one request object or a batch array). Returns what to
    send back: a response, a list of responses, or None (only notifications). Each call of a
    batch gets its own answer, whatever the others do. Reads from a client whose read bucket
    is empty are refused whole, before any call is parsed (read_guard.refuse_reads)."""
    if isinstance(payload, list):
        if not payload:
            err = RPCError(INVALID_REQUEST, "empty batch array")
            _count(ctx, "?", err.code)
            return _response(None, error=err)
        if len(payload) > MAX_BATCH:
            err = RPCError(TOO_LARGE, f"batch of {len(payload)} calls exceeds {MAX_BATCH}")
            _count(ctx, "?", err.code)
            return _response(None, error=err)
        refused_whole, answer = read_guard.refuse_reads(ctx, payload)
        if refused_whole:
            return answer
        if ctx.trace_id is None and _all_sync_submits(ctx, payload):
            return await handlers.submit_sync_batch(ctx, payload)
        read_guard.start_batch(ctx)  # its read answers share one byte budget
        # concurrently: a batch of broadcast_tx_commit must not wait for commits one by one
        results: list[dict[str, Any] | None] = [None] * len(payload)

        async def run(i: int, obj: Any) -> None:
            results[i] = await call_one(ctx, obj)

        async with trio.open_nursery() as nursery:
            for i, obj in enumerate(payload):
                nursery.start_soon(run, i, obj)
        out = [r for r in results if r is not None]
        return out or None
    refused_whole, answer = read_guard.refuse_reads(ctx, payload)
    if refused_whole:
        return answer
    return await call_one(ctx, payload)


def _all_sync_submits(ctx: CallContext, payload: list[Any]) -> bool:
    return hasattr(ctx.node, "submit_many") and all(
        isinstance(o, dict) and o.get("method") == "broadcast_tx_sync" for o in payload)




def parse_json(body: bytes | str, limits: RPCLimits = DEFAULT_LIMITS) -> Any:
    """Parse a request body or WebSocket message. Its nesting and value count are checked on
    the raw bytes first (`limits.max_json_depth`, `limits.max_json_elements`); raises
    BadPayload (an RPCError: PARSE_ERROR or INVALID_REQUEST) with the reason."""
    if isinstance(body, str):
        body = body.encode("utf-8", "surrogatepass")  # a lone surrogate: then not UTF-8
    check_json_bounds(body, limits.max_json_depth, limits.max_json_elements)
    try:
        return _json_decoder.decode(body)
    except msgspec.DecodeError as exc:
        raise BadPayload(PARSE_ERROR, f"parse error: body is not valid JSON ({exc})",
                         "malformed") from None
    except RecursionError:  # only with a depth limit above the decoder's own
        raise BadPayload(PARSE_ERROR, "parse error: JSON nested too deeply",
                         "too_deep") from None


def encode_answer(out: Any) -> bytes:
    """JSON bytes of an answer: a response, a batch's list of them, or any JSON-able object.
    A response that cannot be encoded (a bug: its result is not JSON) becomes an
    internal_error for that call only; the other answers of a batch are kept."""
    try:
        return _json_encoder.encode(out)
    except (TypeError, ValueError, OverflowError, msgspec.EncodeError) as exc:
        if isinstance(out, list) and len(out) > 1:
            return b"[" + b",".join(encode_answer(r) for r in out) + b"]"
        log.error("rpc.internal_error", reason=f"answer is not JSON: {type(exc).__name__}")
        err = RPCError(INTERNAL_ERROR, f"internal error: the answer is not JSON "
                                       f"({type(exc).__name__})")
        req_id = out.get("id") if isinstance(out, dict) else None
        try:
            return _json_encoder.encode(_response(req_id, error=err))
        except (TypeError, ValueError, OverflowError, msgspec.EncodeError):  # the id itself
            return _json_encoder.encode(_response(None, error=err))


def refused(ctx: CallContext, err: BadPayload) -> dict[str, Any]:
    """Count and log a payload refused whole; its error response (id null)."""
    _count(ctx, "?", err.code)
    if ctx.on_bad_input is not None:
        ctx.on_bad_input(err.reason)
    log_error("rpc.bad_input", ctx.peer, transport=ctx.transport, reason=err.reason,
              message=err.message)
    return _response(None, error=err)


async def handle_body(
    ctx: CallContext, body: bytes | str, limits: RPCLimits = DEFAULT_LIMITS
) -> dict[str, Any] | list[dict[str, Any]] | None:
    try:
        payload = parse_json(body, limits)
    except BadPayload as err:
        return refused(ctx, err)
    return await dispatch(ctx, payload)


__all__ = [
    "METHODS", "SCHEMAS", "WS_ONLY", "BadPayload", "CallContext", "call_one", "dispatch",
    "encode_answer", "handle_body", "method", "parse_call", "parse_json", "refused",
    # the JSON shapes, for callers that used them from here
    "b64", "block_json", "commit_json", "jsonable", "result_json", "tx_json",
]

from . import comet, explorer, handlers, read_guard  # noqa: E402, F401  (they register every method)
