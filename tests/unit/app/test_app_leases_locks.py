"""Leases on agreed time, FIFO locks with fencing tokens, elections."""

from __future__ import annotations

from bftnode.app import ops
from bftnode.app.errors import CONFLICT, NOT_FOUND, PERMISSION

A, B, C = b"alice", b"bob", b"carol"


def _grant(chain, client, ttl_ms=1000):
    return chain.block((client, ops.lease_grant(ttl_ms=ttl_ms))).ok()["id"]


# ---------------------------------------------------------------- leases


def test_lease_id_is_the_grant_revision_and_deadline_is_block_time_plus_ttl(chain):
    b = chain.block(ops.put(b"x", b"1"), ops.lease_grant(ttl=1.5), at=10_000)
    assert b.ok(1) == {"id": 2, "ttl_ms": 1500, "deadline_ms": 11_500, "revision": 2}
    ttl = chain.query("lease_ttl", id=2)
    assert ttl["remaining_ms"] == 1500 and ttl["owner"] == b"alice"


def test_a_lease_expires_at_the_first_block_past_its_deadline_not_before(chain):
    lease = chain.block(ops.lease_grant(ttl_ms=500), at=1_000).ok()["id"]
    chain.block(ops.put(b"k", b"v", lease=lease), at=1_200)
    b = chain.block(at=1_500)  # time == deadline: still live
    assert b.events == () and chain.query("kv_get", key="k")["found"]
    b = chain.block(at=1_501)
    assert b.kinds() == ["delete", "lease_expired"]
    assert all(e.tx_index == -1 and e.revision == 3 for e in b.events)
    assert not chain.query("kv_get", key="k")["found"]
    code, _ = chain.block(ops.lease_keepalive(lease)).results[0]
    assert code == NOT_FOUND


def test_keepalive_moves_the_deadline_from_the_current_block_time(chain):
    lease = chain.block(ops.lease_grant(ttl_ms=500), at=1_000).ok()["id"]
    assert chain.block(ops.lease_keepalive(lease), at=1_400).ok()["deadline_ms"] == 1_900
    assert chain.block(at=1_800).events == ()
    assert chain.block(at=1_901).kinds() == ["lease_expired"]


def test_expiries_run_before_the_blocks_txs_in_deadline_order(chain):
    l1 = chain.block(ops.lease_grant(ttl_ms=300), at=1_000).ok()["id"]
    l2 = chain.block(ops.lease_grant(ttl_ms=100), at=1_100).ok()["id"]
    b = chain.block(ops.lease_keepalive(l1), at=5_000)
    assert [e.lease for e in b.events] == [l2, l1]
    assert b.results[0][0] == NOT_FOUND  # too late: the lease expired at the block start


def test_revoke_deletes_attached_keys_and_only_the_owner_may_touch_a_lease(chain):
    lease = _grant(chain, A)
    chain.block(ops.put(b"k1", b"v", lease=lease), ops.put(b"k2", b"v", lease=lease))
    assert chain.block((B, ops.lease_revoke(lease))).results[0][0] == PERMISSION
    assert chain.block((B, ops.lease_keepalive(lease))).results[0][0] == PERMISSION
    assert chain.block((A, ops.lease_revoke(lease))).ok()["deleted_keys"] == 2
    assert chain.query("kv_range", key="k", prefix=True)["count"] == 0


def test_rewriting_a_key_without_its_lease_detaches_it(chain):
    lease = _grant(chain, A, ttl_ms=100)
    chain.block(ops.put(b"k", b"v1", lease=lease))
    chain.block(ops.put(b"k", b"v2"))
    chain.block(dt=1_000)
    assert chain.query("kv_get", key="k")["value"] == b"v2"


# ---------------------------------------------------------------- locks


def test_a_free_lock_is_granted_with_a_fencing_token_from_the_log(chain):
    lease = _grant(chain, A)
    b = chain.block((A, ops.lock_acquire(b"L", lease)))
    assert b.ok() == {"acquired": True, "token": 2, "revision": 2}
    st = chain.query("lock_status", name="L", token=2)
    assert st["held"] is True and st["holder"]["lease"] == lease
    again = chain.block((A, ops.lock_acquire(b"L", lease))).ok()
    assert again["already"] is True and again["revision"] == 2  # idempotent, no new revision


def test_waiters_are_granted_in_fifo_order_with_increasing_tokens(chain):
    la, lb, lc = _grant(chain, A), _grant(chain, B), _grant(chain, C)
    chain.block((A, ops.lock_acquire(b"L", la)))
    b = chain.block((C, ops.lock_acquire(b"L", lc)), (B, ops.lock_acquire(b"L", lb)))
    assert [r["position"] for _, r in b.results] == [1, 2]
    t1 = chain.query("lock_status", name="L")["holder"]["token"]
    b = chain.block((A, ops.lock_release(b"L", t1)))
    assert b.kinds() == ["lock_released", "lock_granted"]
    t2 = b.events[1].token
    assert b.events[1].lease == lc and t2 > t1 and b.ok()["next_token"] == t2
    b = chain.block((C, ops.lock_release(b"L", t2)))
    assert b.events[1].lease == lb and b.events[1].token > t2


def test_try_acquire_fails_on_a_held_lock_without_a_new_revision(chain):
    la, lb = _grant(chain, A), _grant(chain, B)
    chain.block((A, ops.lock_acquire(b"L", la)))
    rev = chain.query("revision")["revision"]
    b = chain.block((B, ops.lock_try_acquire(b"L", lb)))
    assert b.ok()["acquired"] is False and b.ok()["revision"] == rev
    assert chain.query("lock_status", name="L")["waiters"] == []


def test_when_the_holders_lease_expires_the_next_waiter_is_granted_in_the_same_transition(
    chain,
):
    la = chain.block((A, ops.lease_grant(ttl_ms=500)), at=1_000).ok()["id"]
    lb = chain.block((B, ops.lease_grant(ttl_ms=10_000)), at=1_100).ok()["id"]
    t1 = chain.block((A, ops.lock_acquire(b"L", la))).ok()["token"]
    chain.block((B, ops.lock_acquire(b"L", lb)))
    b = chain.block(at=1_501)
    assert b.kinds() == ["lock_lost", "lock_granted", "lease_expired"]
    assert len({e.revision for e in b.events}) == 1
    t2 = b.events[1].token
    assert t2 > t1 and chain.query("lock_status", name="L", token=t1)["held"] is False
    assert chain.query("lock_status", name="L", token=t2)["held"] is True
    # The old holder's fenced write is refused: its token is stale.
    code, res = chain.block((A, ops.lock_release(b"L", t1))).results[0]
    assert code == CONFLICT and "lost" in res["error"]


def test_only_the_holder_may_release_and_waiters_may_cancel(chain):
    la, lb = _grant(chain, A), _grant(chain, B)
    t = chain.block((A, ops.lock_acquire(b"L", la))).ok()["token"]
    chain.block((B, ops.lock_acquire(b"L", lb)))
    assert chain.block((B, ops.lock_release(b"L", t))).results[0][0] == PERMISSION
    assert chain.block((A, ops.lock_acquire(b"L", lb))).results[0][0] == PERMISSION
    assert chain.block((B, ops.lock_cancel(b"L", lb))).ok()["cancelled"] is True
    b = chain.block((A, ops.lock_release(b"L", t)))
    assert b.kinds() == ["lock_released"]
    assert chain.query("lock_status", name="L")["locked"] is False


def test_a_waiter_whose_lease_ends_leaves_the_queue(chain):
    la, lb, lc = _grant(chain, A), _grant(chain, B), _grant(chain, C)
    t = chain.block((A, ops.lock_acquire(b"L", la))).ok()["token"]
    chain.block((B, ops.lock_acquire(b"L", lb)), (C, ops.lock_acquire(b"L", lc)))
    assert chain.block((B, ops.lease_revoke(lb))).kinds() == ["lock_dequeued", "lease_revoked"]
    b = chain.block((A, ops.lock_release(b"L", t)))
    assert b.events[-1].kind == "lock_granted" and b.events[-1].lease == lc


# ---------------------------------------------------------------- elections


def test_election_leader_is_the_holder_with_its_value(chain):
    la, lb = _grant(chain, A), _grant(chain, B)
    b = chain.block((A, ops.campaign(b"E", la, b"node-a")), (B, ops.campaign(b"E", lb, b"node-b")))
    ta = b.ok(0)["token"]
    assert [e.kind for e in b.events] == ["lock_granted", "leader_changed", "lock_queued"]
    assert chain.query("election_leader", name="E")["leader"] == b"node-a"
    b = chain.block((A, ops.proclaim(b"E", ta, b"node-a:v2")))
    assert b.events[0].kind == "leader_changed" and b.events[0].value == b"node-a:v2"
    b = chain.block((A, ops.resign(b"E", ta)))
    assert [e.value for e in b.events if e.kind == "leader_changed"] == [b"node-b"]
    leader = chain.query("election_leader", name="E")
    assert leader["leader"] == b"node-b" and leader["token"] > ta
    assert chain.query("lock_status", name="E")["locked"] is False  # separate namespaces
