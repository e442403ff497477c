"""The read façade of `Node` (NodeAPI reads): status, net_info, validators, evidence,
convictions, blocks, txs, app events, application queries, wait_height and subscribe.
`ReadsMixin` is part of `Node`; it reads the store, the replica (through ReplicaLike) and the
node's own counters, and writes nothing. Reads of the ledger for RPC callers (`read`, `query`)
run in a bounded pool of worker threads over a consistent snapshot at a committed height, off
the task that steps the replica (issue 27: a read flood must not slow consensus); `health` and
`read_info` are in health.py.
Imports: stdlib, trio, msgspec, consensus (Request), storage, bftnode.app (lazily), bftnode.node.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import AsyncIterator, Callable, Sequence
from functools import partial
from typing import Any, TypeVar

import msgspec
import trio

from consensus import Request
from storage.interface import StoredBlock, TxResult

from . import app_events
from .ports import PeerStats, ReadViews

APP_EVENTS_KEPT = 1000  # heights of app events kept for subscribers...
APP_EVENTS_MAX = 20_000  # ...and at most this many events (the oldest heights go first)
MIN_REVISION_WAIT_S = 2.0
T = TypeVar("T")


def _jsonable(value: Any) -> Any:
    """Application events / results to plain JSON values (bytes as UTF-8 or base64)."""
    try:
        from bftnode.app import ops

        return ops.jsonable(value)
    except Exception:
        return msgspec.to_builtins(value, enc_hook=repr)


def _connected(stats: Any) -> bool:
    if not isinstance(stats, dict):
        return False
    if "connected" in stats:
        return bool(stats["connected"])
    return bool(stats.get("outbound_connected") or stats.get("inbound_connected"))


class _LiveView:
    """A read view over the node itself, for stores without `read_view` (read on the loop)."""

    def __init__(self, node: Any) -> None:
        self._node = node
        self.height = node._height
        self.time_ms = node.last_block_time_ms

    @property
    def state(self) -> Any:
        return self._node.store.state()

    def block(self, height: int) -> StoredBlock | None:
        return self._node.store.block(height) if height <= self.height else None

    def tx(self, tx_hash: bytes) -> TxResult | None:
        return self._node.store.tx(tx_hash)

    def tx_by_client(self, client_id: bytes, request_seq: int) -> TxResult | None:
        return self._node.store.tx_by_client(client_id, request_seq)

    def client_floor(self, client_id: bytes) -> int:
        return self._node.store.client_floor(client_id)

    def tx_attrs_indexed(self) -> int:
        return 0  # no tx-attribute index behind this view (storage.tx_attrs)

    def find_tx_attr(self, attr: bytes, value: bytes, lo: int, hi: int,
                     limit: int) -> list[tuple[int, int, bytes]]:
        return []


class ReadsMixin:
    """NodeAPI reads of `Node`."""

    def height(self) -> int:
        return self._height

    def status(self) -> dict:
        r = self.replica
        view = r.view
        return {
            "node_id": self.node_id,
            "validator_index": self.index,
            "chain_id": self.chain_id,
            "domain": self.domain.hex(),
            "genesis_hash": self.genesis.hash().hex(),
            "view": view,
            "primary": view % self.consensus_config.n,
            "in_view_change": bool(r.in_view_change),
            "height": self._height,
            "last_block_hash": self.last_block_hash.hex(),
            "last_block_time_ms": self.last_block_time_ms,
            "stable_checkpoint": r.stable_seq,
            "base_height": self.store.base_height(),
            "certified_height": r.certified_height,  # 0 unless the state tree is on
            "validators": self.consensus_config.n,
            "peers": self._connected_peers(),
            "txs_committed": int(self.metrics.value("bftnode_txs_committed_total")),
            "rpc": self.rpc_url,
            "p2p": self.config.p2p_listen if self.config else None,
            "why": self._why(),
        }

    def _why(self) -> str:
        """The replica's one-line explanation of what it waits for ("" when nothing is stuck)."""
        try:
            return str(self.replica.health().get("why", ""))
        except Exception:  # diagnostics only; never let it break status
            return ""

    def net_info(self) -> dict:
        stats = self.transport.peer_stats() if isinstance(self.transport, PeerStats) else {}
        peers = []
        for v in self.genesis.validators:
            if v.index == self.index:
                continue
            st = stats.get(v.index, {}) if isinstance(stats, dict) else {}
            peers.append({"index": v.index, "node_id": v.public_key, "multiaddr": v.p2p_multiaddr,
                          "connected": _connected(st), "stats": _jsonable(st)})
        return {"listening": self.started.is_set(), "n_peers": len(peers), "peers": peers}

    def _connected_peers(self) -> int:
        return sum(1 for p in self.net_info()["peers"] if p["connected"])

    def validators(self) -> list[dict]:
        return [dataclasses.asdict(v) for v in self.genesis.validators]

    def block_height(self, block_hash: bytes) -> int | None:
        return self.store.block_height(block_hash)

    def genesis_doc(self) -> dict:
        return self.genesis.to_dict()

    def pending_txs(self, limit: int) -> tuple[int, list[Request]]:
        return self.replica.pending_count, self.replica.pending_requests(limit)

    def evidence(self) -> list[dict]:
        return list(self._evidence)

    def convicted(self) -> list[dict]:
        """Replicas convicted by evidence committed to the ledger: [{replica, height, kind}]."""
        conv = self.replica.convicted
        return [{"replica": r, "height": h, "kind": k} for r, (h, k) in sorted(conv.items())]

    def block(self, height: int) -> StoredBlock | None:
        return self.store.block(height)

    def tx(self, tx_hash: bytes) -> TxResult | None:
        return self.store.tx(tx_hash)

    def tx_by_client(self, client_id: bytes, request_seq: int) -> TxResult | None:
        return self.store.tx_by_client(client_id, request_seq)

    def client_floor(self, client_id: bytes) -> int:
        return self.store.client_floor(client_id)

    def app_events(self, height: int) -> Sequence[Any] | None:
        """Block `height`'s app events: recent ones from memory, older ones from the store
        (kept with their block: bftnode.node.app_events); None when neither has them."""
        evs = self._app_events.get(height)
        if evs is None and height <= self._height:
            evs = app_events.stored(self.store, self.app, height)
        return evs

    def _keep_app_events(self, height: int, evs: tuple) -> None:
        self._app_events[height] = evs
        self._app_events_total += len(evs)
        # bounded in heights AND events: a loaded node's 1,000 blocks held ~100k events
        while self._app_events and (len(self._app_events) > APP_EVENTS_KEPT or (
                self._app_events_total > APP_EVENTS_MAX and len(self._app_events) > 1)):
            self._app_events_total -= len(self._app_events.popitem(last=False)[1])

    async def read(self, fn: Callable[[Any], T]) -> T:
        """`fn(view)` in a read worker thread (at most `read_workers` at once), over a
        consistent view at the last committed height (storage.read_view.ReadView: height,
        time_ms, state, block, tx, tx_by_client). Never on the task that steps the replica;
        `fn` must read only the view (the node's in-memory state is not thread-safe)."""
        store = self.store
        if not isinstance(store, ReadViews):  # a store without read views (test doubles)
            return fn(_LiveView(self))

        def run() -> T:
            with store.read_view() as view:
                return fn(view)

        return await trio.to_thread.run_sync(run, limiter=self._read_limiter)

    async def query(self, method: str, params: dict, *,
                    shape: Callable[[dict], Any] | None = None) -> Any:
        """Application read at the last committed block, from a consistent snapshot, in a
        read worker (`read`). `min_revision` waits briefly for the state to reach it (else
        FUTURE_REVISION). `shape(result)`, if given, also runs in the worker (the RPC turns
        the answer into JSON there)."""
        params = dict(params)
        min_rev = params.pop("min_revision", None)
        if min_rev:
            with trio.move_on_after(MIN_REVISION_WAIT_S):
                while await self._revision() < min_rev:
                    await self.wait_height(self._height + 1, MIN_REVISION_WAIT_S)
            rev = await self._revision()
            if rev < min_rev:
                from bftnode.app.errors import FUTURE_REVISION, AppError

                raise AppError(FUTURE_REVISION,
                               f"node is at revision {rev}, below min_revision {min_rev}")
        return await self.read(partial(self._query_in, method, params, self._tip(), shape))

    async def _revision(self) -> int:
        return (await self.read(partial(self._query_in, "revision", {}, self._tip(), None))
                ).get("revision", 0)

    def _tip(self) -> tuple[int, int]:
        return self._height, self.last_block_time_ms

    def _query_in(self, method: str, params: dict, tip: tuple[int, int],
                  shape: Callable[[dict], Any] | None, view: Any) -> Any:
        # the agreed time of the view's block (the node's own, when it is the same block:
        # a state-transferred base has no header to read it from)
        time_ms = tip[1] if view.height == tip[0] else view.time_ms
        out = self.app.query(view.state, method, params, view.height, time_ms)
        return out if shape is None else shape(out)

    async def wait_height(self, height: int, timeout: float | None = None) -> int:
        """The current height as soon as it is >= `height`, or at `timeout` (maybe lower)."""
        with trio.move_on_after(math.inf if timeout is None else timeout):
            while self._height < height:
                await self._height_changed.wait()
        return self._height

    async def subscribe(self, from_height: int | None = None) -> AsyncIterator[StoredBlock]:
        """Committed blocks in height order, from `from_height` (default: the next one).
        Pull-based (reads the store), so a slow consumer never loses a block."""
        h = self._height + 1 if from_height is None else max(1, from_height)
        while True:
            await self.wait_height(h)
            b = self.store.block(h)
            if b is not None:
                yield b
            h += 1
