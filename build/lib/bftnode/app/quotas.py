"""Per-client quotas: the limits (genesis `app.quotas`), the usage records `q/<client_id>`
and their accounting, and the check that refuses a tx taking a client past a limit.

Who is charged: a live key is charged to its owner, the client that wrote its current value
(the owner is the last field of the key's record, kv.py); overwriting a key moves it to the
writer, deleting it (by anyone, or by its lease ending) credits the owner. A live lease is
charged to the client that granted it until it is revoked or expires. Bytes stored are
len(key) + len(value) of each live key. Keys written before records carried an owner are
charged to nobody. A lock or election holder or waiter counts as one key of len(name) +
len(value) bytes, charged to its client while it holds or waits (locks.py).
Accounting: the ops note changes in `TxContext.usage` (`charge`); `settle` writes them into the
usage records after the op ran, and refuses (QUOTA, the tx's writes dropped) when the signing
client's usage of a resource grows past its limit. Only the signer can grow: an op never
charges anybody else (others are only credited), and expiries at block start only credit.
`max_pending` is not checked here: it bounds the signer's requests in the pool at admission
(consensus, via `Genesis.config()`).
Pure. Imports: stdlib, bftnode.app.{layout,errors} (types: storage.interface, events).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

from . import layout as L
from .errors import QUOTA, AppError

if TYPE_CHECKING:
    from storage.interface import StateReader

    from .events import TxContext

RESOURCES = ("keys", "bytes", "leases")  # the order of a usage record's fields


@dataclass(frozen=True, slots=True)
class Limits:
    """Per-client limits. The defaults sit far above what tests and benches use (a 60 s bench
    writes ~30,000 keys per client) and stop only a client bent on filling the chain."""

    max_keys: int = 1_000_000  # live keys owned
    max_bytes: int = 1 << 30  # bytes of live keys owned (key + value), 1 GiB
    max_leases: int = 10_000  # live leases granted
    max_pending: int = 5_000  # requests in one node's pool (admission, not execution)

    @classmethod
    def from_params(cls, params: Mapping[str, Any] | None) -> Limits:
        """The limits of an application's parameters (genesis `app`); other keys ignored.
        Raises ValueError on a bad `quotas` object (`validate` says why)."""
        quotas = (params or {}).get("quotas")
        validate(quotas)
        return cls(**(quotas or {}))

    def cap(self, resource: str) -> int:
        return getattr(self, "max_" + resource)


_NAMES = {f.name for f in fields(Limits)}


def validate(quotas: Any) -> None:
    """Check a genesis `app.quotas` value (None = all defaults); ValueError with the field."""
    if quotas is None:
        return
    if not isinstance(quotas, dict):
        raise ValueError("field 'app.quotas': must be an object")
    for name, value in quotas.items():
        if name not in _NAMES:
            raise ValueError(f"field 'app.quotas.{name}': unknown limit (known: "
                             f"{', '.join(sorted(_NAMES))})")
        if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value < 2**63:
            raise ValueError(f"field 'app.quotas.{name}': must be an integer >= 1, got {value!r}")


# ---------------------------------------------------------------- usage records


def usage(state: StateReader, client_id: bytes) -> tuple[int, int, int]:
    """A client's (keys, bytes, leases) as recorded."""
    return _decode(state.get(L.QUOTA + client_id))


def _decode(data: bytes | None) -> tuple[int, int, int]:
    if data is None:
        return (0, 0, 0)
    keys, nbytes, leases = L.unpack(data)
    return (keys, nbytes, leases)


def all_usage(state: StateReader) -> dict[bytes, tuple[int, int, int]]:
    """Every usage record: client -> (keys, bytes, leases)."""
    return {k[len(L.QUOTA):]: _decode(v) for k, v in state.iterate(L.QUOTA)}


def recount(state: StateReader) -> dict[bytes, tuple[int, int, int]]:
    """What the usage records must say, counted from the live keys, lock and election entries
    and leases (tests, audits)."""
    out: dict[bytes, list[int]] = {}
    for k, v in state.iterate(L.KV):
        rec = L.unpack(v)
        if rec[0] is None or len(rec) < 6 or not rec[5]:
            continue
        u = out.setdefault(rec[5], [0, 0, 0])
        u[0] += 1
        u[1] += len(k) - len(L.KV) + len(rec[0])
    for kind in (L.LOCK_KIND, L.ELECTION_KIND):
        for k, v in state.iterate(kind + b"/"):
            rec = L.unpack(v)
            for entry in ([rec["holder"]] if rec["holder"] else []) + rec["queue"]:
                u = out.setdefault(entry["owner"], [0, 0, 0])
                u[0] += 1
                u[1] += len(k) - 2 + len(entry["value"])
    for _, v in state.iterate(L.LEASE):
        out.setdefault(L.unpack(v)["owner"], [0, 0, 0])[2] += 1
    return {c: (u[0], u[1], u[2]) for c, u in out.items() if any(u)}


# ---------------------------------------------------------------- accounting


def charge(ctx: TxContext, client_id: bytes, keys: int = 0, nbytes: int = 0,
           leases: int = 0) -> None:
    """Note a usage change of `client_id` (negative = credit) in this tx."""
    if not client_id:
        return  # a key without an owner is charged to nobody
    u = ctx.usage.get(client_id)
    if u is None:
        ctx.usage[client_id] = [keys, nbytes, leases]
    else:
        u[0] += keys
        u[1] += nbytes
        u[2] += leases


def key_written(ctx: TxContext, key: bytes, value: bytes, prev_owner: bytes,
                prev_value: bytes | None) -> None:
    """A put: the previous value (if any) is credited to its owner, the new one charged to
    the writer."""
    if prev_value is not None:
        charge(ctx, prev_owner, -1, -(len(key) + len(prev_value)))
    charge(ctx, ctx.client_id, 1, len(key) + len(value))


def key_deleted(ctx: TxContext, key: bytes, owner: bytes, value: bytes) -> None:
    charge(ctx, owner, -1, -(len(key) + len(value)))


def settle(ctx: TxContext, limits: Limits | None) -> None:
    """Write the tx's usage changes into the usage records. With `limits`, raise
    AppError(QUOTA) if the signer's usage of a resource grew past its limit (the caller then
    drops the tx's writes). The records are read unmetered: bookkeeping, not the tx's reads."""
    if not ctx.usage:
        return
    state = ctx.state
    meter, state.meter = state.meter, None
    try:
        for client, delta in ctx.usage.items():  # insertion order: the same on every replica
            if not any(delta):
                continue
            key = L.QUOTA + client
            old = _decode(state.get(key))
            # never below 0: a record that disagreed with the state would otherwise spread
            new = [max(0, o + d) for o, d in zip(old, delta, strict=True)]
            if limits is not None and client == ctx.client_id:
                _check(limits, old, new)
            if any(new):
                state.put(key, L.pack(new))
            else:
                state.delete(key)
    finally:
        state.meter = meter
    ctx.usage.clear()


def _check(limits: Limits, old: tuple[int, int, int], new: list[int]) -> None:
    for resource, before, after in zip(RESOURCES, old, new, strict=True):
        cap = limits.cap(resource)
        if after > before and after > cap:
            raise AppError(QUOTA, f"quota exceeded: {resource}: this client would hold "
                                  f"{after} {resource}, over its limit max_{resource} = {cap}")
