"""A FakeNode whose reads go through the real application and the real ledger store, so the
RPC tests meet the same integer and byte handling the real Node has (u64 keys, struct
packing), plus an in-process client for the RPC app (no sockets).

For the RPC unit tests only."""

from __future__ import annotations

from typing import Any

import httpx

from bftnode.app import KVApplication, MemoryState
from bftnode.rpc.server import create_app
from storage.interface import TxResult
from storage.memory import MemoryStore

from .fake_node import FakeNode


class AppNode(FakeNode):
    """Queries run `KVApplication.query` over an (empty) application state, and lookups by
    (client_id, request_seq) go through `MemoryStore.tx_by_client` before the fake's own
    table, as the real Node does."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.app = KVApplication()
        self.state = MemoryState()
        self.store = MemoryStore()

    async def query(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        params = dict(params)
        params.pop("min_revision", None)  # the real Node waits for it, then drops it
        return self.app.query(self.state, method, params, self.height(), self.time_ms)

    def client_floor(self, client_id: bytes) -> int:
        return self.store.client_floor(client_id)

    def tx_by_client(self, client_id: bytes, request_seq: int) -> TxResult | None:
        return self.store.tx_by_client(client_id, request_seq) or super().tx_by_client(
            client_id, request_seq)


def in_process_client(node: Any) -> httpx.AsyncClient:
    """An httpx client speaking to `create_app(node)` in this process (ASGI, no sockets)."""
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(node)),
                             base_url="http://rpc.test", timeout=10)
