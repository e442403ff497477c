"""A 4-validator chain in one trio run with authenticated state on and each node's RPC on a
real port; the validators certify each block's roots with their StateVotes."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import trio

from bftnode.api import open_node
from bftnode.config import NodeConfig
from bftnode.home import create_local_chain
from network import MemoryNetwork


@asynccontextmanager
async def proven_cluster(tmp_path: Path, port_base: int, n: int = 4,
                         configure: Callable[[list[NodeConfig]], list[NodeConfig]] | None = None,
                         consensus: dict[str, Any] | None = None):
    """`configure` may change the node configs before the nodes start; `consensus`: genesis
    consensus parameters."""
    cfgs = create_local_chain(tmp_path, n, base_port=port_base, consensus=consensus)
    cfgs = [dataclasses.replace(c, authenticated_state=True) for c in cfgs]
    if configure is not None:
        cfgs = configure(cfgs)
    net = MemoryNetwork(n, seed=1)
    nodes: list[Any] = [None] * n
    started = trio.Event()

    async def run(i: int) -> None:
        async with open_node(cfgs[i], transport=net.transport(i)) as node:
            nodes[i] = node
            if all(x is not None for x in nodes):
                started.set()
            await trio.sleep_forever()

    async with trio.open_nursery() as nursery:
        for i in range(n):
            nursery.start_soon(run, i)
        with trio.fail_after(30):
            await started.wait()
            for nd in nodes:
                while nd.node.rpc_url is None:
                    await trio.sleep(0.01)
        yield nodes, tmp_path / "node0" / "genesis.json"
        nursery.cancel_scope.cancel()
