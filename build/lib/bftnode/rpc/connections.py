"""Accepting RPC connections: hypercorn's HTTP/1.1 and WebSocket protocol per connection, behind
a cap on open connections in total and per client address.

Owns the accept loop (`serve_app`): each accepted TCP connection is admitted by the
`ConnectionLimiter` and then served by hypercorn's own per-connection server (`TCPServer`:
HTTP parsing, keep-alive and the request-head deadline stay hypercorn's), or refused with a
fixed HTTP 503 JSON-RPC `overloaded` answer and closed. hypercorn's `worker_serve` has no
hook for this, so this module replaces it for one listening socket (no lifespan events: the
RPC app has none).

Imports: stdlib, trio, hypercorn, structlog, bftnode.rpc. Must not import bftnode.node.
"""

from __future__ import annotations

import collections
import json
import math
import resource
import ssl
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import structlog
import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio.tcp_server import TCPServer
from hypercorn.trio.worker_context import WorkerContext
from hypercorn.typing import AppWrapper, ConnectionState

from .errors import OVERLOADED
from .registry import log_error
from .tls import wrap_connection

log = structlog.get_logger("bftnode.rpc")

REFUSAL_GRACE_S = 0.5  # a refused client gets this long to take the 503 before the close
EOF_GRACE_S = 0.5  # after the client's EOF, hypercorn gets this long to finish on its own
SEND_CHUNK = 64 * 1024  # an answer is sent in pieces of this size, each under the stall deadline


class ConnectionLimiter:
    """Counts open connections in total and per client address; `admit` says why not."""

    def __init__(self, total: int, per_address: int) -> None:
        assert total >= 1 and per_address >= 1
        self.total = total
        self.per_address = per_address
        self.open = 0
        self.by_address: collections.Counter[str] = collections.Counter()

    def admit(self, address: str) -> str | None:
        """Count the connection in and return None, or return the reason it is refused."""
        if self.open >= self.total:
            return "total"
        if self.by_address[address] >= self.per_address:
            return "per_address"
        self.open += 1
        self.by_address[address] += 1
        return None

    def release(self, address: str) -> None:
        assert self.open > 0 and self.by_address[address] > 0
        self.open -= 1
        self.by_address[address] -= 1
        if not self.by_address[address]:
            del self.by_address[address]

    def refusal(self, reason: str) -> str:
        if reason == "per_address":
            return (f"too many connections from this client address (limit "
                    f"{self.per_address} per address); close idle ones or retry later")
        return f"too many open connections (limit {self.total}); retry later"


def open_file_cap(wanted: int) -> int:
    """`wanted`, lowered to a quarter of this process's open-file limit: the node's storage
    and peers need descriptors too."""
    try:
        soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    except (OSError, ValueError):  # pragma: no cover - no such limit on this platform
        return wanted
    if soft == resource.RLIM_INFINITY:
        return wanted
    return max(1, min(wanted, soft // 4))


def _refusal_bytes(message: str) -> bytes:
    body = json.dumps({"jsonrpc": "2.0", "id": None,
                       "error": {"code": OVERLOADED, "message": message}}).encode()
    head = (b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n"
            b"content-length: %d\r\nconnection: close\r\nretry-after: 1\r\n\r\n" % len(body))
    return head + body


async def _refuse(stream: trio.SocketStream, message: str,
                  tls: ssl.SSLContext | None = None) -> None:
    """Answer 503 (over TLS with `tls`) and close, without waiting on the client longer than
    REFUSAL_GRACE_S."""
    with trio.move_on_after(REFUSAL_GRACE_S):
        try:
            out: trio.abc.Stream = stream
            if tls is not None:
                wrapped = await wrap_connection(stream, tls, REFUSAL_GRACE_S)
                if wrapped is None:
                    return
                out = wrapped
            await out.send_all(_refusal_bytes(message))
            if isinstance(out, trio.abc.HalfCloseableStream):
                await out.send_eof()
            while await out.receive_some(65536):  # let the client read before the close
                pass
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass
    await trio.aclose_forcefully(stream)


class _EofWatch(trio.abc.HalfCloseableStream):
    """The accepted stream, noting the client's EOF, and closing it when the client takes no
    part of an answer for `send_stall_s`. hypercorn's TCPServer keeps a connection whose
    client left before sending a request head until its idle timer fires (the head deadline),
    so without the EOF watch such a connection would hold its slot that long; and it sends
    under a shielded cancel scope with no deadline, so a client that never reads would hold
    its connection (and the answer) for ever."""

    def __init__(self, inner: trio.SocketStream, send_stall_s: float = math.inf) -> None:
        self.inner = inner
        self.socket = inner.socket  # TCPServer reads the addresses from it
        self.eof = trio.Event()
        self.send_stall_s = send_stall_s
        self.stalled = False

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        data = await self.inner.receive_some(max_bytes)
        if not data:
            self.eof.set()
        return data

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data)
        for at in range(0, len(view), SEND_CHUNK):
            # a deadline inside hypercorn's shield still fires
            with trio.move_on_after(self.send_stall_s):
                await self.inner.send_all(view[at:at + SEND_CHUNK])
                continue
            self.stalled = True
            self.eof.set()  # the reaper ends the connection
            await trio.aclose_forcefully(self.inner)
            raise trio.BrokenResourceError(
                f"the client took no data for {self.send_stall_s:g}s")

    async def wait_send_all_might_not_block(self) -> None:
        await self.inner.wait_send_all_might_not_block()

    async def send_eof(self) -> None:
        await self.inner.send_eof()

    async def aclose(self) -> None:
        await self.inner.aclose()


async def _serve_one(app: AppWrapper, config: HypercornConfig, context: WorkerContext,
                     stream: trio.SocketStream, tls: ssl.SSLContext | None = None,
                     send_stall_s: float = math.inf) -> bool:
    """hypercorn's server for one connection (over TLS with `tls`: hypercorn runs the
    handshake), cut short EOF_GRACE_S after the client's EOF or after it took nothing of an
    answer for `send_stall_s` (then it returns True)."""
    watched = _EofWatch(stream, send_stall_s)
    async with trio.open_nursery() as nursery:

        async def serve() -> None:
            served: trio.abc.Stream = watched
            if tls is not None:
                wrapped = await wrap_connection(watched, tls, config.ssl_handshake_timeout)
                if wrapped is None:  # not TLS (answered) or silent
                    nursery.cancel_scope.cancel()
                    return
                served = wrapped
            await TCPServer(app, config, context, ConnectionState({}), served)
            nursery.cancel_scope.cancel()

        async def reap() -> None:
            await watched.eof.wait()
            await trio.sleep(EOF_GRACE_S)
            nursery.cancel_scope.cancel()

        nursery.start_soon(serve)
        nursery.start_soon(reap)
    await trio.aclose_forcefully(stream)
    return watched.stalled


def _address(stream: trio.SocketStream) -> str:
    try:
        return str(stream.socket.getpeername()[0])
    except OSError:  # already gone
        return "?"


async def serve_app(
    app: AppWrapper,
    config: HypercornConfig,
    listener: trio.SocketListener,
    limiter: ConnectionLimiter,
    metrics: Any,
    *,
    tls: ssl.SSLContext | None = None,
    shutdown_trigger: Callable[[], Awaitable[None]] | None = None,
    send_stall_s: float = math.inf,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve `app` on `listener` (over TLS with `tls`, from `bftnode.rpc.tls.server_context`)
    until cancelled, or until `shutdown_trigger()` returns: then stop accepting and give open
    connections `config.graceful_timeout` seconds to finish. A connection whose client takes
    nothing of an answer for `send_stall_s` is closed. `metrics` is the server's
    RPCMetrics."""
    context = WorkerContext(None)

    async def handle(stream: trio.SocketStream) -> None:
        address = _address(stream)
        reason = limiter.admit(address)
        if reason is not None:
            metrics.connections_refused.labels(reason=reason).inc()
            log_error("rpc.connection_refused", address, reason=reason, open=limiter.open)
            await _refuse(stream, limiter.refusal(reason), tls)
            return
        metrics.connections.inc()
        try:
            if await _serve_one(app, config, context, stream, tls, send_stall_s):
                metrics.timeouts.labels(phase="send").inc()
                log.info("rpc.send_stalled", peer=address, stall_s=send_stall_s)
        finally:
            limiter.release(address)
            metrics.connections.dec()

    async with trio.open_nursery() as handlers:
        async with trio.open_nursery() as accepting:
            await accepting.start(partial(trio.serve_listeners, handle, [listener],
                                          handler_nursery=handlers))
            task_status.started()
            await (shutdown_trigger or trio.sleep_forever)()
            accepting.cancel_scope.cancel()
        await context.terminated.set()  # keep-alive connections close after their answer
        handlers.cancel_scope.deadline = trio.current_time() + config.graceful_timeout
