"""The permission records in app state and the admin ops that change them (auth.py checks
that the signer is an admin before any of these runs).

Records (layout.py): `a/r/<role>` holds the role's permissions, each [bits, key, range_end]
with bits 1 = read, 2 = write, 3 = both, and range_end as etcd's: b"" = the key alone,
b"\\x00" = every key >= key, else the exclusive end (a prefix is stored as its range).
`a/u/<client>` holds the sorted role names bound to a client key; `a/on` the checks flag.
Auth ops change state without advancing the KV revision (like compaction).
Pure. Imports: stdlib, storage.interface (types), bftnode.app.{errors,events,layout,ops}.
"""

from __future__ import annotations

from collections.abc import Callable

from storage.interface import StateReader

from . import layout as L
from . import ops as O
from .errors import CONFLICT, LIMIT, NOT_FOUND, AppError
from .events import TxContext

READ, WRITE = 1, 2
PERM_BITS = {"read": READ, "write": WRITE, "readwrite": READ | WRITE}
PERM_NAMES = {v: k for k, v in PERM_BITS.items()}
MAX_PERMS_PER_ROLE = 256
MAX_ROLES_PER_CLIENT = 64


def prefix_end(key: bytes) -> bytes | None:
    """The first key after every key starting with `key`; None = no end (all 0xff / empty)."""
    stripped = key.rstrip(b"\xff")
    if not stripped:
        return None
    return stripped[:-1] + bytes([stripped[-1] + 1])


def enabled(state: StateReader, default: bool) -> bool:
    raw = state.get(L.AUTH_ON)
    return default if raw is None else raw == b"\x01"


def _role(state: StateReader, role: str) -> list | None:
    raw = state.get(L.AUTH_ROLE + role.encode())
    return L.unpack(raw) if raw is not None else None


def _roles_of(state: StateReader, client: bytes) -> list[str]:
    raw = state.get(L.AUTH_USER + client)
    return L.unpack(raw) if raw is not None else []


def _interval(key: bytes, range_end: bytes) -> tuple[bytes, bytes | None]:
    if not range_end:
        return key, key + b"\x00"
    return key, None if range_end == b"\x00" else range_end


def permissions_of(state: StateReader, client: bytes) -> list[tuple[int, bytes, bytes | None]]:
    """Every (bits, start, stop) interval the client's roles grant (stop None = unbounded)."""
    out = []
    for role in _roles_of(state, client):
        for bits, key, end in _role(state, role) or ():
            out.append((bits, *_interval(key, end)))
    return out


def listing(state: StateReader) -> dict:
    roles = []
    for k, v in state.iterate(L.AUTH_ROLE):
        perms = [{"perm": PERM_NAMES[b], "key": key, "range_end": end} for b, key, end in
                 L.unpack(v)]
        roles.append({"role": k[len(L.AUTH_ROLE):].decode(), "permissions": perms})
    bindings = [{"client": k[len(L.AUTH_USER):].hex(), "roles": L.unpack(v)}
                for k, v in state.iterate(L.AUTH_USER)]
    return {"roles": roles, "bindings": bindings}


# ---------------------------------------------------------------- admin ops


def _need_role(ctx: TxContext, role: str) -> list:
    perms = _role(ctx.state, role)
    if perms is None:
        raise AppError(NOT_FOUND, f"role {role!r} does not exist")
    return perms


def role_add(ctx: TxContext, op: O.AuthRoleAdd) -> dict:
    if _role(ctx.state, op.role) is not None:
        raise AppError(CONFLICT, f"role {op.role!r} exists already")
    ctx.state.put(L.AUTH_ROLE + op.role.encode(), L.pack([]))
    return {"role": op.role, "added": True}


def role_delete(ctx: TxContext, op: O.AuthRoleDelete) -> dict:
    _need_role(ctx, op.role)
    ctx.state.delete(L.AUTH_ROLE + op.role.encode())
    unbound = 0
    for k, v in list(ctx.state.iterate(L.AUTH_USER)):  # etcd also unbinds a deleted role
        roles = L.unpack(v)
        if op.role in roles:
            roles.remove(op.role)
            _save_roles(ctx, k, roles)
            unbound += 1
    return {"role": op.role, "deleted": True, "unbound": unbound}


def _stored_end(op: O.AuthGrant | O.AuthRevoke) -> bytes:
    if op.range_end:
        return op.range_end
    if op.prefix:
        return prefix_end(op.key) or b"\x00"
    return b""


def grant(ctx: TxContext, op: O.AuthGrant) -> dict:
    perms = _need_role(ctx, op.role)
    end, bits = _stored_end(op), PERM_BITS[op.perm]
    for p in perms:
        if p[1] == op.key and p[2] == end:
            p[0] |= bits
            break
    else:
        if len(perms) >= MAX_PERMS_PER_ROLE:
            raise AppError(LIMIT, f"role {op.role!r} has {MAX_PERMS_PER_ROLE} permissions "
                                  "already")
        perms.append([bits, op.key, end])
        perms.sort(key=lambda p: (p[1], p[2]))
    ctx.state.put(L.AUTH_ROLE + op.role.encode(), L.pack(perms))
    return {"role": op.role, "granted": op.perm, "key": op.key, "range_end": end}


def revoke(ctx: TxContext, op: O.AuthRevoke) -> dict:
    perms = _need_role(ctx, op.role)
    end, bits = _stored_end(op), PERM_BITS[op.perm]
    for p in perms:
        if p[1] == op.key and p[2] == end and p[0] & bits:
            p[0] &= ~bits
            break
    else:
        raise AppError(NOT_FOUND, f"role {op.role!r} has no {op.perm} permission on exactly "
                                  f"{op.key[:64]!r} (range_end {end[:64]!r})")
    perms = [p for p in perms if p[0]]
    ctx.state.put(L.AUTH_ROLE + op.role.encode(), L.pack(perms))
    return {"role": op.role, "revoked": op.perm, "key": op.key, "range_end": end}


def _save_roles(ctx: TxContext, key: bytes, roles: list[str]) -> None:
    if roles:
        ctx.state.put(key, L.pack(sorted(roles)))
    else:
        ctx.state.delete(key)


def bind(ctx: TxContext, op: O.AuthBind) -> dict:
    _need_role(ctx, op.role)
    roles = _roles_of(ctx.state, op.client)
    if op.role not in roles:
        if len(roles) >= MAX_ROLES_PER_CLIENT:
            raise AppError(LIMIT, f"client has {MAX_ROLES_PER_CLIENT} roles already")
        _save_roles(ctx, L.AUTH_USER + op.client, [*roles, op.role])
    return {"client": op.client.hex(), "role": op.role, "bound": True}


def unbind(ctx: TxContext, op: O.AuthUnbind) -> dict:
    roles = _roles_of(ctx.state, op.client)
    if op.role not in roles:
        raise AppError(NOT_FOUND, f"role {op.role!r} is not bound to client "
                                  f"{op.client.hex()[:16]}")
    roles.remove(op.role)
    _save_roles(ctx, L.AUTH_USER + op.client, roles)
    return {"client": op.client.hex(), "role": op.role, "bound": False}


def enable(ctx: TxContext, op: O.AuthEnable) -> dict:
    ctx.state.put(L.AUTH_ON, b"\x01" if op.enabled else b"\x00")
    return {"enabled": op.enabled}


EXECUTORS: dict[type, Callable[[TxContext, object], dict]] = {
    O.AuthRoleAdd: role_add,  # type: ignore[dict-item]
    O.AuthRoleDelete: role_delete,  # type: ignore[dict-item]
    O.AuthGrant: grant,  # type: ignore[dict-item]
    O.AuthRevoke: revoke,  # type: ignore[dict-item]
    O.AuthBind: bind,  # type: ignore[dict-item]
    O.AuthUnbind: unbind,  # type: ignore[dict-item]
    O.AuthEnable: enable,  # type: ignore[dict-item]
}
