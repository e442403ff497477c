"""CometBFT's RPC routes with bftnode's meaning where the concept differs (docs/rpc.md,
"CometBFT routes"): `block_by_hash`, `tx_search` (tx_query), `header`, `commit`,
`block_results`, `genesis`, `abci_info`, `abci_query` (a key read, with its proof),
`check_tx` (checks a tx without submitting it), `num_unconfirmed_txs`, `unconfirmed_txs`,
`consensus_state`, `dump_consensus_state`. The
positional params CometBFT clients send are named by `registry.POSITIONAL`. Registered like
every method (`registry.method`); reads go through the same read bounds.

Imports: stdlib, consensus, bftnode.rpc. Must not import starlette, hypercorn or bftnode.node.
"""

from __future__ import annotations

from typing import Any

from consensus import encode

from .. import installed_version
from . import handlers as H
from . import read_views as rv
from . import tx_query
from .errors import INVALID_PARAMS, RPCError
from .params import (
    AbciQueryParams,
    BlockHashParams,
    BroadcastParams,
    HeightParams,
    KvGetParams,
    NoParams,
    TxSearchParams,
    UnconfirmedParams,
    parse,
)
from .read_guard import guarded
from .registry import CallContext, method
from .shapes import b64

QUERY_PATHS = ("", "/", "/key", "/store/kv/key")
INDEX_ENTRIES_PER_READ = 100  # tx-attribute index entries charged as one point read


@method("block_by_hash", BlockHashParams)
async def on_block_by_hash(ctx: CallContext, p: BlockHashParams) -> Any:
    return await rv.guarded_read(ctx, p, rv.block_by_hash, p.hash)


@method("tx_search", TxSearchParams)
async def on_tx_search(ctx: CallContext, p: TxSearchParams) -> Any:
    """Txs by `tx.height` range, `tx.hash`, `tx.code` and indexed event attributes
    (tx_query); pages in height order."""
    q = tx_query.parse(p.query)
    return await rv.guarded_read(
        ctx, p, rv.tx_search, q, p.page, p.per_page, p.order_by == "desc",
        point_reads=lambda out: 1 + out.get("records_read", out["total_count"])
        + out["blocks_read"] + out.get("index_entries_read", 0) // INDEX_ENTRIES_PER_READ)


@method("header", HeightParams)
async def on_header(ctx: CallContext, p: HeightParams) -> Any:
    return await rv.guarded_read(ctx, p, rv.header_at, p.height)


@method("commit", HeightParams)
async def on_commit(ctx: CallContext, p: HeightParams) -> Any:
    return await rv.guarded_read(ctx, p, rv.commit_at, p.height)


@method("block_results", HeightParams)
async def on_block_results(ctx: CallContext, p: HeightParams) -> Any:
    return await rv.guarded_read(ctx, p, rv.results_at, p.height,
                                 point_reads=lambda out: 1 + out["num_txs"])  # a record per tx


@method("genesis", NoParams)
async def on_genesis(ctx: CallContext, p: NoParams) -> Any:
    return {"genesis": ctx.node.genesis_doc()}


@method("abci_info", NoParams)
async def on_abci_info(ctx: CallContext, p: NoParams) -> Any:
    """The application's identity and last height; `last_block_app_hash` is that block's
    state root (zeros with the state tree off)."""
    h = ctx.node.height()
    app_hash = ""
    if h:  # a header read under the read bounds (a client looping on this pays for it)
        hdr = await rv.guarded_read(ctx, p, rv.header_at, h)
        app_hash = hdr["state_root"]
    return {"response": {"data": "bftnode", "version": installed_version(), "last_block_height": h,
                         "last_block_app_hash": app_hash}}


@method("abci_query", AbciQueryParams)
async def on_abci_query(ctx: CallContext, p: AbciQueryParams) -> Any:
    """A key read: `data` is the key in hex (`0x` optional); `prove` answers with the kv_get proof (state
    tree on); `height` > 0 waits for the node to be there (reads are at the latest height)."""
    if p.path not in QUERY_PATHS:
        raise RPCError(INVALID_PARAMS, f"param 'path': {p.path!r} is not a store this node "
                                       f"serves (one of {', '.join(map(repr, QUERY_PATHS))})",
                       {"param": "path"})
    try:
        key = bytes.fromhex(p.data[2:] if p.data[:2] in ("0x", "0X") else p.data)
    except ValueError:
        raise RPCError(INVALID_PARAMS, "param 'data': the key in hex", {"param": "data"}) from None
    if not key:
        raise RPCError(INVALID_PARAMS, "param 'data': an empty key", {"param": "data"})
    kv = parse(KvGetParams, {"key": b64(key), "encoding": "base64", "prove": p.prove,
                             **({"min_height": p.height} if p.height else {})})
    out = await H.on_kv_get(ctx, kv)
    value = out.get("value")
    resp: dict[str, Any] = {
        "code": 0 if value is not None else 1,
        "log": "exists" if value is not None else "does not exist",
        "key": b64(key), "value": value, "height": out.get("height"),
        "revision": out.get("mod_revision", out.get("revision")),
    }
    if p.prove:
        resp["proof"] = {k: v for k, v in out.items() if k not in ("value", "key")}
    return {"response": resp}


@method("check_tx", BroadcastParams)
async def on_check_tx(ctx: CallContext, p: BroadcastParams) -> Any:
    """What the node checks before it takes a tx (size and shape at decoding, the client's
    quota, the signature), without taking it: {code: 0, hash} or the error a submit would
    answer. Whether it would execute is the chain's to say at its height."""
    req = p.tx.request
    H.refuse_over_quota(ctx, req)
    tx_hash = H.verify_tx(ctx, req)
    return {"code": 0, "hash": tx_hash.hex(), "log": "signature and shape ok"}


@method("num_unconfirmed_txs", NoParams)
async def on_num_unconfirmed(ctx: CallContext, p: NoParams) -> Any:
    n, _ = ctx.node.pending_txs(0)
    return {"n_txs": n, "total": n}


@method("unconfirmed_txs", UnconfirmedParams)
async def on_unconfirmed(ctx: CallContext, p: UnconfirmedParams) -> Any:
    async def run(budget: int) -> Any:  # under the read bounds: up to 100 txs of 64 KiB
        n, reqs = ctx.node.pending_txs(p.limit)
        out = {"n_txs": len(reqs), "total": n, "txs": [b64(encode(r)) for r in reqs]}
        return rv.sized(out, budget, None)

    return await guarded(ctx, p, run, point_reads=lambda out: max(1, out["n_txs"]))


@method("consensus_state", NoParams)
async def on_consensus_state(ctx: CallContext, p: NoParams) -> Any:
    """PBFT's round state: height, view (CometBFT's round), primary (proposer), mode."""
    st = ctx.node.status()
    return {"round_state": {
        "height": st.get("height"), "view": st.get("view"), "primary": st.get("primary"),
        "step": "view-change" if st.get("in_view_change") else "normal",
        "stable_checkpoint": st.get("stable_checkpoint"), "why": st.get("why", "")}}


@method("dump_consensus_state", NoParams)
async def on_dump_consensus_state(ctx: CallContext, p: NoParams) -> Any:
    """`consensus_state` with the replica's health (what it waits for) and the peers."""
    state = await on_consensus_state(ctx, p)
    net = ctx.node.net_info()
    return {**state, "health": ctx.node.health(),
            "peers": net.get("peers", []) if isinstance(net, dict) else []}

