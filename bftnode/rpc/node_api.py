"""What the RPC layer needs from a running node: the `NodeAPI` Protocol (and `SubmitResult`).

bftnode.node.Node implements this; `bftnode.rpc.methods` and `bftnode.rpc.server` use nothing
else of the node. Reads return the storage layer's own types (`StoredBlock`, `TxResult`) so the
JSON shape is owned by one place (`bftnode.rpc.methods`). Subscriptions are pull-based: the RPC
layer waits with `wait_height` and then reads blocks / app events, so resuming `from_height` is
natural and the node keeps no per-subscriber queues.

Optional: `async submit_many(requests) -> list[SubmitResult]` (bftnode.node.Node has it). When
present, a JSON-RPC batch array of only `broadcast_tx_sync` calls hands its requests over in
one call instead of one `submit` per call (same answers; bftnode.rpc.methods.dispatch).

Imports: stdlib, msgspec, consensus (types), storage.interface (types). Must not import trio, starlette,
hypercorn, network or bftnode.node.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal, Protocol, runtime_checkable

import msgspec

from consensus import Request
from storage.interface import StoredBlock, TxResult

SubmitStatus = Literal["accepted", "committed", "rejected"]


class SubmitResult(msgspec.Struct, frozen=True):  # one per submitted tx: a struct builds fast
    """Outcome of handing a client-signed Request to the node.

    - "accepted": passed check_tx and is queued for ordering (or forwarded to the primary);
      submitting the same request again is harmless (consensus dedups by client_id/request_seq).
    - "committed": this (client_id, request_seq) was already executed: `result` is the ORIGINAL
      result (a replayed tx gets the original answer, never a second execution).
    - "rejected": refused before ordering; `reason` is a clear message for the client
      (bad op, stale request_seq, pool full, request too large, expired valid_until, ...).
    """

    status: SubmitStatus
    tx_hash: bytes
    reason: str = ""
    result: TxResult | None = None


@runtime_checkable
class NodeAPI(Protocol):
    """A running node as the RPC layer sees it. All methods are called from the node's trio
    run (same thread); sync methods must not block for long (storage reads are fine)."""

    node_id: str  # e.g. "node0" or the libp2p peer id
    chain_id: str
    domain: bytes  # signature domain: bftnode.genesis.chain_domain(chain_id)

    def status(self) -> dict[str, Any]:
        """JSON-able. At least: node_id, chain_id, view, primary, height, last_block_hash (hex),
        last_block_time_ms, in_view_change, validator_index, peers."""
        ...

    def health(self) -> dict[str, Any]:
        """JSON-able. At least `ok: bool` plus whatever explains a not-ok (e.g. no peers,
        stuck in view change, storage error)."""
        ...

    def net_info(self) -> dict[str, Any]:
        """JSON-able. At least `peers: list[{index, node_id, connected, multiaddr}]`."""
        ...

    def validators(self) -> list[dict[str, Any]]:
        """The genesis validator set: [{index, public_key (hex Ed25519), name, p2p_multiaddr,
        rpc_url}] in index order. Clients verify commit certificates against it."""
        ...

    def block_height(self, block_hash: bytes) -> int | None:
        """The height of the stored block with this hash; None if not stored (or pruned)."""
        ...

    def genesis_doc(self) -> dict[str, Any]:
        """The chain's genesis as its file holds it (chain_id, genesis_time_ms, validators,
        consensus, app)."""
        ...

    def pending_txs(self, limit: int) -> tuple[int, list[Request]]:
        """(how many txs wait to commit here, up to `limit` of them, oldest first)."""
        ...

    def height(self) -> int:
        """Last committed (executed and stored) block height; 0 before the first block."""
        ...

    def block(self, height: int) -> StoredBlock | None:
        """A committed block with its commit certificate; None if not (yet/any longer) stored."""
        ...

    def tx(self, tx_hash: bytes) -> TxResult | None:
        """Result of a committed tx by hash (consensus.codec.request_digest)."""
        ...

    def tx_by_client(self, client_id: bytes, request_seq: int) -> TxResult | None:
        """Result of a committed tx by (client_id, request_seq): lets a client that lost the
        reply find out whether its request committed before retrying."""
        ...

    def client_floor(self, client_id: bytes) -> int:
        """The client's floor: its request_seqs at or below it have no client-index entry
        any more (storage.keys F; 0: none removed, always 0 with the state tree off)."""
        ...

    async def submit(self, request: Request) -> SubmitResult:
        """Validate (check_tx, dedup) and hand the request to the replica task. The RPC layer
        has already decoded it and verified the client signature against `domain`."""
        ...

    def quota_refusal(self, request: Request, ahead: int = 0, own: int = 0) -> str | None:
        """Why this tx would be refused at admission for its client's pending quota now
        (`client quota: ...`), or None (also for a tx pending or committed already: `submit`
        answers those); asked before the tx's signature is checked. `ahead`: txs of the same
        call before it that would enter the pool first (`own` of them its client's)."""
        ...

    async def wait_commit(self, tx_hash: bytes, timeout: float) -> TxResult | None:
        """The tx's result once committed (immediately if it already is); None on timeout.
        Must not miss a commit that happens between `submit` and this call."""
        ...

    async def wait_height(self, height: int, timeout: float) -> int:
        """Return the current height as soon as it is >= `height`, or at `timeout` seconds
        (then the returned height may be < `height`)."""
        ...

    async def query(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        """Application read (bftnode.app Application.query over the committed state): methods
        kv_get {key: bytes, revision?}, kv_range {key, prefix?, limit?, revision?,
        keys_only?, count_only?}, lease_ttl {id}, lock_status {name}, election_leader {name},
        revision {}. Keys/values are bytes here. `min_revision` (if given) is honoured by the
        node: it waits briefly for its state to reach it or raises AppError(FUTURE_REVISION).
        Result values may contain bytes. Raises bftnode.app.errors.AppError(code, message)."""
        ...

    def app_events(self, height: int) -> Sequence[Any] | None:
        """The application events (bftnode.app AppEvent: key put/delete with revision, lease
        expired, lock granted/lost, leader changed) of committed block `height`, if the node
        still retains them (recent blocks only); None when not retained. Items are dataclasses,
        msgspec Structs or dicts; the RPC layer converts them to JSON."""
        ...

    def evidence(self) -> list[dict[str, Any]]:
        """Recent misbehaviour evidence, JSON-able: [{kind, replica, reason, height?, time_ms?}].

        A node may also offer `convicted() -> [{replica, height, kind}]` (replicas convicted by
        evidence committed to the ledger); it is optional, not part of this protocol, so the
        RPC layer treats a node without it as having no convictions."""
        ...

    def metrics_text(self) -> bytes:
        """Prometheus exposition text of the node's registry (bftnode.metrics.NodeMetrics.text)."""
        ...
