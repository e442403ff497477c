"""Tx op bytes and tx result bytes of the replicated application (builders and parsers).

Owns the op format (a msgpack map with an "op" field, see docs/consistency.md) so the client
library, the RPC layer and tests build ops the same way the state machine parses them.
`decode_op` is total: any bytes either decode to a valid op or raise OpError, because their
size and msgpack shape are bounded before msgspec sees them and every field has a range.
Imports: stdlib, msgspec, bftnode.app.{budgets,msgpack_shape}. Must not import consensus,
storage or any I/O.
"""

from __future__ import annotations

import base64
from typing import Annotated, Any, Literal

import msgspec

from .budgets import MAX_OP_BYTES, MAX_OP_DEPTH, MAX_OP_ITEMS
from .msgpack_shape import container_bytes, shape_error

MAX_KEY_BYTES = 4096
MAX_VALUE_BYTES = 1024 * 1024
MAX_TXN_OPS = 128
MAX_TTL_MS = 30 * 24 * 3600 * 1000  # 30 days
MIN_TTL_MS = 1
MAX_RANGE_LIMIT = 10_000

Key = Annotated[bytes, msgspec.Meta(min_length=1, max_length=MAX_KEY_BYTES)]
Value = Annotated[bytes, msgspec.Meta(max_length=MAX_VALUE_BYTES)]
Int64 = Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)]
NonNeg = Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]
Positive = Annotated[int, msgspec.Meta(ge=1, le=2**63 - 1)]
Ttl = Annotated[int, msgspec.Meta(ge=MIN_TTL_MS, le=MAX_TTL_MS)]
Limit = Annotated[int, msgspec.Meta(ge=0, le=MAX_RANGE_LIMIT)]


class _Op(
    msgspec.Struct, frozen=True, tag_field="op", forbid_unknown_fields=True, omit_defaults=True
):
    pass


# ---------------------------------------------------------------- KV


class Put(_Op, tag="put"):
    key: Key
    value: Value
    lease: NonNeg = 0  # 0 = no lease
    prev_kv: bool = False  # return the previous key-value in the result


class Delete(_Op, tag="delete"):
    key: Key
    prefix: bool = False  # delete every key starting with `key`
    prev_kv: bool = False


class Range(_Op, tag="range"):
    """A read. As a tx it is a linearizable read ordered through consensus. An empty key
    with prefix=True reads the whole keyspace."""

    key: Annotated[bytes, msgspec.Meta(max_length=MAX_KEY_BYTES)]
    prefix: bool = False
    limit: Limit = 0  # 0 = MAX_RANGE_LIMIT
    revision: NonNeg = 0  # 0 = current
    keys_only: bool = False
    count_only: bool = False
    range_end: Annotated[bytes, msgspec.Meta(max_length=MAX_KEY_BYTES)] = b""
    """etcd-style [key, range_end) when non-empty (b"\\x00" = every key >= key); overrides
    `prefix`."""


class Compare(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    """One txn guard: `target` of `key` compared with `value` (a missing key has value None,
    version/create/mod/lease 0)."""

    key: Key
    target: Literal["value", "version", "create", "mod", "lease"]
    result: Literal["=", "!=", "<", ">"]
    value: Int64 | bytes | None = None


TxnOp = Put | Delete | Range


class Txn(_Op, tag="txn"):
    """If every compare holds, run `success`, else `failure`; all writes share one revision."""

    compare: Annotated[tuple[Compare, ...], msgspec.Meta(max_length=MAX_TXN_OPS)] = ()
    success: Annotated[tuple[TxnOp, ...], msgspec.Meta(max_length=MAX_TXN_OPS)] = ()
    failure: Annotated[tuple[TxnOp, ...], msgspec.Meta(max_length=MAX_TXN_OPS)] = ()


class Compact(_Op, tag="compact"):
    revision: Positive


# ---------------------------------------------------------------- leases


class LeaseGrant(_Op, tag="lease_grant"):
    ttl_ms: Ttl


class LeaseKeepalive(_Op, tag="lease_keepalive"):
    id: Positive


class LeaseRevoke(_Op, tag="lease_revoke"):
    id: Positive


# ---------------------------------------------------------------- locks and elections


class LockAcquire(_Op, tag="lock_acquire"):
    name: Key
    lease: Positive
    wait: bool = True  # False = try_acquire: fail instead of queueing


class LockRelease(_Op, tag="lock_release"):
    name: Key
    token: Positive


class LockCancel(_Op, tag="lock_cancel"):
    """A waiter leaves the queue (the holder uses lock_release)."""

    name: Key
    lease: Positive


class Campaign(_Op, tag="campaign"):
    name: Key
    lease: Positive
    value: Value = b""


class Proclaim(_Op, tag="proclaim"):
    name: Key
    token: Positive
    value: Value = b""


class Resign(_Op, tag="resign"):
    name: Key
    token: Positive


# ---------------------------------------------------------------- permissions (auth.py)

# \Z, not $: $ also matches before a final "\n" (msgspec searches with Python's re)
RoleName = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")]
ClientKey = Annotated[bytes, msgspec.Meta(min_length=32, max_length=32)]
Perm = Literal["read", "write", "readwrite"]
AnyKey = Annotated[bytes, msgspec.Meta(max_length=MAX_KEY_BYTES)]


class AuthRoleAdd(_Op, tag="auth_role_add"):
    role: RoleName


class AuthRoleDelete(_Op, tag="auth_role_delete"):
    """Deletes the role and unbinds it from every client."""

    role: RoleName


class _Permission(_Op):
    """`perm` on one key, a prefix (`prefix`; an empty key = every key) or etcd's
    [key, range_end) (b"\\x00" = every key >= key)."""

    role: RoleName
    perm: Perm
    key: AnyKey
    prefix: bool = False
    range_end: AnyKey = b""


class AuthGrant(_Permission, tag="auth_grant"):
    pass


class AuthRevoke(_Permission, tag="auth_revoke"):
    """Takes `perm` away on exactly the key/prefix/range a grant named."""


class AuthBind(_Op, tag="auth_bind"):
    client: ClientKey
    role: RoleName


class AuthUnbind(_Op, tag="auth_unbind"):
    client: ClientKey
    role: RoleName


class AuthEnable(_Op, tag="auth_enable"):
    """Turns permission checks on (or off with enabled=False)."""

    enabled: bool = True


AUTH_OPS = (AuthRoleAdd, AuthRoleDelete, AuthGrant, AuthRevoke, AuthBind, AuthUnbind, AuthEnable)


# ---------------------------------------------------------------- evidence


class Evidence(_Op, tag="evidence"):
    """Evidence against validator `accused`, filed by a validator (client_id = its validator
    key). Built and judged by the consensus layer (consensus/evidence.py: a valid equivocation
    proof convicts `accused`); the application only records it, changing no state."""

    accused: NonNeg
    kind: Annotated[str, msgspec.Meta(max_length=64)]
    reason: Annotated[str, msgspec.Meta(max_length=1024)] = ""
    proof: bytes = b""


Op = (
    Put
    | Delete
    | Range
    | Txn
    | Compact
    | LeaseGrant
    | LeaseKeepalive
    | LeaseRevoke
    | LockAcquire
    | LockRelease
    | LockCancel
    | Campaign
    | Proclaim
    | Resign
    | Evidence
    | AuthRoleAdd
    | AuthRoleDelete
    | AuthGrant
    | AuthRevoke
    | AuthBind
    | AuthUnbind
    | AuthEnable
)

def _plain_int(obj: Any) -> int:
    """An int subclass (a client's HeldLease / HeldLock) encodes as the int it is."""
    if isinstance(obj, int):
        return int(obj)
    raise NotImplementedError(f"cannot encode {type(obj).__name__}")


_encoder = msgspec.msgpack.Encoder(enc_hook=_plain_int)
_op_decoder = msgspec.msgpack.Decoder(Op)
_any_decoder = msgspec.msgpack.Decoder()


class OpError(ValueError):
    """The op bytes are not a valid op (the message says why)."""


def encode_op(op: Op) -> bytes:
    return _encoder.encode(op)


def decode_op(data: bytes) -> Op:
    """Parse and validate op bytes; raises OpError with a clear reason (and nothing else)."""
    if isinstance(data, bytearray | memoryview):
        data = bytes(data)
    if not isinstance(data, bytes):
        raise OpError(f"op must be bytes, not {type(data).__name__}")
    if len(data) > MAX_OP_BYTES:
        raise OpError(f"op of {len(data)} bytes exceeds {MAX_OP_BYTES}")
    # msgspec recurses once per level when it skips a value, and how deep it may go depends
    # on the caller's stack: so bound the depth first. Bytes with at most MAX_OP_DEPTH
    # container headers cannot nest deeper (and the walk's item bound only rejects what
    # msgspec refuses anyway), so most ops skip the walk.
    if container_bytes(data) > MAX_OP_DEPTH:
        bad = shape_error(data, MAX_OP_DEPTH, MAX_OP_ITEMS)
        if bad is not None:
            raise OpError(bad)
    try:
        op = _op_decoder.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise OpError(str(exc)) from exc
    if isinstance(op, Range) and not op.key and not op.prefix and not op.range_end:
        raise OpError("an exact range needs a non-empty key")
    if isinstance(op, _Permission) and not op.key and not op.prefix and not op.range_end:
        raise OpError("a permission on one key needs a non-empty key")
    if isinstance(op, Txn):
        for sub in op.success + op.failure:
            if isinstance(sub, Range) and not sub.key and not sub.prefix and not sub.range_end:
                raise OpError("an exact range needs a non-empty key")
            if isinstance(sub, Range) and sub.revision:
                raise OpError("range inside a txn reads the txn's revision: drop `revision`")
        for c in op.compare:
            if c.target == "value" and not (c.value is None or isinstance(c.value, bytes)):
                raise OpError("compare on value needs bytes (or nil for a missing key)")
            if c.target != "value" and not isinstance(c.value, int):
                raise OpError(f"compare on {c.target} needs an integer")
            if c.value is None and c.result not in ("=", "!="):
                raise OpError("only = and != compare with nil")
    return op


# ---------------------------------------------------------------- builders


def put(key: bytes, value: bytes, lease: int = 0, prev_kv: bool = False) -> bytes:
    return encode_op(Put(key, value, lease, prev_kv))


def delete(key: bytes, prefix: bool = False, prev_kv: bool = False) -> bytes:
    return encode_op(Delete(key, prefix, prev_kv))


def range_(
    key: bytes,
    prefix: bool = False,
    limit: int = 0,
    revision: int = 0,
    keys_only: bool = False,
    count_only: bool = False,
    range_end: bytes = b"",
) -> bytes:
    """A linearizable read tx (ordered through consensus)."""
    return encode_op(Range(key, prefix, limit, revision, keys_only, count_only, range_end))


def compare(key: bytes, target: str, result: str, value: int | bytes | None) -> Compare:
    return Compare(key, target, result, value)  # type: ignore[arg-type]


def txn(
    compare: tuple[Compare, ...] | list[Compare] = (),
    success: tuple[TxnOp, ...] | list[TxnOp] = (),
    failure: tuple[TxnOp, ...] | list[TxnOp] = (),
) -> bytes:
    """Build a txn; `success`/`failure` hold Put/Delete/Range structs (see put_op etc.)."""
    return encode_op(Txn(tuple(compare), tuple(success), tuple(failure)))


def put_op(key: bytes, value: bytes, lease: int = 0, prev_kv: bool = False) -> Put:
    return Put(key, value, lease, prev_kv)


def delete_op(key: bytes, prefix: bool = False, prev_kv: bool = False) -> Delete:
    return Delete(key, prefix, prev_kv)


def range_op(key: bytes, prefix: bool = False, limit: int = 0, keys_only: bool = False) -> Range:
    return Range(key, prefix, limit, 0, keys_only)


def compact(revision: int) -> bytes:
    return encode_op(Compact(revision))


def lease_grant(ttl_ms: int | None = None, ttl: float | None = None) -> bytes:
    """Grant a lease of `ttl_ms` milliseconds (or `ttl` seconds) of agreed block time."""
    if (ttl_ms is None) == (ttl is None):
        raise ValueError("give exactly one of ttl_ms or ttl (seconds)")
    return encode_op(LeaseGrant(int(ttl_ms if ttl_ms is not None else round(ttl * 1000))))


def lease_keepalive(lease_id: int) -> bytes:
    return encode_op(LeaseKeepalive(lease_id))


def lease_revoke(lease_id: int) -> bytes:
    return encode_op(LeaseRevoke(lease_id))


def lock_acquire(name: bytes, lease: int) -> bytes:
    """Take the lock or queue for it (FIFO); the grant carries the fencing token."""
    return encode_op(LockAcquire(name, lease, True))


def lock_try_acquire(name: bytes, lease: int) -> bytes:
    return encode_op(LockAcquire(name, lease, False))


def lock_release(name: bytes, token: int) -> bytes:
    return encode_op(LockRelease(name, token))


def lock_cancel(name: bytes, lease: int) -> bytes:
    return encode_op(LockCancel(name, lease))


def campaign(name: bytes, lease: int, value: bytes = b"") -> bytes:
    return encode_op(Campaign(name, lease, value))


def proclaim(name: bytes, token: int, value: bytes) -> bytes:
    return encode_op(Proclaim(name, token, value))


def resign(name: bytes, token: int) -> bytes:
    return encode_op(Resign(name, token))


def auth_role_add(role: str) -> bytes:
    return encode_op(AuthRoleAdd(role))


def auth_role_delete(role: str) -> bytes:
    return encode_op(AuthRoleDelete(role))


def auth_grant(role: str, perm: str, key: bytes, prefix: bool = False,
               range_end: bytes = b"") -> bytes:
    return encode_op(AuthGrant(role, perm, key, prefix, range_end))  # type: ignore[arg-type]


def auth_revoke(role: str, perm: str, key: bytes, prefix: bool = False,
                range_end: bytes = b"") -> bytes:
    """The same arguments as the `auth_grant` it undoes."""
    return encode_op(AuthRevoke(role, perm, key, prefix, range_end))  # type: ignore[arg-type]


def auth_bind(client: bytes, role: str) -> bytes:
    return encode_op(AuthBind(client, role))


def auth_unbind(client: bytes, role: str) -> bytes:
    return encode_op(AuthUnbind(client, role))


def auth_enable(enabled: bool = True) -> bytes:
    return encode_op(AuthEnable(enabled))


# ---------------------------------------------------------------- results


def encode_result(result: dict) -> bytes:
    """Result bytes: a msgpack map (insertion order is deterministic in our code)."""
    return _encoder.encode(result)


def decode_result(data: bytes) -> dict:
    """Parse result bytes into a dict (bytes stay bytes; see `jsonable`)."""
    try:
        value = _any_decoder.decode(data)
    except msgspec.DecodeError as exc:
        raise ValueError(f"result is not msgpack: {exc}") from exc
    if not isinstance(value, dict):
        raise ValueError("result is not a msgpack map")
    return value


def jsonable(value: Any, binary: Literal["utf8", "base64"] = "utf8") -> Any:
    """Turn a result/query dict into JSON-safe data. Bytes become UTF-8 strings (or base64;
    with "utf8", bytes that are not valid UTF-8 become {"base64": ...})."""
    if isinstance(value, bytes | bytearray | memoryview):
        raw = bytes(value)
        if binary == "utf8":
            try:
                return raw.decode("utf-8")
            except UnicodeDecodeError:
                pass
        return {"base64": base64.b64encode(raw).decode("ascii")} if binary == "utf8" else (
            base64.b64encode(raw).decode("ascii")
        )
    if isinstance(value, dict):
        return {
            (k if isinstance(k, str) else str(jsonable(k, binary))): jsonable(v, binary)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [jsonable(v, binary) for v in value]
    return value
