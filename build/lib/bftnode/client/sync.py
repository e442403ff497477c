"""`Client`: the synchronous front of the client (httpx.Client, threads).

Every operation in `flows.PUBLIC` (put, get, submit, lock_acquire, ...) is generated from the
`flows.Core` generator of that name and run by `_run`, which only performs the effects:
POST a body (`core.Post`) or sleep (`core.Sleep`). Written here: the context managers that
need a background worker (`lease`: a keepalive thread), `lock`, and `watch` / `observe` (WebSocket,
resuming: bftnode.client.watch).
`rpc_call` / `rpc_batch` are one-shot calls over a caller's own httpx.Client (testnet tools),
with the core's request building and parser. Imports: stdlib, httpx, httpx_ws (lazily),
bftnode.client.{core,flows,errors}.
"""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import httpx

from . import core as C
from . import watch as W
from .core import Flow, Post, Reply, Sleep, TransportFailure
from .errors import ClientError, RateLimited
from .flows import Front, expose
from .holds import Callback, HeldLease, HeldLock, hold_sync


class Client(Front):
    """Synchronous client. `urls`: one URL or several (failover). `key`: key file path
    (created on first use; default $BFTNODE_HOME/client.key or ~/.bftnode/client.key) or a
    NodeKey. `verify`: "certificate" (default), "replies" (f+1 matching) or "none".
    `ca_file`: PEM file of the CAs https:// (and wss://) nodes are checked against (default:
    the system's trust store)."""

    def _open_http(self, timeout: float, max_connections: int) -> httpx.Client:
        return httpx.Client(timeout=httpx.Timeout(timeout + 5.0, connect=3.0),
                            verify=self._tls_verify,
                            limits=httpx.Limits(max_connections=max_connections))

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _run(self, flow: Flow) -> Any:
        outcome = None
        while not isinstance(effect := C.step(flow, outcome), C.Done):
            outcome = self._perform(effect)
        return effect.value

    def _perform(self, effect: Post | Sleep) -> Reply | TransportFailure | None:
        if isinstance(effect, Sleep):
            return time.sleep(effect.seconds)
        try:
            r = self._http.post(effect.url, content=effect.body, headers=C.JSON_HEADERS)
        except httpx.HTTPError as exc:
            return TransportFailure(exc)
        return Reply(r.status_code, r.content)

    def _twin(self) -> Client:
        """A second client with its own connection, the same key, seqs and known height (a
        lease's keepalive thread)."""
        core = self._core
        twin = Client(core.urls, core.key, timeout=core.timeout, verify=core.verify,
                      chain=core.chain, valid_blocks=core.horizon.valid_blocks,
                      ca_file=self._ca_file)
        twin._core.seqs = core.seqs  # one monotonic seq space per key
        twin._core.horizon = core.horizon
        return twin

    @contextlib.contextmanager
    def lease(self, ttl: float, keepalive_every: float | None = None,
              on_lost: Callback | None = None, watch_events: bool = False
              ) -> Iterator[HeldLease]:
        """Grant a lease and keep it alive in a background thread until the block exits
        (then revoke it). Yields the lease id (`HeldLease`: also `held()`, `on_lost(cb)`).
        Once it is lost (docs/consistency.md "Losing a lock"), `on_lost` runs, every later
        call of this client raises LeaseLost, and so does the block's exit. `watch_events`:
        also read the chain's `events` subscription (every app event: costly under load) and
        treat our lease's `lease_expired` / `lease_revoked` / `lock_lost` as a loss."""
        with hold_sync(self, ttl, keepalive_every, on_lost, watch_events) as lease:
            yield lease

    @contextlib.contextmanager
    def lock(self, name: str | bytes, ttl: float = 10.0, timeout: float = 30.0,
             on_lost: Callback | None = None, keepalive_every: float | None = None,
             watch_events: bool = False) -> Iterator[HeldLock]:
        """Hold lock `name` under a kept-alive lease; yields the fencing token (`HeldLock`:
        also `held()`, `on_lost(cb)`). Pass the token to whatever the lock protects: a stale
        holder's writes are then refused. Loss raises LockLost, as `lease` does."""
        with self.lease(ttl, keepalive_every, on_lost, watch_events) as lease:
            token = self.lock_acquire(name, lease, timeout=timeout)
            lease.hold.locked(C.as_bytes(name), token)
            try:
                yield HeldLock(token, lease)
            finally:
                with contextlib.suppress(ClientError):  # unchecked: lost or not, let it go
                    self._run(self._core.lock_release(name, token))

    def watch(self, prefix: str | bytes | None, from_revision: int | None = None,
              from_height: int | None = None, topic: str = "kv") -> Iterator[dict[str, Any]]:
        """Yield app events for keys under `prefix` (over WebSocket); resumes by itself after a
        disconnect or a failover, with no gap and no duplicate (bftnode.client.watch). Raises
        WatchGap when every node has pruned the events it needs next."""
        return W.watch_sync(self._http, self._core.endpoints, topic, prefix, from_revision,
                            from_height)

    def observe(self, name: str | bytes) -> Iterator[dict[str, Any]]:
        """Election `name`'s leader now, then every change: {name, leader, lease, token,
        revision, height}."""
        return W.observe_sync(self._http, self._core.endpoints, name, self.leader(name))


def _sync_method(flow: Callable[..., Flow]) -> Callable[..., Any]:
    @functools.wraps(flow)
    def method(self: Client, *args: Any, **kwargs: Any) -> Any:
        self._holds.check()  # inside a lease()/lock() block that lost its lease: raise
        return self._run(flow(self._core, *args, **kwargs))

    return method


expose(Client, _sync_method)


def rpc_call(http: httpx.Client, url: str, method: str, params: dict[str, Any] | None = None,
             timeout: float | None = None, rate_wait_s: float = 30.0) -> Any:
    """One JSON-RPC call to `url` over `http`; raises httpx errors (no answer) or the
    RPCCallError of the answer (BadAnswer when it is not JSON-RPC). A `rate limited` answer
    is retried after its `retry_after` for up to `rate_wait_s` seconds."""
    extra = {} if timeout is None else {"timeout": timeout}
    give_up = time.monotonic() + rate_wait_s
    while True:
        r = http.post(url, content=C.encode_json(C.request(method, params or {})),
                      headers=C.JSON_HEADERS, **extra)
        try:
            return C.parse_reply(Reply(r.status_code, r.content))
        except RateLimited as exc:
            if time.monotonic() + exc.retry_after > give_up:
                raise
            time.sleep(exc.retry_after)


def rpc_batch(http: httpx.Client, url: str, calls: Sequence[tuple[str, dict[str, Any]]],
              timeout: float | None = None, rate_wait_s: float = 30.0) -> list[Any]:
    """One JSON-RPC batch array to `url` over `http`: per call its result or its
    RPCCallError, in order. Raises httpx errors, or the RPCCallError of a refused batch.
    Calls answered `rate limited` are sent again after the longest `retry_after`, for up to
    `rate_wait_s` seconds."""
    extra = {} if timeout is None else {"timeout": timeout}
    give_up = time.monotonic() + rate_wait_s
    answers: list[Any] = [None] * len(calls)
    todo = list(range(len(calls)))
    while True:
        payload = C.batch_request([calls[i] for i in todo])
        r = http.post(url, content=C.encode_json(payload), headers=C.JSON_HEADERS, **extra)
        for i, a in zip(todo, C.batch_results(r.content, payload), strict=True):
            answers[i] = a
        todo = [i for i in todo if isinstance(answers[i], RateLimited)]
        wait = max((answers[i].retry_after for i in todo), default=0.0)
        if not todo or time.monotonic() + wait > give_up:
            return answers
        time.sleep(wait)
