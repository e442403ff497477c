"""The embedding API: run a bftnode validator inside your own program.

Owns `open_node` (trio: `async with open_node(config) as node`), `EmbeddedNode` (the facade:
submit / read / subscribe / status), `AsyncioNode` (the same node on an asyncio loop through
trio guest mode) and `SyncNode` (a trio loop in its own thread, blocking calls). Plug your own
deterministic state machine with `app=` (bftnode.app.Application protocol: check_tx,
execute_block, query). Imports: stdlib, trio, consensus, storage, network, bftnode.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import trio

from storage.interface import StoredBlock, TxResult

from .config import NodeConfig, load_config
from .node.build import build_node
from .node.errors import StartupError, TxRejected
from .node.node import Node
from .node.ports import Application, ReplicaFactory, Store, Transport


def _tx_dict(tr: TxResult) -> dict[str, Any]:
    d: dict[str, Any] = {"hash": tr.tx_hash.hex(), "height": tr.height, "index": tr.index,
                         "code": tr.code, "result_bytes": tr.result}
    try:
        from bftnode.app import ops

        d["result"] = ops.decode_result(tr.result)
    except Exception:  # a custom app may use its own result encoding
        d["result"] = None
    return d


def _block_dict(b: StoredBlock) -> dict[str, Any]:
    return {"height": b.height, "hash": b.hash.hex(), "prev_hash": b.prev_hash.hex(),
            "time": b.time_ms, "view": b.view, "txs": [t.op for t in b.txs],
            "commit_signers": [c.replica for c in b.committed.commits]}


class EmbeddedNode:
    """What `open_node` yields. All methods run in the node's trio run."""

    def __init__(self, node: Node) -> None:
        self.node = node

    async def submit(self, op: bytes, timeout: float = 30.0) -> dict[str, Any]:
        """Sign `op` with this node's embedded client key, order it through consensus and wait
        for the commit. Returns {hash, height, index, code, result, result_bytes}; raises
        TxRejected (bad op, pool full...) or trio.TooSlowError."""
        tr = await self.node.submit_and_wait(self.node.sign_op(op), timeout)
        return _tx_dict(tr)

    async def read(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """Application query over this node's committed state (e.g. "kv_get", {"key": b"k"})."""
        return await self.node.query(method, params or {})

    async def subscribe(self, from_height: int | None = None) -> AsyncIterator[dict[str, Any]]:
        """Committed blocks, in order, forever (from `from_height`, default: the next one)."""
        async for b in self.node.subscribe(from_height):
            yield _block_dict(b)

    async def next_block(self, height: int) -> dict[str, Any]:
        """The first stored committed block at `height` or above, once there is one (pull:
        what `SyncNode.subscribe` / `AsyncioNode.subscribe` call once per block)."""
        async for b in self.node.subscribe(height):
            return _block_dict(b)
        raise AssertionError("unreachable: Node.subscribe never ends")

    def status(self) -> dict[str, Any]:
        return self.node.status()

    async def wait_height(self, height: int, timeout: float | None = None) -> int:
        return await self.node.wait_height(height, timeout)


def _as_config(config: NodeConfig | str | os.PathLike) -> NodeConfig:
    return config if isinstance(config, NodeConfig) else load_config(Path(config))


@contextlib.asynccontextmanager
async def open_node(
    config: NodeConfig | str | os.PathLike, *, app: Application | None = None,
    transport: Transport | None = None, store: Store | None = None,
    replica_factory: ReplicaFactory | None = None,
    wrap_transport: Callable[[Transport], Transport] | None = None,
) -> AsyncIterator[EmbeddedNode]:
    """Start a validator from its config (or home dir) and stop it on exit.

    `app`, `transport`, `store` default to KVApplication, libp2p on the configured port and
    LevelDB under the home dir; `replica_factory` and `wrap_transport` are build_node's.
    Raises StartupError (clear message) if it cannot start."""
    node = build_node(_as_config(config), app=app, transport=transport, store=store,
                      replica_factory=replica_factory, wrap_transport=wrap_transport)
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(node.run)
            try:
                yield EmbeddedNode(node)
            finally:
                nursery.cancel_scope.cancel()
    finally:
        node.close()


class SyncNode:
    """A node on a trio loop in a background thread; every method blocks the caller.

        with SyncNode("/path/to/home") as node:
            node.submit(ops.put(b"k", b"v"))
    """

    def __init__(self, config: NodeConfig | str | os.PathLike, **kwargs: Any) -> None:
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._node: EmbeddedNode | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._stop: trio.Event | None = None
        self._thread = threading.Thread(target=self._main, args=(config, kwargs),
                                        name="bftnode", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            self._thread.join()
            raise self._error

    def _main(self, config: Any, kwargs: dict[str, Any]) -> None:
        async def main() -> None:
            async with open_node(config, **kwargs) as node:
                self._node = node
                self._token = trio.lowlevel.current_trio_token()
                self._stop = trio.Event()
                self._ready.set()
                await self._stop.wait()

        try:
            trio.run(main)
        except BaseException as exc:  # reported to the constructor or close()
            self._error = exc
        finally:
            self._ready.set()

    def _run(self, afn: Callable[..., Any], *args: Any) -> Any:
        if self._token is None or not self._thread.is_alive():
            raise RuntimeError("node is not running")
        return trio.from_thread.run(afn, *args, trio_token=self._token)

    def submit(self, op: bytes, timeout: float = 30.0) -> dict[str, Any]:
        assert self._node is not None
        return self._run(self._node.submit, op, timeout)

    def read(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        assert self._node is not None
        return self._run(self._node.read, method, params)

    def status(self) -> dict[str, Any]:
        assert self._node is not None
        return trio.from_thread.run_sync(self._node.status, trio_token=self._token)

    def wait_height(self, height: int, timeout: float | None = None) -> int:
        assert self._node is not None
        return self._run(self._node.wait_height, height, timeout)

    def subscribe(self, from_height: int | None = None) -> Iterator[dict[str, Any]]:
        """Committed blocks, in order, forever (from `from_height`, default: the next one).
        Pulled one block per step from the store: nothing queues up behind a slow reader."""
        assert self._node is not None
        h = self.status()["height"] + 1 if from_height is None else max(1, from_height)
        while True:
            block = self._run(self._node.next_block, h)
            yield block
            h = block["height"] + 1

    def close(self) -> None:
        if self._thread.is_alive() and self._stop is not None:
            trio.from_thread.run_sync(self._stop.set, trio_token=self._token)
        self._thread.join()
        if self._error is not None:
            raise self._error

    def __enter__(self) -> SyncNode:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class AsyncioNode:
    """A node running inside an asyncio program (trio guest mode on the asyncio loop).

        node = await AsyncioNode.start("/path/to/home")
        await node.submit(ops.put(b"k", b"v"))
        await node.close()
    """

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._node: EmbeddedNode | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._nursery: trio.Nursery | None = None
        self._stop: trio.Event | None = None
        self._done: asyncio.Future[Any] = self._loop.create_future()

    @classmethod
    async def start(cls, config: NodeConfig | str | os.PathLike, **kwargs: Any) -> AsyncioNode:
        self = cls()
        ready: asyncio.Future[None] = self._loop.create_future()

        async def trio_main() -> None:
            async with open_node(config, **kwargs) as node, trio.open_nursery() as nursery:
                self._node, self._nursery = node, nursery
                self._token = trio.lowlevel.current_trio_token()
                self._stop = trio.Event()
                self._loop.call_soon_threadsafe(_set_result, ready, None)
                await self._stop.wait()
                nursery.cancel_scope.cancel()

        def done(outcome: Any) -> None:
            try:
                outcome.unwrap()
                _set_result(self._done, None)
                _set_exception(ready, RuntimeError("node stopped before it started"))
            except BaseException as exc:
                _set_exception(self._done, exc)
                _set_exception(ready, exc)

        trio.lowlevel.start_guest_run(
            trio_main, run_sync_soon_threadsafe=self._loop.call_soon_threadsafe,
            done_callback=done, host_uses_signal_set_wakeup_fd=True,
        )
        await ready
        return self

    async def _call(self, afn: Callable[..., Any], *args: Any) -> Any:
        fut: asyncio.Future[Any] = self._loop.create_future()

        async def runner() -> None:
            try:
                res = await afn(*args)
            except BaseException as exc:
                self._loop.call_soon_threadsafe(_set_exception, fut, exc)
                if not isinstance(exc, Exception):
                    raise
            else:
                self._loop.call_soon_threadsafe(_set_result, fut, res)

        assert self._token is not None and self._nursery is not None
        nursery = self._nursery
        self._token.run_sync_soon(lambda: nursery.start_soon(runner))
        return await fut

    async def submit(self, op: bytes, timeout: float = 30.0) -> dict[str, Any]:
        assert self._node is not None
        return await self._call(self._node.submit, op, timeout)

    async def read(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        assert self._node is not None
        return await self._call(self._node.read, method, params)

    async def wait_height(self, height: int, timeout: float | None = None) -> int:
        assert self._node is not None
        return await self._call(self._node.wait_height, height, timeout)

    async def subscribe(self, from_height: int | None = None) -> AsyncIterator[dict[str, Any]]:
        """As `SyncNode.subscribe`, awaited (one block pulled per step)."""
        assert self._node is not None
        h = self.status()["height"] + 1 if from_height is None else max(1, from_height)
        while True:
            block = await self._call(self._node.next_block, h)
            yield block
            h = block["height"] + 1

    def status(self) -> dict[str, Any]:
        assert self._node is not None
        return self._node.status()  # guest mode: same thread, plain reads are safe

    async def close(self) -> None:
        if self._token is not None and self._stop is not None and not self._done.done():
            self._token.run_sync_soon(self._stop.set)
        await self._done


def _set_result(fut: asyncio.Future[Any], value: Any) -> None:
    if not fut.done():
        fut.set_result(value)


def _set_exception(fut: asyncio.Future[Any], exc: BaseException) -> None:
    if not fut.done():
        fut.set_exception(exc)


__all__ = ["AsyncioNode", "EmbeddedNode", "StartupError", "SyncNode", "TxRejected", "open_node"]
