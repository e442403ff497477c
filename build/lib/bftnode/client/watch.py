"""Watches that resume by themselves: after a dropped connection, a restarted node or a
failover to another node, a watch carries on from where it stopped, with no gap and no
duplicate, by revision.

`Cursor` (sans-I/O) is where a watch stands: the height and revision of the last event it
delivered and how many events of that revision it delivered (a txn's puts share one
revision). Resuming subscribes `from_height` = that height and `from_revision` = that
revision, and skips the events of that revision already delivered; an event below the cursor
is a duplicate and is dropped. `Session` turns one subscription's messages into events;
`Failover` picks the next node and decides when to give up: `WatchGap` when every node
answers that the events needed next are pruned (re-read with `range`, start a new watch).
Topics `kv` and `events` order by revision, `blocks` by height.

Drivers: `awatch` (async context manager: a task keeps the connection, the consumer reads a
bounded stream) and `watch_sync` (a generator). `observe`/`observe_sync` (elections: the
current leader, then every change) are built on the `events` watch.
Imports: stdlib, anyio, httpx, httpx_ws (lazily), bftnode.client.{core,errors}.
"""

from __future__ import annotations

import base64
import contextlib
import json
import queue
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import anyio
import anyio.abc
import httpx

from ..rpc import errors as E
from . import core as C
from .errors import ClientError, RPCCallError, rpc_error

WATCH_BUFFER = 256  # events queued between the connection task and the consumer (async)
MAX_MESSAGE = 8 * 1024 * 1024
STOP_POLL_S = 0.2  # how often a stoppable sync watch looks at its stop flag
ORDERED_TOPICS = ("kv", "events", "blocks")


class WatchGap(ClientError):
    """The watch cannot continue without a gap: every node answered that the events it needs
    next are pruned, or a node's history disagrees with what was delivered. `data`: the
    cursor ({height, revision, seen}). Re-read the state (`range`) and start a new watch."""


@dataclass
class Cursor:
    """Where a watch stands (see the module docstring). `height`: the block of the last
    delivered event (before any: where the first subscription started); `revision`: that
    event's revision (`blocks`: its height); `seen`: events of `revision` delivered."""

    height: int | None = None
    revision: int = 0
    seen: int = 0
    _skip_rev: int = 0
    _skip: int = 0

    def params(self, topic: str) -> dict[str, int]:
        """from_height / from_revision of the next subscription; starts skipping what was
        already delivered."""
        self._skip_rev, self._skip = self.revision, self.seen
        out: dict[str, int] = {}
        if self.height is not None:
            out["from_height"] = self.height
        if self.revision and topic != "blocks":
            out["from_revision"] = self.revision
        return out

    def started(self, asked: int | None, answered: int) -> None:
        """The node's answer to a subscribe: it must start where it was asked to."""
        if asked is not None and answered != asked:
            raise WatchGap(f"asked to resume from height {asked}, the node starts at "
                           f"{answered}", data=self.state())
        if self.height is None:
            self.height = answered

    def accept(self, height: int, revision: int) -> bool:
        """True to deliver this event; False for one already delivered."""
        if self._skip and revision == self._skip_rev:
            self._skip -= 1
            return False
        if self._skip:
            raise WatchGap(f"the node has {self._skip} fewer events at revision "
                           f"{self._skip_rev} than were delivered", data=self.state())
        if revision < self.revision or (self.height is not None and height < self.height):
            return False
        if revision == self.revision:
            self.seen += 1
        else:
            self.revision, self.seen = revision, 1
        self.height = height
        return True

    def state(self) -> dict[str, int | None]:
        return {"height": self.height, "revision": self.revision, "seen": self.seen}


class _Resubscribe(Exception):
    """This subscription ended; try again (`pruned`: the node no longer has the events)."""

    def __init__(self, reason: str, pruned: bool = False) -> None:
        super().__init__(reason)
        self.pruned = pruned


class Session:
    """One subscription of a watch: its request, then its messages in, events out."""

    def __init__(self, topic: str, prefix: str | bytes | None, cursor: Cursor,
                 want: Callable[[dict[str, Any]], bool] | None = None) -> None:
        if topic not in ORDERED_TOPICS:
            raise ValueError(f"a resumable watch needs topic kv, events or blocks, not {topic!r}")
        if topic == "kv" and prefix is None:
            raise ValueError("topic 'kv' needs a prefix")
        self.topic, self.prefix, self.cursor, self.want = topic, prefix, cursor, want
        self.asked: int | None = None
        self.sid: str | None = None

    def request(self) -> str:
        p = self.cursor.params(self.topic)
        self.asked, self.sid = p.get("from_height"), None
        return C.subscribe_request(self.topic, self.prefix if self.topic == "kv" else None,
                                   p.get("from_revision"), p.get("from_height"))

    def on_message(self, msg: Any) -> dict[str, Any] | None:
        """The event to deliver, if this message carries a new one. Raises _Resubscribe when
        the subscription ended (or was refused in a way another try may fix), RPCCallError
        when the node refused it for good (bad params)."""
        if not isinstance(msg, dict):
            return None
        if "error" in msg and msg.get("id") is not None and self.sid is None:
            err = rpc_error(msg["error"])
            if err.code == E.PRUNED:
                raise _Resubscribe(err.message, pruned=True)
            if err.code in (E.OVERLOADED, E.INTERNAL_ERROR) or _node_behind(err):
                raise _Resubscribe(err.message)
            raise err
        method = msg.get("method")
        if self.sid is None and isinstance(msg.get("result"), dict):
            res = msg["result"]
            if "subscription" in res:
                self.sid = res["subscription"]
                self.cursor.started(self.asked, int(res["from_height"]))
            return None
        p = msg.get("params")
        if not isinstance(p, dict) or p.get("subscription") != self.sid:
            return None
        if method == "subscription_closed":
            raise _Resubscribe(str(p.get("reason")), pruned=p.get("code") == E.PRUNED)
        if method != "subscription":
            return None
        ev, height = p.get("result"), int(p["height"])
        if not isinstance(ev, dict):
            return None
        rev = height if self.topic == "blocks" else int(ev.get("revision", 0))
        if not self.cursor.accept(height, rev):
            return None
        return ev if self.want is None or self.want(ev) else None


def _node_behind(err: RPCCallError) -> bool:
    """The node is not yet at the height to resume from (it is catching up)."""
    return err.code == E.INVALID_PARAMS and isinstance(err.data, dict) and (
        err.data.get("param") == "from_height")


class Failover:
    """Which node to try next; the pause after a round in which no node delivered an event;
    WatchGap when every node said the events are pruned."""

    def __init__(self, endpoints: C.Endpoints, cursor: Cursor) -> None:
        self.endpoints, self.cursor = endpoints, cursor
        self.attempt = 0
        self._pruned: set[str] = set()
        self._progress = False  # an event was delivered in this round
        self._url: str | None = None  # the node serving the current subscription

    def urls(self) -> list[str]:
        self._progress = False
        return self.endpoints.order()

    def subscribed(self, url: str) -> None:
        """A node took the subscription: it is tried first next time."""
        if url != self._url:
            self._url = url
            self.endpoints.worked(url)

    def delivered(self) -> None:
        if not self._progress:
            self.attempt, self._progress = 0, True
            self._pruned.clear()

    def failed(self, url: str, exc: BaseException) -> None:
        self._url = None
        if isinstance(exc, _Resubscribe) and exc.pruned:
            self._pruned.add(url)

    def pause(self) -> float:
        """Seconds to wait before the next round (0 after a round that delivered events)."""
        if self._progress:
            return 0.0
        if self._pruned >= set(self.endpoints.urls):
            raise WatchGap("every node has pruned the events this watch needs next "
                           f"(from height {self.cursor.height}); re-read with range and "
                           "start a new watch", data=self.cursor.state())
        self.attempt += 1
        return C.backoff(self.attempt - 1)


def _transport_errors() -> tuple[type[BaseException], ...]:
    from httpx_ws import HTTPXWSException

    return (httpx.HTTPError, HTTPXWSException, OSError, anyio.BrokenResourceError,
            anyio.EndOfStream, TimeoutError)


def _retryable(exc: Exception, transport: tuple[type[BaseException], ...]) -> BaseException:
    """The failure to try another node after (a WebSocket's task group wraps it in an
    exception group); anything else is raised."""
    leaf: BaseException = exc
    while isinstance(leaf, BaseExceptionGroup) and len(leaf.exceptions) == 1:
        leaf = leaf.exceptions[0]
    if isinstance(leaf, (_Resubscribe, *transport)):
        return leaf
    raise leaf if leaf is not exc and isinstance(leaf, Exception) else exc


# ---------------------------------------------------------------- async driver


@contextlib.asynccontextmanager
async def awatch(http: httpx.AsyncClient, endpoints: C.Endpoints, topic: str,
                 prefix: str | bytes | None = None, from_revision: int | None = None,
                 from_height: int | None = None,
                 want: Callable[[dict[str, Any]], bool] | None = None,
                 ) -> AsyncIterator[AsyncIterator[dict[str, Any]]]:
    """A resuming watch: yields an async iterator of events; a task keeps the connection
    (at most WATCH_BUFFER events wait for the consumer; a consumer slower than that stops
    the reading, the node then closes the subscription and the watch resumes)."""
    cursor = Cursor(height=from_height, revision=from_revision or 0)
    session = Session(topic, prefix, cursor, want)
    send, recv = anyio.create_memory_object_stream[dict[str, Any]](WATCH_BUFFER)
    failure: list[BaseException] = []

    async def pump() -> None:
        async with send:
            try:
                await _pump(http, Failover(endpoints, cursor), session, send)
            except Exception as exc:  # handed to the consumer, raised where it iterates
                failure.append(exc)

    async def events() -> AsyncIterator[dict[str, Any]]:
        async with recv:
            async for ev in recv:
                yield ev
        if failure:
            raise failure[0]

    async with anyio.create_task_group() as tg:
        tg.start_soon(pump)
        try:
            yield events()
        finally:
            tg.cancel_scope.cancel()


async def _pump(http: httpx.AsyncClient, plan: Failover, session: Session,
                send: anyio.abc.ObjectSendStream[dict[str, Any]]) -> None:
    from httpx_ws import aconnect_ws

    transport = _transport_errors()
    while True:
        for url in plan.urls():
            try:
                async with aconnect_ws(C.ws_url(url), http, max_message_size_bytes=MAX_MESSAGE
                                       ) as ws:
                    await ws.send_text(session.request())
                    while True:
                        ev = session.on_message(json.loads(await ws.receive_text()))
                        if session.sid is not None:
                            plan.subscribed(url)
                        if ev is not None:
                            plan.delivered()
                            await send.send(ev)
            except Exception as exc:  # noqa: BLE001 - sorted by _retryable
                plan.failed(url, _retryable(exc, transport))
        await anyio.sleep(plan.pause())


# ---------------------------------------------------------------- sync driver


def watch_sync(http: httpx.Client, endpoints: C.Endpoints, topic: str,
               prefix: str | bytes | None = None, from_revision: int | None = None,
               from_height: int | None = None,
               want: Callable[[dict[str, Any]], bool] | None = None,
               stop: threading.Event | None = None,
               ) -> Iterator[dict[str, Any]]:
    """A resuming watch as a generator (reads the socket only when asked for the next event:
    nothing queues up in the client). With `stop`, the socket is polled and the generator
    ends within STOP_POLL_S of `stop` being set (a blocking receive could not be stopped)."""
    from httpx_ws import connect_ws

    cursor = Cursor(height=from_height, revision=from_revision or 0)
    session = Session(topic, prefix, cursor, want)
    plan = Failover(endpoints, cursor)
    transport = _transport_errors()
    stopped = stop.is_set if stop is not None else (lambda: False)
    while not stopped():
        for url in plan.urls():
            try:
                with connect_ws(C.ws_url(url), http, max_message_size_bytes=MAX_MESSAGE) as ws:
                    ws.send_text(session.request())
                    while True:
                        text = _receive(ws, stop)
                        if text is None:
                            return
                        ev = session.on_message(json.loads(text))
                        if session.sid is not None:
                            plan.subscribed(url)
                        if ev is not None:
                            plan.delivered()
                            yield ev
            except Exception as exc:  # noqa: BLE001 - sorted by _retryable
                plan.failed(url, _retryable(exc, transport))
            if stopped():
                return
        pause = plan.pause()
        if stop is not None and stop.wait(pause):
            return
        if stop is None:
            time.sleep(pause)


def _receive(ws: Any, stop: threading.Event | None) -> str | None:
    """The next text message; None once `stop` is set."""
    if stop is None:
        return ws.receive_text()
    while not stop.is_set():
        try:
            return ws.receive_text(timeout=STOP_POLL_S)
        except queue.Empty:
            continue
    return None


# ---------------------------------------------------------------- elections


def name_json(name: str | bytes) -> Any:
    """How the node's JSON writes this election name (UTF-8 text, else {"base64": ...})."""
    raw = C.as_bytes(name)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return {"base64": base64.b64encode(raw).decode("ascii")}


def leader_changes(name: str | bytes) -> Callable[[dict[str, Any]], bool]:
    key = name_json(name)
    return lambda ev: (ev.get("kind") == "leader_changed" and ev.get("scope") == "election"
                       and ev.get("key") == key)


def leader_view(ev: dict[str, Any]) -> dict[str, Any]:
    """A leader change as `observe` yields it: {name, leader, lease, token, revision,
    height} (`leader` None: the election has no leader)."""
    return {"name": ev.get("key"), "leader": ev.get("value"), "lease": ev.get("lease", 0),
            "token": ev.get("token", 0), "revision": ev.get("revision", 0),
            "height": ev.get("height")}


def current_leader(st: dict[str, Any]) -> dict[str, Any]:
    """The `leader` read shaped like a change (the first thing `observe` yields)."""
    return {"name": st.get("name"), "leader": st.get("leader"), "lease": st.get("lease", 0),
            "token": st.get("token", 0), "revision": st.get("revision", 0),
            "height": st.get("height")}


@contextlib.asynccontextmanager
async def observe(http: httpx.AsyncClient, endpoints: C.Endpoints, name: str | bytes,
                  current: dict[str, Any]) -> AsyncIterator[AsyncIterator[dict[str, Any]]]:
    """The leader of election `name` now (`current`: the `leader` read), then every change
    after that read's revision."""
    async with awatch(http, endpoints, "events", from_revision=current.get("revision", 0) + 1,
                      want=leader_changes(name)) as evs:

        async def changes() -> AsyncIterator[dict[str, Any]]:
            yield current_leader(current)
            async for ev in evs:
                yield leader_view(ev)

        yield changes()


def observe_sync(http: httpx.Client, endpoints: C.Endpoints, name: str | bytes,
                 current: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield current_leader(current)
    for ev in watch_sync(http, endpoints, "events",
                         from_revision=current.get("revision", 0) + 1,
                         want=leader_changes(name)):
        yield leader_view(ev)


__all__ = ["Cursor", "Failover", "Session", "WatchGap", "awatch", "observe", "observe_sync",
           "watch_sync"]
