"""MVCC key-value store on the agreed log (etcd-like): put, delete, range, txn.

Every key carries create_revision, mod_revision and version; history entries keep old
revisions readable until compaction (compaction.py). Pure: operates on a TxContext / StateReader only.
Imports: stdlib, msgspec, bftnode.app.{layout,events,errors,ops,leases,quotas}, storage.interface (types).
"""

from __future__ import annotations

import msgspec

from storage.interface import StateReader

from . import layout as L
from . import leases, quotas
from .errors import BUDGET_EXCEEDED, COMPACTED, FUTURE_REVISION, NOT_FOUND, AppError
from .events import DELETE, PUT, TxContext
from .ops import MAX_RANGE_LIMIT, Compare, Delete, Put, Range, Txn


class KeyValue(msgspec.Struct, frozen=True):  # one per read or updated key: builds fast
    key: bytes
    value: bytes
    create_revision: int
    mod_revision: int
    version: int
    lease: int
    owner: bytes = b""  # the client charged for the key (quotas.py); b"" in history reads

    def to_dict(self, keys_only: bool = False) -> dict:
        d = {
            "key": self.key,
            "create_revision": self.create_revision,
            "mod_revision": self.mod_revision,
            "version": self.version,
            "lease": self.lease,
        }
        if not keys_only:
            d["value"] = self.value
        return d


def _pack_record(value: bytes, create: int, mod: int, version: int, lease: int) -> bytes:
    return L.pack([value, create, mod, version, lease])


def _from_record(key: bytes, data: bytes) -> KeyValue | None:
    # a live record carries its owner as a 6th field; history records (and older ones) do not
    rec = L.unpack(data)
    if rec[0] is None:
        return None
    return KeyValue(key, rec[0], rec[1], rec[2], rec[3], rec[4], rec[5] if len(rec) > 5 else b"")


def current_revision(state: StateReader) -> int:
    return L.from_u64(state.get(L.REV))


def compact_revision(state: StateReader) -> int:
    return L.from_u64(state.get(L.COMPACT))


def get(state: StateReader, key: bytes) -> KeyValue | None:
    data = state.get(L.KV + key)
    return _from_record(key, data) if data is not None else None


# ---------------------------------------------------------------- writes


def put(ctx: TxContext, key: bytes, value: bytes, lease: int) -> KeyValue | None:
    """Write `key`; returns the previous key-value. The caller checked that `lease` exists."""
    if lease:
        if leases.live(ctx.state, lease, ctx.time_ms) is None:
            raise AppError(NOT_FOUND, f"lease {lease} not found (expired or revoked)")
    prev = get(ctx.state, key)
    rev = ctx.revision
    if prev is not None and prev.lease and prev.lease != lease:
        ctx.state.delete(L.LEASE_KEYS + L.u64(prev.lease) + key)
    create, version = (prev.create_revision, prev.version + 1) if prev else (rev, 1)
    # no KeyValue built per put; the live record also names its owner, history does not
    ctx.state.put(L.KV + key, L.pack([value, create, rev, version, lease, ctx.client_id]))
    ctx.state.put(L.hist_key(key, rev), _pack_record(value, create, rev, version, lease))
    if lease:
        ctx.state.put(L.LEASE_KEYS + L.u64(lease) + key, b"")
    if prev is None:
        quotas.key_written(ctx, key, value, b"", None)
    else:
        quotas.key_written(ctx, key, value, prev.owner, prev.value)
    ctx.mutated = True
    ctx.emit(PUT, key, value=value, create_revision=create, version=version, lease=lease)
    return prev


def delete_key(ctx: TxContext, key: bytes) -> KeyValue | None:
    prev = get(ctx.state, key)
    if prev is None:
        return None
    ctx.state.delete(L.KV + key)
    ctx.state.put(L.hist_key(key, ctx.revision), L.pack([None, 0, ctx.revision, 0, 0]))
    if prev.lease:
        ctx.state.delete(L.LEASE_KEYS + L.u64(prev.lease) + key)
    quotas.key_deleted(ctx, key, prev.owner, prev.value)
    ctx.mutated = True
    ctx.emit(DELETE, key, value=prev.value, lease=prev.lease)
    return prev


def do_put(ctx: TxContext, op: Put) -> dict:
    prev = put(ctx, op.key, op.value, op.lease)
    out: dict = {"revision": ctx.revision}
    if op.prev_kv:
        out["prev"] = prev.to_dict() if prev else None
    return out


def do_delete(ctx: TxContext, op: Delete) -> dict:
    if op.prefix:
        keys = [k[len(L.KV) :] for k, _ in ctx.state.iterate(L.KV + op.key)]
    else:
        keys = [op.key]
    prevs = [p for p in (delete_key(ctx, k) for k in keys) if p is not None]
    out: dict = {"deleted": len(prevs)}
    if op.prev_kv:
        out["prev"] = [p.to_dict() for p in prevs]
    return out


# ---------------------------------------------------------------- reads


def range_(state: StateReader, op: Range, current: int | None = None,
           page_first: bool = False) -> dict:
    """Keys at the current revision, or at a past one (history, until compacted).
    `page_first` (queries): when the read budget runs out after the page is full, answer the
    page with the count so far and `count_exact` false instead of failing."""
    cur = current_revision(state) if current is None else current
    limit = op.limit or MAX_RANGE_LIMIT
    rev = op.revision or cur
    if rev > cur:
        raise AppError(FUTURE_REVISION, f"revision {rev} is newer than current {cur}")
    compacted = compact_revision(state)
    if rev < compacted:
        raise AppError(COMPACTED, f"revision {rev} was compacted (compact revision {compacted})")
    kvs: list[KeyValue] = []
    count = 0
    exact = True
    try:
        for kv in _scan(state, op.key, op.prefix, rev, cur, op.range_end):
            count += 1  # like etcd, `count` covers every match, not only the returned ones
            if not op.count_only and len(kvs) < limit:
                kvs.append(kv)
    except AppError as exc:
        if not (page_first and exc.code == BUDGET_EXCEEDED and len(kvs) == limit
                and not op.count_only):
            raise
        exact = False
    out = {
        "kvs": [kv.to_dict(op.keys_only) for kv in kvs],
        "count": count,
        "more": count > len(kvs) and not op.count_only,
        "revision": rev,
    }
    if not exact:  # stopped reading: there may be more, and at least `count` match
        out["more"] = True
        out["count_exact"] = False
    return out


def _scan(state: StateReader, key: bytes, prefix: bool, rev: int, cur: int, end: bytes = b""):
    if end:
        yield from _scan_interval(state, key, end, rev, cur)
        return
    if rev == cur:
        if prefix:
            for k, data in state.iterate(L.KV + key):
                kv = _from_record(k[len(L.KV) :], data)
                if kv is not None:
                    yield kv
        else:
            kv = get(state, key)
            if kv is not None:
                yield kv
        return
    # Past revision: per key, the newest history entry at or below `rev`.
    best: tuple[bytes, bytes] | None = None
    current_key: bytes | None = None
    for hk, data in state.iterate(L.hist_prefix(key, exact=not prefix)):
        k, r = L.parse_hist_key(hk)
        if k != current_key:
            if best is not None:
                kv = _from_record(*best)
                if kv is not None:
                    yield kv
            current_key, best = k, None
        if r <= rev:
            best = (k, data)
    if best is not None:
        kv = _from_record(*best)
        if kv is not None:
            yield kv


def _scan_interval(state: StateReader, key: bytes, end: bytes, rev: int, cur: int):
    """etcd's [key, end); end == b"\\x00" means every key >= key."""
    unbounded = end == b"\x00"
    if rev == cur:
        for k, data in state.iterate(L.KV, start=L.KV + key):
            k = k[len(L.KV) :]
            if not unbounded and k >= end:
                return
            kv = _from_record(k, data)
            if kv is not None:
                yield kv
        return
    best: tuple[bytes, bytes] | None = None
    current_key: bytes | None = None
    for hk, data in state.iterate(L.HIST, start=L.HIST + L.esc(key)):
        k, r = L.parse_hist_key(hk)
        if not unbounded and k >= end:
            break
        if k != current_key:
            if best is not None and (kv := _from_record(*best)) is not None:
                yield kv
            current_key, best = k, None
        if r <= rev:
            best = (k, data)
    if best is not None and (kv := _from_record(*best)) is not None:
        yield kv


# ---------------------------------------------------------------- txn


def _compare_holds(state: StateReader, c: Compare) -> bool:
    kv = get(state, c.key)
    if c.target == "value":
        actual: int | bytes | None = kv.value if kv else None
    elif c.target == "version":
        actual = kv.version if kv else 0
    elif c.target == "create":
        actual = kv.create_revision if kv else 0
    elif c.target == "mod":
        actual = kv.mod_revision if kv else 0
    else:
        actual = kv.lease if kv else 0
    want = c.value
    if c.result == "=":
        return actual == want
    if c.result == "!=":
        return actual != want
    if actual is None or want is None:
        return False
    if c.result == "<":
        return actual < want  # type: ignore[operator]
    return actual > want  # type: ignore[operator]


def do_txn(ctx: TxContext, op: Txn) -> dict:
    """The compares are one op of the tx's budget, each sub-op another (budgets.py)."""
    ok = all(_compare_holds(ctx.state, c) for c in op.compare)
    responses = []
    meter = ctx.state.meter
    for sub in op.success if ok else op.failure:
        if meter is not None:
            meter.start_op()
        if isinstance(sub, Put):
            responses.append({"op": "put", **do_put(ctx, sub)})
        elif isinstance(sub, Delete):
            responses.append({"op": "delete", **do_delete(ctx, sub)})
        else:
            # reads inside a txn see the txn's own earlier writes
            responses.append({"op": "range", **range_(ctx.state, sub, current=_txn_rev(ctx))})
    return {"succeeded": ok, "responses": responses}


def _txn_rev(ctx: TxContext) -> int:
    return ctx.revision if ctx.mutated else ctx.revision - 1
