"""An in-memory NodeAPI for the RPC unit tests only (never used by the real node).

It orders each accepted tx into its own block (or holds them until `commit_pending()` when
`auto_commit` is off), signs real Ed25519 commit certificates with 4 deterministic validator
keys, and runs a tiny KV (put/delete) so reads and watch events have something to show.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import trio

from bftnode.app import ops
from bftnode.app.errors import NOT_FOUND, AppError
from bftnode.rpc.node_api import SubmitResult
from consensus import (
    Authenticator,
    Commit,
    CommittedBlock,
    Ed25519Signer,
    Ed25519Verifier,
    PrePrepare,
    Request,
    batch_digest,
    chain_digest,
    request_digest,
)
from storage.interface import StoredBlock, TxResult

CHAIN_ID = "test-chain"
N = 4


@dataclass
class KV:
    value: bytes
    revision: int
    create_revision: int
    version: int


class FakeNode:
    node_id = "node0"
    chain_id = CHAIN_ID
    domain = CHAIN_ID.encode()

    def __init__(self, auto_commit: bool = True, commit_delay: float = 0.0) -> None:
        self.signers = [Ed25519Signer.from_seed_int(i, b"fake") for i in range(N)]
        keys = [s.public_key for s in self.signers]
        self.auths = [Authenticator(self.domain, s, Ed25519Verifier(), keys) for s in self.signers]
        self.auto_commit = auto_commit
        self.commit_delay = commit_delay
        self.blocks: dict[int, StoredBlock] = {}
        self.events: dict[int, list[dict[str, Any]]] = {}
        self.results: dict[bytes, TxResult] = {}
        self.by_client: dict[tuple[bytes, int], TxResult] = {}
        self.pending: list[Request] = []
        self.pending_hashes: set[bytes] = set()
        self.kv: dict[bytes, KV] = {}
        self.revision = 0
        self.time_ms = 1_700_000_000_000
        self.submitted = 0
        self.evidence_list: list[dict[str, Any]] = []
        self.forget_events_below = 0
        self._changed = trio.Event()

    # -- NodeAPI: info
    def height(self) -> int:
        return len(self.blocks)

    def status(self) -> dict[str, Any]:
        h = self.height()
        last = self.blocks.get(h)
        return {
            "node_id": self.node_id, "chain_id": self.chain_id, "view": 0, "primary": 0,
            "height": h, "last_block_hash": (last.hash if last else bytes(32)).hex(),
            "last_block_time_ms": last.time_ms if last else 0, "in_view_change": False,
            "validator_index": 0, "peers": N - 1,
        }

    def health(self) -> dict[str, Any]:
        return {"ok": True}

    def net_info(self) -> dict[str, Any]:
        return {"peers": [{"index": i, "node_id": f"node{i}", "connected": True}
                          for i in range(1, N)]}

    def validators(self) -> list[dict[str, Any]]:
        return [{"index": i, "public_key": s.public_key.hex(), "name": f"node{i}"}
                for i, s in enumerate(self.signers)]

    def block_height(self, block_hash: bytes) -> int | None:
        return next((h for h, b in self.blocks.items() if b.hash == block_hash), None)

    def genesis_doc(self) -> dict[str, Any]:
        return {"chain_id": self.chain_id, "genesis_time_ms": 0,
                "validators": self.validators(), "consensus": {}, "app": {}}

    def pending_txs(self, limit: int) -> tuple[int, list[Request]]:
        return len(self.pending), self.pending[:limit]

    def block(self, height: int) -> StoredBlock | None:
        return self.blocks.get(height)

    def tx(self, tx_hash: bytes) -> TxResult | None:
        return self.results.get(tx_hash)

    def client_floor(self, client_id: bytes) -> int:
        return 0  # no window moves here

    def tx_by_client(self, client_id: bytes, request_seq: int) -> TxResult | None:
        return self.by_client.get((client_id, request_seq))

    def evidence(self) -> list[dict[str, Any]]:
        return list(self.evidence_list)

    def metrics_text(self) -> bytes:
        return b"# HELP fake_height h\n# TYPE fake_height gauge\nfake_height %d\n" % self.height()

    def app_events(self, height: int) -> list[dict[str, Any]] | None:
        if height <= self.forget_events_below:
            return None
        return self.events.get(height)

    # -- NodeAPI: writes
    def quota_refusal(self, request: Request, ahead: int = 0, own: int = 0) -> str | None:
        return None

    async def submit(self, request: Request) -> SubmitResult:
        self.submitted += 1
        h = request_digest(request)
        done = self.by_client.get((request.client_id, request.request_seq))
        if done is not None:
            return SubmitResult("committed", h, result=done)
        try:
            ops.decode_op(request.op)
        except ops.OpError as exc:
            return SubmitResult("rejected", h, reason=f"bad op: {exc}")
        if h in self.pending_hashes:
            return SubmitResult("accepted", h)
        self.pending.append(request)
        self.pending_hashes.add(h)
        if self.auto_commit:
            if self.commit_delay:
                await trio.sleep(self.commit_delay)
            self.commit_pending()
        return SubmitResult("accepted", h)

    def commit_pending(self) -> int:
        """Order every pending tx into one block (an empty block if none)."""
        reqs = tuple(self.pending)
        self.pending.clear()
        self.pending_hashes.clear()
        height = self.height() + 1
        self.time_ms += 1000
        digest = batch_digest(self.time_ms, reqs)
        pp = self.auths[0].sign(PrePrepare(0, height, self.time_ms, reqs, digest, 0))
        commits = tuple(self.auths[i].sign(Commit(0, height, digest, i)) for i in range(3))
        prev = self.blocks[height - 1].hash if height > 1 else bytes(32)
        evs: list[dict[str, Any]] = []
        for i, r in enumerate(reqs):
            code, result = self._execute(r, evs)
            res = TxResult(request_digest(r), r.client_id, r.request_seq, height, i, code, result)
            self.results[res.tx_hash] = res
            self.by_client[(r.client_id, r.request_seq)] = res
        self.blocks[height] = StoredBlock(
            height, chain_digest(prev, height, digest), prev, digest, self.time_ms, 0, bytes(32),
            reqs, CommittedBlock(pp, commits),
        )
        self.events[height] = evs
        self._changed.set()
        self._changed = trio.Event()
        return height

    def _execute(self, r: Request, evs: list[dict[str, Any]]) -> tuple[int, bytes]:
        op = ops.decode_op(r.op)
        if isinstance(op, ops.Put):
            self.revision += 1
            old = self.kv.get(op.key)
            self.kv[op.key] = KV(op.value, self.revision,
                                 old.create_revision if old else self.revision,
                                 old.version + 1 if old else 1)
            evs.append({"type": "put", "key": op.key, "value": op.value,
                        "revision": self.revision})
            return 0, ops.encode_result({"revision": self.revision})
        if isinstance(op, ops.Delete):
            if self.kv.pop(op.key, None) is None:
                return 0, ops.encode_result({"revision": self.revision, "deleted": 0})
            self.revision += 1
            evs.append({"type": "delete", "key": op.key, "revision": self.revision})
            return 0, ops.encode_result({"revision": self.revision, "deleted": 1})
        return 8, ops.encode_result({"error": "fake node runs put/delete only"})

    async def wait_commit(self, tx_hash: bytes, timeout: float) -> TxResult | None:
        with trio.move_on_after(timeout):
            while tx_hash not in self.results:
                await self._changed.wait()
        return self.results.get(tx_hash)

    async def wait_height(self, height: int, timeout: float) -> int:
        with trio.move_on_after(timeout):
            while self.height() < height:
                await self._changed.wait()
        return self.height()

    # -- NodeAPI: reads
    async def query(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        if method == "kv_get":
            kv = self.kv.get(params["key"])
            if kv is None:
                return {"key": params["key"], "value": None, "revision": self.revision}
            return {"key": params["key"], "value": kv.value, "revision": self.revision,
                    "mod_revision": kv.revision, "create_revision": kv.create_revision,
                    "version": kv.version}
        if method == "kv_range":
            items = [{"key": k, "value": v.value, "mod_revision": v.revision}
                     for k, v in sorted(self.kv.items()) if k.startswith(params["key"])]
            return {"kvs": items, "count": len(items), "revision": self.revision}
        if method == "lease_ttl":
            raise AppError(NOT_FOUND, f"lease {params['id']} not found")
        if method == "revision":
            return {"revision": self.revision}
        raise AppError(8, f"unknown query {method!r}")
