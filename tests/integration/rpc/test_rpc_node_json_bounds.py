"""The node's `rpc_max_json_*` settings reach its RPC server: an embedded node configured with
tighter JSON bounds refuses a body over them (HTTP 400) and serves one within them."""

from __future__ import annotations

import dataclasses
import json

import httpx
import pytest
import trio

from bftnode.api import open_node
from bftnode.home import create_local_chain
from network import MemoryNetwork
from testnet.ports import free_port_base

pytestmark = pytest.mark.integration


def call(id_: int, **params) -> dict:
    return {"jsonrpc": "2.0", "id": id_, "method": "status", "params": params}


async def test_json_bounds_come_from_the_node_config(tmp_path):
    base = free_port_base(16)
    cfg = create_local_chain(tmp_path, 4, base_port=base)[0]
    cfg = dataclasses.replace(cfg, rpc_port=base + 15, rpc_max_json_depth=4,
                              rpc_max_json_elements=200)
    net = MemoryNetwork(4, seed=1)  # the node's peers stay silent: RPC only
    with trio.fail_after(60):
        async with open_node(cfg, transport=net.transport(0)) as node:
            async with httpx.AsyncClient(base_url=node.node.rpc_url, timeout=10) as http:
                ok = await http.post("/", json=[call(1, x=[1])])  # 4 levels, few values
                assert ok.status_code == 200 and ok.json()[0]["result"]["height"] == 0
                deep = await http.post("/", content=json.dumps([call(1, x=[[1]])]))
                assert deep.status_code == 400
                assert "deeper than 4 levels" in deep.json()["error"]["message"]
                many = await http.post("/", json=[call(i) for i in range(50)])
                assert many.status_code == 400
                assert "limit of 200" in many.json()["error"]["message"]
