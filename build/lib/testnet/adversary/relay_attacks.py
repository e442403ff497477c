"""One validator relaying client requests: op bytes no client library builds, validly
client-signed (`relay-poison`: execution must give each an error result, alike on every
replica), and heavy legal load on its share of the pool (`relay-flood`). The client keys
are deterministic, so a harness can recompute the requests and look up their results.
"""

from __future__ import annotations

import hashlib
from typing import Any

import msgspec

from consensus.auth import Ed25519Signer, FastSigner, sign_request
from consensus.events import ClientRequests, Send
from consensus.messages import Forward, Request
from consensus.replica import MAX_FORWARD_REQUESTS
from consensus.types import REQUEST_OVERHEAD_BYTES

from .context import _Periodic
from .wire_attacks import _nested

# ---------------------------------------------------------------- one validator vs. execution

_pack = msgspec.msgpack.encode


def _map(*pairs: tuple[Any, Any] | bytes) -> bytes:
    """A msgpack map from (key, value) pairs, each encoded, or raw bytes (one encoded key and
    value, e.g. a deep value msgspec would refuse to build)."""
    body = b"".join(p if isinstance(p, bytes) else _pack(p[0]) + _pack(p[1]) for p in pairs)
    n = len(pairs)
    return (bytes([0x80 | n]) if n < 16 else b"\xde" + n.to_bytes(2, "big")) + body


def poison_ops(depth: int, max_bytes: int) -> list[tuple[str, bytes]]:
    """(variant, op bytes) a client could sign but no client library builds: each at most
    `max_bytes` (a request the replicas admit), none a valid op. Deep nesting (`depth` levels,
    maps or arrays, under an unknown field after or before the "op" tag), integers past what
    a field holds (uint64 max, int64 min, a 5,000-digit decimal string), wrong types, unknown
    ops, not a map at all, invalid UTF-8, truncated and trailing bytes, too many items."""
    room = max(16, max_bytes - 64)
    levels = min(depth, room // 2 - 8)  # a map level takes 2 bytes, an array level 1
    deep_map, deep_arr = _nested(levels, maps=True), _nested(min(depth, room - 16), maps=False)
    put = (("op", "put"), ("key", b"k"), ("value", b"v"))
    many = min(100_000, room - 32)
    ops = [
        ("deep-map", _map(*put, _pack("x-unknown") + deep_map)),
        ("deep-map-before-tag", _map(_pack("x-unknown") + deep_map, *put)),
        ("deep-array", _map(*put, _pack("x-unknown") + deep_arr)),
        ("deep-evidence", _map(("op", "evidence"), ("accused", 0), ("kind", "equivocation"),
                               _pack("x-unknown") + deep_arr)),
        ("huge-revision", _map(("op", "compact"), ("revision", (1 << 64) - 1))),
        ("huge-ttl", _map(("op", "lease_grant"), ("ttl_ms", (1 << 64) - 1))),
        ("negative-lease", _map(*put, ("lease", -(1 << 63)))),
        ("digit-string-revision", _map(("op", "compact"), ("revision", "9" * 5_000))),
        ("nan-revision", _map(("op", "compact"), ("revision", float("nan")))),
        ("wrong-types", _map(("op", "put"), ("key", 12), ("value", [1, 2]))),
        ("txn-wrong-shape", _map(("op", "txn"), ("success", {"put": 1}), ("compare", 7))),
        ("op-not-a-string", _map(("op", 7), ("key", b"k"))),
        ("unknown-op", _map(("op", "transfer_all"), ("to", b"x"))),
        ("not-a-map", _pack([1, 2, 3])),
        ("nil", b"\xc0"),
        ("empty", b""),
        ("invalid-utf8", b"\x81\xa2op\xa3\xff\xfe\xfd"),
        ("truncated", _map(*put)[:-3]),
        ("trailing", _map(*put) + b"\xc0"),
        ("many-items", _map(*put, _pack("x-unknown") + b"\xdd" + many.to_bytes(4, "big")
                            + b"\xc0" * many)),
    ]
    return [(name, op) for name, op in ops if len(op) <= max_bytes]


def relay_poison_signer(replica_id: int, fast: bool = False) -> Any:
    """The client key a `relay-poison` replica signs with (deterministic, so a test harness can
    recompute the requests and look up their results)."""
    seed = hashlib.blake2b(f"relay-poison/{replica_id}".encode(), digest_size=32).digest()
    return FastSigner(seed) if fast else Ed25519Signer(seed)


class RelayPoison(_Periodic):
    """Client-signed requests whose op bytes no client library builds (`poison_ops`: a map
    nested `depth` deep under an unknown field, huge integers, wrong types, unknown ops, …),
    signed with a client key of its own (`relay_poison_signer`) for the chain's domain, so
    they pass every check before ordering. Every `every_ms` one round of them, fresh request
    seqs, in one signed FORWARD to every replica; as primary it also proposes them. Honest
    replicas order and execute them: each must get an error result, on every replica alike,
    and nobody may stop."""

    name = "relay-poison"

    def __init__(self, depth: int = 10_000, every_ms: int | None = None) -> None:
        super().__init__(every_ms)
        if depth < 1:
            raise ValueError("relay-poison:DEPTH needs DEPTH >= 1")
        self.depth = depth
        self.round = 0
        self._ops: list[tuple[str, bytes]] | None = None

    def ops(self, max_bytes: int) -> list[tuple[str, bytes]]:
        if self._ops is None:
            self._ops = poison_ops(self.depth, max_bytes)
        return self._ops

    def round_requests(self, domain: bytes, signer: Any, k: int,
                       max_bytes: int) -> tuple[Request, ...]:
        """Round `k`'s requests (request seqs k*len(ops)+1 …), signed by `signer`."""
        ops = self.ops(max_bytes)
        first = k * len(ops)
        return tuple(sign_request(domain, signer, Request(b"", first + i + 1, op))
                     for i, (_, op) in enumerate(ops))

    def rewrite(self, ctx, event, out):
        if not self.due(ctx, event, out):
            return out
        signer = relay_poison_signer(ctx.replica_id, isinstance(ctx.auth.signer, FastSigner))
        reqs = self.round_requests(ctx.auth.domain, signer, self.round,
                                   ctx.config.max_request_bytes)
        self.round += 1
        fwd = ctx.sign(Forward(requests=reqs, replica=ctx.replica_id))
        out.send = list(out.send) + [Send(None, fwd)]
        if ctx.is_primary():
            extra = ctx.inner.step(ClientRequests(reqs))  # admitted and proposed like a client's
            extra.reply = []  # no client waits for them here
            out.extend(extra)
        return out

    def __repr__(self) -> str:
        return self._spec(self.depth)


# ---------------------------------------------------------------- one validator vs. the pool

RELAY_FLOOD_KEYS = 256  # client keys a relay-flood replica cycles through
RELAY_FLOOD_VALUE_BYTES = 2048
FORWARD_CHUNK_BYTES = 1024 * 1024  # what an honest replica puts in one FORWARD (at most)


def relay_flood_signer(replica_id: int, k: int, fast: bool = False) -> Any:
    """Client key `k` (0 <= k < RELAY_FLOOD_KEYS) of a `relay-flood` replica: deterministic,
    so a harness can recompute the requests and look them up."""
    seed = hashlib.blake2b(f"relay-flood/{replica_id}/{k}".encode(), digest_size=32).digest()
    return FastSigner(seed) if fast else Ed25519Signer(seed)


def relay_flood_op(replica_id: int, k: int, n: int) -> bytes:
    """The put of request `n` of client key `k`: a legal 2 KB put, as `ops.put` builds it
    (a msgpack map op/key/value), its key per client key, its value naming the request."""
    value = n.to_bytes(8, "big") + b"\xa5" * (RELAY_FLOOD_VALUE_BYTES - 8)
    return _map(("op", "put"), ("key", f"relay-flood/{replica_id}/{k}".encode()),
                ("value", value))


class RelayFlood(_Periodic):
    """Heavy legal load from one validator (issue 36c): every `every_ms`, `per_tick` VALID
    client requests (2 KB puts, each signed for the chain's domain by one of RELAY_FLOOD_KEYS
    client keys of its own, `relay_flood_signer`, with fresh request seqs) in signed FORWARDs
    to every replica, split like an honest relay's (at most FORWARD_CHUNK_BYTES and
    MAX_FORWARD_REQUESTS each). Nothing is invalid, so nothing is evidence: an honest
    replica admits them on this relay's share of its pool (max_pending_bytes / n) and drops
    the rest, and its primary orders what it admitted next to its clients' requests. Honest
    clients' latency must stay close to what it is without the flood, with no view change."""

    name = "relay-flood"

    EVERY_MS = 20

    def __init__(self, per_tick: int = 100, every_ms: int | None = None) -> None:
        super().__init__(every_ms)
        if not 1 <= per_tick <= MAX_FORWARD_REQUESTS:
            raise ValueError(f"relay-flood:N needs 1 <= N <= {MAX_FORWARD_REQUESTS}")
        self.per_tick = per_tick
        self.sent = 0  # requests built so far: request i is key i % KEYS, seq i // KEYS + 1
        self._signers: dict[int, Any] = {}

    def request(self, domain: bytes, replica_id: int, i: int, fast: bool) -> Request:
        """Request number `i` of this replica's flood (deterministic)."""
        k, n = i % RELAY_FLOOD_KEYS, i // RELAY_FLOOD_KEYS + 1
        signer = self._signers.get(k)
        if signer is None:
            signer = self._signers[k] = relay_flood_signer(replica_id, k, fast)
        return sign_request(domain, signer, Request(b"", n, relay_flood_op(replica_id, k, n)))

    def rewrite(self, ctx, event, out):
        if not self.due(ctx, event, out):
            return out
        fast = isinstance(ctx.auth.signer, FastSigner)
        first, self.sent = self.sent, self.sent + self.per_tick
        reqs = [self.request(ctx.auth.domain, ctx.replica_id, i, fast)
                for i in range(first, self.sent)]
        sends = []
        chunk: list[Request] = []
        size = 0
        for req in reqs:
            if chunk and (len(chunk) == MAX_FORWARD_REQUESTS or size + len(req.op)
                          + REQUEST_OVERHEAD_BYTES > FORWARD_CHUNK_BYTES):
                sends.append(Send(None, ctx.sign(Forward(tuple(chunk), ctx.replica_id))))
                chunk, size = [], 0
            chunk.append(req)
            size += len(req.op) + REQUEST_OVERHEAD_BYTES
        if chunk:
            sends.append(Send(None, ctx.sign(Forward(tuple(chunk), ctx.replica_id))))
        out.send = list(out.send) + sends
        return out

    def __repr__(self) -> str:
        return self._spec(self.per_tick)


