"""Fixtures: a FakeNode served by the real RPC server (hypercorn on 127.0.0.1, free port)."""

from __future__ import annotations

import base64
import itertools

import httpx
import pytest

from bftnode.app import ops
from bftnode.rpc.server import serve_rpc
from consensus import Ed25519Signer, Request, encode, sign_request

from .fake_node import FakeNode


@pytest.fixture(autouse=True)
def _fresh_error_log_budget():
    """Each test starts with every address's error-log lines unspent (registry.log_error)."""
    from bftnode.rpc import registry

    registry._error_lines.clear()


@pytest.fixture
def node() -> FakeNode:
    return FakeNode()


@pytest.fixture
async def url(nursery, node) -> str:
    return await nursery.start(serve_rpc, node, "127.0.0.1", 0)


@pytest.fixture
async def http(url):
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        yield client


class TxFactory:
    """Builds client-signed txs (base64 of the encoded Request) for the fake chain."""

    def __init__(self, domain: bytes, seed: int = 1) -> None:
        self.domain = domain
        self.signer = Ed25519Signer.from_seed_int(seed, b"client")
        self.seq = itertools.count(1)

    def request(self, op: bytes, seq: int | None = None) -> Request:
        req = Request(self.signer.public_key, next(self.seq) if seq is None else seq, op)
        return sign_request(self.domain, self.signer, req)

    def put(self, key: str, value: str, seq: int | None = None) -> str:
        return b64(self.request(ops.put(key.encode(), value.encode()), seq))


def b64(req: Request) -> str:
    return base64.b64encode(encode(req)).decode()


@pytest.fixture
def txs(node) -> TxFactory:
    return TxFactory(node.domain)


async def rpc(http: httpx.AsyncClient, method: str, **params) -> dict:
    r = await http.post("/", json={"jsonrpc": "2.0", "id": 1, "method": method, "params": params})
    return r.json()
