"""Property tests: random blocks of ops (with time jumps that expire leases) against a small
reference model, plus the invariants the log-derived primitives promise.

Invariants: revisions strictly increase; fencing tokens strictly increase per lock; at most
one holder per lock; FIFO grant order; a lease never expires before its deadline and expires
at the first block past it; replaying the same blocks gives identical effects.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from app_chain import Chain
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from bftnode.app import AppError, KVApplication, MemoryState, ops
from bftnode.app.errors import (
    COMPACTED,
    CONFLICT,
    FUTURE_REVISION,
    NOT_FOUND,
    OK,
    PERMISSION,
)
from testnet.history import check_locks, events_to_history

CLIENTS = [b"A", b"B", b"C"]
KEYS = [b"a", b"b", b"c"]
LOCKS = [b"x", b"y"]


# ---------------------------------------------------------------- the reference model


@dataclass
class Model:
    """The simplest thing that could be right: dicts and lists, one revision per change."""

    rev: int = 0
    compacted: int = 0
    kv: dict = field(default_factory=dict)  # key -> (value, create, mod, version, lease)
    snapshots: dict = field(default_factory=lambda: {0: {}})
    leases: dict = field(default_factory=dict)  # id -> [owner, ttl, deadline]
    ever_leased: list = field(default_factory=list)
    locks: dict = field(default_factory=dict)  # name -> [holder (lease, owner, token)|None, queue]

    def _snap(self):
        self.snapshots[self.rev] = dict(self.kv)

    # -- primitive changes at revision `r` (the caller bumps self.rev)
    def _put(self, r, k, v, lease):
        prev = self.kv.get(k)
        self.kv[k] = (v, prev[1] if prev else r, r, prev[3] + 1 if prev else 1, lease)

    def _drop_lease(self, lid, r):
        for lk in self.locks.values():
            holder, queue = lk
            if holder and holder[0] == lid:
                lk[0] = None
                if queue:
                    w = queue.pop(0)
                    lk[0] = (w[0], w[1], r)
            else:
                lk[1] = [w for w in queue if w[0] != lid]
        for k in [k for k, rec in self.kv.items() if rec[4] == lid]:
            del self.kv[k]
        del self.leases[lid]

    def block(self, time, raw, resolve):
        """Expire due leases, then run each tx (its args resolved against the state it sees).
        Returns [(client, resolved spec, (code, result))]."""
        for lid in sorted(self.leases, key=lambda i: (self.leases[i][2], i)):
            if self.leases[lid][2] < time:
                self.rev += 1
                self._drop_lease(lid, self.rev)
                self._snap()
        out = []
        for client, spec in raw:
            spec = resolve(self, client, spec)
            out.append((client, spec, self.tx(time, client, spec)))
        return out

    def tx(self, time, client, spec):
        kind, args = spec[0], spec[1:]
        r = self.rev + 1
        code, res, changed = getattr(self, "op_" + kind)(r, time, client, *args)
        if code == OK and changed:
            self.rev = r
            self._snap()
        return code, res

    def op_put(self, r, time, client, k, v, lease):
        if lease and lease not in self.leases:
            return NOT_FOUND, None, False
        self._put(r, k, v, lease)
        return OK, {"revision": r}, True

    def op_delete(self, r, time, client, k):
        if k not in self.kv:
            return OK, {"deleted": 0, "revision": r - 1}, False
        del self.kv[k]
        return OK, {"deleted": 1, "revision": r}, True

    def op_txn(self, r, time, client, k, version, v, k2):
        if self.kv.get(k, (0, 0, 0, 0))[3] == version:
            self._put(r, k, v, 0)
            return OK, {"succeeded": True, "revision": r}, True
        if k2 in self.kv:
            del self.kv[k2]
            return OK, {"succeeded": False, "revision": r}, True
        return OK, {"succeeded": False, "revision": r - 1}, False

    def op_range(self, r, time, client, revision):
        rev = revision or self.rev
        if rev > self.rev:
            return FUTURE_REVISION, None, False
        if rev < self.compacted:
            return COMPACTED, None, False
        snap = self.snapshots[rev]
        return OK, {"kvs": [(k, snap[k][0], snap[k][2]) for k in sorted(snap)]}, False

    def op_compact(self, r, time, client, revision):
        if revision > self.rev:
            return FUTURE_REVISION, None, False
        if revision <= self.compacted:
            return COMPACTED, None, False
        self.compacted = revision
        return OK, {}, False

    def op_grant(self, r, time, client, ttl):
        self.leases[r] = [client, ttl, time + ttl]
        self.ever_leased.append(r)
        return OK, {"id": r, "deadline_ms": time + ttl}, True

    def _owned(self, client, lid):
        if lid not in self.leases:
            return NOT_FOUND
        return OK if self.leases[lid][0] == client else PERMISSION

    def op_keepalive(self, r, time, client, lid):
        if (code := self._owned(client, lid)) != OK:
            return code, None, False
        self.leases[lid][2] = time + self.leases[lid][1]
        return OK, {"deadline_ms": self.leases[lid][2]}, True

    def op_revoke(self, r, time, client, lid):
        if (code := self._owned(client, lid)) != OK:
            return code, None, False
        n = sum(1 for rec in self.kv.values() if rec[4] == lid)
        self._drop_lease(lid, r)
        return OK, {"deleted_keys": n}, True

    def op_acquire(self, r, time, client, name, lid, wait):
        if (code := self._owned(client, lid)) != OK:
            return code, None, False
        lk = self.locks.setdefault(name, [None, []])
        holder, queue = lk
        if holder and holder[0] == lid:
            return OK, {"acquired": True, "token": holder[2]}, False
        for pos, w in enumerate(queue):
            if w[0] == lid:
                return OK, {"acquired": False, "position": pos + 1}, False
        if holder is None:
            lk[0] = (lid, client, r)
            return OK, {"acquired": True, "token": r}, True
        if not wait:
            return OK, {"acquired": False}, False
        queue.append((lid, client))
        return OK, {"acquired": False, "position": len(queue)}, True

    def op_release(self, r, time, client, name, token):
        holder, queue = self.locks.get(name, [None, []])
        if holder is None:
            return NOT_FOUND, None, False
        if holder[2] != token:
            return CONFLICT, None, False
        if holder[1] != client:
            return PERMISSION, None, False
        lk = self.locks[name]
        lk[0] = None
        if queue:
            w = queue.pop(0)
            lk[0] = (w[0], w[1], r)
        return OK, {"next_token": lk[0][2] if lk[0] else 0}, True


# ---------------------------------------------------------------- random blocks

_acquire = st.tuples(st.just("acquire"), st.sampled_from(LOCKS), st.integers(0, 3), st.just(True))
_grant = st.tuples(st.just("grant"), st.integers(1, 200).map(lambda k: 100 * k))
_release = st.tuples(st.just("release"), st.sampled_from(LOCKS), st.integers(0, 2))
tx_spec = st.one_of(
    # locks and leases weighted up so FIFO queues of several waiters are common
    _acquire, _acquire, _acquire, _grant, _grant, _release,
    st.tuples(st.just("put"), st.sampled_from(KEYS), st.binary(max_size=2), st.integers(0, 6)),
    st.tuples(st.just("delete"), st.sampled_from(KEYS)),
    st.tuples(st.just("txn"), st.sampled_from(KEYS), st.integers(0, 3), st.binary(max_size=1),
              st.sampled_from(KEYS)),
    st.tuples(st.just("range"), st.integers(0, 15)),
    st.tuples(st.just("compact"), st.integers(1, 40)),
    st.tuples(st.just("keepalive"), st.integers(0, 6)),
    st.tuples(st.just("revoke"), st.integers(3, 6)),  # mostly someone else's or a dead lease
    st.tuples(st.just("acquire"), st.sampled_from(LOCKS), st.integers(0, 6), st.booleans()),
    st.tuples(st.just("release"), st.sampled_from(LOCKS), st.integers(0, 2)),
)
block_spec = st.tuples(
    # coarse times and TTLs so block times often land exactly on a lease deadline
    st.one_of(st.integers(1, 3), st.integers(1, 20)).map(lambda k: 100 * k),  # time advance
    st.lists(st.tuples(st.sampled_from(CLIENTS), tx_spec), max_size=8),
)


def _resolve(model: Model, client: bytes, spec):
    """Turn index-valued args into real lease ids / tokens: mostly the client's own live
    leases, sometimes someone else's, a dead one or a bogus one."""
    kind = spec[0]

    def lease_at(i: int) -> int:
        own = [lid for lid, v in model.leases.items() if v[0] == client]
        if i < 4 and own:
            return own[i % len(own)]
        if i < 5 and model.ever_leased:
            return model.ever_leased[i % len(model.ever_leased)]
        return 999

    if kind == "put":
        return ("put", spec[1], spec[2], lease_at(spec[3]) if spec[3] else 0)
    if kind in ("keepalive", "revoke"):
        return (kind, lease_at(spec[1]))
    if kind == "acquire":
        return ("acquire", spec[1], lease_at(spec[2]), spec[3])
    if kind == "release":
        holder = model.locks.get(spec[1], [None])[0]
        token = holder[2] if holder else 1
        return ("release", spec[1], [token, max(1, token - 1), token + 1][spec[2]])
    return spec


def _op_bytes(spec) -> bytes:
    kind = spec[0]
    if kind == "put":
        return ops.put(spec[1], spec[2], lease=spec[3])
    if kind == "delete":
        return ops.delete(spec[1])
    if kind == "txn":
        _, k, version, v, k2 = spec
        return ops.txn([ops.compare(k, "version", "=", version)], [ops.put_op(k, v)],
                       [ops.delete_op(k2)])
    if kind == "range":
        return ops.range_(b"", prefix=True, revision=spec[1])
    if kind == "compact":
        return ops.compact(spec[1])
    if kind == "grant":
        return ops.lease_grant(ttl_ms=spec[1])
    if kind == "keepalive":
        return ops.lease_keepalive(spec[1])
    if kind == "revoke":
        return ops.lease_revoke(spec[1])
    if kind == "acquire":
        _, name, lid, wait = spec
        return ops.lock_acquire(name, lid) if wait else ops.lock_try_acquire(name, lid)
    return ops.lock_release(spec[1], spec[2])


def _comparable(kind: str, res: dict) -> dict:
    if kind == "range":
        return {"kvs": [(kv["key"], kv["value"], kv["mod_revision"]) for kv in res["kvs"]]}
    keep = {
        "put": ("revision",), "delete": ("deleted", "revision"), "txn": ("succeeded", "revision"),
        "compact": (), "grant": ("id", "deadline_ms"), "keepalive": ("deadline_ms",),
        "revoke": ("deleted_keys",), "acquire": ("acquired", "token", "position"),
        "release": ("next_token",),
    }[kind]
    return {k: res[k] for k in keep if k in res}


def _check_state(chain: Chain, model: Model) -> None:
    assert chain.query("revision")["revision"] == model.rev
    got = chain.query("kv_range", key="", prefix=True)["kvs"]
    assert [(kv["key"], kv["value"], kv["create_revision"], kv["mod_revision"], kv["version"],
             kv["lease"]) for kv in got] == [(k, *model.kv[k]) for k in sorted(model.kv)]
    for name in LOCKS:
        s = chain.query("lock_status", name=name)
        holder, queue = model.locks.get(name, [None, []])
        assert (s["holder"]["lease"], s["holder"]["token"]) == (holder[0], holder[2]) if (
            holder) else s["holder"] is None
        assert [w["lease"] for w in s["waiters"]] == [w[0] for w in queue]
    for lid in model.ever_leased:
        try:
            ttl = chain.query("lease_ttl", id=lid)
        except AppError as exc:
            assert exc.code == NOT_FOUND and lid not in model.leases
        else:
            assert ttl["deadline_ms"] == model.leases[lid][2]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.integers(5, 100).map(lambda k: 100 * k), min_size=3, max_size=3),
    st.lists(block_spec, min_size=3, max_size=30),
)
def test_random_blocks_match_the_model_and_keep_the_invariants(ttls, blocks_):
    # Every client starts with a lease, so locks see contention from the first random block.
    blocks = [(100, [(c, ("grant", ttl)) for c, ttl in zip(CLIENTS, ttls, strict=True)])]
    blocks += blocks_
    chain, model = Chain(), Model()
    all_events, block_times, last_rev = [], [], 0
    for dt, raw in blocks:
        time = chain.time_ms + dt
        expected = model.block(time, raw, _resolve)
        b = chain.block(*[(c, _op_bytes(spec)) for c, spec, _ in expected], at=time)
        for (_client, spec, (mcode, mres)), (code, res) in zip(expected, b.results, strict=True):
            assert code == mcode, (spec, res)
            if code == OK:
                assert _comparable(spec[0], res) == mres, spec
        _check_state(chain, model)
        # revisions strictly increase across the log
        for e in b.events:
            assert e.revision >= last_rev
        revs = [e.revision for e in b.events]
        assert revs == sorted(revs) and (not revs or revs[0] > last_rev)
        last_rev = model.rev
        block_times.append(time)
        all_events.extend(b.events)
        event(f"max waiters >= {max(len(q) for _, q in model.locks.values()) if model.locks else 0}")

    # lock invariants (overlap, token order, FIFO, expiry vs deadline) via the history checker
    report = check_locks(events_to_history(all_events))
    assert report["result"] == "ok", report["violations"]
    # leases: never before the deadline, and at the first block past it
    for e in all_events:
        if e.kind == "lease_expired":
            assert e.deadline_ms < e.time_ms
            i = block_times.index(e.time_ms)
            assert i == 0 or block_times[i - 1] <= e.deadline_ms
    # determinism: replaying the same blocks on a fresh state gives identical effects
    app2, state2 = KVApplication(), MemoryState()
    replay = []
    for height, time, reqs in chain.log:
        eff = app2.execute_block(state2, height, time, reqs)
        state2.apply(eff.writes)
        replay.append(eff)
    assert state2.items() == chain.state.items()
    first = KVApplication().execute_block(MemoryState(), *chain.log[0])
    assert first == replay[0]
