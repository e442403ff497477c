"""The JSON-RPC methods: one `on_<method>` handler per name, each over its params schema.

Owns what every method does with its (already parsed, see `bftnode.rpc.params`) params and
which result or documented error it answers (docs/rpc.md). Txs are client-signed
`consensus.Request`s; no method builds an op server-side. Registered in
`bftnode.rpc.methods.METHODS` by the `method` decorator.

Imports: stdlib, structlog, consensus, bftnode.rpc, bftnode.app (errors, lazily). Must not
import starlette, hypercorn or bftnode.node.
"""

from __future__ import annotations

import collections
import time
import weakref
from functools import partial
from typing import Any

import structlog

from consensus import Ed25519Verifier, Request, request_digest
from consensus.codec import signing_bytes
from consensus.phases.intake import is_load_refusal
from storage import keys

from . import proofs as pf
from . import read_views as rv
from .errors import (
    APP_ERROR,
    BAD_SIGNATURE,
    CONFLICTING_REQUEST,
    INTERNAL_ERROR,
    NOT_FOUND,
    TIMEOUT,
    TX_REJECTED,
    RPCError,
    rejection_code,
)
from .params import (
    AuthStatusParams,
    BlockchainParams,
    BlockParams,
    BroadcastCommitParams,
    BroadcastParams,
    ElectionLeaderParams,
    KvGetParams,
    KvRangeParams,
    LeaseTtlParams,
    LockStatusParams,
    NoParams,
    RevisionParams,
    TxParams,
    TxStatusParams,
    parse,
)
from .read_guard import gate, guarded
from .registry import CallContext, _call_error, _response, _safe_id, log_error, method, parse_call
from .shapes import jsonable, tx_json  # noqa: F401  (tx_json: for importers)

log = structlog.get_logger("bftnode.rpc")

MAX_BLOCKCHAIN_RANGE = rv.MAX_BLOCKCHAIN_RANGE
_verifier = Ed25519Verifier()


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


def committed_tx_json(ctx: CallContext, res: Any, encoding: str = "utf8") -> dict[str, Any]:
    """A committed tx with its block's hash/time and commit certificate (the client's proof):
    the answer of a submit that saw the commit (reads build it in a read worker)."""
    return rv.committed_tx_json(res, ctx.node.block(res.height), encoding)


# ---------------------------------------------------------------- info methods


@method("status", NoParams)
async def on_status(ctx: CallContext, p: NoParams) -> Any:
    return ctx.node.status()


@method("health", NoParams)
async def on_health(ctx: CallContext, p: NoParams) -> Any:
    return ctx.node.health()


@method("net_info", NoParams)
async def on_net_info(ctx: CallContext, p: NoParams) -> Any:
    return ctx.node.net_info()


@method("validators", NoParams)
async def on_validators(ctx: CallContext, p: NoParams) -> Any:
    vals = ctx.node.validators()
    n = len(vals)
    f = (n - 1) // 3
    return {"chain_id": ctx.node.chain_id, "validators": vals, "total": n, "f": f,
            "quorum": 2 * f + 1}


@method("block", BlockParams)
async def on_block(ctx: CallContext, p: BlockParams) -> Any:
    return await rv.guarded_read(ctx, p, rv.block_at, p.height)


@method("blockchain", BlockchainParams)
async def on_blockchain(ctx: CallContext, p: BlockchainParams) -> Any:
    """Headers of [min_height, max_height] (clamped to the current height), newest first, at
    most MAX_BLOCKCHAIN_RANGE of them (the newest ones). `min_height` is the range's lower
    bound here, not freshness (max_lag_ms is)."""
    return await guarded(ctx, _Lag(p.max_lag_ms), lambda budget: rv.in_view(
        ctx, partial(rv.blockchain, p.min_height, p.max_height, budget)),
        point_reads=lambda out: len(out["blocks"]))  # a whole block read per header


class _Lag:
    def __init__(self, max_lag_ms: int | None) -> None:
        self.max_lag_ms = max_lag_ms


@method("tx", TxParams)
async def on_tx(ctx: CallContext, p: TxParams) -> Any:
    """The committed tx; with `prove` its commit certificate, and with authenticated_state
    its result's path to the certified results root (docs/rpc.md "Proofs")."""
    if not (pf.proofs_on(ctx.node) and p.prove is not False):
        return await rv.guarded_read(ctx, p, rv.tx_at, p.hash, bool(p.prove), p.encoding)

    async def run(budget: int) -> Any:
        res, tx_out, size, height = await rv.in_view(
            ctx, partial(rv.tx_lookup, p.hash, None, p.encoding, budget))
        if res is None:
            raise RPCError(NOT_FOUND, f"tx {p.hash.hex()} not found (not committed, or unknown)")
        return rv.sized(await _with_result_proof(ctx, res, tx_out), budget, height)

    return await guarded(ctx, p, run)


async def _with_result_proof(ctx: CallContext, res: Any, out: dict[str, Any]
                             ) -> dict[str, Any]:
    """`out` (a committed tx's JSON) with the proof of its result at its certified height."""
    cert = await pf.certified(ctx.node, res.height)
    out["proof"] = await rv.in_view(ctx, partial(pf.result_proof_json, res=res, cert=cert))
    return out


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
             committed: bool, at: int | None = None) -> str:
    """COMMITTED | EXPIRED (height > valid_until and not in the ledger: consensus never
    executes a request at a seq past its valid_until, so it can never commit) | PENDING
    (accepted here, may still commit) | UNKNOWN (this node knows nothing about it).
    `at`: the height it was proven absent at (then EXPIRED needs at >= valid_until)."""
    if committed:
        return "COMMITTED"
    seen = _seen_txs(ctx.node).get(tx_hash)
    if valid_until is None and seen is not None:
        valid_until = seen[0]
    if valid_until and (ctx.node.height() > valid_until if at is None else at >= valid_until):
        return "EXPIRED"
    if seen is not None and seen[1]:
        return "PENDING"
    return "UNKNOWN"


@method("tx_status", TxStatusParams)
async def on_tx_status(ctx: CallContext, p: TxStatusParams) -> Any:
    """By hash, by the signed tx itself (`tx`: lets any node judge expiry), or by (client_id
    hex, request_seq): {status, committed: bool, height, tx?}. `valid_until` (with hash) tells
    a node that never saw the tx its expiry height."""
    tx_hash: bytes | None = None
    valid_until = p.valid_until
    client: tuple[bytes, int] | None = None
    if p.tx is not None:
        tx_hash = verify_tx(ctx, p.tx.request)
        valid_until = p.tx.request.valid_until
        client = (p.tx.request.client_id, p.tx.request.request_seq)
    elif p.hash is not None:
        tx_hash = p.hash
    else:
        assert p.client_id is not None and p.request_seq is not None  # TxStatusParams.check
        client = (p.client_id, p.request_seq)

    prove = pf.want_proof(ctx.node, p.prove)

    async def run(budget: int) -> Any:
        cert = await pf.certified(ctx.node) if prove else None
        res, tx_out, size, height = await rv.in_view(
            ctx, partial(rv.tx_lookup, tx_hash, client, p.encoding, budget))
        if not prove:
            return _tx_status(ctx, res, tx_out, height, tx_hash, valid_until), size, height
        if res is not None:
            out = _tx_status(ctx, res, tx_out, height, tx_hash, valid_until)
            await _with_result_proof(ctx, res, out["tx"])
            return rv.sized(out, budget, height)
        # not committed: proven absent at the certified height, and judged at that height
        out = _tx_status(ctx, None, None, cert.seq, tx_hash, valid_until, at=cert.seq)
        if client is not None:  # tx records by hash are not in the tree: the client's
            # executed-seqs record is (storage.client_seqs; absent: it executed none)
            out["proof"] = await rv.in_view(ctx, partial(
                pf.keys_json, cert=cert, tree_keys=(keys.client_seqs(client[0]),)))
        return rv.sized(out, budget, cert.seq)

    return await guarded(ctx, p, run)


def _tx_status(ctx: CallContext, res: Any, tx_out: dict[str, Any] | None, height: int,
               tx_hash: bytes | None, valid_until: int | None, at: int | None = None
               ) -> dict[str, Any]:
    if res is None:
        status = tx_state(ctx, tx_hash, valid_until, False, at) if tx_hash else "UNKNOWN"
        out: dict[str, Any] = {"status": status, "committed": False, "height": height}
        if tx_hash is not None:
            out["hash"] = tx_hash.hex()
        if valid_until:
            out["valid_until"] = valid_until
        return out
    return {"status": "COMMITTED", "committed": True, "height": height,
            "hash": res.tx_hash.hex(), "tx": tx_out}


def _convicted(ctx: CallContext) -> list[dict[str, Any]]:
    """Convictions committed to the ledger (the same on every node that executed them)."""
    fn = getattr(ctx.node, "convicted", None)  # optional in NodeAPI implementations
    return list(fn()) if callable(fn) else []


@method("evidence", NoParams)
async def on_evidence(ctx: CallContext, p: NoParams) -> Any:
    async def run(budget: int) -> Any:  # the node's own bounded memory: read here
        ev = ctx.node.evidence()
        out = {"evidence": jsonable(ev), "count": len(ev), "convicted": jsonable(_convicted(ctx))}
        return rv.sized(out, budget, None)

    return await guarded(ctx, p, run)


@method("consensus_health", NoParams)
async def on_consensus_health(ctx: CallContext, p: NoParams) -> Any:
    st = ctx.node.status()
    health = ctx.node.health()
    net = ctx.node.net_info()
    peers = net.get("peers", []) if isinstance(net, dict) else []
    connected = sum(1 for peer in peers if isinstance(peer, dict) and peer.get("connected"))
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


async def _submit(ctx: CallContext, req: Request) -> tuple[bytes, Any]:
    refuse_over_quota(ctx, req)
    tx_hash = verify_tx(ctx, req)
    res = await ctx.node.submit(req)
    hold_refused_writes(ctx, [res])
    _after_submit(ctx, req, tx_hash, res)
    return tx_hash, res


def _after_submit(ctx: CallContext, req: Request, tx_hash: bytes, res: Any) -> None:
    remember_tx(ctx, req, tx_hash, res.status == "accepted")
    if res.status == "committed" and res.result is not None and res.result.tx_hash != tx_hash:
        # same (client_id, request_seq), different content: never report the other tx's result
        raise RPCError(
            CONFLICTING_REQUEST,
            f"conflicting request: request_seq {req.request_seq} of this client was already used by tx "
            f"{res.result.tx_hash.hex()} (different content); sign with a new request_seq",
            {"hash": tx_hash.hex(), "committed_hash": res.result.tx_hash.hex()},
        )


# A write refused for load (the pool, its rates, the client's quota) is answered after this
# long when nothing in its call was accepted: an answer at once only invites the same refused
# retry, and a client that retries at once (a flood in a loop) then costs the node a parse and
# a signature check per try instead of the waiting a held answer costs (a sleeping task).
WRITE_HOLD_S = 0.25


def rejected_error(tx_hash: bytes, reason: str) -> RPCError:
    """The JSON-RPC error of a refused tx, its code by the pool's reason (rejection_code)."""
    data: dict[str, Any] = {"hash": tx_hash.hex()}
    if is_load_refusal(reason):
        data["retry_after"] = WRITE_HOLD_S
    return RPCError(rejection_code(reason), f"tx rejected: {reason}", data)


def hold_refused_writes(ctx: CallContext, results: list[Any], early: int = 0) -> None:
    """Hold the HTTP answer (server.post_root) when every tx of the call was refused for load
    (`early`: that many were refused for their client's quota before reaching the node)."""
    if (results or early) and all(getattr(r, "status", None) == "rejected"
                                  and is_load_refusal(str(r.reason)) for r in results):
        ctx.extra["refused_retry_after"] = WRITE_HOLD_S


def refuse_over_quota(ctx: CallContext, req: Request) -> None:
    """One call's tx: raise (and hold the answer) if its client is at its pending quota."""
    refused = over_quota(ctx, req)
    if refused is not None:
        hold_refused_writes(ctx, [], early=1)
        raise refused


def over_quota(ctx: CallContext, req: Request, ahead: int = 0, own: int = 0) -> RPCError | None:
    """The refusal of a tx whose client is at its pending quota, decided before its signature
    is checked (a flood past its quota then costs a lookup per tx, not a verify); `ahead` txs
    of its call come first, `own` of them its client's."""
    reason = ctx.node.quota_refusal(req, ahead, own)
    return None if reason is None else rejected_error(request_digest(req), reason)


@method("broadcast_tx_async", BroadcastParams)
async def on_broadcast_tx_async(ctx: CallContext, p: BroadcastParams) -> Any:
    """Checks decoding and signature, hands the tx to the node without waiting for check_tx."""
    req = p.tx.request
    refuse_over_quota(ctx, req)
    tx_hash = verify_tx(ctx, req)
    if ctx.spawn is None:
        res = await ctx.node.submit(req)
        remember_tx(ctx, req, tx_hash, res.status == "accepted")
        return {"hash": tx_hash.hex(), "status": res.status}

    async def submit_in_background() -> None:
        res = await ctx.node.submit(req)
        remember_tx(ctx, req, tx_hash, res.status == "accepted")
        if res.status == "rejected":
            log_error("rpc.tx_rejected", ctx.peer, tx=tx_hash.hex(), reason=res.reason)
            if ctx.on_error:
                ctx.on_error("broadcast_tx_async", TX_REJECTED)

    ctx.spawn(submit_in_background)
    return {"hash": tx_hash.hex(), "status": "submitted"}


@method("broadcast_tx_sync", BroadcastParams)
async def on_broadcast_tx_sync(ctx: CallContext, p: BroadcastParams) -> Any:
    """Waits for check_tx: accepted (queued) or already committed (original result)."""
    tx_hash, res = await _submit(ctx, p.tx.request)
    return _sync_result(ctx, tx_hash, res, p.encoding)


def _sync_result(ctx: CallContext, tx_hash: bytes, res: Any, enc: str) -> dict[str, Any]:
    if res.status == "rejected":
        raise rejected_error(tx_hash, res.reason)
    out: dict[str, Any] = {"hash": tx_hash.hex(), "status": res.status}
    if res.status == "committed" and res.result is not None:
        out["tx"] = committed_tx_json(ctx, res.result, enc)
    return out


@method("broadcast_tx_commit", BroadcastCommitParams)
async def on_broadcast_tx_commit(ctx: CallContext, p: BroadcastCommitParams) -> Any:
    """Waits for the commit; returns height, hash, result and the commit certificate. A
    replayed tx (same client_id and request_seq) gets its ORIGINAL result."""
    tx_hash, res = await _submit(ctx, p.tx.request)
    if res.status == "rejected":
        raise rejected_error(tx_hash, res.reason)
    if res.status == "committed" and res.result is not None:
        committed, replayed = res.result, True
    else:
        committed, replayed = await ctx.node.wait_commit(tx_hash, p.timeout), False
    if committed is None:
        raise RPCError(
            TIMEOUT,
            f"tx {tx_hash.hex()} not committed within {p.timeout:g}s (it may still commit: "
            "retry with the SAME request_seq, or poll `tx`)",
            {"hash": tx_hash.hex()},
        )
    out = committed_tx_json(ctx, committed, p.encoding)
    out["replayed"] = replayed
    if pf.want_proof(ctx.node, p.prove):
        await _with_result_proof(ctx, committed, out)
    return out


async def submit_sync_batch(ctx: CallContext, payload: list[Any]) -> list[dict[str, Any]] | None:
    """A batch array of only `broadcast_tx_sync` (what clients send for throughput): the same
    answers as running each call, but the requests go to the node in ONE `submit_many`
    instead of one task, one inbox item and one wake-up per call."""
    responses: list[dict[str, Any] | None] = [None] * len(payload)
    todo: list[tuple[int, Any, bool, Request, bytes, str]] = []
    early = 0
    own: collections.Counter[bytes] = collections.Counter()  # txs lined up so far, per client
    for i, obj in enumerate(payload):
        req_id, name, notify = _safe_id(obj), "?", False
        try:
            req_id, name, params, notify = parse_call(obj)
            p = parse(BroadcastParams, params)
            req = p.tx.request
            # counted with the call's txs before it: only what the pool can take is verified
            refused = over_quota(ctx, req, len(todo), own[req.client_id])
            if refused is not None:
                early += 1
                raise refused
            todo.append((i, req_id, notify, req, verify_tx(ctx, req), p.encoding))
            own[req.client_id] += 1
        except RPCError as err:
            responses[i] = _call_error(ctx, name, req_id, notify, err)
    results = await _submit_all(ctx, [t[3] for t in todo]) if todo else []
    hold_refused_writes(ctx, results, early)
    for (i, req_id, notify, req, tx_hash, enc), res in zip(todo, results, strict=True):
        try:
            if isinstance(res, Exception):  # a bug in the node, for this request only
                raise RPCError(INTERNAL_ERROR, "internal error in 'broadcast_tx_sync': "
                               f"{type(res).__name__}: {res}")
            _after_submit(ctx, req, tx_hash, res)
            out = _sync_result(ctx, tx_hash, res, enc)
            responses[i] = None if notify else _response(req_id, out)
        except RPCError as err:
            responses[i] = _call_error(ctx, "broadcast_tx_sync", req_id, notify, err)
    kept = [r for r in responses if r is not None]
    return kept or None


async def _submit_all(ctx: CallContext, requests: list[Request]) -> list[Any]:
    """The node's answers in order: one `submit_many`, or, if that fails, one `submit` each,
    so that a request the node cannot handle costs only its own call (an Exception there)."""
    try:
        results = await ctx.node.submit_many(requests)  # type: ignore[attr-defined]
        if len(results) == len(requests):
            return list(results)
        log.error("rpc.internal_error", peer=ctx.peer, method="broadcast_tx_sync",
                  reason=f"submit_many answered {len(results)} of {len(requests)}")
    except Exception:
        log.exception("rpc.internal_error", peer=ctx.peer, method="broadcast_tx_sync")
    answers: list[Any] = []
    for req in requests:
        try:
            answers.append(await ctx.node.submit(req))
        except Exception as exc:
            log.exception("rpc.internal_error", peer=ctx.peer, method="broadcast_tx_sync")
            answers.append(exc)
    return answers


# ---------------------------------------------------------------- application reads


def _app_error(exc: Exception) -> RPCError:
    code = getattr(exc, "code", None)
    name = getattr(exc, "name", "error")
    msg = getattr(exc, "message", str(exc))
    return RPCError(APP_ERROR, f"{name}: {msg}", {"code": code, "name": name})


async def _query(ctx: CallContext, name: str, q: dict[str, Any], p: Any,
                 end: bytes | None = None) -> Any:
    """An application read under the read bounds (read_guard), answered as JSON in the read
    worker (read_views); kv_range (`name` kv_range) answers a page with a cursor."""
    from bftnode.app.errors import AppError

    for opt in ("revision", "min_revision"):  # ReadParams: 0 means current / no wait
        if getattr(p, opt, None):
            q[opt] = getattr(p, opt)
    enc = getattr(p, "encoding", "utf8")

    prove = pf.want_proof(ctx.node, getattr(p, "prove", None))

    async def run(budget: int) -> Any:
        shape = partial(rv.kv_page, enc, budget, end) if name == "kv_range" else partial(
            rv.answer, enc, budget)
        try:
            if prove:  # at the latest certified height, over the state tree (proofs.py)
                # ...that holds what the caller has seen: min_height, or the height at
                # which the node reached min_revision
                need = getattr(p, "min_height", None) or 0
                if q.get("min_revision"):
                    await ctx.node.query("revision", {"min_revision": q["min_revision"]})
                    need = max(need, ctx.node.height())
                q.pop("min_revision", None)
                cert = await pf.certified(ctx.node, at_least=need)
                return await rv.in_view(ctx, partial(pf.proven_query, ctx.node.app, name, q,
                                                     cert, shape))
            if getattr(ctx.node, "read", None) is None:  # a NodeAPI without read workers
                return shape(await ctx.node.query(name, q))
            return await ctx.node.query(name, q, shape=shape)  # type: ignore[call-arg]
        except AppError as exc:
            raise _app_error(exc) from None

    out = await guarded(ctx, p, run)
    if isinstance(out, dict):
        out.setdefault("height", out["read_height"])
    return out


def _given(p: Any, *names: str) -> dict[str, Any]:
    """The optional params the caller gave (None = not given: the app's default applies)."""
    return {n: v for n in names if (v := getattr(p, n)) is not None}


@method("kv_get", KvGetParams)
async def on_kv_get(ctx: CallContext, p: KvGetParams) -> Any:
    """{key, [revision], [min_revision], [consistency]} -> {value, revision, ...}."""
    out = await _query(ctx, "kv_get", {"key": p.key}, p)
    if isinstance(out, dict):
        out.setdefault("value", None)
        out.setdefault("revision", 0)
    return out


@method("kv_range", KvRangeParams)
async def on_kv_range(ctx: CallContext, p: KvRangeParams) -> Any:
    """{key?, prefix? (default true), limit?, revision?, keys_only?, count_only?}; an empty or
    missing key with prefix=true ranges over the whole keyspace."""
    page = gate(ctx.node).limits.page_limit
    q = {"key": p.key, **_given(p, "prefix", "keys_only", "count_only"),
         "limit": min(p.limit or page, page)}
    end = None
    if p.cursor is not None:  # the next page: [cursor's key, the range's end) at its revision
        start, end, rev = rv.decode_cursor(p.cursor)
        q.update(key=start, range_end=end, prefix=False, revision=rev)
    elif not p.count_only:
        end = rv.range_end(p.key, p.prefix is not False)
    return await _query(ctx, "kv_range", q, p, end)


@method("lease_ttl", LeaseTtlParams)
async def on_lease_ttl(ctx: CallContext, p: LeaseTtlParams) -> Any:
    return await _query(ctx, "lease_ttl", {"id": p.id, **_given(p, "keys")}, p)


@method("lock_status", LockStatusParams)
async def on_lock_status(ctx: CallContext, p: LockStatusParams) -> Any:
    """{name, [token], [lease]} -> holder, waiters, and `held` / `held_by_lease` / `position`
    when a token / lease is given."""
    return await _query(ctx, "lock_status", {"name": p.name, **_given(p, "token", "lease")}, p)


@method("election_leader", ElectionLeaderParams)
async def on_election_leader(ctx: CallContext, p: ElectionLeaderParams) -> Any:
    return await _query(ctx, "election_leader", {"name": p.name, **_given(p, "require")}, p)


@method("revision", RevisionParams)
async def on_revision(ctx: CallContext, p: RevisionParams) -> Any:
    return await _query(ctx, "revision", {}, p)


@method("auth_status", AuthStatusParams)
async def on_auth_status(ctx: CallContext, p: AuthStatusParams) -> Any:
    """{} -> enabled, admins, roles, bindings (bftnode.app.auth); answered without a proof."""
    p.prove = False
    return await _query(ctx, "auth_status", {}, p)
