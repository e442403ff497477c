"""Permissions on the agreed log (etcd's auth model): roles hold read/write permissions on keys,
prefixes or ranges; roles are bound to client keys; genesis names the admin keys.

Owns the genesis params `admins` / `auth_enabled` (validated here), the check every tx passes
before it runs (`Auth.check`: PERMISSION, nothing applied, when the signer lacks a permission)
and the `auth_status` query. The records and the admin ops live in auth_ops.py.
What each op needs (docs/consistency.md "Permissions"):
  put, delete                write on the key; a prefix delete: write on the whole prefix;
                             with prev_kv also read on the same
  range (a read tx)          read on the range
  txn                        read on every compared key, and what each op of BOTH branches needs
  compact                    admin
  put with a lease           the lease is the signer's (with checks on)
  lock / election ops        write on the name (lease and holder ownership as always)
  lease_revoke               write on every key attached to the lease (it deletes them)
  other lease ops            none (a lease is its owner's, checked with checks off too)
  auth_* ops                 admin, whether checks are on or not
Admins pass every check. With checks off everything runs as without auth.
Pure. Imports: stdlib, bftnode.app.{auth_ops,errors,events,layout,leases,ops}.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping
from typing import Any

from . import auth_ops as A
from . import layout as L
from . import leases
from . import ops as O
from .errors import PERMISSION, AppError
from .events import TxContext

READ, WRITE = A.READ, A.WRITE


def check_params(app: Mapping[str, Any]) -> None:
    """Validate genesis `app.admins` / `app.auth_enabled`; ValueError naming the field.
    Other keys (quotas, ...) belong to their own modules and are left alone."""
    admins = app.get("admins", [])
    if not isinstance(admins, list):
        raise ValueError("field 'app.admins': must be a list of client public keys (hex)")
    for i, key in enumerate(admins):
        if not isinstance(key, str) or len(key) != 64:
            raise ValueError(f"field 'app.admins[{i}]': must be 64 hex chars (an Ed25519 key)")
        try:
            bytes.fromhex(key)
        except ValueError:
            raise ValueError(f"field 'app.admins[{i}]': not valid hex") from None
    enabled = app.get("auth_enabled", False)
    if not isinstance(enabled, bool):
        raise ValueError("field 'app.auth_enabled': must be true or false")
    if enabled and not admins:
        raise ValueError("field 'app.auth_enabled': checks need at least one key in 'app.admins'")


class Auth:
    """The permission policy of one chain: its admins (genesis) and checks over state."""

    def __init__(self, params: Mapping[str, Any] | None = None) -> None:
        params = params or {}
        check_params(params)
        self.admins = frozenset(bytes.fromhex(k) for k in params.get("admins", []))
        self.default_on = bool(params.get("auth_enabled", False))

    def check(self, ctx: TxContext, op: object) -> None:
        """Raise AppError(PERMISSION) if the signer may not run `op` now; reads state only."""
        if not self.admins:  # nobody can turn checks on: no reads at all
            if isinstance(op, O.AUTH_OPS):
                raise _deny("auth ops need an admin key, and the genesis names none "
                            "(app.admins)")
            return
        if ctx.client_id in self.admins:
            return
        if isinstance(op, O.AUTH_OPS):
            raise _deny(f"{_tag(op)} needs an admin key (genesis app.admins)")
        if not A.enabled(ctx.state, self.default_on) or isinstance(op, O.Evidence):
            return
        if isinstance(op, O.Compact):
            raise _deny("compact needs an admin key (genesis app.admins)")
        needs = list(_needs(op))
        if isinstance(op, O.LeaseRevoke):
            needs.extend(_revoked_keys(ctx, op.id))
        if not needs:
            return
        perms = A.permissions_of(ctx.state, ctx.client_id)
        covers: dict[int, Cover] = {}  # merged once per bit: a txn has up to 384 needs
        for bit, start, stop, what in needs:
            cover = covers.get(bit)
            if cover is None:
                cover = covers[bit] = _cover(perms, bit)
            if not _in_cover(cover, start, stop):
                kind = "read" if bit == READ else "write"
                raise _deny(f"no {kind} permission on {what} for client "
                            f"{ctx.client_id.hex()[:16]}")
        for lease in _leases(op):
            rec = leases.live(ctx.state, lease, ctx.time_ms)
            if rec is not None and rec["owner"] != ctx.client_id:
                raise _deny(f"lease {lease} belongs to another client")

    def enabled(self, state) -> bool:
        return bool(self.admins) and A.enabled(state, self.default_on)

    def status(self, state, info: dict) -> dict:
        """The `auth_status` query: whether checks are on, the admins, roles and bindings."""
        return {
            "enabled": self.enabled(state),
            "admins": sorted(k.hex() for k in self.admins),
            **A.listing(state),
            **info,
        }


def _deny(message: str) -> AppError:
    return AppError(PERMISSION, f"permission denied: {message}")


# ---------------------------------------------------------------- what an op needs

Need = tuple[int, bytes, bytes | None, str]  # (bit, start, stop (None = unbounded), label)


def _tag(op: object) -> str:
    return type(op).__struct_config__.tag  # type: ignore[attr-defined]


def _key(bit: int, key: bytes) -> Need:
    return bit, key, key + b"\x00", f"key {key[:64]!r}"


def _span(bit: int, key: bytes, prefix: bool, range_end: bytes) -> Need:
    if range_end:
        stop = None if range_end == b"\x00" else range_end
        return bit, key, stop, f"range [{key[:64]!r}, {range_end[:64]!r})"
    if prefix:
        return bit, key, A.prefix_end(key), f"prefix {key[:64]!r}"
    return _key(bit, key)


def _needs(op: object) -> Iterable[Need]:
    if isinstance(op, O.Put):
        yield _key(WRITE, op.key)
        if op.prev_kv:  # the answer carries the value it replaced: a read (etcd's rule too)
            yield _key(READ, op.key)
    elif isinstance(op, O.Delete):
        yield _span(WRITE, op.key, op.prefix, b"")
        if op.prev_kv:
            yield _span(READ, op.key, op.prefix, b"")
    elif isinstance(op, O.Range):
        yield _span(READ, op.key, op.prefix, op.range_end)
    elif isinstance(op, O.Txn):
        for c in op.compare:
            yield _key(READ, c.key)
        for sub in op.success + op.failure:
            yield from _needs(sub)
    elif isinstance(op, O.LockAcquire | O.LockRelease | O.LockCancel | O.Campaign | O.Proclaim
                     | O.Resign):
        yield WRITE, op.name, op.name + b"\x00", f"lock/election name {op.name[:64]!r}"


def _revoked_keys(ctx: TxContext, lease_id: int) -> Iterable[Need]:
    """Revoking deletes the lease's keys: write on each (etcd's rule). A key may sit on the
    lease from before the signer lost its write permission, or from an admin's put."""
    rec = leases.live(ctx.state, lease_id, ctx.time_ms)
    if rec is None or rec["owner"] != ctx.client_id:
        return  # lease_end.revoke refuses it
    lid = L.LEASE_KEYS + L.u64(lease_id)
    for k, _ in ctx.state.iterate(lid):
        yield _key(WRITE, k[len(lid):])


def _leases(op: object) -> Iterable[int]:
    if isinstance(op, O.Put) and op.lease:
        yield op.lease
    elif isinstance(op, O.Txn):
        for sub in op.success + op.failure:
            if isinstance(sub, O.Put) and sub.lease:
                yield sub.lease


Cover = tuple[list[bytes], list[bytes | None]]  # disjoint intervals: starts, ends (ascending)


def _cover(perms: list[tuple[int, bytes, bytes | None]], bit: int) -> Cover:
    """The union of the intervals carrying `bit`, merged into disjoint, non-touching ones."""
    starts: list[bytes] = []
    ends: list[bytes | None] = []
    for _bit, s, e in sorted((p for p in perms if p[0] & bit), key=lambda p: p[1]):
        if e is not None and e <= s:
            continue  # an empty grant covers nothing
        if starts and (ends[-1] is None or s <= ends[-1]):
            if ends[-1] is not None and (e is None or e > ends[-1]):
                ends[-1] = e
            continue
        starts.append(s)
        ends.append(e)
    return starts, ends


def _in_cover(cover: Cover, start: bytes, stop: bytes | None) -> bool:
    """Whether [start, stop) lies inside the cover: inside the one interval holding `start`."""
    if stop is not None and stop <= start:
        return True  # an empty range touches no key
    starts, ends = cover
    i = bisect.bisect_right(starts, start) - 1
    if i < 0:
        return False
    end = ends[i]
    return end is None or (stop is not None and stop <= end)


def _covered(perms: list[tuple[int, bytes, bytes | None]], bit: int, start: bytes,
             stop: bytes | None) -> bool:
    """Whether the union of the intervals carrying `bit` covers [start, stop)."""
    return _in_cover(_cover(perms, bit), start, stop)
