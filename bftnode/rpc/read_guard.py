"""The bounds on RPC reads: per-client-IP token buckets, reads in flight per connection, the
byte budget of one answer and of one batch, read freshness (`min_height`, `max_lag_ms`) and
what every read answer carries (`read_height`, `catching_up`).

`guarded(ctx, fresh, run)` is the one path of every read method (bftnode.rpc.handlers): admit
(or `rate limited` with retry_after), check freshness (or `stale_read`), run the read with the
bytes it may answer (`run(budget)`; the node runs it in a read worker over a snapshot), then
charge the bucket and the batch by the answer's size. The limits are the node's
`read_limits` (bftnode.rpc.limits.ReadLimits, from its config), else the defaults.

Refusals are cheap: dispatch asks `refuse_reads(ctx, payload)` first, and a payload made only
of read calls from a client whose bucket is empty is answered whole, one `rate limited` error
per call, with no per-call parsing or dispatch. Every refusal (there or in `guarded`) goes
through `note_refused`: counted, and logged at most once per client IP per
`REFUSAL_LOG_EVERY_S` with the count since the last line (never one line per call).
Imports: stdlib, structlog, trio, bftnode.rpc.
"""

from __future__ import annotations

import contextvars
import time
import weakref
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
import trio

from .errors import RATE_LIMITED, STALE_READ, TOO_LARGE, RPCError
from .limits import ReadLimits
from .registry import CallContext, _response, _safe_id, client_ip

log = structlog.get_logger("bftnode.rpc")

MIN_HEIGHT_WAIT_S = 2.0  # a read asking for a height the node is about to reach waits this,
MIN_HEIGHT_WAIT_BLOCKS = 3  # ... when it is at most this many blocks ahead (else: at once)
COST_BYTES = 16 * 1024  # a read costs one token, plus one per this many bytes of answer
MAX_BUCKETS = 10_000  # client IPs tracked; full (idle) buckets are forgotten past this
REFUSAL_LOG_EVERY_S = 1.0  # at most one `rpc.rate_limited` log line per client IP this often
# the methods whose every call goes through `guarded` (bftnode.rpc.handlers); a payload made
# only of these may be refused whole (tests/unit/rpc check the list against the handlers)
READ_METHODS = frozenset({
    "block", "blockchain", "tx", "tx_status", "evidence", "kv_get", "kv_range", "lease_ttl",
    "lock_status", "election_leader", "revision", "auth_status",
    # CometBFT's routes that read stored data (comet.py)
    "block_by_hash", "tx_search", "header", "commit", "block_results", "abci_info",
    "abci_query", "unconfirmed_txs"})


class TokenBucket:
    """`burst` tokens, refilled at `rate` per second; may go into debt (a large answer)."""

    __slots__ = ("at", "tokens")

    def __init__(self, burst: float, now: float) -> None:
        self.tokens = float(burst)
        self.at = now

    def refill(self, rate: float, burst: float, now: float) -> float:
        self.tokens = min(float(burst), self.tokens + (now - self.at) * rate)
        self.at = now
        return self.tokens


class ReadGate:
    """One node's read limits and client buckets."""

    def __init__(self, limits: ReadLimits, clock: Callable[[], float] = time.monotonic) -> None:
        self.limits = limits
        self.clock = clock
        self.buckets: dict[str, TokenBucket] = {}
        self.refusals: dict[str, list[float]] = {}  # ip -> [last log time, count since]

    def _bucket(self, ip: str) -> TokenBucket:
        b = self.buckets.get(ip)
        if b is None:
            if len(self.buckets) >= MAX_BUCKETS:
                self._forget_full()
            b = self.buckets[ip] = TokenBucket(self.limits.burst, self.clock())
        return b

    def _forget_full(self) -> None:
        now, lim = self.clock(), self.limits
        for ip in [ip for ip, b in self.buckets.items()
                   if b.refill(lim.rate, lim.burst, now) >= lim.burst]:
            del self.buckets[ip]

    def refusal(self, ip: str) -> RPCError | None:
        """The `rate limited` error (with retry_after) if `ip` has no whole token, else None."""
        lim = self.limits
        tokens = self._bucket(ip).refill(lim.rate, lim.burst, self.clock())
        if tokens >= 1.0:
            return None
        retry = round((1.0 - tokens) / lim.rate, 3)
        return RPCError(RATE_LIMITED, f"rate limited: this client address has used its read "
                        f"budget ({lim.rate:g} tokens/s, burst {lim.burst}); retry after "
                        f"{retry:g}s", {"retry_after": retry})

    def admit(self, ip: str) -> None:
        """Raise `rate limited` unless `ip` has a whole token."""
        err = self.refusal(ip)
        if err is not None:
            raise err

    def note_refused(self, ip: str, peer: str, n: int = 1) -> None:
        """Log `n` refused calls from `ip`: one line per IP per REFUSAL_LOG_EVERY_S at most,
        with the count since the last line (the first refusal of a quiet IP logs at once)."""
        now = self.clock()
        r = self.refusals.get(ip)
        if r is None:
            if len(self.refusals) >= MAX_BUCKETS:
                self.refusals.clear()
            r = self.refusals[ip] = [now - REFUSAL_LOG_EVERY_S, 0]
        r[1] += n
        if now - r[0] >= REFUSAL_LOG_EVERY_S:
            log.info("rpc.rate_limited", peer=peer, reason="rate_limited", refused=int(r[1]),
                     since_s=round(min(now - r[0], 3600.0), 3))
            r[0], r[1] = now, 0

    def charge(self, ip: str, answer_bytes: int, point_reads: int = 0) -> None:
        """A read's cost: one token, plus one per COST_BYTES answered, plus one per point read
        of a whole record beyond the first (`blockchain` reads a block per header)."""
        self._bucket(ip).tokens -= 1 + answer_bytes // COST_BYTES + max(0, point_reads - 1)


_gates: weakref.WeakKeyDictionary[Any, ReadGate] = weakref.WeakKeyDictionary()


def gate(node: Any) -> ReadGate:
    g = _gates.get(node)
    if g is None:
        limits = getattr(node, "read_limits", None)
        g = ReadGate(limits if isinstance(limits, ReadLimits) else ReadLimits())
        try:
            _gates[node] = g
        except TypeError:  # a node object that cannot be weakly referenced: a fresh gate
            pass
    return g


class _Budget:
    __slots__ = ("left",)

    def __init__(self, left: int) -> None:
        self.left = left


# the read-answer bytes left to the batch being dispatched (None: not in a batch)
_batch: contextvars.ContextVar[_Budget | None] = contextvars.ContextVar("read_batch",
                                                                      default=None)


def start_batch(ctx: CallContext) -> None:
    """Called by dispatch for a batch array: its read answers share `batch_bytes`."""
    _batch.set(_Budget(gate(ctx.node).limits.batch_bytes))


def note_refused(ctx: CallContext, n: int) -> None:
    """Count `n` calls refused `rate limited` (metrics: the ctx's hook) and log them sparsely."""
    hook = ctx.extra.get("on_rate_limited")
    if hook is not None:
        hook(n)
    gate(ctx.node).note_refused(client_ip(ctx.peer), ctx.peer, n)


def refuse_reads(ctx: CallContext, payload: Any) -> tuple[bool, Any]:
    """(True, answer) if `payload` (one call or a non-empty batch) is only read calls and its
    client's bucket is empty: one `rate limited` error per call (none for a notification),
    built without dispatch; counted and logged (note_refused). Else (False, None)."""
    calls = payload if isinstance(payload, list) else [payload]
    for obj in calls:
        if not isinstance(obj, dict) or obj.get("method") not in READ_METHODS:
            return False, None
    err = gate(ctx.node).refusal(client_ip(ctx.peer))
    if err is None:
        return False, None
    if ctx.on_error is not None:
        for obj in calls:
            ctx.on_error(obj["method"], RATE_LIMITED)
    note_refused(ctx, len(calls))
    ctx.extra["refused_retry_after"] = err.data["retry_after"]
    out = [_response(_safe_id(obj), error=err) for obj in calls if "id" in obj]
    if isinstance(payload, list):
        return True, out or None
    return True, out[0] if out else None


def _slots(ctx: CallContext, per_connection: int) -> trio.CapacityLimiter:
    s = ctx.extra.get("read_slots")
    if s is None:
        s = ctx.extra["read_slots"] = trio.CapacityLimiter(per_connection)
    return s


async def fresh_enough(ctx: CallContext, min_height: int | None, max_lag_ms: int | None) -> None:
    """Raise stale_read unless the node can serve a read at `min_height` / `max_lag_ms`."""
    node = ctx.node
    if min_height and node.height() < min_height:
        if min_height - node.height() <= MIN_HEIGHT_WAIT_BLOCKS:
            await node.wait_height(min_height, MIN_HEIGHT_WAIT_S)
        h = node.height()
        if h < min_height:
            raise RPCError(STALE_READ, f"stale read: this node is at height {h}, below "
                           f"min_height {min_height}; retry, or ask another node",
                           {"height": h, "min_height": min_height, **_info(node)})
    if max_lag_ms is not None:
        info = _info(node)
        lag = info.get("lag_ms")
        if lag is None or lag > max_lag_ms or info.get("catching_up"):
            raise RPCError(STALE_READ, f"stale read: this node's last block is {lag} ms old "
                           f"(max_lag_ms {max_lag_ms})"
                           + (", and it is catching up" if info.get("catching_up") else "")
                           + "; ask another node", {"height": node.height(), **info})


def _budget(limits: ReadLimits, batch: _Budget | None) -> int:
    """The bytes the next read may answer (per answer, and what is left of its batch)."""
    budget = limits.answer_bytes if batch is None else min(limits.answer_bytes, batch.left)
    if budget <= 0:
        raise _batch_spent(limits)
    return budget


def _batch_spent(limits: ReadLimits) -> RPCError:
    return RPCError(TOO_LARGE, f"this batch's read answers reached its {limits.batch_bytes}"
                    "-byte budget; send the rest in another request",
                    {"batch_bytes": limits.batch_bytes})


def _info(node: Any) -> dict[str, Any]:
    fn = getattr(node, "read_info", None)
    if callable(fn):
        return dict(fn())
    return {"height": node.height(), "catching_up": False, "lag_ms": None}


async def guarded(ctx: CallContext, fresh: Any, run: Callable[[int], Awaitable[Any]],
                  point_reads: Callable[[Any], int] | None = None) -> Any:
    """Run one read under the limits (module doc). `fresh`: the params (min_height and
    max_lag_ms are read off it when present). `run(budget)` answers (result, its size in
    bytes, the height it was read at or None); `point_reads(result)`: how many whole records
    it read (charged a token each beyond the first; default one)."""
    g = gate(ctx.node)
    ip = client_ip(ctx.peer)
    err = g.refusal(ip)
    if err is not None:
        note_refused(ctx, 1)
        raise err
    await fresh_enough(ctx, getattr(fresh, "min_height", None),
                       getattr(fresh, "max_lag_ms", None))
    batch = _batch.get()
    _budget(g.limits, batch)  # refused at once, without waiting for a slot
    async with _slots(ctx, g.limits.per_connection):
        # again in the slot: a batch's calls all start at once and wait here, and what is
        # left is known only once the earlier answers are charged
        try:
            out, size, height = await run(_budget(g.limits, batch))
        except RPCError as err:
            # an answer, not a bug: dropped with its traceback, whose frames (in a cycle when
            # raised in a read worker) hold what the read built until the cyclic GC runs
            raise err.with_traceback(None) from None
        if batch is not None:
            if size > batch.left:  # reads running alongside took what was left
                raise _batch_spent(g.limits)
            batch.left -= size
    g.charge(ip, size, point_reads(out) if point_reads is not None else 1)
    if isinstance(out, dict):
        out["read_height"] = ctx.node.height() if height is None else height
        out["catching_up"] = bool(_info(ctx.node).get("catching_up"))
    return out
