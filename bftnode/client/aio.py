"""`AsyncClient`: the async front of the client (httpx.AsyncClient; asyncio or trio, via anyio).

Every operation in `flows.PUBLIC` is generated from the `flows.Core` generator of that name
and awaited through `_run`, which only performs the effects: POST a body (`core.Post`) or
sleep (`core.Sleep`, anyio). Written here: `lease` (a keepalive task in an anyio task group),
`lock`, and `watch` (WebSocket, a context manager: its background tasks end with the block).
`rpc_call` is a one-shot call over a caller's own httpx.AsyncClient (testnet tools).
Imports: stdlib, anyio, httpx, httpx_ws (lazily), bftnode.client.{core,flows,errors}.
"""

from __future__ import annotations

import contextlib
import functools
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
import httpx

from . import core as C
from .core import Flow, Post, Reply, Sleep, TransportFailure
from .errors import ClientError
from .flows import Front, expose


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

    async def _keep(self, lease_id: int, every: float) -> None:
        while True:
            await anyio.sleep(every)
            if not await self._run(self._core.keep_lease(lease_id)):
                return

    @contextlib.asynccontextmanager
    async def lease(self, ttl: float, keepalive_every: float | None = None
                    ) -> AsyncIterator[int]:
        """Grant a lease and keep it alive from a background task until the block exits
        (then revoke it, even when cancelled). A failed keepalive is retried until the lease
        is gone."""
        lease_id = await self.lease_grant(ttl)
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._keep, lease_id, C.keepalive_interval(ttl, keepalive_every))
                try:
                    yield lease_id
                finally:
                    tg.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True), contextlib.suppress(ClientError):
                await self.lease_revoke(lease_id)

    @contextlib.asynccontextmanager
    async def lock(self, name: str | bytes, ttl: float = 10.0, timeout: float = 30.0
                   ) -> AsyncIterator[int]:
        """As `Client.lock`; the release runs even when the block is cancelled."""
        async with self.lease(ttl) as lease_id:
            token = await self.lock_acquire(name, lease_id, timeout=timeout)
            try:
                yield token
            finally:
                with anyio.CancelScope(shield=True), contextlib.suppress(ClientError):
                    await self.lock_release(name, token)

    @contextlib.asynccontextmanager
    async def watch(self, prefix: str | bytes, from_revision: int | None = None,
                    from_height: int | None = None, topic: str = "kv"
                    ) -> AsyncIterator[AsyncIterator[dict[str, Any]]]:
        """`async with client.watch("jobs/") as events: async for ev in events: ...` — a
        context manager because the WebSocket runs background tasks (structured concurrency:
        they end with the block, not whenever a generator is garbage-collected)."""
        from httpx_ws import aconnect_ws

        url = C.ws_url(self._core.endpoints.order()[0])
        async with aconnect_ws(url, self._http, max_message_size_bytes=8 * 1024 * 1024) as ws:
            await ws.send_text(C.subscribe_request(topic, prefix, from_revision, from_height))

            async def events() -> AsyncIterator[dict[str, Any]]:
                while True:
                    ev = C.sub_message(json.loads(await ws.receive_text()))
                    if ev is not None:
                        yield ev

            yield events()


def _async_method(flow: Callable[..., Flow]) -> Callable[..., Any]:
    @functools.wraps(flow)
    async def method(self: AsyncClient, *args: Any, **kwargs: Any) -> Any:
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
