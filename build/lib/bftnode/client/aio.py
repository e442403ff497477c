"""`AsyncClient`: the async front of the client (httpx.AsyncClient; asyncio or trio, via anyio).

Every operation in `flows.PUBLIC` is generated from the `flows.Core` generator of that name
and awaited through `_run`, which only performs the effects: POST a body (`core.Post`) or
sleep (`core.Sleep`, anyio). Written here: `lease` (a keepalive task in an anyio task group),
`lock`, and `watch` / `observe` (WebSocket, resuming: bftnode.client.watch; context
managers: their background tasks end with the block).
`rpc_call` is a one-shot call over a caller's own httpx.AsyncClient (testnet tools).
Imports: stdlib, anyio, httpx, httpx_ws (lazily), bftnode.client.{core,flows,errors}.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
import httpx

from . import core as C
from . import watch as W
from .core import Flow, Post, Reply, Sleep, TransportFailure
from .errors import ClientError
from .flows import Front, expose
from .holds import Callback, HeldLease, HeldLock, hold_async


class AsyncClient(Front):
    """The async twin of `Client` (same methods and arguments, awaited); runs under asyncio
    and trio."""

    def _open_http(self, timeout: float, max_connections: int) -> httpx.AsyncClient:
        return httpx.AsyncClient(timeout=httpx.Timeout(timeout + 5.0, connect=3.0),
                                 verify=self._tls_verify,
                                 limits=httpx.Limits(max_connections=max_connections))

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _run(self, flow: Flow) -> Any:
        outcome = None
        while not isinstance(effect := C.step(flow, outcome), C.Done):
            outcome = await self._perform(effect)
        return effect.value

    async def _perform(self, effect: Post | Sleep) -> Reply | TransportFailure | None:
        if isinstance(effect, Sleep):
            return await anyio.sleep(effect.seconds)
        try:
            r = await self._http.post(effect.url, content=effect.body, headers=C.JSON_HEADERS)
        except httpx.HTTPError as exc:
            return TransportFailure(exc)
        return Reply(r.status_code, r.content)

    @contextlib.asynccontextmanager
    async def lease(self, ttl: float, keepalive_every: float | None = None,
                    on_lost: Callback | None = None, watch_events: bool = False
                    ) -> AsyncIterator[HeldLease]:
        """Grant a lease and keep it alive from a background task until the block exits
        (then revoke it, even when cancelled). Once it is lost (docs/consistency.md "Losing
        a lock") the body is cancelled, `on_lost` runs and the block's exit raises
        LeaseLost; `HeldLease` (the id) also has `held()` and `on_lost(cb)`. `watch_events`:
        also subscribe to the chain's `events` (every app event: costly under load) and
        treat our lease's `lease_expired` / `lease_revoked` / `lock_lost` as a loss."""
        async with hold_async(self, ttl, keepalive_every, on_lost, watch_events) as lease:
            yield lease

    @contextlib.asynccontextmanager
    async def lock(self, name: str | bytes, ttl: float = 10.0, timeout: float = 30.0,
                   on_lost: Callback | None = None, keepalive_every: float | None = None,
                   watch_events: bool = False) -> AsyncIterator[HeldLock]:
        """As `Client.lock` (a lost lock cancels the body, then its exit raises LockLost);
        the release runs even when the block is cancelled."""
        async with self.lease(ttl, keepalive_every, on_lost, watch_events) as lease:
            token = await self.lock_acquire(name, lease, timeout=timeout)
            lease.hold.locked(C.as_bytes(name), token)
            try:
                yield HeldLock(token, lease)
            finally:
                with anyio.CancelScope(shield=True), contextlib.suppress(ClientError):
                    await self._run(self._core.lock_release(name, token))

    @contextlib.asynccontextmanager
    async def watch(self, prefix: str | bytes | None, from_revision: int | None = None,
                    from_height: int | None = None, topic: str = "kv"
                    ) -> AsyncIterator[AsyncIterator[dict[str, Any]]]:
        """`async with client.watch("jobs/") as events: async for ev in events: ...` — resumes
        by itself after a disconnect or a failover, with no gap and no duplicate
        (bftnode.client.watch). A context manager: its connection task ends with the block."""
        async with W.awatch(self._http, self._core.endpoints, topic, prefix, from_revision,
                            from_height) as events:
            yield events

    @contextlib.asynccontextmanager
    async def observe(self, name: str | bytes) -> AsyncIterator[AsyncIterator[dict[str, Any]]]:
        """Election `name`'s leader now, then every change: {name, leader, lease, token,
        revision, height} (bftnode.client.watch.observe)."""
        async with W.observe(self._http, self._core.endpoints, name,
                             await self.leader(name)) as changes:
            yield changes


def _async_method(flow: Callable[..., Flow]) -> Callable[..., Any]:
    @functools.wraps(flow)
    async def method(self: AsyncClient, *args: Any, **kwargs: Any) -> Any:
        self._holds.check()  # inside a lease()/lock() block that lost its lease: raise
        return await self._run(flow(self._core, *args, **kwargs))

    return method


expose(AsyncClient, _async_method)


async def rpc_call(http: httpx.AsyncClient, url: str, method: str,
                   params: dict[str, Any] | None = None) -> Any:
    """One JSON-RPC call to `url` over `http`; raises httpx errors (no answer) or the
    RPCCallError of the answer (BadAnswer when it is not JSON-RPC)."""
    r = await http.post(url, content=C.encode_json(C.request(method, params or {})),
                        headers=C.JSON_HEADERS)
    return C.parse_reply(Reply(r.status_code, r.content))
