"""The JSON-RPC 2.0 method table: validated params in, JSON-able dicts out, over `NodeAPI`.

Owns: the method names and their params/results (documented in docs/rpc.md), the JSON shape of
blocks, txs and commit certificates, request/batch validation and the mapping of every failure
to a JSON-RPC error with a clear message. Transport-free: `bftnode.rpc.server` feeds it parsed
JSON from HTTP and WebSocket. Txs are client-signed `consensus.Request`s (base64 of
`consensus.codec.encode`); no method builds an op server-side.

Imports: stdlib, msgspec, structlog, consensus, storage.interface (types), bftnode.app (errors
and result decoding, lazily), bftnode.rpc, trio (batch concurrency only). Must not import
starlette, hypercorn or the runtime.
"""

from __future__ import annotations

import base64
import binascii
import collections
import math
import time
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec
import structlog
import trio

from consensus import Ed25519Verifier, Request, decode, encode, request_digest
from consensus.codec import signing_bytes
from consensus.errors import DecodeError
from storage.interface import StoredBlock, TxResult

from ..logging import trace_context
from .errors import (
    APP_ERROR,
    BAD_SIGNATURE,
    INTERNAL_ERROR,
    INVALID_PARAMS,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    NOT_FOUND,
    PARSE_ERROR,
    TIMEOUT,
    TOO_LARGE,
    TX_REJECTED,
    RPCError,
)
from .node_api import NodeAPI

log = structlog.get_logger("bftnode.rpc")

MAX_BATCH = 1000
MAX_BLOCKCHAIN_RANGE = 100
DEFAULT_COMMIT_TIMEOUT_S = 10.0
MAX_COMMIT_TIMEOUT_S = 120.0
MAX_TX_BYTES = 2 * 1024 * 1024  # decoded; the node applies its own (smaller) request limit

_verifier = Ed25519Verifier()
_json_decoder = msgspec.json.Decoder()


@dataclass
class CallContext:
    """Per-connection context: who is calling, a task spawner for fire-and-forget work, and an
    error counter hook (the server's prometheus counters)."""

    node: NodeAPI
    peer: str = "?"
    transport: str = "http"  # "http" | "websocket"
    spawn: Callable[[Callable[[], Awaitable[Any]]], None] | None = None
    trace_id: str | None = None  # from the X-Trace-Id header; else one new id per call
    on_error: Callable[[str, int], None] | None = None  # (method, code)
    extra: dict[str, Any] = field(default_factory=dict)


Handler = Callable[[CallContext, dict[str, Any]], Awaitable[Any]]
METHODS: dict[str, Handler] = {}


def method(name: str) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        METHODS[name] = fn
        return fn

    return register


# ---------------------------------------------------------------- param helpers


def _bad(msg: str) -> RPCError:
    return RPCError(INVALID_PARAMS, msg)


def p_int(
    params: dict[str, Any], name: str, default: int | None = None, *, required: bool = False,
    lo: int | None = None, hi: int | None = None,
) -> int | None:
    v = params.get(name)
    if v is None:
        if required:
            raise _bad(f"missing required param {name!r} (integer)")
        return default
    if isinstance(v, str) and v.strip().lstrip("-").isdigit():  # CometBFT clients send "5"
        v = int(v)
    if isinstance(v, bool) or not isinstance(v, int):
        raise _bad(f"param {name!r} must be an integer, got {type(v).__name__}")
    if lo is not None and v < lo:
        raise _bad(f"param {name!r} must be >= {lo}, got {v}")
    if hi is not None and v > hi:
        raise _bad(f"param {name!r} must be <= {hi}, got {v}")
    return v


def p_float(params: dict[str, Any], name: str, default: float, lo: float, hi: float) -> float:
    v = params.get(name)
    if v is None:
        return default
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
        raise _bad(f"param {name!r} must be a number of seconds")
    if not lo <= v <= hi:
        raise _bad(f"param {name!r} must be between {lo} and {hi}, got {v}")
    return float(v)


def p_bool(params: dict[str, Any], name: str, default: bool = False) -> bool:
    v = params.get(name)
    if v is None:
        return default
    if not isinstance(v, bool):
        raise _bad(f"param {name!r} must be true or false, got {type(v).__name__}")
    return v


def p_str(
    params: dict[str, Any], name: str, default: str | None = None, *, required: bool = False,
    choices: tuple[str, ...] | None = None,
) -> str | None:
    v = params.get(name)
    if v is None:
        if required:
            raise _bad(f"missing required param {name!r} (string)")
        return default
    if not isinstance(v, str):
        raise _bad(f"param {name!r} must be a string, got {type(v).__name__}")
    if choices is not None and v not in choices:
        raise _bad(f"param {name!r} must be one of {', '.join(choices)}; got {v!r}")
    return v


def encoding_of(params: dict[str, Any]) -> str:
    return p_str(params, "encoding", "utf8", choices=("utf8", "base64")) or "utf8"


def p_bytes(
    params: dict[str, Any], name: str, *, required: bool = False, allow_empty: bool = False
) -> bytes | None:
    """A key/value/name param: a UTF-8 string, or base64 when params.encoding == "base64"."""
    v = params.get(name)
    if v is None:
        if required:
            raise _bad(f"missing required param {name!r} (string)")
        return None
    if not isinstance(v, str):
        raise _bad(f"param {name!r} must be a string, got {type(v).__name__}")
    if encoding_of(params) == "base64":
        try:
            raw = base64.b64decode(v, validate=True)
        except (binascii.Error, ValueError):
            raise _bad(f"param {name!r} is not valid base64") from None
    else:
        raw = v.encode("utf-8", "surrogatepass")
    if not raw and not allow_empty:
        raise _bad(f"param {name!r} must not be empty")
    return raw


def p_hash(params: dict[str, Any], name: str = "hash") -> bytes:
    v = p_str(params, name, required=True)
    assert v is not None
    s = v[2:] if v[:2] in ("0x", "0X") else v
    try:
        raw = bytes.fromhex(s)
    except ValueError:
        raise _bad(f"param {name!r} must be 64 hex characters") from None
    if len(raw) != 32:
        raise _bad(f"param {name!r} must be a 32-byte hash (64 hex characters), got {len(raw)}")
    return raw


def p_tx(params: dict[str, Any]) -> Request:
    """Decode param `tx` (base64 of consensus.codec.encode(Request))."""
    v = p_str(params, "tx", required=True)
    assert v is not None
    if len(v) > MAX_TX_BYTES * 4 // 3 + 4:
        raise RPCError(TOO_LARGE, f"tx of {len(v)} base64 chars exceeds {MAX_TX_BYTES} bytes")
    try:
        raw = base64.b64decode(v, validate=True)
    except (binascii.Error, ValueError):
        raise _bad("param 'tx' is not valid base64") from None
    try:
        msg = decode(raw)
    except DecodeError as exc:
        raise _bad(f"param 'tx' is not an encoded consensus Request: {exc}") from None
    if not isinstance(msg, Request):
        raise _bad(f"param 'tx' must be a Request, got {type(msg).__name__}")
    return msg


def verify_tx(ctx: CallContext, req: Request) -> bytes:
    """Check the client signature for this chain; return the tx hash."""
    if len(req.client_id) != 32:
        raise RPCError(BAD_SIGNATURE, "client_id must be a 32-byte Ed25519 public key")
    # the node's verifier caches verified triples: the replica's check of this tx is then free
    verifier = getattr(ctx.node, "tx_verifier", None) or _verifier
    if not verifier.verify(req.client_id, ctx.node.domain + signing_bytes(req), req.sig):
        raise RPCError(
            BAD_SIGNATURE,
            f"tx signature does not verify for chain {ctx.node.chain_id!r} "
            "(wrong key, wrong chain id, or the tx was modified after signing)",
        )
    return request_digest(req)


# ---------------------------------------------------------------- JSON shapes


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def result_json(data: bytes, encoding: str = "utf8") -> Any:
    """Tx result bytes -> JSON (the app's msgpack map), or {"base64": ...} if not a map."""
    try:
        from bftnode.app.ops import decode_result, jsonable
    except ImportError:  # pragma: no cover - the app package always ships with the node
        return {"base64": b64(data)}
    try:
        return jsonable(decode_result(data), "base64" if encoding == "base64" else "utf8")
    except ValueError:
        return {"base64": b64(data)}


def _code_name(code: int) -> str:
    try:
        from bftnode.app.errors import CODE_NAMES
    except ImportError:  # pragma: no cover
        return "ok" if code == 0 else "error"
    return CODE_NAMES.get(code, "error")


def commit_json(block: StoredBlock) -> dict[str, Any]:
    """The commit certificate: the pre-prepare (holds every ordered request) and 2f+1 signed
    Commits over (view, seq, digest). Clients verify it with consensus codec/auth."""
    cb = block.committed
    pp = cb.pre_prepare
    return {
        "view": pp.view,
        "seq": pp.seq,
        "digest": pp.digest.hex(),
        "pre_prepare": b64(encode(pp)),
        "commits": [b64(encode(c)) for c in cb.commits],
        "signers": sorted(c.replica for c in cb.commits),
    }


def block_json(block: StoredBlock, with_txs: bool = True) -> dict[str, Any]:
    out: dict[str, Any] = {
        "height": block.height,
        "hash": block.hash.hex(),
        "prev_hash": block.prev_hash.hex(),
        "time": block.time_ms,
        "time_ms": block.time_ms,
        "view": block.view,
        "digest": block.digest.hex(),
        "state_root": block.state_root.hex(),
        "num_txs": len(block.txs),
        "tx_hashes": [request_digest(r).hex() for r in block.txs],
    }
    if with_txs:
        out["txs"] = [b64(encode(r)) for r in block.txs]
        out["commit"] = commit_json(block)
    return out


def tx_json(res: TxResult, encoding: str = "utf8") -> dict[str, Any]:
    return {
        "hash": res.tx_hash.hex(),
        "height": res.height,
        "index": res.index,
        "client_id": res.client_id.hex(),
        "request_seq": res.request_seq,
        "code": res.code,
        "code_name": _code_name(res.code),
        "result": result_json(res.result, encoding),
        "result_raw": b64(res.result),
    }


def committed_tx_json(ctx: CallContext, res: TxResult, encoding: str = "utf8") -> dict[str, Any]:
    """A committed tx with its block's hash/time and commit certificate (the client's proof)."""
    out = tx_json(res, encoding)
    block = ctx.node.block(res.height)
    if block is not None:
        out["block_hash"] = block.hash.hex()
        out["block_time"] = block.time_ms
        out["commit"] = commit_json(block)
    return out


def to_builtins(value: Any) -> Any:
    """Dataclasses / msgspec Structs / dicts -> plain data with bytes kept (for jsonable)."""
    return msgspec.to_builtins(value, builtin_types=(bytes, bytearray, memoryview))


def jsonable(value: Any, encoding: str = "utf8") -> Any:
    from bftnode.app.ops import jsonable as _jsonable

    return _jsonable(to_builtins(value), "base64" if encoding == "base64" else "utf8")


# ---------------------------------------------------------------- info methods


@method("status")
async def m_status(ctx: CallContext, params: dict[str, Any]) -> Any:
    return ctx.node.status()


@method("health")
async def m_health(ctx: CallContext, params: dict[str, Any]) -> Any:
    return ctx.node.health()


@method("net_info")
async def m_net_info(ctx: CallContext, params: dict[str, Any]) -> Any:
    return ctx.node.net_info()


@method("validators")
async def m_validators(ctx: CallContext, params: dict[str, Any]) -> Any:
    vals = ctx.node.validators()
    n = len(vals)
    f = (n - 1) // 3
    return {
        "chain_id": ctx.node.chain_id,
        "validators": vals,
        "total": n,
        "f": f,
        "quorum": 2 * f + 1,
    }


@method("block")
async def m_block(ctx: CallContext, params: dict[str, Any]) -> Any:
    height = ctx.node.height()
    h = p_int(params, "height", None, lo=1)
    if h is None:
        if height == 0:
            raise RPCError(NOT_FOUND, "no block committed yet (height is 0)")
        h = height
    block = ctx.node.block(h)
    if block is None:
        raise RPCError(NOT_FOUND, f"block {h} not found (current height is {height})")
    return block_json(block)


@method("blockchain")
async def m_blockchain(ctx: CallContext, params: dict[str, Any]) -> Any:
    """Headers of [min_height, max_height] (clamped to the current height), newest first, at
    most MAX_BLOCKCHAIN_RANGE of them (the newest ones)."""
    height = ctx.node.height()
    lo = p_int(params, "min_height", 1, lo=1)
    hi = p_int(params, "max_height", height, lo=0)
    assert lo is not None and hi is not None
    if lo > hi:
        raise _bad(f"min_height {lo} > max_height {hi}")
    hi = min(hi, height)
    lo = max(lo, hi - MAX_BLOCKCHAIN_RANGE + 1)
    metas = []
    for h in range(hi, lo - 1, -1):
        b = ctx.node.block(h)
        if b is not None:
            metas.append(block_json(b, with_txs=False))
    return {"last_height": height, "blocks": metas}


@method("tx")
async def m_tx(ctx: CallContext, params: dict[str, Any]) -> Any:
    h = p_hash(params)
    enc = encoding_of(params)
    res = ctx.node.tx(h)
    if res is None:
        raise RPCError(NOT_FOUND, f"tx {h.hex()} not found (not committed, or unknown)")
    if p_bool(params, "prove", False):
        return committed_tx_json(ctx, res, enc)
    return tx_json(res, enc)


# Txs this node has seen through its own RPC (hash -> valid_until, accepted?), per node object,
# so `tx_status {hash}` can tell PENDING / EXPIRED from UNKNOWN. Bounded (oldest forgotten).
SEEN_TXS_KEPT = 25_000  # ~200 B each; committed txs are answered from the ledger anyway
_seen: weakref.WeakKeyDictionary[Any, dict[bytes, tuple[int, bool]]] = (
    weakref.WeakKeyDictionary()
)


def _seen_txs(node: Any) -> dict[bytes, tuple[int, bool]]:
    try:
        return _seen.setdefault(node, collections.OrderedDict())
    except TypeError:  # a node object that cannot be weakly referenced: remember nothing
        return {}


def remember_tx(ctx: CallContext, req: Request, tx_hash: bytes, accepted: bool) -> None:
    seen = _seen_txs(ctx.node)
    prev = seen.pop(tx_hash, None)
    seen[tx_hash] = (req.valid_until, accepted or (prev is not None and prev[1]))
    while len(seen) > SEEN_TXS_KEPT:
        seen.popitem(last=False)  # O(1); next(iter(dict)) walks dead slots


def tx_state(ctx: CallContext, tx_hash: bytes, valid_until: int | None,
             committed: bool) -> str:
    """COMMITTED | EXPIRED (height > valid_until and not in the ledger: consensus never
    executes a request at a seq past its valid_until, so it can never commit) | PENDING
    (accepted here, may still commit) | UNKNOWN (this node knows nothing about it)."""
    if committed:
        return "COMMITTED"
    seen = _seen_txs(ctx.node).get(tx_hash)
    if valid_until is None and seen is not None:
        valid_until = seen[0]
    if valid_until and ctx.node.height() > valid_until:
        return "EXPIRED"
    if seen is not None and seen[1]:
        return "PENDING"
    return "UNKNOWN"


@method("tx_status")
async def m_tx_status(ctx: CallContext, params: dict[str, Any]) -> Any:
    """By hash, by the signed tx itself (`tx`: lets any node judge expiry), or by (client_id
    hex, request_seq): {status, committed: bool, height, tx?}. `valid_until` (with hash) tells
    a node that never saw the tx its expiry height."""
    enc = encoding_of(params)
    tx_hash: bytes | None = None
    valid_until = p_int(params, "valid_until", None, lo=0)
    if params.get("tx") is not None:
        req = p_tx(params)
        tx_hash = verify_tx(ctx, req)
        valid_until = req.valid_until
        res = ctx.node.tx(tx_hash)
    elif params.get("hash") is not None:
        tx_hash = p_hash(params)
        res = ctx.node.tx(tx_hash)
    else:
        cid = p_str(params, "client_id", required=True)
        assert cid is not None
        try:
            client_id = bytes.fromhex(cid)
        except ValueError:
            raise _bad("param 'client_id' must be hex (the client's public key)") from None
        seq = p_int(params, "request_seq", required=True, lo=0)
        assert seq is not None
        res = ctx.node.tx_by_client(client_id, seq)
    height = ctx.node.height()
    if res is None:
        status = tx_state(ctx, tx_hash, valid_until, False) if tx_hash else "UNKNOWN"
        out: dict[str, Any] = {"status": status, "committed": False, "height": height}
        if tx_hash is not None:
            out["hash"] = tx_hash.hex()
        if valid_until:
            out["valid_until"] = valid_until
        return out
    return {"status": "COMMITTED", "committed": True, "height": height,
            "hash": res.tx_hash.hex(), "tx": committed_tx_json(ctx, res, enc)}


def _convicted(ctx: CallContext) -> list[dict[str, Any]]:
    """Convictions committed to the ledger (the same on every node that executed them)."""
    fn = getattr(ctx.node, "convicted", None)  # optional in NodeAPI implementations
    return list(fn()) if callable(fn) else []


@method("evidence")
async def m_evidence(ctx: CallContext, params: dict[str, Any]) -> Any:
    ev = ctx.node.evidence()
    return {"evidence": jsonable(ev), "count": len(ev), "convicted": jsonable(_convicted(ctx))}


@method("consensus_health")
async def m_consensus_health(ctx: CallContext, params: dict[str, Any]) -> Any:
    st = ctx.node.status()
    health = ctx.node.health()
    net = ctx.node.net_info()
    peers = net.get("peers", []) if isinstance(net, dict) else []
    connected = sum(1 for p in peers if isinstance(p, dict) and p.get("connected"))
    n = len(ctx.node.validators())
    f = (n - 1) // 3
    last_ms = st.get("last_block_time_ms")
    return {
        "ok": bool(health.get("ok", False)),
        "view": st.get("view"),
        "primary": st.get("primary"),
        "in_view_change": st.get("in_view_change"),
        "height": st.get("height"),
        "last_block_time_ms": last_ms,
        "last_block_age_ms": (
            int(time.time() * 1000) - last_ms if isinstance(last_ms, int) and last_ms else None
        ),
        "validators": n,
        "f": f,
        "peers_connected": connected,
        "quorum_reachable": connected + 1 >= 2 * f + 1,
        "evidence_count": len(ctx.node.evidence()),
        "convicted": jsonable(_convicted(ctx)),
        "health": health,
    }


# ---------------------------------------------------------------- tx submission


async def _submit(ctx: CallContext, params: dict[str, Any]) -> tuple[Request, bytes, Any]:
    req = p_tx(params)
    tx_hash = verify_tx(ctx, req)
    res = await ctx.node.submit(req)
    _after_submit(ctx, req, tx_hash, res)
    return req, tx_hash, res


def _after_submit(ctx: CallContext, req: Request, tx_hash: bytes, res: Any) -> None:
    remember_tx(ctx, req, tx_hash, res.status == "accepted")
    if res.status == "committed" and res.result is not None and res.result.tx_hash != tx_hash:
        # same (client_id, request_seq), different content: never report the other tx's result
        raise RPCError(
            TX_REJECTED,
            f"tx rejected: request_seq {req.request_seq} of this client was already used by tx "
            f"{res.result.tx_hash.hex()} (different content); sign with a new request_seq",
            {"hash": tx_hash.hex(), "committed_hash": res.result.tx_hash.hex()},
        )


@method("broadcast_tx_async")
async def m_broadcast_tx_async(ctx: CallContext, params: dict[str, Any]) -> Any:
    """Checks decoding and signature, hands the tx to the node without waiting for check_tx."""
    req = p_tx(params)
    tx_hash = verify_tx(ctx, req)
    if ctx.spawn is None:
        res = await ctx.node.submit(req)
        remember_tx(ctx, req, tx_hash, res.status == "accepted")
        return {"hash": tx_hash.hex(), "status": res.status}

    async def submit_in_background() -> None:
        res = await ctx.node.submit(req)
        remember_tx(ctx, req, tx_hash, res.status == "accepted")
        if res.status == "rejected":
            log.info("rpc.tx_rejected", peer=ctx.peer, tx=tx_hash.hex(), reason=res.reason)
            if ctx.on_error:
                ctx.on_error("broadcast_tx_async", TX_REJECTED)

    ctx.spawn(submit_in_background)
    return {"hash": tx_hash.hex(), "status": "submitted"}


@method("broadcast_tx_sync")
async def m_broadcast_tx_sync(ctx: CallContext, params: dict[str, Any]) -> Any:
    """Waits for check_tx: accepted (queued) or already committed (original result)."""
    enc = encoding_of(params)
    _req, tx_hash, res = await _submit(ctx, params)
    return _sync_result(ctx, tx_hash, res, enc)


def _sync_result(ctx: CallContext, tx_hash: bytes, res: Any, enc: str) -> dict[str, Any]:
    if res.status == "rejected":
        raise RPCError(TX_REJECTED, f"tx rejected: {res.reason}", {"hash": tx_hash.hex()})
    out: dict[str, Any] = {"hash": tx_hash.hex(), "status": res.status}
    if res.status == "committed" and res.result is not None:
        out["tx"] = committed_tx_json(ctx, res.result, enc)
    return out


@method("broadcast_tx_commit")
async def m_broadcast_tx_commit(ctx: CallContext, params: dict[str, Any]) -> Any:
    """Waits for the commit; returns height, hash, result and the commit certificate. A
    replayed tx (same client_id and request_seq) gets its ORIGINAL result."""
    enc = encoding_of(params)
    timeout = p_float(params, "timeout", DEFAULT_COMMIT_TIMEOUT_S, 0.0, MAX_COMMIT_TIMEOUT_S)
    _req, tx_hash, res = await _submit(ctx, params)
    if res.status == "rejected":
        raise RPCError(TX_REJECTED, f"tx rejected: {res.reason}", {"hash": tx_hash.hex()})
    if res.status == "committed" and res.result is not None:
        out = committed_tx_json(ctx, res.result, enc)
        out["replayed"] = True
        return out
    committed = await ctx.node.wait_commit(tx_hash, timeout)
    if committed is None:
        raise RPCError(
            TIMEOUT,
            f"tx {tx_hash.hex()} not committed within {timeout:g}s (it may still commit: "
            "retry with the SAME request_seq, or poll `tx`)",
            {"hash": tx_hash.hex()},
        )
    out = committed_tx_json(ctx, committed, enc)
    out["replayed"] = False
    return out


# ---------------------------------------------------------------- application reads


def _app_error(exc: Exception) -> RPCError:
    code = getattr(exc, "code", None)
    name = getattr(exc, "name", "error")
    msg = getattr(exc, "message", str(exc))
    return RPCError(APP_ERROR, f"{name}: {msg}", {"code": code, "name": name})


async def _query(ctx: CallContext, name: str, qparams: dict[str, Any], enc: str) -> Any:
    from bftnode.app.errors import AppError

    try:
        res = await ctx.node.query(name, qparams)
    except AppError as exc:
        raise _app_error(exc) from None
    out = jsonable(res, enc)
    if isinstance(out, dict):
        out.setdefault("height", ctx.node.height())
    return out


def _read_opts(params: dict[str, Any], q: dict[str, Any]) -> None:
    consistency = p_str(
        params, "consistency", "serializable",
        choices=("serializable", "sequential", "linearizable"),
    )
    if consistency == "linearizable":
        raise _bad(
            "linearizable reads are ordered through consensus: submit a client-signed range "
            "tx with broadcast_tx_commit (bftnode.client does this for consistency="
            "'linearizable'), or read from 2f+1 nodes at the same height"
        )
    for name in ("revision", "min_revision"):
        v = p_int(params, name, None, lo=0)
        if v:
            q[name] = v


@method("kv_get")
async def m_kv_get(ctx: CallContext, params: dict[str, Any]) -> Any:
    """{key, [revision], [min_revision], [consistency]} -> {value, revision, ...}."""
    q: dict[str, Any] = {"key": p_bytes(params, "key", required=True)}
    _read_opts(params, q)
    out = await _query(ctx, "kv_get", q, encoding_of(params))
    if isinstance(out, dict):
        out.setdefault("value", None)
        out.setdefault("revision", 0)
    return out


@method("kv_range")
async def m_kv_range(ctx: CallContext, params: dict[str, Any]) -> Any:
    """{key?, prefix? (default true), limit?, revision?, keys_only?, count_only?}; an empty or
    missing key with prefix=true ranges over the whole keyspace."""
    q: dict[str, Any] = {"key": p_bytes(params, "key", allow_empty=True) or b""}
    for b in ("prefix", "keys_only", "count_only"):
        if params.get(b) is not None:
            q[b] = p_bool(params, b)
    limit = p_int(params, "limit", None, lo=0, hi=10_000)
    if limit is not None:
        q["limit"] = limit
    _read_opts(params, q)
    return await _query(ctx, "kv_range", q, encoding_of(params))


@method("lease_ttl")
async def m_lease_ttl(ctx: CallContext, params: dict[str, Any]) -> Any:
    q: dict[str, Any] = {"id": p_int(params, "id", required=True, lo=1)}
    if params.get("keys") is not None:
        q["keys"] = p_bool(params, "keys")
    return await _query(ctx, "lease_ttl", q, encoding_of(params))


@method("lock_status")
async def m_lock_status(ctx: CallContext, params: dict[str, Any]) -> Any:
    """{name, [token], [lease]} -> holder, waiters, and `held` / `held_by_lease` / `position`
    when a token / lease is given."""
    q: dict[str, Any] = {"name": p_bytes(params, "name", required=True)}
    for name in ("token", "lease"):
        v = p_int(params, name, None, lo=1)
        if v is not None:
            q[name] = v
    return await _query(ctx, "lock_status", q, encoding_of(params))


@method("election_leader")
async def m_election_leader(ctx: CallContext, params: dict[str, Any]) -> Any:
    q: dict[str, Any] = {"name": p_bytes(params, "name", required=True)}
    if params.get("require") is not None:
        q["require"] = p_bool(params, "require")
    return await _query(ctx, "election_leader", q, encoding_of(params))


@method("revision")
async def m_revision(ctx: CallContext, params: dict[str, Any]) -> Any:
    return await _query(ctx, "revision", {}, "utf8")


# ---------------------------------------------------------------- dispatch

WS_ONLY = ("subscribe", "unsubscribe")


def _response(req_id: Any, result: Any = None, error: RPCError | None = None) -> dict[str, Any]:
    if error is not None:
        return {"jsonrpc": "2.0", "id": req_id, "error": error.to_json()}
    return {"jsonrpc": "2.0", "id": req_id, "result": result}


def _valid_id(req_id: Any) -> bool:
    return req_id is None or (isinstance(req_id, str | int | float) and not isinstance(req_id, bool))


def parse_call(obj: Any) -> tuple[Any, str, dict[str, Any], bool]:
    """Validate one request object -> (id, method, params as dict, is_notification)."""
    if not isinstance(obj, dict):
        raise RPCError(INVALID_REQUEST, "a JSON-RPC request must be an object")
    req_id = obj.get("id")
    if not _valid_id(req_id):
        raise RPCError(INVALID_REQUEST, "'id' must be a string, number or null")
    if obj.get("jsonrpc") != "2.0":
        raise RPCError(INVALID_REQUEST, "'jsonrpc' must be exactly \"2.0\"")
    name = obj.get("method")
    if not isinstance(name, str):
        raise RPCError(INVALID_REQUEST, "'method' must be a string")
    params = obj.get("params", {})
    if params is None:
        params = {}
    if isinstance(params, list):
        # positional params are accepted only when empty (our methods take named params)
        if params:
            raise RPCError(INVALID_PARAMS, "params must be an object of named params")
        params = {}
    if not isinstance(params, dict):
        raise RPCError(INVALID_PARAMS, "params must be an object of named params")
    return req_id, name, params, "id" not in obj


async def call_one(ctx: CallContext, obj: Any) -> dict[str, Any] | None:
    """Run one request object; returns its response (None for a notification)."""
    req_id: Any = obj.get("id") if isinstance(obj, dict) and _valid_id(obj.get("id")) else None
    name = "?"
    notify = False
    try:
        req_id, name, params, notify = parse_call(obj)
        handler = METHODS.get(name)
        if handler is None:
            if name in WS_ONLY:
                raise RPCError(METHOD_NOT_FOUND, f"{name!r} is only available over /websocket")
            raise RPCError(METHOD_NOT_FOUND, f"method {name!r} not found; see docs/rpc.md")
        if ctx.trace_id is not None:  # the node binds it into its log lines for the tx
            with trace_context(ctx.trace_id):
                result = await handler(ctx, params)
        else:  # untraced: no id generated, no per-tx "tx committed" log line (hot path)
            result = await handler(ctx, params)
        return None if notify else _response(req_id, result)
    except RPCError as err:
        return _call_error(ctx, name, req_id, notify, err)
    except Exception as exc:  # a bug in a handler or the node: answer, log, keep serving
        _count(ctx, name, INTERNAL_ERROR)
        log.exception("rpc.internal_error", peer=ctx.peer, method=name)
        err = RPCError(INTERNAL_ERROR, f"internal error in {name!r}: {type(exc).__name__}: {exc}")
        return None if notify else _response(req_id, error=err)


def _count(ctx: CallContext, name: str, code: int) -> None:
    if ctx.on_error is not None:
        ctx.on_error(name if name in METHODS else "?", code)


async def dispatch(
    ctx: CallContext, payload: Any
) -> dict[str, Any] | list[dict[str, Any]] | None:
    """Run a parsed JSON-RPC payload (one request object or a batch array). Returns what to
    send back: a response, a list of responses, or None (only notifications)."""
    if isinstance(payload, list):
        if not payload:
            err = RPCError(INVALID_REQUEST, "empty batch array")
            _count(ctx, "?", err.code)
            return _response(None, error=err)
        if len(payload) > MAX_BATCH:
            err = RPCError(TOO_LARGE, f"batch of {len(payload)} calls exceeds {MAX_BATCH}")
            _count(ctx, "?", err.code)
            return _response(None, error=err)
        if ctx.trace_id is None and _all_sync_submits(ctx, payload):
            return await _dispatch_sync_submits(ctx, payload)
        # concurrently: a batch of broadcast_tx_commit must not wait for commits one by one
        results: list[dict[str, Any] | None] = [None] * len(payload)

        async def run(i: int, obj: Any) -> None:
            results[i] = await call_one(ctx, obj)

        async with trio.open_nursery() as nursery:
            for i, obj in enumerate(payload):
                nursery.start_soon(run, i, obj)
        out = [r for r in results if r is not None]
        return out or None
    return await call_one(ctx, payload)


def _all_sync_submits(ctx: CallContext, payload: list[Any]) -> bool:
    return hasattr(ctx.node, "submit_many") and all(
        isinstance(o, dict) and o.get("method") == "broadcast_tx_sync" for o in payload)


async def _dispatch_sync_submits(
    ctx: CallContext, payload: list[Any]
) -> list[dict[str, Any]] | None:
    """A batch array of only `broadcast_tx_sync` (what clients send for throughput): the same
    answers as running each call (`call_one`), but the requests go to the node in ONE
    `submit_many` instead of one task, one inbox item and one wake-up per call."""
    responses: list[dict[str, Any] | None] = [None] * len(payload)
    todo: list[tuple[int, Any, bool, Request, bytes, str]] = []
    for i, obj in enumerate(payload):
        req_id: Any = obj.get("id") if _valid_id(obj.get("id")) else None
        name, notify = "?", False
        try:
            req_id, name, params, notify = parse_call(obj)
            enc = encoding_of(params)
            req = p_tx(params)
            todo.append((i, req_id, notify, req, verify_tx(ctx, req), enc))
        except RPCError as err:
            responses[i] = _call_error(ctx, name, req_id, notify, err)
    if todo:
        try:
            results = await ctx.node.submit_many([t[3] for t in todo])  # type: ignore[attr-defined]
        except Exception as exc:  # as call_one: answer every call, log, keep serving
            log.exception("rpc.internal_error", peer=ctx.peer, method="broadcast_tx_sync")
            err = RPCError(INTERNAL_ERROR, "internal error in 'broadcast_tx_sync': "
                           f"{type(exc).__name__}: {exc}")
            for i, req_id, notify, *_ in todo:
                _count(ctx, "broadcast_tx_sync", INTERNAL_ERROR)
                responses[i] = None if notify else _response(req_id, error=err)
            results = []
        for (i, req_id, notify, req, tx_hash, enc), res in zip(todo, results, strict=False):
            try:
                _after_submit(ctx, req, tx_hash, res)
                out = _sync_result(ctx, tx_hash, res, enc)
                responses[i] = None if notify else _response(req_id, out)
            except RPCError as err:
                responses[i] = _call_error(ctx, "broadcast_tx_sync", req_id, notify, err)
    kept = [r for r in responses if r is not None]
    return kept or None


def _call_error(ctx: CallContext, name: str, req_id: Any, notify: bool,
                err: RPCError) -> dict[str, Any] | None:
    _count(ctx, name, err.code)
    log.info("rpc.error", peer=ctx.peer, method=name, code=err.code, reason=err.message)
    return None if notify else _response(req_id, error=err)


def parse_json(body: bytes | str) -> Any:
    """Parse a request body; raises RPCError(PARSE_ERROR) with the decoder's reason."""
    try:
        return _json_decoder.decode(body)
    except msgspec.DecodeError as exc:
        raise RPCError(PARSE_ERROR, f"parse error: body is not valid JSON ({exc})") from None


async def handle_body(
    ctx: CallContext, body: bytes | str
) -> dict[str, Any] | list[dict[str, Any]] | None:
    try:
        payload = parse_json(body)
    except RPCError as err:
        _count(ctx, "?", err.code)
        log.info("rpc.parse_error", peer=ctx.peer, reason=err.message)
        return _response(None, error=err)
    return await dispatch(ctx, payload)
