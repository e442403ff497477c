"""The worker-thread half of the read methods: each function here reads ONE consistent view
(storage.read_view.ReadView: height, time_ms, state, block, tx, tx_by_client) and builds the
JSON answer there, with its size, so neither the read nor the JSON work runs on the node's
event loop. Nothing here touches trio or the node's in-memory state.

`in_view(ctx, fn)` runs `fn(view)` through the node's `read` (its read workers); a NodeAPI
without `read` (test doubles) gets a view over its own sync methods, read on the loop.
kv_range answers are pages: at most the node's page limit of keys and about the byte budget,
with `more` and an opaque `cursor` (the next start key, the range's end and the revision the
first page was read at, so every page reads the same revision).
Imports: stdlib, msgspec, consensus (request_digest), bftnode.rpc (and bftnode.app.ops
through shapes.jsonable).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from functools import partial
from typing import Any, TypeVar

import msgspec

from consensus import request_digest

from .errors import INVALID_PARAMS, NOT_FOUND, PRUNED, TOO_LARGE, RPCError
from .read_guard import guarded
from .registry import CallContext
from .shapes import block_json, commit_json, jsonable, tx_json

T = TypeVar("T")
MAX_BLOCKCHAIN_RANGE = 100
MAX_ATTR_MATCHES = 10_000  # index entries one tx_search condition may match
_enc = msgspec.json.Encoder()
Sized = tuple[Any, int, int | None]  # (answer, its JSON bytes, the height it was read at)


class _NodeView:
    """A view over a NodeAPI's sync reads (nodes without `read`)."""

    def __init__(self, node: Any) -> None:
        self._node = node
        self.height = node.height()
        base = getattr(node, "base_height", None)
        self.base = base() if base is not None else 1

    def block(self, height: int) -> Any:
        return self._node.block(height)

    def tx(self, tx_hash: bytes) -> Any:
        return self._node.tx(tx_hash)

    def block_height(self, block_hash: bytes) -> int | None:
        return self._node.block_height(block_hash)

    def tx_by_client(self, client_id: bytes, request_seq: int) -> Any:
        return self._node.tx_by_client(client_id, request_seq)

    def client_floor(self, client_id: bytes) -> int:
        return self._node.client_floor(client_id)

    def tx_attrs_indexed(self) -> int:
        return 0  # no tx-attribute index behind this view (storage.tx_attrs)

    def find_tx_attr(self, attr: bytes, value: bytes, lo: int, hi: int,
                     limit: int) -> list[tuple[int, int, bytes]]:
        return []


async def in_view(ctx: CallContext, fn: Callable[[Any], T]) -> T:
    read = getattr(ctx.node, "read", None)
    if read is None:
        return fn(_NodeView(ctx.node))
    return await read(fn)


async def guarded_read(ctx: CallContext, fresh: Any, fn: Callable[..., Sized], *args: Any,
                       point_reads: Callable[[Any], int] | None = None) -> Any:
    """`fn(*args, budget, view)` in a read worker under the read bounds (read_guard.guarded):
    the shape of every plain stored read (block, header, commit, results, search, ...)."""
    return await guarded(ctx, fresh, lambda budget: in_view(ctx, partial(fn, *args, budget)),
                         point_reads=point_reads)


def sized(out: Any, budget: int, height: int | None) -> Sized:
    size = len(_enc.encode(out))
    if size > budget:
        raise RPCError(TOO_LARGE, f"answer of {size} bytes exceeds the {budget} bytes this read "
                       "may answer (per answer, and what is left of the batch's budget); ask "
                       "for less, or in another request", {"bytes": size, "budget": budget})
    return out, size, height


def committed_tx_json(res: Any, block: Any, encoding: str = "utf8") -> dict[str, Any]:
    """A committed tx with its block's hash/time and commit certificate (the client's proof)."""
    out = tx_json(res, encoding)
    if block is not None:
        out["block_hash"] = block.hash.hex()
        out["block_time"] = block.time_ms
        out["commit"] = commit_json(block)
    return out


# ---------------------------------------------------------------- blocks and txs


def block_at(height: int | None, budget: int, view: Any) -> Sized:
    return sized(block_json(_stored_block(height, view)), budget, view.height)


def block_by_hash(block_hash: bytes, budget: int, view: Any) -> Sized:
    """The block with this hash (the ledger's block-hash index), as `block` answers it."""
    h = view.block_height(block_hash)
    if h is None:
        raise RPCError(NOT_FOUND, f"no stored block has hash {block_hash.hex()} (pruned, or "
                                  "not on this chain)", {"base_height": getattr(view, "base", 1)})
    return sized(block_json(_stored_block(h, view)), budget, view.height)


def tx_search(q: Any, page: int, per_page: int, desc: bool, budget: int, view: Any) -> Sized:
    """CometBFT's `tx_search` over the block headers (by height), the tx index (by hash) and
    the tx-attribute index (by event attribute): {txs: [tx...], total_count} in height order,
    one page of `per_page`."""
    if q.attrs:
        return _tx_search_by_attrs(q, page, per_page, desc, budget, view)
    blocks = 0
    if q.tx_hash is not None:
        res = view.tx(q.tx_hash)
        found = [] if res is None or not q.lo <= res.height <= (
            res.height if q.hi is None else q.hi) else [res]
    else:
        found = []
        heights = q.heights(view.height)
        for h in reversed(heights) if desc else heights:
            blocks += 1
            block = view.block(h)
            if block is not None:
                found += _results_of(block, view)
    if q.code is not None:
        found = [r for r in found if r.code == q.code]
    start = (page - 1) * per_page
    txs = [tx_json(r) for r in found[start:start + per_page]]
    return sized({"txs": txs, "total_count": len(found), "blocks_read": blocks}, budget,
                 view.height)


def _tx_search_by_attrs(q: Any, page: int, per_page: int, desc: bool, budget: int,
                        view: Any) -> Sized:
    """Range reads of the tx-attribute index, one per attribute (intersected), then the tx
    records of one page (of every match when `tx.code` or `tx.hash` filters them)."""
    hi = view.height if q.hi is None else min(q.hi, view.height)
    hits: list[tuple[int, int, bytes]] | None = None
    scanned = 0
    for attr, value in q.attrs:
        found = view.find_tx_attr(attr, value, q.lo, hi, MAX_ATTR_MATCHES + 1)
        scanned += len(found)
        if len(found) > MAX_ATTR_MATCHES:
            raise RPCError(INVALID_PARAMS, f"param 'query': more than {MAX_ATTR_MATCHES} txs "
                           f"have {attr.decode()}={value.decode(errors='replace')[:40]!r}: "
                           "narrow tx.height", {"param": "query"})
        if hits is None:
            hits = found
        else:
            keep = {(h, i) for h, i, _ in found}
            hits = [x for x in hits if (x[0], x[1]) in keep]
    assert hits is not None
    if q.tx_hash is not None:
        hits = [x for x in hits if x[2] == q.tx_hash]
    if desc:
        hits.reverse()
    read = 0
    if q.code is not None:
        records = [view.tx(th) for _, _, th in hits]
        read = len(records)
        matched = [r for r in records if r is not None and r.code == q.code]
    else:
        matched = hits
    start = (page - 1) * per_page
    chosen = matched[start:start + per_page]
    if q.code is None:
        chosen = [r for r in (view.tx(th) for _, _, th in chosen) if r is not None]
        read = len(chosen)
    txs = [tx_json(r) for r in chosen]
    return sized({"txs": txs, "total_count": len(matched), "blocks_read": 0,
                  "records_read": read, "index_entries_read": scanned,
                  "indexed_height": view.tx_attrs_indexed()},
                 budget, view.height)


def header_at(height: int | None, budget: int, view: Any) -> Sized:
    """A block without its txs and commit (CometBFT's `header`)."""
    block = _stored_block(height, view)
    return sized(block_json(block, with_txs=False), budget, view.height)


def commit_at(height: int | None, budget: int, view: Any) -> Sized:
    """A block's header and its commit certificate (CometBFT's `commit`)."""
    block = _stored_block(height, view)
    return sized({"header": block_json(block, with_txs=False), "commit": commit_json(block),
                  "canonical": True}, budget, view.height)


def results_at(height: int | None, budget: int, view: Any) -> Sized:
    """Each tx of a block with its result, in block order (CometBFT's `block_results`)."""
    block = _stored_block(height, view)
    results = [tx_json(r) for r in _results_of(block, view)]
    return sized({"height": block.height, "num_txs": len(block.txs), "txs_results": results},
                 budget, view.height)


def _results_of(block: Any, view: Any) -> list[Any]:
    """The tx records of a block's txs, in block order (a skipped request has none here)."""
    out = []
    for req in block.txs:
        res = view.tx(request_digest(req))
        if res is not None and res.height == block.height:
            out.append(res)
    return out


def _stored_block(height: int | None, view: Any) -> Any:
    h = height
    if h is None:
        if view.height == 0:
            raise RPCError(NOT_FOUND, "no block committed yet (height is 0)")
        h = view.height
    block = view.block(h)
    if block is None:
        _refuse_pruned(h, view)
        raise RPCError(NOT_FOUND, f"block {h} not found (current height is {view.height})")
    return block


def _refuse_pruned(h: int, view: Any) -> None:
    base = getattr(view, "base", 1)
    if 0 < h < base:
        raise RPCError(PRUNED, f"block {h} was pruned: the lowest height this node keeps is "
                       f"{base}", {"base_height": base})


def blockchain(lo: int, hi: int | None, budget: int, view: Any) -> Sized:
    """Headers of [lo, hi] (clamped to the view's height), newest first, at most
    MAX_BLOCKCHAIN_RANGE of them (the newest ones)."""
    height = view.height
    hi = height if hi is None else hi
    if lo > hi:
        raise RPCError(INVALID_PARAMS, f"param 'min_height' ({lo}) must be <= max_height ({hi})",
                       {"param": "min_height"})
    hi = min(hi, height)
    lo = max(lo, hi - MAX_BLOCKCHAIN_RANGE + 1)
    metas = []
    for h in range(hi, lo - 1, -1):
        b = view.block(h)
        if b is not None:
            metas.append(block_json(b, with_txs=False))
    return sized({"last_height": height, "blocks": metas}, budget, height)


def tx_at(tx_hash: bytes, prove: bool, encoding: str, budget: int, view: Any) -> Sized:
    res = view.tx(tx_hash)
    if res is None:
        base = getattr(view, "base", 1)
        older = f", or in a block below {base}, the lowest height kept" if base > 1 else ""
        raise RPCError(NOT_FOUND, f"tx {tx_hash.hex()} not found (not committed, or "
                       f"unknown{older})", {"base_height": base} if older else None)
    _refuse_pruned(res.height, view)
    out = committed_tx_json(res, view.block(res.height), encoding) if prove else tx_json(
        res, encoding)
    return sized(out, budget, view.height)


def refuse_below_floor(client: tuple[bytes, int], floor: int) -> None:
    """A tx not found whose seq is at or below its client's floor: its client-index entry was
    removed (the window moved past it), so "not committed" cannot be told (nor proven)."""
    if 0 < client[1] <= floor:
        raise RPCError(PRUNED, f"request_seq {client[1]} is at or below this client's floor "
                       f"{floor} (its highest executed seq minus dedup_window): whether it "
                       "committed is known by its hash only", {"client_floor": floor})


def tx_lookup(tx_hash: bytes | None, client: tuple[bytes, int] | None, encoding: str,
              budget: int, view: Any) -> tuple[Any, dict[str, Any] | None, int, int]:
    """(result or None, its committed JSON, its size, the view's height) for tx_status."""
    res = view.tx(tx_hash) if tx_hash is not None else (
        view.tx_by_client(*client) if client is not None else None)
    if res is None:
        if client is not None:
            refuse_below_floor(client, view.client_floor(client[0]))
        return None, None, 0, view.height
    out, size, _ = sized(committed_tx_json(res, view.block(res.height), encoding), budget,
                         view.height)
    return res, out, size, view.height


# ---------------------------------------------------------------- application reads


def answer(encoding: str, budget: int, res: Any) -> Sized:
    """An application read's answer as JSON (in the worker)."""
    out = jsonable(res, encoding)
    height = out.get("height") if isinstance(out, dict) else None
    return sized(out, budget, height if isinstance(height, int) else None)


def encode_cursor(start: bytes, end: bytes, revision: int) -> str:
    raw = msgspec.msgpack.encode((start, end, revision))
    return base64.urlsafe_b64encode(raw).decode()


def decode_cursor(cursor: str) -> tuple[bytes, bytes, int]:
    try:
        start, end, rev = msgspec.msgpack.decode(base64.urlsafe_b64decode(cursor.encode()),
                                                 type=tuple[bytes, bytes, int])
    except (binascii.Error, ValueError, msgspec.DecodeError):
        raise RPCError(INVALID_PARAMS, "param 'cursor': not a cursor of a kv_range answer "
                       "(pass it back unchanged)", {"param": "cursor"}) from None
    if not end or rev < 0:
        raise RPCError(INVALID_PARAMS, "param 'cursor': malformed", {"param": "cursor"})
    return start, end, rev


def range_end(key: bytes, prefix: bool) -> bytes | None:
    """The etcd range end of a prefix range (b"\\x00": every key from `key` on); None for a
    single key."""
    if not prefix:
        return None
    k = key.rstrip(b"\xff")
    return k[:-1] + bytes([k[-1] + 1]) if k else b"\x00"


def kv_page(encoding: str, budget: int, end: bytes | None, res: dict) -> Sized:
    """A kv_range answer cut to about `budget` bytes (at least one key), with `more` and a
    `cursor` for the next page when there is one."""
    kvs = res.get("kvs") or []
    keep, total = 0, 200
    for kv in kvs:
        total += len(kv.get("key", b"")) + len(kv.get("value") or b"") + 120
        if keep and total * (4 if encoding == "base64" else 3) // 3 > budget:
            break
        keep += 1
    while True:  # the estimate can be low (escaped text): halve the page until it fits
        try:
            return _page(encoding, budget, end, res, kvs, keep)
        except RPCError:
            if keep <= 1:
                raise
            keep //= 2


def _page(encoding: str, budget: int, end: bytes | None, res: dict, kvs: list,
          keep: int) -> Sized:
    more = bool(res.get("more")) or keep < len(kvs)
    if keep < len(kvs):
        res = {**res, "kvs": kvs[:keep], "more": True}
    out = jsonable(res, encoding)
    if more and keep and end is not None:
        out["cursor"] = encode_cursor(kvs[keep - 1]["key"] + b"\x00", end,
                                      int(res.get("revision", 0)))
    height = out.get("height")
    return sized(out, budget, height if isinstance(height, int) else None)
