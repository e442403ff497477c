"""Leases and locks held by a `with client.lease(...)` / `client.lock(...)` block, and the
signal that they are lost (docs/consistency.md "Losing a lock").

A `Hold` is what the client knows of one held lease: when the last confirmed keepalive (or the
grant) was SENT, the TTL, and whether it is lost. It is lost at the first of: a keepalive
refused because the chain no longer knows the lease; the client's own clock passing
`sent + TTL` of the last confirmed keepalive (the chain's deadline is `commit time + TTL`,
never earlier); a `lease_expired` / `lock_lost` event for it fed to `Hold.event`. Loss is
final. Then `on_lost` callbacks run once (from the keepalive or watchdog worker), every later
call of the client raises the `LeaseLost` / `LockLost` (`Holds.check`, called by the fronts'
`_run`), the async block is cancelled (its cancel scope), and the block's exit raises it.

`hold_sync` (threads) and `hold_async` (anyio tasks) run the keepalive and the watchdog; the
fronts' `lease` / `lock` are thin wrappers. Imports: stdlib, anyio,
bftnode.client.{core, errors, watch}; the client object is typed by the `LeaseClient`
Protocols (no flows/sync/aio import).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, Protocol

import anyio

from . import core as C
from . import watch as W
from .errors import ClientError, LeaseLost, LockLost, TxFailed

Callback = Callable[[LeaseLost], Any]
LOSS_EVENTS = ("lease_expired", "lease_revoked", "lock_lost")


class Hold:
    """One held lease's loss state; thread-safe (the sync front's workers share it)."""

    def __init__(self, lease_id: int, ttl_s: float, sent_at: float,
                 clock: Callable[[], float], height: int | None = None) -> None:
        self.lease_id = lease_id
        self.height = height  # the grant's block: loss events are watched from there
        self.ttl_s = ttl_s
        self.clock = clock
        self.confirmed_sent_at = sent_at  # send time of the newest confirmed keepalive/grant
        self.lost: LeaseLost | None = None
        self.lock: tuple[bytes, int] | None = None  # (name, token) while a lock is held
        self._callbacks: list[Callback] = []
        self._mutex = threading.Lock()
        self.changed = threading.Condition(self._mutex)  # the sync watchdog waits on it

    @property
    def deadline(self) -> float:
        """Client-clock time after which the lease may be gone on the chain."""
        return self.confirmed_sent_at + self.ttl_s

    def held(self) -> bool:
        """Still held, as far as this client can tell (not lost, deadline not passed)."""
        return self.check() is None

    def on_lost(self, callback: Callback) -> None:
        """Call `callback(exc)` once when the lease is lost (at once if it already is)."""
        with self._mutex:
            lost = self.lost
            if lost is None:
                self._callbacks.append(callback)
        if lost is not None:
            callback(lost)

    def locked(self, name: bytes, token: int) -> None:
        """The block now holds lock `name` with fencing `token`: loss raises LockLost."""
        with self._mutex:
            self.lock = (name, token)

    def confirm(self, sent_at: float) -> None:
        """A keepalive sent at `sent_at` was confirmed committed (the chain renewed it)."""
        with self._mutex:
            if self.lost is None and sent_at > self.confirmed_sent_at:
                self.confirmed_sent_at = sent_at
                self.changed.notify_all()

    def lose(self, reason: str) -> LeaseLost:
        """Mark the lease lost (first reason wins) and run the callbacks once."""
        with self._mutex:
            if self.lost is not None:
                return self.lost
            data: dict[str, Any] = {"lease": self.lease_id, "reason": reason}
            if self.lock is not None:
                data.update(lock=self.lock[0].decode("utf-8", "replace"), token=self.lock[1])
                self.lost = LockLost(f"lock {data['lock']!r} (token {self.lock[1]}) may be "
                                     f"held by another client: {reason}", data=data)
            else:
                self.lost = LeaseLost(f"lease {self.lease_id} lost: {reason}", data=data)
            callbacks, self._callbacks = self._callbacks, []
            self.changed.notify_all()
            lost = self.lost
        for cb in callbacks:
            cb(lost)
        return lost

    def check(self) -> LeaseLost | None:
        """The loss, if any; the TTL bound is judged now, by the client's clock."""
        if self.lost is None and self.clock() >= self.deadline:
            self.lose(f"no keepalive confirmed within its TTL of {self.ttl_s:g}s "
                      "(by this client's clock, from when it was sent)")
        return self.lost

    def event(self, ev: dict[str, Any]) -> None:
        """Feed an app event (`events` subscription): our lease's end, or our lock lost."""
        if ev.get("kind") in LOSS_EVENTS and ev.get("lease") == self.lease_id:
            self.lose(f"the chain reported {ev['kind']} at revision {ev.get('revision')}")


class Holds:
    """The holds of one client object's open blocks; `check` raises the first loss."""

    def __init__(self) -> None:
        self._holds: list[Hold] = []

    def add(self, hold: Hold) -> None:
        self._holds.append(hold)

    def discard(self, hold: Hold) -> None:
        with contextlib.suppress(ValueError):
            self._holds.remove(hold)

    def check(self) -> None:
        for hold in list(self._holds):
            lost = hold.check()
            if lost is not None:
                raise lost


class HeldLease(int):
    """The lease id a `lease()` block yields (an int, as before) with its loss signal."""

    hold: Hold

    def __new__(cls, hold: Hold) -> HeldLease:
        self = super().__new__(cls, hold.lease_id)
        self.hold = hold
        return self

    def held(self) -> bool:
        return self.hold.held()

    def on_lost(self, callback: Callback) -> None:
        self.hold.on_lost(callback)


class HeldLock(int):
    """The fencing token a `lock()` block yields (an int, as before) with its loss signal;
    `lease` is the HeldLease under it."""

    lease: HeldLease

    def __new__(cls, token: int, lease: HeldLease) -> HeldLock:
        self = super().__new__(cls, token)
        self.lease = lease
        return self

    def held(self) -> bool:
        return self.lease.held()

    def on_lost(self, callback: Callback) -> None:
        self.lease.on_lost(callback)


# ---------------------------------------------------------------- keepalive flows


class _Core(Protocol):
    clock: Callable[[], float]

    def commit_op(self, op: bytes, timeout: float | None = None, check: bool = True
                  ) -> C.Flow: ...


def grant(core: _Core, ttl: float) -> C.Flow:
    """Grant a lease; a Hold timed from when the grant was sent."""
    from ..app import ops

    sent = core.clock()
    res = yield from core.commit_op(ops.lease_grant(ttl=ttl))
    out = res["result"]
    ttl_s = float(out.get("ttl_ms", ttl * 1000)) / 1000 if isinstance(out, dict) else ttl
    height = res.get("height")
    return Hold(int(out["id"]), min(ttl, ttl_s), sent, core.clock,
                height if isinstance(height, int) and height > 0 else None)


def keepalive(core: _Core, hold: Hold) -> C.Flow:
    """One keepalive: confirms the hold (timed from the send), or loses it when the chain
    refuses it (the lease is unknown: expired or revoked). A keepalive with no answer
    changes nothing: the watchdog's TTL bound decides."""
    from ..app import ops

    sent = core.clock()
    try:
        yield from core.commit_op(ops.lease_keepalive(hold.lease_id))
    except TxFailed as exc:
        hold.lose(f"keepalive refused: {exc.message}")
        return
    except ClientError:
        return
    hold.confirm(sent)


# ---------------------------------------------------------------- sync front


class SyncLeaseClient(Protocol):
    _holds: Holds

    def _run(self, flow: C.Flow) -> Any: ...

    def _twin(self) -> Any: ...  # a second client (own connection) with the same key and seqs

    def lease_revoke(self, lease_id: int) -> Any: ...

    @property
    def _core(self) -> Any: ...


def _feed_events_sync(client: SyncLeaseClient, hold: Hold, stop: threading.Event) -> None:
    """Feed the chain's `events` to `hold` until `stop`, from the grant's block on (an event
    committed before the subscription is up is replayed, not missed); the watch resumes
    after a dropped connection or a failover. A watch that fails for good (every node
    pruned those events) only ends this signal: keepalive and TTL still judge."""
    with contextlib.suppress(Exception), client._twin() as twin:  # only this signal ends
        events = W.watch_sync(twin._http, twin._core.endpoints, "events",
                              from_height=hold.height, stop=stop)
        with contextlib.closing(events):  # its socket closes here, not when collected
            for ev in events:
                hold.event(ev)
                if hold.lost is not None:
                    return


@contextlib.contextmanager
def hold_sync(client: SyncLeaseClient, ttl: float, keepalive_every: float | None,
              on_lost: Callback | None, watch_events: bool = False) -> Iterator[HeldLease]:
    """The sync `lease()` block: a keepalive thread (its own connection, so a slow body call
    never delays it), a watchdog thread that loses the hold at its deadline, and with
    `watch_events` a thread reading the `events` subscription."""
    hold: Hold = client._run(grant(client._core, ttl))
    lease = HeldLease(hold)
    if on_lost is not None:
        hold.on_lost(on_lost)
    stop = threading.Event()
    every = C.keepalive_interval(ttl, keepalive_every)

    def keep() -> None:
        with client._twin() as twin:
            while not stop.wait(every) and hold.lost is None:
                twin._run(keepalive(twin._core, hold))

    def watchdog() -> None:
        with hold.changed:
            while not stop.is_set() and hold.lost is None:
                left = hold.deadline - hold.clock()
                if left <= 0:
                    break
                hold.changed.wait(left)
        if not stop.is_set():
            hold.check()

    def events() -> None:
        _feed_events_sync(client, hold, stop)

    workers = [threading.Thread(target=fn, name=f"lease-{hold.lease_id}-{fn.__name__}",
                                daemon=True)
               for fn in [keep, watchdog] + ([events] if watch_events else [])]
    for t in workers:
        t.start()
    client._holds.add(hold)
    try:
        yield lease
    finally:
        stop.set()
        with hold.changed:
            hold.changed.notify_all()
        for t in workers:
            t.join()
        client._holds.discard(hold)
        with contextlib.suppress(ClientError):
            client.lease_revoke(hold.lease_id)
    if hold.lost is not None:
        raise hold.lost


# ---------------------------------------------------------------- async front


class AsyncLeaseClient(Protocol):
    _holds: Holds

    async def _run(self, flow: C.Flow) -> Any: ...

    async def lease_revoke(self, lease_id: int) -> Any: ...

    def watch(self, prefix: Any, from_revision: int | None = None,
              from_height: int | None = None, topic: str = "kv"
              ) -> contextlib.AbstractAsyncContextManager[AsyncIterator[dict[str, Any]]]: ...

    @property
    def _core(self) -> Any: ...


async def _feed_events(client: AsyncLeaseClient, hold: Hold) -> None:
    """Feed the chain's `events` to `hold` from the grant's block on (see
    `_feed_events_sync`)."""
    with contextlib.suppress(Exception):  # whatever the watch raised: only this signal ends
        async with client.watch(None, topic="events", from_height=hold.height) as events:
            async for ev in events:
                hold.event(ev)


@contextlib.asynccontextmanager
async def hold_async(client: AsyncLeaseClient, ttl: float, keepalive_every: float | None,
                     on_lost: Callback | None, watch_events: bool = False
                     ) -> AsyncIterator[HeldLease]:
    """The async `lease()` block: keepalive and watchdog tasks (and with `watch_events` an
    `events` subscription) in a task group whose cancel scope holds the body; a loss cancels
    it, and the block's exit raises the loss."""
    hold: Hold = await client._run(grant(client._core, ttl))
    lease = HeldLease(hold)
    if on_lost is not None:
        hold.on_lost(on_lost)
    every = C.keepalive_interval(ttl, keepalive_every)

    async def keep() -> None:
        while hold.lost is None:
            await anyio.sleep(every)
            await client._run(keepalive(client._core, hold))

    async def watchdog() -> None:
        while hold.check() is None:
            await anyio.sleep(max(0.0, hold.deadline - hold.clock()))

    client._holds.add(hold)
    try:
        async with anyio.create_task_group() as tg:
            hold.on_lost(lambda _exc: tg.cancel_scope.cancel())  # runs in one of our tasks
            tg.start_soon(keep)
            tg.start_soon(watchdog)
            if watch_events:
                tg.start_soon(_feed_events, client, hold)
            try:
                yield lease
            finally:
                tg.cancel_scope.cancel()
    finally:
        client._holds.discard(hold)
        with anyio.CancelScope(shield=True), contextlib.suppress(ClientError):
            await client.lease_revoke(hold.lease_id)
    if hold.lost is not None:
        raise hold.lost
