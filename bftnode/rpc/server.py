"""The RPC server: JSON-RPC 2.0 over HTTP and WebSocket (starlette app, hypercorn on trio).

Owns the transport side: `POST /` (single and batch calls, body size limit and deadline),
`GET /health`, `GET /metrics` (the node's prometheus text plus the RPC server's own counters),
`GET /<method>` (CometBFT-style URI calls for curl), `/websocket` (`bftnode.rpc.websocket`)
and serving it all under the connection limits of `RPCLimits` (deadlines on the request head,
the body and idle WebSockets; caps on connections in total and per client address; see
`bftnode.rpc.connections`), in TLS when given a context (`bftnode.rpc.tls`; plain HTTP is
refused beyond loopback unless insecure). A client that drops mid-request is an info line.
Method semantics live in `bftnode.rpc.methods` and `bftnode.rpc.handlers`.

Imports: stdlib, trio, starlette, hypercorn, prometheus_client, structlog, bftnode.logging,
bftnode.rpc. Must not import bftnode.node, storage internals or network.
"""

from __future__ import annotations

import errno
import logging
import math
import socket
import ssl
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.utils import wrap_app
from prometheus_client import generate_latest
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect
from starlette.requests import Request as HTTPRequest
from starlette.responses import Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from ..logging import trace_from_headers
from . import explorer
from . import methods as m
from .connections import ConnectionLimiter, open_file_cap, serve_app
from .errors import METHOD_NOT_FOUND, NOT_FOUND, TIMEOUT, TOO_LARGE, RPCError
from .limits import RPCLimits
from .metrics import RPCMetrics
from .node_api import NodeAPI
from .params import TOPICS
from .registry import log_error
from .tls import exposure_error
from .websocket import (
    WS_MAX_INFLIGHT,
    WS_MAX_SUBSCRIPTIONS,
    WS_OVERFLOW_GRACE_S,
    WS_QUEUE,
    WSConnection,
)

log = structlog.get_logger("bftnode.rpc")

MAX_BODY_BYTES = 1024 * 1024
MAX_DRAIN_BYTES = 64 * 1024 * 1024  # past this an oversized body is not even read to the end
MAX_HEAD_BYTES = 64 * 1024  # request line and headers (hypercorn's h11_max_incomplete_size)

__all__ = [
    "MAX_BODY_BYTES", "TOPICS", "WS_MAX_INFLIGHT", "WS_MAX_SUBSCRIPTIONS",
    "WS_OVERFLOW_GRACE_S", "WS_QUEUE", "RPCMetrics", "RPCStartupError", "bind_socket",
    "create_app", "serve_rpc",
]


class RPCStartupError(Exception):
    """The RPC server cannot start (port in use, bad address); the message says which."""


def _json(obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(m.encode_answer(obj), status_code=status, media_type="application/json",
                    headers=headers)


def _error(err: RPCError, status: int, headers: dict[str, str] | None = None) -> Response:
    return _json({"jsonrpc": "2.0", "id": None, "error": err.to_json()}, status, headers)


def _peer(conn: HTTPRequest | WebSocket) -> str:
    c = conn.client
    return f"{c.host}:{c.port}" if c else "?"


# ---------------------------------------------------------------- HTTP


async def _read_body(request: HTTPRequest, limit: int) -> bytes:
    """The body, or RPCError(TOO_LARGE) after draining (so the client reads our answer)."""
    declared = request.headers.get("content-length")
    digits = declared is not None and declared.isascii() and declared.isdigit()
    if digits and len(declared) < 20 and int(declared) > MAX_DRAIN_BYTES:
        raise RPCError(TOO_LARGE, f"body of {declared} bytes exceeds the {limit}-byte limit")
    chunks: list[bytes] = []
    size = 0
    over = False
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            over = True
            chunks.clear()
            if size > MAX_DRAIN_BYTES:
                break
        elif chunk:
            chunks.append(chunk)
    if over:
        raise RPCError(TOO_LARGE, f"body of {size}+ bytes exceeds the {limit}-byte limit")
    return b"".join(chunks)


# a POST of reads refused whole (read_guard.refuse_reads) is answered after its retry_after,
# at most this: answering sooner only invites a retry that would be refused too (issue 27)
REFUSED_HOLD_MAX_S = 1.0


async def _hold_refused(ctx: m.CallContext) -> None:
    """Wait before answering an HTTP call refused whole for load (reads: read_guard; writes:
    handlers.hold_refused_writes): an answer at once only invites the same refused retry."""
    retry = ctx.extra.pop("refused_retry_after", None)
    if retry is not None:
        await trio.sleep(min(float(retry), REFUSED_HOLD_MAX_S))


def create_app(
    node: NodeAPI, *, max_body_bytes: int = MAX_BODY_BYTES, ws_queue: int = WS_QUEUE,
    ws_overflow_grace: float = WS_OVERFLOW_GRACE_S, metrics: RPCMetrics | None = None,
    limits: RPCLimits | None = None,
) -> Starlette:
    """The ASGI app over `node` (serve it with `serve_rpc`, or any ASGI server on trio). Of
    `limits` it applies the body deadline and the WebSocket idle deadline (the server applies
    the rest); without limits, none."""
    rpc_metrics = metrics or RPCMetrics()
    body_timeout = limits.body_timeout_s if limits else math.inf
    ws_idle = limits.ws_idle_timeout_s if limits else math.inf
    json_limits = limits or RPCLimits()  # JSON bounds always apply: the defaults without limits

    def context(conn: HTTPRequest | WebSocket, transport: str, **kw: Any) -> m.CallContext:
        trace = trace_from_headers(conn.headers.get("x-trace-id"),
                                   conn.headers.get("traceparent"))
        ctx = m.CallContext(node=node, peer=_peer(conn), transport=transport,
                            on_error=rpc_metrics.on_error,
                            on_bad_input=lambda reason: rpc_metrics.on_bad_input(transport,
                                                                                 reason),
                            trace_id=trace, **kw)
        ctx.extra["on_rate_limited"] = lambda n: rpc_metrics.on_rate_limited(transport, n)
        return ctx

    async def post_root(request: HTTPRequest) -> Response:
        rpc_metrics.calls.labels(transport="http").inc()
        ctx = context(request, "http")
        try:
            with trio.fail_after(body_timeout):
                body = await _read_body(request, max_body_bytes)
        except RPCError as err:
            rpc_metrics.on_error("?", err.code)
            log_error("rpc.body_too_large", ctx.peer, reason=err.message)
            return _error(err, 413)
        except trio.TooSlowError:
            rpc_metrics.timeouts.labels(phase="body").inc()
            log_error("rpc.body_timeout", ctx.peer, timeout_s=body_timeout)
            err = RPCError(TIMEOUT, f"request body not received within {body_timeout:g}s")
            return _error(err, 408, {"connection": "close"})
        except ClientDisconnect:
            log_error("rpc.client_gone", ctx.peer, phase="body")
            return Response(status_code=400)  # nobody is left to read it
        try:
            payload = m.parse_json(body, json_limits)
        except m.BadPayload as err:  # not JSON, or over the JSON bounds: refused whole
            return _json(m.refused(ctx, err), status=400)
        out = await m.dispatch(ctx, payload)
        await _hold_refused(ctx)
        if out is None:  # only notifications
            return Response(status_code=204)
        return _json(out)

    async def get_health(request: HTTPRequest) -> Response:
        try:
            h = node.health()
        except Exception as exc:  # report, never crash the endpoint
            log.exception("rpc.health_failed")
            return _json({"ok": False, "error": f"{type(exc).__name__}: {exc}"}, status=503)
        return _json(h, status=200 if h.get("ok") else 503)

    async def get_metrics(request: HTTPRequest) -> Response:
        text = node.metrics_text() + generate_latest(rpc_metrics.registry)
        return Response(text, media_type="text/plain; version=0.0.4; charset=utf-8")

    async def get_index(request: HTTPRequest) -> Response:
        return _json({
            "service": "bftnode JSON-RPC 2.0",
            "chain_id": node.chain_id,
            "node_id": node.node_id,
            "post": "/",
            "websocket": "/websocket",
            "methods": sorted(m.METHODS) + list(m.WS_ONLY),
        })

    async def get_method(request: HTTPRequest) -> Response:
        """CometBFT-style `GET /block?height=5`: every value is a string here, typed by the
        method's params schema (bftnode.rpc.params), as POST params are; a value in double
        quotes (CometBFT's way to pass a string: `path="/key"`) loses them."""
        rpc_metrics.calls.labels(transport="http").inc()
        name = request.path_params["method"]
        params: dict[str, Any] = {k: v[1:-1] if len(v) >= 2 and v[0] == v[-1] == '"' else v
                                  for k, v in request.query_params.items()}
        ctx = context(request, "http")
        out = await m.call_one(ctx, {"jsonrpc": "2.0", "id": -1, "method": name,
                                     "params": params})
        await _hold_refused(ctx)  # GET is a way to retry at once too
        assert out is not None
        status = 200
        if "error" in out:
            status = 404 if out["error"]["code"] in (METHOD_NOT_FOUND, NOT_FOUND) else 400
        return _json(out, status=status)

    async def websocket(ws: WebSocket) -> None:
        await WSConnection(node, ws, context(ws, "websocket"), rpc_metrics, ws_queue,
                           ws_overflow_grace, ws_idle, json_limits).run()

    routes = [
        Route("/", post_root, methods=["POST"]),
        Route("/", get_index, methods=["GET"]),
        Route("/health", get_health, methods=["GET"]),
        Route("/metrics", get_metrics, methods=["GET"]),
        WebSocketRoute("/websocket", websocket),
        *explorer.routes(),
        Route("/{method:str}", get_method, methods=["GET"]),
    ]
    app = Starlette(routes=routes)
    app.state.rpc_metrics = rpc_metrics
    return app


# ---------------------------------------------------------------- serving


def bind_socket(host: str, port: int) -> socket.socket:
    """Bind the listening socket up front so a busy port is a clear, immediate error."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise RPCStartupError(f"RPC address {host}:{port} does not resolve: {exc}") from None
    family, _, _, _, addr = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(addr)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise RPCStartupError(f"RPC port {host}:{port} is already in use") from None
        raise RPCStartupError(f"cannot bind the RPC server to {host}:{port}: {exc}") from None
    sock.listen(1024)
    sock.setblocking(False)
    return sock


def hypercorn_config(limits: RPCLimits, max_body_bytes: int) -> HypercornConfig:
    config = HypercornConfig()
    config.accesslog = None
    # a Logger, not "-": hypercorn then adds no plain-text handler of its own, and its lines
    # reach the root logger, which renders them as JSON (bftnode.logging)
    config.errorlog = logging.getLogger("hypercorn.error")
    config.websocket_max_message_size = max_body_bytes
    config.h11_max_incomplete_size = MAX_HEAD_BYTES
    config.graceful_timeout = 1.0
    # hypercorn's idle timer runs from the connection's start (and from each answer) until a
    # complete request head has arrived: our head deadline, and the keep-alive idle limit
    config.keep_alive_timeout = limits.header_timeout_s
    config.ssl_handshake_timeout = limits.header_timeout_s  # the first bytes, then the handshake
    config.read_timeout = None  # per receive; a subscriber may rightly send nothing for long
    return config


async def serve_rpc(
    node: NodeAPI,
    host: str = "127.0.0.1",
    port: int = 26657,
    *,
    max_body_bytes: int = MAX_BODY_BYTES,
    ws_queue: int = WS_QUEUE,
    ws_overflow_grace: float = WS_OVERFLOW_GRACE_S,
    metrics: RPCMetrics | None = None,
    limits: RPCLimits | None = None,
    tls: ssl.SSLContext | None = None,
    insecure: bool = False,
    shutdown_trigger: Callable[[], Awaitable[None]] | None = None,
    task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the RPC until cancelled. `task_status.started(url)` reports the bound URL (use
    port=0 for a free port; https:// with `tls`, a context from
    `bftnode.rpc.tls.server_context`). Raises RPCStartupError if the address cannot be bound,
    or is beyond loopback without `tls` and without `insecure`. `limits` default to those of
    RPCLimits (a node passes `RPCLimits.from_config(its config)`)."""
    refusal = exposure_error(host, tls is not None, insecure)
    if refusal:
        raise RPCStartupError(refusal)
    limits = limits or RPCLimits()
    total = open_file_cap(limits.max_connections)
    if total < limits.max_connections:
        log.warning("rpc.max_connections_lowered", wanted=limits.max_connections, cap=total,
                    reason="a quarter of the process's open-file limit")
    metrics = metrics or RPCMetrics()
    sock = bind_socket(host, port)
    bound_host, bound_port = sock.getsockname()[:2]
    config = hypercorn_config(limits, max_body_bytes)
    app = create_app(node, max_body_bytes=max_body_bytes, ws_queue=ws_queue,
                     ws_overflow_grace=ws_overflow_grace, metrics=metrics, limits=limits)
    scheme = "https" if tls is not None else "http"
    url = f"{scheme}://{bound_host}:{bound_port}" if ":" not in bound_host else (
        f"{scheme}://[{bound_host}]:{bound_port}")
    listener = trio.SocketListener(trio.socket.from_stdlib_socket(sock))
    limiter = ConnectionLimiter(total, limits.max_connections_per_address)
    log.info("rpc.listening", url=url, tls=tls is not None, max_connections=total,
             max_connections_per_address=limits.max_connections_per_address)
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(lambda task_status: serve_app(
                wrap_app(app, config.wsgi_max_body_size, "asgi"), config, listener, limiter,
                metrics, tls=tls, shutdown_trigger=shutdown_trigger,
                send_stall_s=limits.send_stall_s, task_status=task_status))
            task_status.started(url)
    finally:
        sock.close()
