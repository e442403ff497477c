"""One WebSocket connection of the RPC server: pipelined JSON-RPC calls plus `subscribe` /
`unsubscribe`, with a bounded outgoing queue and an idle deadline.

Owns the WebSocket side (docs/rpc.md, "WebSocket"): a reader loop, a writer task draining a
queue bounded in messages and bytes, a task per call and a task per subscription. A replay of
stored blocks is paid for from the client address's read bucket (bftnode.rpc.read_guard) and
yields to the loop between blocks. A subscriber that falls behind
gets an explicit `subscription_closed` notice naming the height to resume from (never a
silent drop); a connection that sends nothing for `idle_timeout` seconds while it has no
subscription and no call in flight is closed.

Imports: stdlib, trio, starlette (WebSocket), structlog, consensus, bftnode.rpc and
bftnode.app.events (event attributes for `query`). Must not import bftnode.node, storage
internals or network.
"""

from __future__ import annotations

import itertools
import math
import weakref
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

import structlog
import trio
from starlette.websockets import WebSocket, WebSocketDisconnect

from consensus import request_digest

from ..app.events import AppEvent, event_attrs
from . import methods as m
from . import read_guard, tx_query
from .errors import (
    INTERNAL_ERROR,
    INVALID_PARAMS,
    INVALID_REQUEST,
    NOT_FOUND,
    OVERLOADED,
    PRUNED,
    RPCError,
)
from .limits import RPCLimits
from .node_api import NodeAPI
from .params import SubscribeParams, UnsubscribeParams, parse
from .registry import _valid_id, log_error
from .shapes import block_json, jsonable, tx_json

if TYPE_CHECKING:
    from .metrics import RPCMetrics

log = structlog.get_logger("bftnode.rpc")

WS_QUEUE = 256  # outgoing messages buffered per WebSocket connection...
WS_QUEUE_BYTES = 16 * 1024 * 1024  # ...and at most about this many bytes of them
WS_MAX_INFLIGHT = 512  # concurrent calls per WebSocket connection (then we stop reading)
WS_OVERFLOW_GRACE_S = 2.0  # a full queue must make room within this, else the reader is slow
WS_MAX_SUBSCRIPTIONS = 32
SUB_WAIT_S = 15.0


class _Overflow(Exception):
    pass


class WSConnection:
    """One WebSocket: a reader loop, a writer task draining a bounded queue, a task per call
    (pipelining) and a task per subscription."""

    _ids = itertools.count(1)

    def __init__(self, node: NodeAPI, ws: WebSocket, ctx: m.CallContext, metrics: RPCMetrics,
                 queue: int = WS_QUEUE, overflow_grace: float = WS_OVERFLOW_GRACE_S,
                 idle_timeout: float = math.inf, limits: RPCLimits | None = None,
                 queue_bytes: int = WS_QUEUE_BYTES) -> None:
        self.node = node
        self.ws = ws
        self.ctx = ctx
        self.metrics = metrics
        self.queue_size = queue
        self.overflow_grace = overflow_grace
        self.idle_timeout = idle_timeout
        self.limits = limits or RPCLimits()
        self.send_ch, self.recv_ch = trio.open_memory_channel[bytes](queue)
        self.queue_bytes = queue_bytes
        self.queued = 0  # bytes queued or being sent
        self.waiting = 0  # bytes of call answers waiting for room in the queue
        self._room = trio.Event()  # set when the writer has sent a message
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
                try:
                    await self.ws.send_text(data.decode())
                finally:
                    self.queued -= len(data)
                    self._room.set()
        except (WebSocketDisconnect, RuntimeError, OSError):
            self.nursery.cancel_scope.cancel()

    async def _reader(self) -> None:
        while True:
            msg = await self._receive()
            if msg is None or msg["type"] == "websocket.disconnect":
                return
            data = msg.get("text")
            self.metrics.calls.labels(transport="websocket").inc()
            await self.inflight.acquire()  # too many calls in flight: stop reading (TCP pushes back)
            if data is None:  # a binary frame: calls are text frames
                self.nursery.start_soon(self._refuse, m.BadPayload(
                    INVALID_REQUEST, "invalid request: a binary frame; send JSON-RPC calls as "
                    "text frames", "binary_frame"))
            else:
                self.nursery.start_soon(self._handle, data)

    async def _receive(self) -> dict[str, Any] | None:
        """The next message; None once the connection has been idle too long: nothing received
        for `idle_timeout` seconds, no subscription and no call in flight."""
        while True:
            with trio.move_on_after(self.idle_timeout):
                return await self.ws.receive()
            if not self.subs and self.inflight.value == WS_MAX_INFLIGHT:
                break
        log.info("rpc.ws_idle_closed", peer=self.ctx.peer, idle_s=self.idle_timeout)
        self.metrics.timeouts.labels(phase="ws_idle").inc()
        try:
            await self.ws.close(code=1001, reason=f"idle for {self.idle_timeout:g}s")
        except (RuntimeError, OSError):  # the client is gone already
            pass
        return None

    async def _refuse(self, err: m.BadPayload) -> None:
        """Answer a message refused whole; the connection and its subscriptions stay."""
        try:
            await self._send(m.refused(self.ctx, err))
        finally:
            self.inflight.release()

    async def _handle(self, data: str) -> None:
        try:
            try:
                payload = m.parse_json(data, self.limits)
            except m.BadPayload as err:
                await self._send(m.refused(self.ctx, err))
                return
            if isinstance(payload, dict) and payload.get("method") in m.WS_ONLY:
                out: Any = await self._ws_method(payload)
            else:
                out = await m.dispatch(self.ctx, payload)
            if out is not None:
                await self._send(out)
        except Exception as exc:  # a bug: answer it, keep the connection and its subscriptions
            log.exception("rpc.internal_error", peer=self.ctx.peer, transport="websocket")
            self.metrics.on_error("?", INTERNAL_ERROR)
            err = RPCError(INTERNAL_ERROR, f"internal error: {type(exc).__name__}")
            await self._send({"jsonrpc": "2.0", "id": None, "error": err.to_json()})
        finally:
            self.inflight.release()

    def _close_unread(self) -> None:
        if self.nursery.cancel_scope.cancel_called:  # closing already
            return
        log.warning("rpc.ws_unread_closed", peer=self.ctx.peer, queued_bytes=self.queued,
                    waiting_bytes=self.waiting)
        self.metrics.timeouts.labels(phase="ws_unread").inc()
        self.nursery.cancel_scope.cancel()

    async def _send(self, obj: Any) -> None:
        try:
            await self._put(m.encode_answer(obj))
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            pass

    def _fits(self, n: int) -> bool:
        return not self.queued or self.queued + n <= self.queue_bytes  # one big one alone

    async def _put(self, msg: bytes, answer: bool = True) -> None:
        """Queue `msg` once it fits the queue's message count and byte budget. Call answers
        waiting for room may hold another budget's worth; past that the client sends calls
        without reading their answers, and the connection is closed."""
        n = len(msg)
        if answer:
            self.waiting += n
        try:
            if answer and not self._fits(n) and self.waiting > self.queue_bytes:
                self._close_unread()
                raise trio.ClosedResourceError
            while not self._fits(n):
                if self._room.is_set():
                    self._room = trio.Event()
                await self._room.wait()
        finally:
            if answer:
                self.waiting -= n
        self.queued += n
        try:
            await self.send_ch.send(msg)
        except BaseException:
            self.queued -= len(msg)
            raise

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
                log_error("rpc.error", self.ctx.peer, method=obj.get("method"),
                          code=err.code, reason=err.message)
            else:
                log.exception("rpc.internal_error", peer=self.ctx.peer, method=obj.get("method"))
                err = RPCError(INTERNAL_ERROR, f"internal error: {type(exc).__name__}: {exc}")
            self.metrics.on_error(str(obj.get("method")), err.code)
            return {"jsonrpc": "2.0", "id": req_id if _valid_id(req_id) else None,
                    "error": err.to_json()}

    async def _subscribe(self, params: dict[str, Any]) -> dict[str, Any]:
        p = parse(SubscribeParams, params)
        query = None if p.query is None else tx_query.parse_subscription(p.query)
        if len(self.subs) >= WS_MAX_SUBSCRIPTIONS:
            raise RPCError(OVERLOADED, f"at most {WS_MAX_SUBSCRIPTIONS} subscriptions per "
                                       "connection")
        height = self.node.height()
        start = p.from_height
        if start is None:
            start = (await self._find_revision_start(p.from_revision, height)
                     if p.from_revision and p.topic in ("kv", "events") else height + 1)
        if start > height + 1:
            raise RPCError(INVALID_PARAMS, f"param 'from_height' ({start}) is beyond the next "
                                           f"height {height + 1}", {"param": "from_height"})
        if start <= height and self.node.block(start) is None:
            raise self._pruned(f"block {start}")
        sid = f"s{next(self._ids)}"
        scope = trio.CancelScope()
        self.subs[sid] = scope
        self.metrics.subscriptions.inc()
        prefix = p.prefix if p.prefix is not None else p.key  # Data: bytes by now
        spec = {"topic": p.topic, "prefix": prefix, "client_id": p.client_id,
                "from_revision": p.from_revision, "full": p.full, "encoding": p.encoding,
                "query": query}
        self.nursery.start_soon(self._run_subscription, sid, scope, spec, start, height)
        return {"subscription": sid, "topic": p.topic, "from_height": start}

    async def _find_revision_start(self, from_revision: int, height: int) -> int:
        """The height to replay from so that no event with revision >= `from_revision` is
        missed: walking down from the tip to a block holding an older revision (events are
        in revision order). PRUNED when the walk reaches heights whose events are gone first."""
        if from_revision > (await self.node.query("revision", {})).get("revision", 0):
            return height + 1  # nothing at or above it has happened yet
        h = height
        while h >= 1:
            await self._stored_read_turn()
            evs = self.node.app_events(h)
            self._charge(0)
            if evs is None:
                raise self._pruned(f"the events of block {h} (which may hold revision "
                                   f"{from_revision})")
            revs = [r for r in (_field(e, "revision") for e in evs) if isinstance(r, int)]
            if revs and min(revs) < from_revision:
                return h
            h -= 1
        return 1

    async def _stored_read_turn(self) -> None:
        """Before each stored block a replay (or a revision walk) reads: a whole token in the
        client address's read bucket, waiting for its refill (the same budget as its other
        reads: a replay is not free), and a turn for the loop's other tasks (a replay of a
        long chain must not hold the loop)."""
        g = read_guard.gate(self.node)
        ip = read_guard.client_ip(self.ctx.peer)
        while (err := g.refusal(ip)) is not None:
            await trio.sleep(err.data["retry_after"])
        await trio.lowlevel.checkpoint()

    def _charge(self, answer_bytes: int, point_reads: int = 1) -> None:
        read_guard.gate(self.node).charge(read_guard.client_ip(self.ctx.peer), answer_bytes,
                                          point_reads)

    def _pruned(self, what: str) -> RPCError:
        base = self.node.status().get("base_height", 1)
        return RPCError(PRUNED, f"{what} is no longer stored: the lowest height this node "
                                f"keeps is {base}; re-read with kv_range and resubscribe from "
                                "there", {"base_height": base})

    def _unsubscribe(self, params: dict[str, Any]) -> dict[str, Any]:
        sid = parse(UnsubscribeParams, params).subscription
        scope = self.subs.pop(sid, None)
        if scope is None:
            raise RPCError(NOT_FOUND, f"no subscription {sid!r} on this connection")
        scope.cancel()
        self.metrics.subscriptions.dec()
        return {"unsubscribed": sid}

    async def _notify(self, sid: str, topic: str, height: int, result: Any) -> int:
        """Queue a notification; its size. A full queue (in messages or bytes) gets
        `overflow_grace` seconds to drain; a reader that cannot take one message in that time
        is too slow (its subscription is closed)."""
        msg = m.encode_answer({"jsonrpc": "2.0", "method": "subscription",
                      "params": {"subscription": sid, "topic": topic, "height": height,
                                 "result": result}})
        if self._fits(len(msg)):
            try:
                self.send_ch.send_nowait(msg)
                self.queued += len(msg)
                return len(msg)
            except trio.WouldBlock:
                pass
        with trio.move_on_after(self.overflow_grace):
            await self._put(msg, answer=False)  # one per subscription: bounded already
            return len(msg)
        raise _Overflow

    async def _run_subscription(self, sid: str, scope: trio.CancelScope, spec: dict[str, Any],
                                start: int, replay_to: int) -> None:
        """Notify from `start` on; blocks up to `replay_to` (the height when subscribed) are a
        replay, paid for from the client address's read bucket."""
        h = start
        reason = None
        code = OVERLOADED
        with scope:
            try:
                while True:
                    cur = await self.node.wait_height(h, SUB_WAIT_S)
                    while h <= cur:
                        if h <= replay_to:
                            await self._stored_read_turn()
                        else:
                            await trio.lowlevel.checkpoint()
                        block = self.node.block(h)
                        if block is None:
                            reason, code = f"block {h} is not stored", PRUNED
                            return
                        sent, reads = await self._emit(sid, spec, block)
                        if h <= replay_to:
                            self._charge(sent, reads)
                        h += 1
            except _Overflow:
                self.metrics.sub_overflows.inc()
                reason = (f"slow reader: the connection's queue ({self.queue_size} messages, "
                          f"{self.queue_bytes} bytes) stayed full for {self.overflow_grace:g}s; "
                          f"resubscribe with from_height={h}")
                log_error("rpc.subscription_overflow", self.ctx.peer, level="warning",
                          subscription=sid, resume_from_height=h)
            except _EventsGone as exc:
                reason, code = str(exc), PRUNED
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

    async def _emit(self, sid: str, spec: dict[str, Any], block: Any) -> tuple[int, int]:
        """Notify what `block` holds for the subscription: (bytes queued, records read)."""
        topic = spec["topic"]
        enc = spec["encoding"]
        sent, reads = 0, 1
        if topic == "blocks":
            sent += await self._notify(sid, topic, block.height, block_json(block, spec["full"]))
        elif topic == "txs":
            q = spec["query"]
            attrs = self._tx_attrs(block) if q is not None and q.attrs else {}
            for i, req in enumerate(block.txs):
                if spec["client_id"] is not None and req.client_id != spec["client_id"]:
                    continue
                if q is not None and not all(a in attrs.get(i, ()) for a in q.attrs):
                    continue  # no record read for a tx the query's attributes leave out
                res = self.node.tx(request_digest(req))
                reads += 1
                if res is None or (q is not None and not tx_query.matches(
                        q, block.height, res.tx_hash, res.code, attrs.get(i, set()))):
                    continue
                sent += await self._notify(sid, topic, block.height, tx_json(res, enc))
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
                sent += await self._notify(sid, topic, block.height, jsonable(ev, enc))
        return sent, reads

    def _tx_attrs(self, block: Any) -> dict[int, set[tuple[bytes, bytes]]]:
        """tx index -> the (attribute, value) pairs its app events carry (tx_search's); worked
        out once per block for every subscriber of this node (a committed block's events never
        change)."""
        try:
            cache = _ATTRS.setdefault(self.node, OrderedDict())
        except TypeError:  # a node object that cannot be weakly referenced: no sharing
            cache = OrderedDict()
        out = cache.get(block.height)
        if out is not None:
            return out
        evs = self.node.app_events(block.height)
        if evs is None:
            raise _EventsGone(f"app events of block {block.height} are not retained by this "
                              "node, so its txs cannot be matched to the query; resubscribe "
                              "from a later height")
        out = {}
        for attr, value, i in event_attrs([e for e in evs if isinstance(e, AppEvent)]):
            out.setdefault(i, set()).add((attr, value))
        cache[block.height] = out
        while len(cache) > ATTRS_KEPT:
            cache.popitem(last=False)
        return out


# each node's recent blocks' tx attributes, shared by its `txs` query subscribers
ATTRS_KEPT = 16
_ATTRS: weakref.WeakKeyDictionary[Any, OrderedDict[int, dict[int, set[tuple[bytes, bytes]]]]] = (
    weakref.WeakKeyDictionary()
)


class _EventsGone(Exception):
    pass


def _field(ev: Any, name: str) -> Any:
    if isinstance(ev, dict):
        return ev.get(name)
    return getattr(ev, name, None)


