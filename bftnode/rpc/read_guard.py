"""The bounds on RPC reads: per-client-IP token buckets, reads in flight per connection, the
byte budget of one answer and of one batch, read freshness (`min_height`, `max_lag_ms`) and
what every read answer carries (`read_height`, `catching_up`).

`guarded(ctx, fresh, run)` is the one path of every read method (bftnode.rpc.handlers): admit
(or `rate limited` with retry_after), check freshness (or `stale_read`), run the read with the
bytes it may answer (`run(budget)`; the node runs it in a read worker over a snapshot), then
charge the bucket and the batch by the answer's size. The limits are the node's
`read_limits` (bftnode.rpc.limits.ReadLimits, from its config), else the defaults.
Imports: stdlib, trio, bftnode.rpc.
"""

from __future__ import annotations

import contextvars
import time
import weakref
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from .errors import RATE_LIMITED, STALE_READ, TOO_LARGE, RPCError
from .limits import ReadLimits
from .registry import CallContext

MIN_HEIGHT_WAIT_S = 2.0  # a read asking for a height the node is about to reach waits this,
MIN_HEIGHT_WAIT_BLOCKS = 3  # ... when it is at most this many blocks ahead (else: at once)
COST_BYTES = 16 * 1024  # a read costs one token, plus one per this many bytes of answer
MAX_BUCKETS = 10_000  # client IPs tracked; full (idle) buckets are forgotten past this


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

    def admit(self, ip: str) -> None:
        """Raise `rate limited` unless `ip` has a whole token."""
        lim = self.limits
        tokens = self._bucket(ip).refill(lim.rate, lim.burst, self.clock())
        if tokens < 1.0:
            retry = round((1.0 - tokens) / lim.rate, 3)
            raise RPCError(RATE_LIMITED, f"rate limited: this client address has used its read "
                           f"budget ({lim.rate:g} tokens/s, burst {lim.burst}); retry after "
                           f"{retry:g}s", {"retry_after": retry})

    def charge(self, ip: str, answer_bytes: int) -> None:
        self._bucket(ip).tokens -= 1 + answer_bytes // COST_BYTES


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


def client_ip(peer: str) -> str:
    host = peer.rsplit(":", 1)[0] if ":" in peer else peer
    return host.strip("[]") or "?"


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


def _info(node: Any) -> dict[str, Any]:
    fn = getattr(node, "read_info", None)
    if callable(fn):
        return dict(fn())
    return {"height": node.height(), "catching_up": False, "lag_ms": None}


async def guarded(ctx: CallContext, fresh: Any, run: Callable[[int], Awaitable[Any]]) -> Any:
    """Run one read under the limits (module doc). `fresh`: the params (min_height and
    max_lag_ms are read off it when present). `run(budget)` answers (result, its size in
    bytes, the height it was read at or None)."""
    g = gate(ctx.node)
    ip = client_ip(ctx.peer)
    g.admit(ip)
    await fresh_enough(ctx, getattr(fresh, "min_height", None),
                       getattr(fresh, "max_lag_ms", None))
    batch = _batch.get()
    budget = g.limits.answer_bytes if batch is None else min(g.limits.answer_bytes, batch.left)
    if budget <= 0:
        raise RPCError(TOO_LARGE, f"this batch's read answers reached its "
                       f"{g.limits.batch_bytes}-byte budget; send the rest in another "
                       "request", {"batch_bytes": g.limits.batch_bytes})
    async with _slots(ctx, g.limits.per_connection):
        out, size, height = await run(budget)
    g.charge(ip, size)
    if batch is not None:
        batch.left -= size
    if isinstance(out, dict):
        out["read_height"] = ctx.node.height() if height is None else height
        out["catching_up"] = bool(_info(ctx.node).get("catching_up"))
    return out
