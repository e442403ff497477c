"""Paged listings of locks, elections and leases (the explorer's tables; `lock_list`,
`lease_list` in docs/rpc.md). Each page walks one keyspace prefix from just after a cursor, so
a page costs at most `limit` records plus one. Imports: stdlib, storage.interface, bftnode.app.
"""

from __future__ import annotations

from storage.interface import StateReader

from . import layout as L
from . import leases, locks

MAX_LIST = 100


def _limit(p: dict) -> int:
    n = int(p.get("limit") or MAX_LIST)
    if not 1 <= n <= MAX_LIST:
        raise ValueError(f"limit must be in 1..{MAX_LIST}")
    return n


def lock_list(state: StateReader, p: dict, info: dict) -> dict:
    """{kind: "lock" | "election", after?: name bytes, limit?} -> {items: [lock_status...],
    next: the last name of a full page (pass it as `after`) or None}."""
    kind = L.ELECTION_KIND if p.get("kind") == "election" else L.LOCK_KIND
    prefix = kind + b"/"
    after = p.get("after") or b""
    if isinstance(after, str):
        after = after.encode("utf-8")
    limit = _limit(p)
    items: list[dict] = []
    start = prefix + after + b"\x00" if after else None
    for key, value in state.iterate(prefix, start=start):  # each record read once
        if len(items) == limit:
            break
        items.append(locks.status_of(key[len(prefix):], L.unpack(value)))
    nxt = items[-1]["name"] if len(items) == limit else None
    return {"items": items, "next": nxt, **info}


def lease_list(state: StateReader, p: dict, info: dict) -> dict:
    """{after?: lease id, limit?} -> {items: [lease_ttl...], next: last id of a full page}."""
    after = int(p.get("after") or 0)
    limit = _limit(p)
    items: list[dict] = []
    start = L.LEASE + L.u64(after + 1) if after else None
    for key, value in state.iterate(L.LEASE, start=start):  # each record read once
        if len(items) == limit:
            break
        if len(key) != len(L.LEASE) + 8:
            continue
        items.append(leases.ttl_of(L.from_u64(key[len(L.LEASE):]), L.unpack(value),
                                   info["time_ms"]))
    nxt = items[-1]["id"] if len(items) == limit else None
    return {"items": items, "next": nxt, **info}
