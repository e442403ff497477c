"""Locks and elections on the agreed log: FIFO waiters, fencing tokens, release on lease loss.

A lock (kind L) or election (kind E) record holds the holder {lease, owner, token, value,
since_ms} and a FIFO queue of waiters. Every grant's fencing token is the revision of the
granting transition, so tokens strictly increase per lock (one grant per lock per revision).
An election is a lock whose holder carries a value (the leader's proclamation).
Each holder and waiter is charged to its client's quota (quotas.py) as one key of
len(name) + len(value) bytes, from the op that queues or grants it until it leaves.
Pure. Imports: stdlib, storage.interface (types),
bftnode.app.{layout,events,errors,leases,quotas}.
"""

from __future__ import annotations

from storage.interface import StateReader

from . import layout as L
from . import leases, quotas
from .errors import CONFLICT, LIMIT, NOT_FOUND, PERMISSION, AppError
from .events import (
    LEADER_CHANGED,
    LOCK_DEQUEUED,
    LOCK_GRANTED,
    LOCK_LOST,
    LOCK_QUEUED,
    LOCK_RELEASED,
    TxContext,
)

MAX_WAITERS = 1024


def _key(kind: bytes, name: bytes) -> bytes:
    return kind + b"/" + name


def get(state: StateReader, kind: bytes, name: bytes) -> dict | None:
    data = state.get(_key(kind, name))
    return L.unpack(data) if data is not None else None


def _save(ctx: TxContext, kind: bytes, name: bytes, rec: dict) -> None:
    if rec["holder"] is None and not rec["queue"]:
        ctx.state.delete(_key(kind, name))
    else:
        ctx.state.put(_key(kind, name), L.pack(rec))
    ctx.mutated = True


def _index(ctx: TxContext, kind: bytes, name: bytes, lease: int, present: bool) -> None:
    k = L.LEASE_LOCKS + L.u64(lease) + kind + name
    if present:
        ctx.state.put(k, b"")
    else:
        ctx.state.delete(k)


def _charge(ctx: TxContext, owner: bytes, name: bytes, value: bytes, n: int) -> None:
    """A holder or waiter entry comes (n = 1) or goes (n = -1): its client's quota."""
    quotas.charge(ctx, owner, n, n * (len(name) + len(value)))


def _scope(kind: bytes) -> str:
    return "election" if kind == L.ELECTION_KIND else "lock"


def _grant(ctx: TxContext, kind: bytes, name: bytes, rec: dict, waiter: dict) -> None:
    holder = {
        "lease": waiter["lease"],
        "owner": waiter["owner"],
        "token": ctx.revision,
        "value": waiter["value"],
        "since_ms": ctx.time_ms,
    }
    assert rec["holder"] is None
    assert holder["token"] > rec.get("last_token", 0), "fencing token must increase"
    rec["holder"] = holder
    rec["last_token"] = holder["token"]
    ctx.emit(
        LOCK_GRANTED, name, lease=holder["lease"], token=holder["token"], owner=holder["owner"],
        value=holder["value"] if kind == L.ELECTION_KIND else None, scope=_scope(kind),
    )
    if kind == L.ELECTION_KIND:
        ctx.emit(LEADER_CHANGED, name, value=holder["value"], lease=holder["lease"],
                 token=holder["token"], owner=holder["owner"], scope="election")


def _vacate(ctx: TxContext, kind: bytes, name: bytes, rec: dict, lost: bool) -> None:
    """The holder is gone (released, or its lease ended): grant the next waiter now."""
    old = rec["holder"]
    rec["holder"] = None
    _index(ctx, kind, name, old["lease"], False)
    _charge(ctx, old["owner"], name, old["value"], -1)
    ctx.emit(LOCK_LOST if lost else LOCK_RELEASED, name, lease=old["lease"], token=old["token"],
             owner=old["owner"], scope=_scope(kind))
    if rec["queue"]:
        _grant(ctx, kind, name, rec, rec["queue"].pop(0))
    elif kind == L.ELECTION_KIND:
        ctx.emit(LEADER_CHANGED, name, value=None, scope="election")
    _save(ctx, kind, name, rec)


def acquire(ctx: TxContext, kind: bytes, name: bytes, lease_id: int, value: bytes,
            wait: bool) -> dict:
    leases.require_owned(ctx, lease_id)
    rec = get(ctx.state, kind, name) or {"holder": None, "queue": [], "last_token": 0}
    holder = rec["holder"]
    if holder is not None and holder["lease"] == lease_id:
        return {"acquired": True, "token": holder["token"], "already": True}
    for pos, w in enumerate(rec["queue"]):
        if w["lease"] == lease_id:
            return {"acquired": False, "position": pos + 1, "already": True}
    waiter = {"lease": lease_id, "owner": ctx.client_id, "value": value}
    if holder is None:
        assert not rec["queue"], "a free lock has no waiters"
        _charge(ctx, ctx.client_id, name, value, 1)
        _grant(ctx, kind, name, rec, waiter)
        _index(ctx, kind, name, lease_id, True)
        _save(ctx, kind, name, rec)
        return {"acquired": True, "token": rec["holder"]["token"]}
    if not wait:
        return {"acquired": False, "holder_token": holder["token"]}
    if len(rec["queue"]) >= MAX_WAITERS:
        raise AppError(LIMIT, f"lock has {MAX_WAITERS} waiters already")
    rec["queue"].append(waiter)
    _charge(ctx, ctx.client_id, name, value, 1)
    _index(ctx, kind, name, lease_id, True)
    ctx.emit(LOCK_QUEUED, name, lease=lease_id, owner=ctx.client_id, scope=_scope(kind))
    _save(ctx, kind, name, rec)
    return {"acquired": False, "position": len(rec["queue"])}


def _holder_rec(ctx: TxContext, kind: bytes, name: bytes, token: int) -> dict:
    rec = get(ctx.state, kind, name)
    if rec is None or rec["holder"] is None:
        raise AppError(NOT_FOUND, f"{_what(kind)} {name!r} has no holder")
    if rec["holder"]["token"] != token:
        raise AppError(
            CONFLICT,
            f"token {token} is not the current holder's (fencing token "
            f"{rec['holder']['token']}): the lock was lost",
        )
    if rec["holder"]["owner"] != ctx.client_id:
        raise AppError(PERMISSION, f"{_what(kind)} {name!r} is held by another client")
    return rec


def release(ctx: TxContext, kind: bytes, name: bytes, token: int) -> dict:
    rec = _holder_rec(ctx, kind, name, token)
    _vacate(ctx, kind, name, rec, lost=False)
    nxt = rec["holder"]
    return {"released": True, "next_token": nxt["token"] if nxt else 0}


def proclaim(ctx: TxContext, name: bytes, token: int, value: bytes) -> dict:
    kind = L.ELECTION_KIND
    rec = _holder_rec(ctx, kind, name, token)
    quotas.charge(ctx, ctx.client_id, 0, len(value) - len(rec["holder"]["value"]))
    rec["holder"]["value"] = value
    ctx.emit(LEADER_CHANGED, name, value=value, lease=rec["holder"]["lease"], token=token,
             owner=ctx.client_id, scope="election")
    _save(ctx, kind, name, rec)
    return {"token": token}


def cancel(ctx: TxContext, kind: bytes, name: bytes, lease_id: int) -> dict:
    leases.require_owned(ctx, lease_id)
    rec = get(ctx.state, kind, name)
    if rec is None or all(w["lease"] != lease_id for w in rec["queue"]):
        raise AppError(NOT_FOUND, f"lease {lease_id} is not waiting on {_what(kind)} {name!r}")
    _dequeue(ctx, kind, name, rec, lease_id)
    return {"cancelled": True}


def _dequeue(ctx: TxContext, kind: bytes, name: bytes, rec: dict, lease_id: int) -> None:
    w = next(w for w in rec["queue"] if w["lease"] == lease_id)
    rec["queue"].remove(w)
    _index(ctx, kind, name, lease_id, False)
    _charge(ctx, w["owner"], name, w["value"], -1)
    ctx.emit(LOCK_DEQUEUED, name, lease=lease_id, owner=w["owner"], scope=_scope(kind))
    _save(ctx, kind, name, rec)


def drop_lease(ctx: TxContext, kind: bytes, name: bytes, lease_id: int, expired: bool) -> None:
    """Lease `lease_id` ended: it loses the lock (next waiter granted) or leaves the queue."""
    rec = get(ctx.state, kind, name)
    assert rec is not None, (kind, name, lease_id)
    if rec["holder"] is not None and rec["holder"]["lease"] == lease_id:
        _vacate(ctx, kind, name, rec, lost=True)
    else:
        _dequeue(ctx, kind, name, rec, lease_id)


def status(state: StateReader, kind: bytes, name: bytes, token: int = 0, lease: int = 0) -> dict:
    return status_of(name, get(state, kind, name), token, lease)


def status_of(name: bytes, rec: dict | None, token: int = 0, lease: int = 0) -> dict:
    """`status` of a record already read (None: no holder, no waiters)."""
    holder = rec["holder"] if rec else None
    queue = rec["queue"] if rec else []
    out: dict = {
        "name": name,
        "locked": holder is not None,
        "holder": dict(holder) if holder else None,
        "waiters": [{"lease": w["lease"], "owner": w["owner"]} for w in queue],
        "last_token": rec.get("last_token", 0) if rec else 0,
    }
    if token:
        out["held"] = holder is not None and holder["token"] == token
    if lease:
        out["held_by_lease"] = holder is not None and holder["lease"] == lease
        out["position"] = next((i + 1 for i, w in enumerate(queue) if w["lease"] == lease), 0)
    return out


def _what(kind: bytes) -> str:
    return "election" if kind == L.ELECTION_KIND else "lock"
