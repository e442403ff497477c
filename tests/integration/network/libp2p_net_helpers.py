"""Helpers for the libp2p transport integration tests: keys, free ports, running meshes."""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import AsyncIterator, Callable

import multiaddr
import trio
from nacl.signing import SigningKey

from network.libp2p import Libp2pTransport, key_pair_from_seed
from network.transport import PeerSpec

FAST = dict(backoff_initial_s=0.05, backoff_max_s=0.5, host_restart_backoff_s=0.2,
            dial_timeout_s=5.0)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_cluster(n: int) -> tuple[list[bytes], list[PeerSpec]]:
    seeds = [os.urandom(32) for _ in range(n)]
    specs = [PeerSpec(i, bytes(SigningKey(s).verify_key), f"/ip4/127.0.0.1/tcp/{free_port()}")
             for i, s in enumerate(seeds)]
    return seeds, specs


def listen_addr(spec: PeerSpec) -> multiaddr.Multiaddr:
    return multiaddr.Multiaddr(spec.multiaddr)


class Node:
    """One transport running in its own cancel scope, so a test can kill and restart it."""

    def __init__(self, nursery: trio.Nursery, transport: Libp2pTransport) -> None:
        self.nursery = nursery
        self.transport = transport
        self.scope = trio.CancelScope()

    async def start(self) -> None:
        async def _run(task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
            with self.scope:
                await self.transport.run(task_status=task_status)
        await self.nursery.start(_run)

    def kill(self) -> None:
        self.scope.cancel()


@contextlib.asynccontextmanager
async def mesh(n: int, **kw) -> AsyncIterator[tuple[list[Node], list[bytes], list[PeerSpec]]]:
    seeds, specs = make_cluster(n)
    opts = {**FAST, **kw}
    async with trio.open_nursery() as nursery:
        nodes = [Node(nursery, Libp2pTransport(i, seeds[i], specs, **opts)) for i in range(n)]
        for node in nodes:
            await node.start()
        yield nodes, seeds, specs
        nursery.cancel_scope.cancel()


async def wait_until(pred: Callable[[], bool], timeout: float = 30.0, what: str = "") -> None:
    with trio.fail_after(timeout):
        while not pred():
            await trio.sleep(0.02)


async def receive(transport: Libp2pTransport, count: int, timeout: float = 30.0) -> list:
    got = []
    with trio.fail_after(timeout):
        while len(got) < count:
            got.append(await transport.incoming.receive())
    return got


async def receive_until(transport: Libp2pTransport, marker: bytes,
                        timeout: float = 30.0) -> list[tuple[int, bytes]]:
    """Everything received up to and including the first frame equal to `marker`."""
    got = []
    with trio.fail_after(timeout):
        while True:
            item = await transport.incoming.receive()
            got.append(item)
            if item[1] == marker:
                return got


__all__ = ["FAST", "Node", "free_port", "key_pair_from_seed", "listen_addr", "make_cluster",
           "mesh", "receive", "receive_until", "wait_until"]
