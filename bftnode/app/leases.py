"""Leases on agreed block time: grant, keepalive, revoke, expiry at the first block past the
deadline (deleting attached keys and releasing locks in the same transition).

A lease's id is the revision of its grant (unique, derived from the log). A lease is live at
every block whose time is <= its deadline; it expires at the START of the first block with
time > deadline, in (deadline, id) order, one revision per expired lease, at most
budgets.LEASE_EXPIRIES_PER_BLOCK per block (the rest at the start of the next blocks). A lease
past its deadline that is not removed yet is already dead to every op (`live`).
This module holds the lease records (the bottom of the app: kv and locks read it); the end of
a lease, which cascades into locks and keys, is lease_end.py.
Pure. Imports: stdlib, storage.interface (types), bftnode.app.{layout,events,errors,quotas}.
"""

from __future__ import annotations

from storage.interface import StateReader

from . import layout as L
from . import quotas
from .errors import NOT_FOUND, PERMISSION, AppError
from .events import LEASE_GRANTED, LEASE_RENEWED, TxContext


def get(state: StateReader, lease_id: int) -> dict | None:
    data = state.get(L.LEASE + L.u64(lease_id))
    return L.unpack(data) if data is not None else None


def live(state: StateReader, lease_id: int, time_ms: int) -> dict | None:
    """The lease if it exists and its deadline has not passed at `time_ms`."""
    lease = get(state, lease_id)
    return lease if lease is not None and lease["deadline_ms"] >= time_ms else None


def _owned(ctx: TxContext, lease_id: int) -> dict:
    lease = live(ctx.state, lease_id, ctx.time_ms)
    if lease is None:
        raise AppError(NOT_FOUND, f"lease {lease_id} not found (expired or revoked)")
    if lease["owner"] != ctx.client_id:
        raise AppError(PERMISSION, f"lease {lease_id} belongs to another client")
    return lease


def require_owned(ctx: TxContext, lease_id: int) -> dict:
    """The lease, if it exists and the signing client owns it (locks use this)."""
    return _owned(ctx, lease_id)


def grant(ctx: TxContext, ttl_ms: int) -> dict:
    lease_id = ctx.revision
    deadline = ctx.time_ms + ttl_ms
    lease = {
        "id": lease_id,
        "owner": ctx.client_id,
        "ttl_ms": ttl_ms,
        "granted_ms": ctx.time_ms,
        "deadline_ms": deadline,
    }
    ctx.state.put(L.LEASE + L.u64(lease_id), L.pack(lease))
    ctx.state.put(L.LEASE_EXPIRY + L.u64(deadline) + L.u64(lease_id), b"")
    quotas.charge(ctx, ctx.client_id, leases=1)
    ctx.mutated = True
    ctx.emit(LEASE_GRANTED, b"", lease=lease_id, owner=ctx.client_id, deadline_ms=deadline)
    return {"id": lease_id, "ttl_ms": ttl_ms, "deadline_ms": deadline}


def keepalive(ctx: TxContext, lease_id: int) -> dict:
    lease = _owned(ctx, lease_id)
    ctx.state.delete(L.LEASE_EXPIRY + L.u64(lease["deadline_ms"]) + L.u64(lease_id))
    lease["deadline_ms"] = ctx.time_ms + lease["ttl_ms"]
    ctx.state.put(L.LEASE + L.u64(lease_id), L.pack(lease))
    ctx.state.put(L.LEASE_EXPIRY + L.u64(lease["deadline_ms"]) + L.u64(lease_id), b"")
    ctx.mutated = True
    ctx.emit(LEASE_RENEWED, b"", lease=lease_id, owner=ctx.client_id,
             deadline_ms=lease["deadline_ms"])
    return {"id": lease_id, "ttl_ms": lease["ttl_ms"], "deadline_ms": lease["deadline_ms"]}


def due(state: StateReader, time_ms: int, limit: int) -> list[int]:
    """Ids of the first `limit` leases whose deadline is < time_ms, in (deadline, id) order."""
    out: list[int] = []
    for k, _ in state.iterate(L.LEASE_EXPIRY):
        deadline = L.from_u64(k[len(L.LEASE_EXPIRY) : len(L.LEASE_EXPIRY) + 8])
        if deadline >= time_ms or len(out) >= limit:
            break
        out.append(L.from_u64(k[len(L.LEASE_EXPIRY) + 8 :]))
    return out


def time_to_live(state: StateReader, lease_id: int, time_ms: int, keys: bool = False) -> dict:
    lease = get(state, lease_id)
    if lease is None:
        raise AppError(NOT_FOUND, f"lease {lease_id} not found (expired or revoked)")
    out = ttl_of(lease_id, lease, time_ms)
    if keys:
        lid = L.LEASE_KEYS + L.u64(lease_id)
        out["keys"] = [k[len(lid) :] for k, _ in state.iterate(lid)]
    return out


def ttl_of(lease_id: int, lease: dict, time_ms: int) -> dict:
    """`time_to_live` of a lease record already read (without its keys)."""
    return {
        "id": lease_id,
        "ttl_ms": lease["ttl_ms"],
        "deadline_ms": lease["deadline_ms"],
        # relative to the agreed time of the block the state reflects, never a local clock
        "remaining_ms": max(0, lease["deadline_ms"] - time_ms),
        "owner": lease["owner"],
    }
