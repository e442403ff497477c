"""Histories recorded from the real application pass the checker; a planted stale read in the
same recorded history is caught."""

from __future__ import annotations

import random

from bftnode.app import KVApplication, MemoryState, ops
from consensus import Request
from testnet.history import OK, VIOLATION, KvOp, check_kv, check_locks, events_to_history


def _record_kv_history(seed: int) -> list[KvOp]:
    """Clients submit put/get txs at random times; each tx commits in a later block; the
    client sees the answer a little after the block. Reads are range txs (linearizable)."""
    rng = random.Random(seed)
    app, state = KVApplication(), MemoryState()
    pending: list[tuple[float, str, str, bytes, bytes | None, Request]] = []
    history: list[KvOp] = []
    now, seq, height = 0.0, 0, 0
    for _ in range(120):
        for _ in range(rng.randrange(0, 4)):
            seq += 1
            key = rng.choice([b"x", b"y"])
            if rng.random() < 0.5:
                value = b"v%d" % seq
                pending.append((now + rng.random() * 5, f"c{seq % 5}", "put", key, value,
                                Request(b"c", seq, ops.put(key, value))))
            else:
                pending.append((now + rng.random() * 5, f"c{seq % 5}", "get", key, None,
                                Request(b"c", seq, ops.range_(key))))
        now += 10
        ready = [p for p in pending if p[0] <= now and rng.random() < 0.7]
        pending = [p for p in pending if p not in ready]
        height += 1
        eff = app.execute_block(state, height, int(now), [p[5] for p in ready])
        state.apply(eff.writes)
        for (invoke, proc, kind, key, value, _), (code, raw) in zip(
            ready, eff.results, strict=True
        ):
            assert code == 0
            if kind == "get":
                kvs = ops.decode_result(raw)["kvs"]
                value = kvs[0]["value"] if kvs else None
            history.append(KvOp(len(history), proc, kind, key, value, invoke,
                                now + rng.random() * 3))
    return history


def test_app_recorded_kv_histories_are_linearizable():
    for seed in range(5):
        h = _record_kv_history(seed)
        assert len(h) > 100
        assert check_kv(h)["result"] == OK


def test_a_stale_read_planted_in_a_recorded_history_is_caught():
    h = _record_kv_history(1)
    # find a get that observed a value, after which a later put to the same key completed,
    # then plant a get strictly after that put that returns the old value (values are unique)
    for g in h:
        newer = [p for p in h if p.op == "put" and p.key == g.key and p.invoke > g.complete
                 and p.value != g.value]
        if g.op == "get" and g.value is not None and newer:
            p = newer[0]
            stale = KvOp(len(h), "liar", "get", g.key, g.value, p.complete + 1, p.complete + 2)
            res = check_kv(h + [stale])
            assert res["result"] == VIOLATION and res["violations"][0]["key"] == g.key
            return
    raise AssertionError("no candidate for a stale read in the recorded history")


def test_app_lock_events_convert_to_a_valid_lock_history():
    app, state = KVApplication(), MemoryState()
    events, seq = [], 0

    def block(height, time, *txs):
        nonlocal seq
        reqs = []
        for client, op in txs:
            seq += 1
            reqs.append(Request(client, seq, op))
        eff = app.execute_block(state, height, time, reqs)
        state.apply(eff.writes)
        events.extend(eff.events)
        return [ops.decode_result(r) for _, r in eff.results]

    ids = [r["id"] for r in block(1, 1000, *[(c, ops.lease_grant(ttl_ms=300 * (i + 1)))
                                             for i, c in enumerate([b"A", b"B", b"C"])])]
    block(2, 1100, *[(c, ops.lock_acquire(b"L", lid)) for c, lid in zip([b"A", b"B", b"C"], ids,
                                                                         strict=True)])
    block(3, 1400)  # A's lease (deadline 1300) expires: B is granted
    block(4, 1800)  # B's lease (deadline 1600) expires: C is granted
    hist = events_to_history(events)
    assert [e["event"] for e in hist if e["type"] == "lock"] == [
        "grant", "request", "request", "expire", "grant", "expire", "grant"]
    assert check_locks(hist)["result"] == OK
    # planted: the history claims C was granted with a smaller token than B's
    bad = [dict(e) for e in hist]
    grants = [e for e in bad if e["type"] == "lock" and e["event"] == "grant"]
    grants[2]["token"] = grants[1]["token"] - 1
    assert "token-order" in [v["kind"] for v in check_locks(bad)["violations"]]
