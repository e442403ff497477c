"""The RPC server: JSON-RPC 2.0 over HTTP and WebSocket (starlette app, hypercorn on trio).

Owns the transport side: `POST /` (single and batch calls, body size limit), `GET /health`,
`GET /metrics` (the node's prometheus text plus the RPC server's own counters), `GET /<method>`
(CometBFT-style URI calls for curl), and `/websocket` (pipelined JSON-RPC calls plus
`subscribe`/`unsubscribe` with a bounded per-connection queue: a subscriber that falls behind
gets an explicit `subscription_closed` notice naming the height to resume from — never a
silent drop). Method semantics live in `bftnode.rpc.methods`.

Imports: stdlib, trio, starlette, hypercorn, prometheus_client, structlog, consensus,
bftnode.rpc. Must not import the runtime, storage internals or network.
"""

from __future__ import annotations

import errno
import itertools
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
import structlog
import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.config import Sockets
from hypercorn.trio.run import worker_serve
from hypercorn.utils import wrap_app
from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request as HTTPRequest
from starlette.responses import Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from consensus import request_digest

from . import methods as m
from .errors import (
    INTERNAL_ERROR,
    INVALID_PARAMS,
    NOT_FOUND,
    OVERLOADED,
    TOO_LARGE,
    RPCError,
)
from .node_api import NodeAPI

log = structlog.get_logger("bftnode.rpc")

MAX_BODY_BYTES = 1024 * 1024
MAX_DRAIN_BYTES = 64 * 1024 * 1024  # past this an oversized body is not even read to the end
WS_QUEUE = 256  # outgoing messages buffered per WebSocket connection
WS_MAX_INFLIGHT = 512  # concurrent calls per WebSocket connection (then we stop reading)
WS_OVERFLOW_GRACE_S = 2.0  # a full queue must make room within this, else the reader is slow
WS_MAX_SUBSCRIPTIONS = 32
SUB_WAIT_S = 15.0
TOPICS = ("blocks", "txs", "kv", "events")
_encoder = msgspec.json.Encoder()


class RPCStartupError(Exception):
    """The RPC server cannot start (port in use, bad address); the message says which."""


class RPCMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.calls = Counter("bftnode_rpc_requests", "HTTP/WS JSON-RPC payloads", ["transport"],
                             registry=r)
        self.errors = Counter("bftnode_rpc_errors", "JSON-RPC errors answered", ["method", "code"],
                              registry=r)
        self.ws_connections = Gauge("bftnode_rpc_ws_connections", "Open WebSockets", registry=r)
        self.subscriptions = Gauge("bftnode_rpc_subscriptions", "Active subscriptions", registry=r)
        self.sub_overflows = Counter("bftnode_rpc_subscription_overflows",
                                     "Subscriptions closed because the reader was too slow",
                                     registry=r)

    def on_error(self, method: str, code: int) -> None:
        self.errors.labels(method=method, code=str(code)).inc()

    def value(self, name: str, labels: dict[str, str] | None = None) -> float:
        v = self.registry.get_sample_value(name, labels or {})
        return 0.0 if v is None else v


def _dumps(obj: Any) -> bytes:
    return _encoder.encode(obj)


def _json(obj: Any, status: int = 200) -> Response:
    return Response(_dumps(obj), status_code=status, media_type="application/json")


def _peer(conn: HTTPRequest | WebSocket) -> str:
    c = conn.client
    return f"{c.host}:{c.port}" if c else "?"


# ---------------------------------------------------------------- HTTP


async def _read_body(request: HTTPRequest, limit: int) -> bytes:
    """The body, or RPCError(TOO_LARGE) after draining (so the client reads our answer)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_DRAIN_BYTES:
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


def create_app(
    node: NodeAPI, *, max_body_bytes: int = MAX_BODY_BYTES, ws_queue: int = WS_QUEUE,
    ws_overflow_grace: float = WS_OVERFLOW_GRACE_S, metrics: RPCMetrics | None = None,
) -> Starlette:
    """The ASGI app over `node` (serve it with `serve_rpc`, or any ASGI server on trio)."""
    rpc_metrics = metrics or RPCMetrics()

    def context(conn: HTTPRequest | WebSocket, transport: str, **kw: Any) -> m.CallContext:
        trace = conn.headers.get("x-trace-id")
        return m.CallContext(node=node, peer=_peer(conn), transport=transport,
                             on_error=rpc_metrics.on_error,
                             trace_id=trace[:64] if trace else None, **kw)

    async def post_root(request: HTTPRequest) -> Response:
        rpc_metrics.calls.labels(transport="http").inc()
        ctx = context(request, "http")
        try:
            body = await _read_body(request, max_body_bytes)
        except RPCError as err:
            rpc_metrics.on_error("?", err.code)
            log.info("rpc.body_too_large", peer=ctx.peer, reason=err.message)
            return _json({"jsonrpc": "2.0", "id": None, "error": err.to_json()}, status=413)
        out = await m.handle_body(ctx, body)
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
        """CometBFT-style `GET /block?height=5` (query values are strings; ints accepted)."""
        rpc_metrics.calls.labels(transport="http").inc()
        name = request.path_params["method"]
        params: dict[str, Any] = {}
        for k, v in request.query_params.items():
            params[k] = {"true": True, "false": False}.get(v, v)
        ctx = context(request, "http")
        out = await m.call_one(ctx, {"jsonrpc": "2.0", "id": -1, "method": name,
                                     "params": params})
        assert out is not None
        status = 200
        if "error" in out:
            status = 404 if out["error"]["code"] in (-32601, NOT_FOUND) else 400
        return _json(out, status=status)

    async def websocket(ws: WebSocket) -> None:
        await _WSConnection(node, ws, context(ws, "websocket"), rpc_metrics, ws_queue,
                            ws_overflow_grace).run()

    routes = [
        Route("/", post_root, methods=["POST"]),
        Route("/", get_index, methods=["GET"]),
        Route("/health", get_health, methods=["GET"]),
        Route("/metrics", get_metrics, methods=["GET"]),
        WebSocketRoute("/websocket", websocket),
        Route("/{method:str}", get_method, methods=["GET"]),
    ]
    app = Starlette(routes=routes)
    app.state.rpc_metrics = rpc_metrics
    return app


# ---------------------------------------------------------------- WebSocket


class _Overflow(Exception):
    pass


class _WSConnection:
    """One WebSocket: a reader loop, a writer task draining a bounded queue, a task per call
    (pipelining) and a task per subscription."""

    _ids = itertools.count(1)

    def __init__(self, node: NodeAPI, ws: WebSocket, ctx: m.CallContext, metrics: RPCMetrics,
                 queue: int, overflow_grace: float) -> None:
        self.node = node
        self.ws = ws
        self.ctx = ctx
        self.metrics = metrics
        self.queue_size = queue
        self.overflow_grace = overflow_grace
        self.send_ch, self.recv_ch = trio.open_memory_channel[bytes](queue)
        self.subs: dict[str, trio.CancelScope] = {}
        self.inflight = trio.Semaphore(WS_MAX_INFLIGHT)

    async def run(self) -> None:
        await self.ws.accept()
        self.metrics.ws_connections.inc()
        try:
            async with trio.open_nursery() as nursery:
                self.nursery = nursery
                self.ctx.spawn = lambda fn: nursery.start_soon(fn)
                nursery.start_soon(self._writer)
                await self._reader()
                nursery.cancel_scope.cancel()
        except* WebSocketDisconnect:  # the client went away mid-send: nothing left to do
            pass
        finally:
            self.metrics.ws_connections.dec()
            self.metrics.subscriptions.dec(len(self.subs))
            self.subs.clear()

    async def _writer(self) -> None:
        try:
            async for data in self.recv_ch:
                await self.ws.send_text(data.decode())
        except (WebSocketDisconnect, RuntimeError, OSError):
            self.nursery.cancel_scope.cancel()

    async def _reader(self) -> None:
        while True:
            msg = await self.ws.receive()
            if msg["type"] == "websocket.disconnect":
                return
            data = msg.get("text")
            if data is None:
                data = msg.get("bytes") or b""
            self.metrics.calls.labels(transport="websocket").inc()
            await self.inflight.acquire()  # too many calls in flight: stop reading (TCP pushes back)
            self.nursery.start_soon(self._handle, data)

    async def _handle(self, data: str | bytes) -> None:
        try:
            try:
                payload = m.parse_json(data)
            except RPCError as err:
                self.metrics.on_error("?", err.code)
                log.info("rpc.parse_error", peer=self.ctx.peer, reason=err.message)
                await self._send({"jsonrpc": "2.0", "id": None, "error": err.to_json()})
                return
            if isinstance(payload, dict) and payload.get("method") in m.WS_ONLY:
                out: Any = await self._ws_method(payload)
            else:
                out = await m.dispatch(self.ctx, payload)
            if out is not None:
                await self._send(out)
        finally:
            self.inflight.release()

    async def _send(self, obj: Any) -> None:
        try:
            await self.send_ch.send(_dumps(obj))
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            pass

    # -- subscribe / unsubscribe

    async def _ws_method(self, obj: dict[str, Any]) -> dict[str, Any] | None:
        req_id = obj.get("id")
        try:
            req_id, name, params, notify = m.parse_call(obj)
            if name == "subscribe":
                result = await self._subscribe(params)
            else:
                result = self._unsubscribe(params)
            return None if notify else {"jsonrpc": "2.0", "id": req_id, "result": result}
        except Exception as exc:  # RPCError, or a failing node: answer and keep the socket
            if isinstance(exc, RPCError):
                err = exc
                log.info("rpc.error", peer=self.ctx.peer, method=obj.get("method"),
                         code=err.code, reason=err.message)
            else:
                log.exception("rpc.internal_error", peer=self.ctx.peer, method=obj.get("method"))
                err = RPCError(INTERNAL_ERROR, f"internal error: {type(exc).__name__}: {exc}")
            self.metrics.on_error(str(obj.get("method")), err.code)
            return {"jsonrpc": "2.0", "id": req_id if m._valid_id(req_id) else None,
                    "error": err.to_json()}

    async def _subscribe(self, params: dict[str, Any]) -> dict[str, Any]:
        topic = m.p_str(params, "topic", required=True, choices=TOPICS)
        assert topic is not None
        if len(self.subs) >= WS_MAX_SUBSCRIPTIONS:
            raise RPCError(OVERLOADED, f"at most {WS_MAX_SUBSCRIPTIONS} subscriptions per "
                                       "connection")
        height = self.node.height()
        start = m.p_int(params, "from_height", None, lo=1)
        prefix = None
        if topic == "kv":
            prefix = m.p_bytes(params, "prefix", allow_empty=True)
            if prefix is None:
                prefix = m.p_bytes(params, "key", required=True)
        from_revision = m.p_int(params, "from_revision", 0, lo=0) or 0
        client_id = None
        if topic == "txs" and params.get("client_id") is not None:
            cid = m.p_str(params, "client_id") or ""
            try:
                client_id = bytes.fromhex(cid)
            except ValueError:
                raise RPCError(INVALID_PARAMS, "param 'client_id' must be hex") from None
        if start is None:
            start = self._find_revision_start(from_revision, height) if from_revision else (
                height + 1
            )
        if start > height + 1:
            raise RPCError(INVALID_PARAMS, f"from_height {start} is beyond the next height "
                                           f"{height + 1}")
        if start <= height and self.node.block(start) is None:
            raise RPCError(NOT_FOUND, f"block {start} is no longer stored; resubscribe from a "
                                      "later height")
        sid = f"s{next(self._ids)}"
        scope = trio.CancelScope()
        self.subs[sid] = scope
        self.metrics.subscriptions.inc()
        spec = {"topic": topic, "prefix": prefix, "client_id": client_id,
                "from_revision": from_revision, "full": m.p_bool(params, "full", False),
                "encoding": m.encoding_of(params)}
        self.nursery.start_soon(self._run_subscription, sid, scope, spec, start)
        return {"subscription": sid, "topic": topic, "from_height": start}

    def _find_revision_start(self, from_revision: int, height: int) -> int:
        """First retained height whose app events may include `from_revision`."""
        h = height
        while h >= 1:
            evs = self.node.app_events(h)
            if evs is None:
                return h + 1
            revs = [r for r in (_field(e, "revision") for e in evs) if isinstance(r, int)]
            if revs and min(revs) < from_revision:
                return h
            h -= 1
        return 1

    def _unsubscribe(self, params: dict[str, Any]) -> dict[str, Any]:
        sid = m.p_str(params, "subscription", required=True)
        scope = self.subs.pop(sid or "", None)
        if scope is None:
            raise RPCError(NOT_FOUND, f"no subscription {sid!r} on this connection")
        scope.cancel()
        self.metrics.subscriptions.dec()
        return {"unsubscribed": sid}

    async def _notify(self, sid: str, topic: str, height: int, result: Any) -> None:
        """Queue a notification. A full queue gets `overflow_grace` seconds to drain; a reader
        that cannot take one message in that time is too slow (its subscription is closed)."""
        msg = _dumps({"jsonrpc": "2.0", "method": "subscription",
                      "params": {"subscription": sid, "topic": topic, "height": height,
                                 "result": result}})
        try:
            self.send_ch.send_nowait(msg)
            return
        except trio.WouldBlock:
            pass
        with trio.move_on_after(self.overflow_grace):
            await self.send_ch.send(msg)
            return
        raise _Overflow

    async def _run_subscription(self, sid: str, scope: trio.CancelScope, spec: dict[str, Any],
                                start: int) -> None:
        h = start
        reason = None
        code = OVERLOADED
        with scope:
            try:
                while True:
                    cur = await self.node.wait_height(h, SUB_WAIT_S)
                    while h <= cur:
                        block = self.node.block(h)
                        if block is None:
                            reason, code = f"block {h} is not stored", NOT_FOUND
                            return
                        await self._emit(sid, spec, block)
                        h += 1
            except _Overflow:
                self.metrics.sub_overflows.inc()
                reason = (f"slow reader: {self.queue_size} messages queued and none taken for "
                          f"{self.overflow_grace:g}s; resubscribe with from_height={h}")
                log.warning("rpc.subscription_overflow", peer=self.ctx.peer, subscription=sid,
                            resume_from_height=h)
            except _EventsGone as exc:
                reason, code = str(exc), NOT_FOUND
            except Exception as exc:  # a failing node read: close this subscription, loudly
                log.exception("rpc.subscription_failed", peer=self.ctx.peer, subscription=sid)
                reason = f"internal error: {type(exc).__name__}: {exc}"
                code = INTERNAL_ERROR
            finally:
                if reason is not None and self.subs.pop(sid, None) is not None:
                    self.metrics.subscriptions.dec()
        if reason is not None:
            # sent with a blocking put: the notice itself is never dropped
            await self._send({"jsonrpc": "2.0", "method": "subscription_closed",
                              "params": {"subscription": sid, "topic": spec["topic"],
                                         "code": code, "reason": reason,
                                         "resume_from_height": h}})

    async def _emit(self, sid: str, spec: dict[str, Any], block: Any) -> None:
        topic = spec["topic"]
        enc = spec["encoding"]
        if topic == "blocks":
            await self._notify(sid, topic, block.height, m.block_json(block, spec["full"]))
        elif topic == "txs":
            for req in block.txs:
                if spec["client_id"] is not None and req.client_id != spec["client_id"]:
                    continue
                res = self.node.tx(request_digest(req))
                if res is not None:
                    await self._notify(sid, topic, block.height, m.tx_json(res, enc))
        else:
            evs = self.node.app_events(block.height)
            if evs is None:
                raise _EventsGone(f"app events of block {block.height} are not retained by this "
                                  "node; re-read with kv_range and resubscribe from a later height")
            for ev in evs:
                if topic == "kv":
                    key = _field(ev, "key")
                    if not isinstance(key, bytes) or not key.startswith(spec["prefix"]):
                        continue
                    rev = _field(ev, "revision")
                    if isinstance(rev, int) and rev < spec["from_revision"]:
                        continue
                await self._notify(sid, topic, block.height, m.jsonable(ev, enc))


class _EventsGone(Exception):
    pass


def _field(ev: Any, name: str) -> Any:
    if isinstance(ev, dict):
        return ev.get(name)
    return getattr(ev, name, None)


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


async def serve_rpc(
    node: NodeAPI,
    host: str = "127.0.0.1",
    port: int = 26657,
    *,
    max_body_bytes: int = MAX_BODY_BYTES,
    ws_queue: int = WS_QUEUE,
    ws_overflow_grace: float = WS_OVERFLOW_GRACE_S,
    metrics: RPCMetrics | None = None,
    shutdown_trigger: Callable[[], Awaitable[None]] | None = None,
    task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the RPC until cancelled. `task_status.started(url)` reports the bound URL (use
    port=0 for a free port). Raises RPCStartupError if the address cannot be bound."""
    sock = bind_socket(host, port)
    bound_host, bound_port = sock.getsockname()[:2]
    config = HypercornConfig()
    config.bind = [f"{host}:{bound_port}"]
    config.accesslog = None
    config.websocket_max_message_size = max_body_bytes
    config.h11_max_incomplete_size = 64 * 1024
    config.graceful_timeout = 1.0
    config.keep_alive_timeout = 30.0
    app = create_app(node, max_body_bytes=max_body_bytes, ws_queue=ws_queue,
                     ws_overflow_grace=ws_overflow_grace, metrics=metrics)
    url = f"http://{bound_host}:{bound_port}" if ":" not in bound_host else (
        f"http://[{bound_host}]:{bound_port}")
    sockets = Sockets(secure_sockets=[], insecure_sockets=[sock], quic_sockets=[])
    log.info("rpc.listening", url=url)

    async def _serve(task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED) -> None:
        await worker_serve(wrap_app(app, config.wsgi_max_body_size, "asgi"), config,
                           sockets=sockets, shutdown_trigger=shutdown_trigger,
                           task_status=task_status)

    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(_serve)
            task_status.started(url)
    finally:
        sock.close()
