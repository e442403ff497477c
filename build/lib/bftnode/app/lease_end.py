"""The end of a lease - revoked by its owner or expired at the start of a block - and its
cascade: the lease's locks are released first (watchers see "lock lost" before the holder's keys
vanish; the next waiter is granted in the same transition), then its keys are deleted.
Pure. Imports: storage.interface (types), bftnode.app.{layout,events,kv,leases,locks,quotas}.
"""

from __future__ import annotations

from . import kv, locks, quotas
from . import layout as L
from .events import LEASE_EXPIRED, LEASE_REVOKED, TxContext
from .leases import get, require_owned


def revoke(ctx: TxContext, lease_id: int) -> dict:
    lease = require_owned(ctx, lease_id)
    n = _remove(ctx, lease, LEASE_REVOKED)
    return {"id": lease_id, "deleted_keys": n}


def expire(ctx: TxContext, lease_id: int) -> None:
    lease = get(ctx.state, lease_id)
    assert lease is not None and lease["deadline_ms"] < ctx.time_ms, (lease_id, lease)
    _remove(ctx, lease, LEASE_EXPIRED)


def _remove(ctx: TxContext, lease: dict, kind: str) -> int:
    lease_id = lease["id"]
    lid = L.u64(lease_id)
    # Locks first, then keys: watchers see "lock lost" before the holder's keys vanish.
    for k, _ in list(ctx.state.iterate(L.LEASE_LOCKS + lid)):
        rest = k[len(L.LEASE_LOCKS) + 8 :]
        locks.drop_lease(ctx, rest[:1], rest[1:], lease_id, expired=kind == LEASE_EXPIRED)
    keys = [k[len(L.LEASE_KEYS) + 8 :] for k, _ in ctx.state.iterate(L.LEASE_KEYS + lid)]
    for key in keys:
        kv.delete_key(ctx, key)
    ctx.state.delete(L.LEASE + lid)
    quotas.charge(ctx, lease["owner"], leases=-1)
    ctx.state.delete(L.LEASE_EXPIRY + L.u64(lease["deadline_ms"]) + lid)
    ctx.mutated = True
    ctx.emit(kind, b"", lease=lease_id, owner=lease["owner"], deadline_ms=lease["deadline_ms"])
    return len(keys)
