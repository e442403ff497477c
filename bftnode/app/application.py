"""The replicated application: `KVApplication` (KV + leases + locks + elections) behind the
`Application` protocol the node (bftnode.node) calls.

Pure and deterministic: no clock, no randomness, no I/O. Time is the agreed block time passed
to `execute_block`. Each tx runs in its own overlay: on error its writes are dropped (code != 0),
on success they are merged and the revision advances by one if it changed anything.
Total and bounded: whatever op bytes a tx carries, `execute_block` gives it a result code and
never raises for it; each tx reads and returns within budgets.py, and compaction advances a
bounded number of history entries per block.
Imports: stdlib, msgspec, consensus (Request), storage.interface (StateReader), bftnode.app.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from consensus import Request
from consensus.evidence import PROOF_KINDS
from storage.interface import DepthGuarded, DepthLimit, StateReader

from . import auth, auth_ops, budgets, compaction, kv, lease_end, leases, listing, locks, quotas
from . import layout as L
from . import ops as O
from .errors import (
    BAD_OP,
    CODE_NAMES,
    DEPTH_LIMIT,
    INTERNAL,
    NOT_FOUND,
    PERMISSION,
    UNKNOWN_METHOD,
    AppError,
    AppInvariantError,
)
from .events import AppEvent, TxContext, decode_events, encode_events, event_attrs
from .overlay import Overlay

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BlockEffects:
    """What one block does to the application: per-tx results, state writes, events."""

    results: tuple[tuple[int, bytes], ...]  # per tx: (code 0=ok/else error, msgpack result)
    writes: tuple[tuple[bytes, bytes | None], ...]  # sorted by key; None = delete
    events: tuple[AppEvent, ...]  # in execution order (expiries first)


class Application(Protocol):
    def check_tx(self, op: bytes) -> str | None: ...

    def execute_block(
        self, state: StateReader, height: int, time_ms: int, txs: Sequence[Request]
    ) -> BlockEffects: ...

    def query(
        self, state: StateReader, method: str, params: dict, height: int, time_ms: int
    ) -> dict: ...


class KVApplication:
    """etcd-like MVCC KV with leases, FIFO locks with fencing tokens and elections.

    `validators`: the chain's validator public keys (genesis). Evidence txs signed by one of
    them are recorded; others fail with PERMISSION. None = validator set not given: every
    well-formed evidence tx is recorded (it changes no state either way; convictions are
    decided by consensus, which knows the keys).
    `params`: genesis `app` (admins and permission checks: auth.py; per-client limits:
    quotas.py; other keys are for their own modules)."""

    def __init__(self, validators: Iterable[bytes] | None = None,
                 params: Mapping[str, Any] | None = None) -> None:
        self.validators = None if validators is None else frozenset(validators)
        self.params = dict(params or {})
        self.auth = auth.Auth(self.params)
        self.quotas = quotas.Limits.from_params(self.params)

    def encode_events(self, events: Sequence[AppEvent]) -> bytes:
        """A block's events as the node stores them (bftnode.node.app_events)."""
        return encode_events(events)

    def decode_events(self, raw: bytes) -> list[AppEvent]:
        return decode_events(raw)

    def event_attrs(self, events: Sequence[AppEvent]) -> list[tuple[bytes, bytes, int]]:
        """What tx_search can find a tx by (bftnode.node.tx_attrs)."""
        return event_attrs(events)

    def check_tx(self, op: bytes) -> str | None:
        """Stateless validation: None if `op` parses and is well-formed, else the reason.
        Never raises (an unexpected exception is a bug, logged, and refuses the op)."""
        try:
            O.decode_op(op)
        except O.OpError as exc:
            return _cut(f"invalid op: {exc}")
        except Exception as exc:  # noqa: BLE001 - admission must answer, whatever the bytes
            _log.error("bug: check_tx raised %s", type(exc).__name__, exc_info=True)
            return f"invalid op: internal error ({type(exc).__name__})"
        return None

    def execute_block(
        self, state: StateReader, height: int, time_ms: int, txs: Sequence[Request]
    ) -> BlockEffects:
        block = Overlay(state)
        last_height = L.from_u64(state.get(L.HEIGHT))
        last_time = L.from_u64(state.get(L.TIME))
        if height <= last_height and last_height:
            raise AppInvariantError(f"block {height} executed after block {last_height}")
        if time_ms < last_time:
            raise AppInvariantError(f"block time {time_ms} < previous block time {last_time}")
        rev = kv.current_revision(state)
        events: list[AppEvent] = []
        # the state tree's depth bound (storage.merkle_depth): None with the tree off
        guard = state.depth_guard(height) if isinstance(state, DepthGuarded) else None

        # Expiries are state transitions at the start of the block, one revision each.
        for lease_id in leases.due(block, time_ms, budgets.LEASE_EXPIRIES_PER_BLOCK):
            ctx = TxContext(Overlay(block), rev + 1, height, time_ms, b"", -1)
            lease_end.expire(ctx, lease_id)
            quotas.settle(ctx, None)  # only credits
            if guard is not None:  # never refused, but counted
                guard.admit(ctx.state.puts(), _always)
            ctx.state.merge_into(block)
            rev += 1
            events.extend(ctx.events)

        results: list[tuple[int, bytes]] = []
        spent = budgets.BlockBudget()
        for i, tx in enumerate(txs):
            meter = spent.meter()
            ctx = TxContext(Overlay(block, meter), rev + 1, height, time_ms, tx.client_id, i)
            code, result = self._run(ctx, tx.op, spent.result_cap())
            if not code and guard is not None:
                refused = _admit(guard, ctx.state, block)
                if refused is not None:
                    code, result = refused
            spent.spend(meter, len(result))
            if code:
                results.append((code, result))
                continue
            if ctx.mutated:
                rev += 1
                events.extend(ctx.events)
            ctx.state.merge_into(block)  # compaction writes without advancing the revision
            results.append((0, result))

        # Compaction walks a bounded slice of the history per block, after the block's txs.
        step = Overlay(block)
        compaction.step(step, budgets.COMPACT_STEP_ENTRIES)
        step.merge_into(block)

        block.put(L.REV, L.u64(rev))
        block.put(L.HEIGHT, L.u64(height))
        block.put(L.TIME, L.u64(time_ms))
        return BlockEffects(tuple(results), block.writes(), tuple(events))

    def _run(self, ctx: TxContext, op_bytes: bytes, result_cap: int) -> tuple[int, bytes]:
        """One tx: (0, result) with its writes left in ctx.state, or (code, error result).
        Every failure op content can cause is an OpError or AppError; anything else is a bug,
        answered with INTERNAL so that one bad op cannot halt the chain (every replica runs
        the same code on the same state, so they all answer alike)."""
        try:
            op = O.decode_op(op_bytes)
            self.auth.check(ctx, op)  # PERMISSION before anything runs
            if isinstance(op, O.Evidence):
                result = self._evidence(ctx, op)
            else:
                result = _EXECUTORS[type(op)](ctx, op)
            quotas.settle(ctx, self.quotas)
            result.setdefault("revision", ctx.revision if ctx.mutated else ctx.revision - 1)
            encoded = O.encode_result(result)
            budgets.check_result(len(encoded), result_cap)
        except O.OpError as exc:
            return BAD_OP, _error(BAD_OP, f"invalid op: {exc}")
        except AppError as exc:
            return exc.code, _error(exc.code, exc.message)
        except (AppInvariantError, MemoryError, RecursionError):
            raise  # not a property of the op: the node itself is in trouble, stop
        except Exception as exc:  # noqa: BLE001 - the last-resort guard described above
            _log.error("bug: tx %d of block %d raised %s", ctx.tx_index, ctx.height,
                       type(exc).__name__, exc_info=True)
            return INTERNAL, _error(INTERNAL, f"internal error ({type(exc).__name__})")
        return 0, encoded

    def _evidence(self, ctx: TxContext, op: O.Evidence) -> dict:
        """Record an evidence tx: the same result on every replica. Consensus executes only
        valid proofs, a first one per accused replica (consensus/phases/evidence.py), so a
        proof kind here convicts: its record `x/<accused>` is state (no revision), carried
        by snapshots and proven like any state."""
        if self.validators is not None and ctx.client_id not in self.validators:
            raise AppError(PERMISSION, "evidence must be signed by a validator key")
        key = L.conviction_key(op.accused)
        if (op.kind in PROOF_KINDS and ctx.state.get(key) is None
                and (self.validators is None or op.accused < len(self.validators))):
            ctx.state.put(key, L.u64(ctx.height) + op.kind.encode())
        return {"evidence": "recorded", "accused": op.accused, "kind": op.kind}

    def _q_auth_status(self, state: StateReader, p: dict, info: dict) -> dict:
        return self.auth.status(state, info)

    def convictions(self, state: StateReader) -> list[tuple[int, int, str]]:
        """(replica, height, kind) of the convictions recorded in `state` (a node that
        installed a snapshot learns them here)."""
        return L.convictions(state)

    def query(
        self, state: StateReader, method: str, params: dict, height: int, time_ms: int
    ) -> dict:
        """Read-only queries over one consistent state; raises AppError(code, message).
        A query reads within the tx budget (budgets.py): a larger read fails BUDGET_EXCEEDED."""
        fn = _QUERIES.get(method)
        if method == "auth_status":
            fn = self._q_auth_status
        if fn is None:
            raise AppError(UNKNOWN_METHOD, f"unknown query method {method!r}")
        try:
            # metadata unmetered, so a query that spends its budget still answers a page
            return fn(Overlay(state, budgets.Meter()), params, _info(state, height, time_ms))
        except (KeyError, TypeError, ValueError) as exc:
            raise AppError(BAD_OP, f"bad params for {method}: {exc}") from exc


# ---------------------------------------------------------------- depth bound


def _always(_key: bytes) -> bool:
    return True


def _admit(guard: DepthLimit, tx: Overlay, block: Overlay) -> tuple[int, bytes] | None:
    """None if the state tree may take the new keys the tx puts, else its DEPTH_LIMIT
    result (its writes are then dropped). An op on a key that exists (overwrite, delete,
    lease attach) is never refused: the history record or lease index key it adds sits
    next to that key's own (their paths are those of existing keys, plus at most the
    revision's 64 bits), so it is admitted past the bound (docs/storage.md)."""
    puts = tx.puts()
    if not puts:
        return None

    def existing(key: bytes) -> bool:
        if key.startswith(L.HIST):
            user = L.parse_hist_key(key)[0]
        elif key.startswith(L.LEASE_KEYS):
            user = key[len(L.LEASE_KEYS) + 8 :]
        else:
            return False
        return block.get(L.KV + user) is not None  # the state before this tx

    refused = guard.admit(puts, existing)
    if refused is None:
        return None
    return DEPTH_LIMIT, _error(
        DEPTH_LIMIT,
        f"state key {refused[:64]!r} would sit deeper than {guard.max_depth} levels in the "
        "state tree (keys that share long prefixes)")


# ---------------------------------------------------------------- tx dispatch


def _cut(message: str) -> str:
    limit = budgets.MAX_ERROR_CHARS
    return message if len(message) <= limit else message[: limit - 3] + "..."


def _error(code: int, message: str) -> bytes:
    """The result of a failed tx: {"error": message, "reason": code name}."""
    return O.encode_result({"error": _cut(message), "reason": CODE_NAMES.get(code, "error")})


def _lease_grant(ctx: TxContext, op: O.LeaseGrant) -> dict:
    return leases.grant(ctx, op.ttl_ms)


def _compact(ctx: TxContext, op: O.Compact) -> dict:
    return compaction.compact(ctx, op.revision)


def _range(ctx: TxContext, op: O.Range) -> dict:
    out = kv.range_(ctx.state, op, current=ctx.revision - 1)
    return out


_EXECUTORS: dict[type, Callable[[TxContext, object], dict]] = {
    O.Put: kv.do_put,
    O.Delete: kv.do_delete,
    O.Range: _range,
    O.Txn: kv.do_txn,
    O.Compact: _compact,
    O.LeaseGrant: _lease_grant,
    O.LeaseKeepalive: lambda ctx, op: leases.keepalive(ctx, op.id),
    O.LeaseRevoke: lambda ctx, op: lease_end.revoke(ctx, op.id),
    O.LockAcquire: lambda ctx, op: locks.acquire(
        ctx, L.LOCK_KIND, op.name, op.lease, b"", op.wait
    ),
    O.LockRelease: lambda ctx, op: locks.release(ctx, L.LOCK_KIND, op.name, op.token),
    O.LockCancel: lambda ctx, op: locks.cancel(ctx, L.LOCK_KIND, op.name, op.lease),
    O.Campaign: lambda ctx, op: locks.acquire(
        ctx, L.ELECTION_KIND, op.name, op.lease, op.value, True
    ),
    O.Proclaim: lambda ctx, op: locks.proclaim(ctx, op.name, op.token, op.value),
    O.Resign: lambda ctx, op: locks.release(ctx, L.ELECTION_KIND, op.name, op.token),
    **auth_ops.EXECUTORS,
}


# ---------------------------------------------------------------- queries


def _bytes(params: dict, name: str, default: bytes | None = None) -> bytes:
    """A key param: bytes, or a str taken as UTF-8 (JSON-RPC passes strings)."""
    v = params.get(name, default)
    if v is None:
        raise KeyError(f"missing param {name!r}")
    if isinstance(v, str):
        return v.encode("utf-8")
    if isinstance(v, bytes | bytearray):
        return bytes(v)
    raise TypeError(f"param {name!r} must be a string or bytes")


def _int(params: dict, name: str, default: int = 0) -> int:
    v = params.get(name, default)
    if isinstance(v, bool) or not isinstance(v, int) or v < 0:
        raise ValueError(f"param {name!r} must be a non-negative integer")
    return v


def _info(state: StateReader, height: int, time_ms: int) -> dict:
    return {
        "revision": kv.current_revision(state),
        "compact_revision": kv.compact_revision(state),
        "height": height,
        "time_ms": time_ms,
    }


def _q_kv_get(state: StateReader, p: dict, info: dict) -> dict:
    key = _bytes(p, "key")
    out = kv.range_(state, O.Range(key, revision=_int(p, "revision")))
    found = out["kvs"][0] if out["kvs"] else None
    return {
        "key": key,
        "value": found["value"] if found else None,
        "found": found is not None,
        "create_revision": found["create_revision"] if found else 0,
        "mod_revision": found["mod_revision"] if found else 0,
        "version": found["version"] if found else 0,
        "lease": found["lease"] if found else 0,
        **info,
        "read_revision": out["revision"],
    }


def _q_kv_range(state: StateReader, p: dict, info: dict) -> dict:
    """{key (default ""), prefix (default true), range_end (etcd [key, range_end), overrides
    prefix), limit, revision, keys_only, count_only}."""
    key = _bytes(p, "key", b"")
    prefix = bool(p.get("prefix", True))
    range_end = _bytes(p, "range_end", b"")
    if not key and not prefix and not range_end:
        raise ValueError("an exact range needs a non-empty key")
    # Built directly (not decoded), so an empty key with prefix=True means the whole keyspace.
    op = O.Range(
        key,
        prefix=prefix,
        limit=min(_int(p, "limit"), O.MAX_RANGE_LIMIT),
        revision=_int(p, "revision"),
        keys_only=bool(p.get("keys_only", False)),
        count_only=bool(p.get("count_only", False)),
        range_end=range_end,
    )
    out = kv.range_(state, op, page_first=True)
    return {**out, **info, "read_revision": out["revision"]}


def _q_lease_ttl(state: StateReader, p: dict, info: dict) -> dict:
    out = leases.time_to_live(state, _int(p, "id"), info["time_ms"], keys=bool(p.get("keys", False)))
    return {**out, **info}


def _q_lock_status(state: StateReader, p: dict, info: dict) -> dict:
    out = locks.status(
        state, L.LOCK_KIND, _bytes(p, "name"), token=_int(p, "token"), lease=_int(p, "lease")
    )
    return {**out, **info}


def _q_election_leader(state: StateReader, p: dict, info: dict) -> dict:
    name = _bytes(p, "name")
    st = locks.status(state, L.ELECTION_KIND, name)
    holder = st["holder"]
    if holder is None and p.get("require", False):
        raise AppError(NOT_FOUND, f"election {name!r} has no leader")
    return {
        "name": name,
        "leader": holder["value"] if holder else None,
        "has_leader": holder is not None,
        "token": holder["token"] if holder else 0,
        "lease": holder["lease"] if holder else 0,
        "owner": holder["owner"] if holder else b"",
        "candidates": len(st["waiters"]),
        **info,
    }


def _q_revision(state: StateReader, p: dict, info: dict) -> dict:
    return info


_QUERIES: dict[str, Callable[[StateReader, dict, dict], dict]] = {
    "kv_get": _q_kv_get,
    "kv_range": _q_kv_range,
    "lease_ttl": _q_lease_ttl,
    "lock_status": _q_lock_status,
    "election_leader": _q_election_leader,
    "revision": _q_revision,
    "lock_list": listing.lock_list,
    "lease_list": listing.lease_list,
}
QUERY_METHODS = (*_QUERIES, "auth_status")  # auth_status: KVApplication._q_auth_status
