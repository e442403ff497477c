"""Quotas (bftnode.app.quotas): the usage records always equal a recount of the live keys and
leases, whatever ops run (puts, overwrites by another client, deletes by anyone, prefix
deletes, txns, lease grant/revoke/expiry with attached keys); each limit refuses with code 12
QUOTA and changes nothing; lock and election entries count as keys; the genesis validates
`app.quotas`."""

from __future__ import annotations

import dataclasses

import pytest
from app_chain import Chain
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bftnode.app import KVApplication, ops, quotas
from bftnode.app.errors import CODE_NAMES, QUOTA
from bftnode.genesis import GenesisError, make_genesis

A, B, C = b"A" * 32, b"B" * 32, b"C" * 32


def limited(**caps) -> Chain:
    return Chain(app=KVApplication(params={"quotas": caps, "admins": []}))


def usage(chain: Chain, client: bytes) -> tuple[int, int, int]:
    return quotas.usage(chain.state, client)


# ---------------------------------------------------------------- who is charged


def test_put_charges_the_writer_and_an_overwrite_moves_the_key_to_the_new_writer():
    chain = Chain()
    chain.block((A, ops.put(b"k", b"vvv")))
    assert usage(chain, A) == (1, 4, 0)
    chain.block((B, ops.put(b"k", b"ww")))
    assert usage(chain, A) == (0, 0, 0)
    assert chain.state.get(b"q/" + A) is None  # a zero record is removed
    assert usage(chain, B) == (1, 3, 0)


def test_a_delete_by_another_client_credits_the_owner():
    chain = Chain()
    chain.block((A, ops.put(b"p/1", b"x")), (A, ops.put(b"p/2", b"y")))
    chain.block((B, ops.delete(b"p/", prefix=True)))
    assert usage(chain, A) == (0, 0, 0)
    assert usage(chain, B) == (0, 0, 0)


def test_lease_expiry_credits_the_lease_owner_and_the_owners_of_its_keys():
    chain = Chain()
    lease = chain.block((A, ops.lease_grant(ttl_ms=500))).ok()["id"]
    chain.block((B, ops.put(b"k", b"v", lease=lease)))
    assert usage(chain, A) == (0, 0, 1)
    assert usage(chain, B) == (1, 2, 0)
    chain.block(dt=1_000)  # past the deadline: the lease expires, its key goes
    assert usage(chain, A) == (0, 0, 0)
    assert usage(chain, B) == (0, 0, 0)
    assert quotas.all_usage(chain.state) == {}


# ---------------------------------------------------------------- limits


def _refused(block, i: int = 0) -> str:
    code, res = block.results[i]
    assert code == QUOTA and CODE_NAMES[code] == "quota_exceeded", res
    assert res["reason"] == "quota_exceeded"
    return res["error"]


def test_max_keys_refuses_the_key_past_the_limit_and_changes_nothing():
    chain = limited(max_keys=2)
    chain.block((A, ops.put(b"a", b"1")), (A, ops.put(b"b", b"2")))
    before = chain.state.items()
    blk = chain.block((A, ops.put(b"c", b"3")))
    assert "keys" in _refused(blk) and "max_keys = 2" in _refused(blk)
    assert [kv for kv in chain.state.items() if not kv[0].startswith(b"m/")] == [
        kv for kv in before if not kv[0].startswith(b"m/")]
    # an overwrite of an owned key does not grow the count; another client is not limited by A
    chain.block((A, ops.put(b"a", b"11")))
    assert chain.block((B, ops.put(b"c", b"3"))).results[0][0] == 0


def test_max_keys_refuses_a_txn_whole():
    chain = limited(max_keys=2)
    blk = chain.block((A, ops.txn(success=[ops.put_op(b"a", b"1"), ops.put_op(b"b", b"2"),
                                           ops.put_op(b"c", b"3")])))
    _refused(blk)
    assert chain.query("kv_range", key="")["count"] == 0
    assert usage(chain, A) == (0, 0, 0)


def test_max_bytes_counts_key_and_value():
    chain = limited(max_bytes=10)
    assert chain.block((A, ops.put(b"k", b"123456789"))).results[0][0] == 0  # 1 + 9 bytes
    assert "bytes" in _refused(chain.block((A, ops.put(b"k", b"1234567890"))))
    assert usage(chain, A) == (1, 10, 0)
    assert chain.block((A, ops.put(b"k", b"1"))).results[0][0] == 0  # shrinking is allowed


def test_max_leases_refuses_a_grant_and_a_revoke_frees_room():
    chain = limited(max_leases=1)
    lease = chain.block((A, ops.lease_grant(ttl_ms=60_000))).ok()["id"]
    assert "leases" in _refused(chain.block((A, ops.lease_grant(ttl_ms=60_000))))
    assert usage(chain, A) == (0, 0, 1)
    chain.block((A, ops.lease_revoke(lease)))
    assert chain.block((A, ops.lease_grant(ttl_ms=60_000))).results[0][0] == 0


def test_a_client_over_a_limit_may_still_delete():
    chain = limited(max_keys=1)
    chain.block((A, ops.put(b"a", b"1")))
    chain.block((B, ops.put(b"b", b"1")))
    assert chain.block((A, ops.delete(b"a"))).results[0][0] == 0
    assert chain.block((A, ops.put(b"b", b"2"))).results[0][0] == 0  # takes B's key over


def test_lock_and_election_entries_count_as_keys_of_their_client():
    # a lock or election record holds its holder's and waiters' values (a campaign value up
    # to 1 MiB), one record per name, however many names one lease takes
    chain = limited(max_keys=2, max_bytes=100)
    a, b = (chain.block((c, ops.lease_grant(ttl_ms=60_000))).ok()["id"] for c in (A, B))
    chain.block((A, ops.campaign(b"e1", a, b"x" * 60))).ok()
    assert usage(chain, A) == (1, 62, 1)
    assert "bytes" in _refused(chain.block((A, ops.campaign(b"e2", a, b"y" * 60))))
    assert chain.block((A, ops.lock_acquire(b"lk", a))).ok()["acquired"]
    assert "keys" in _refused(chain.block((A, ops.lock_acquire(b"l2", a))))
    chain.block((B, ops.campaign(b"e1", b, b"zz"))).ok()  # B waits: charged to B
    assert usage(chain, B) == (1, 4, 1)
    token = chain.query("election_leader", name=b"e1")["token"]
    assert "bytes" in _refused(chain.block((A, ops.proclaim(b"e1", token, b"x" * 97))))
    chain.block((A, ops.proclaim(b"e1", token, b"short"))).ok()
    assert usage(chain, A) == (2, 2 + 5 + 2, 1)
    chain.block((A, ops.lease_revoke(a))).ok()  # A's entries go; B is granted e1
    assert usage(chain, A) == (0, 0, 0)
    assert usage(chain, B) == (1, 4, 1)
    assert quotas.all_usage(chain.state) == quotas.recount(chain.state)


# ---------------------------------------------------------------- usage = recount


_KEYS = [b"a", b"ab", b"b", b"c"]
_CLIENTS = [A, B, C]


def _op(draw_kind: str, key: bytes, value: bytes, lease: int, prefix: bool) -> bytes:
    if draw_kind == "put":
        return ops.put(key, value, lease=lease)
    if draw_kind == "delete":
        return ops.delete(key, prefix=prefix)
    if draw_kind == "txn":
        return ops.txn(success=[ops.put_op(key, value), ops.delete_op(_KEYS[0], prefix=prefix)])
    if draw_kind == "grant":
        return ops.lease_grant(ttl_ms=300)
    return ops.lease_revoke(lease or 1)


_TX = st.tuples(
    st.sampled_from(_CLIENTS),
    st.sampled_from(["put", "put", "delete", "txn", "grant", "revoke"]),
    st.sampled_from(_KEYS),
    st.binary(max_size=6),
    st.integers(0, 12),  # a lease id (revision of a grant), often live, often not
    st.booleans(),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.lists(_TX, max_size=4), st.integers(0, 400)), max_size=12),
       st.integers(1, 4))
def test_usage_always_equals_a_recount_of_the_state(blocks, max_keys):
    chain = limited(max_keys=max_keys, max_leases=2)
    for txs, dt in blocks:
        blk = chain.block(*[(c, _op(k, key, v, lease, p)) for c, k, key, v, lease, p in txs],
                          dt=dt)
        assert all(code in (0, 1, 2, 5, QUOTA) for code, _ in blk.results), blk.results
        assert quotas.all_usage(chain.state) == quotas.recount(chain.state)
        for client, (keys, _, leases) in quotas.all_usage(chain.state).items():
            assert keys <= max_keys and leases <= 2, client


_LOCK_STEP = st.tuples(
    st.sampled_from([A, B]),
    st.sampled_from(["lock", "lock", "campaign", "campaign", "campaign", "release", "proclaim",
                     "proclaim", "resign", "cancel", "revoke", "wait"]),
    st.sampled_from([b"a", b"b"]),  # the name (a lock and an election of each)
    st.binary(max_size=5),
)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_LOCK_STEP, max_size=30), st.integers(1, 4))
def test_lock_and_election_usage_always_equals_a_recount(steps, max_keys):
    """Each op is built from the state (the signer's own lease, the holder's token), so
    grants, queues, hand-overs, proclaims, cancels, revokes and expiries all happen."""
    chain = limited(max_keys=max_keys, max_bytes=12)
    lease: dict[bytes, int] = {}
    for c, kind, name, value in steps:
        if c not in lease:
            lease[c] = chain.block((c, ops.lease_grant(ttl_ms=60_000))).ok()["id"]
        holder = chain.query("election_leader" if kind in ("proclaim", "resign")
                             else "lock_status", name=name)
        token = holder["token"] if "token" in holder else holder["last_token"]
        op = {"lock": ops.lock_acquire(name, lease[c]),
              "campaign": ops.campaign(name, lease[c], value),
              "release": ops.lock_release(name, token or 1),
              "proclaim": ops.proclaim(name, token or 1, value),
              "resign": ops.resign(name, token or 1),
              "cancel": ops.lock_cancel(name, lease[c]),
              "revoke": ops.lease_revoke(lease[c])}.get(kind)
        blk = chain.block((c, op)) if op else chain.block(dt=61_000)  # "wait": leases expire
        if kind == "revoke":
            lease.pop(c)
        elif kind == "wait":
            lease.clear()
        assert quotas.all_usage(chain.state) == quotas.recount(chain.state)
        for client, (keys, nbytes, _) in quotas.all_usage(chain.state).items():
            assert keys <= max_keys and nbytes <= 12, (client, blk.results)


# ---------------------------------------------------------------- genesis


def _genesis(app: dict):
    pks = [bytes([i + 1]) * 32 for i in range(4)]
    g = make_genesis("q-chain", [(pk, f"/ip4/127.0.0.1/tcp/{9000 + i}")
                                 for i, pk in enumerate(pks)])
    return dataclasses.replace(g, app=app)


@pytest.mark.parametrize("bad, words", [
    ({"quotas": []}, "must be an object"),
    ({"quotas": {"max_keyz": 3}}, "unknown limit"),
    ({"quotas": {"max_keys": 0}}, "integer >= 1"),
    ({"quotas": {"max_bytes": True}}, "integer >= 1"),
    ({"quotas": {"max_pending": "9"}}, "integer >= 1"),
])
def test_genesis_refuses_bad_quotas_naming_the_field(bad, words):
    with pytest.raises(GenesisError, match=words):
        _genesis(bad)


def test_genesis_quotas_reach_the_app_and_the_pool_bound():
    g = _genesis({"quotas": {"max_pending": 7, "max_keys": 9}})
    assert g.config().max_pending_per_client == 7
    assert KVApplication(params=g.app).quotas.max_keys == 9
    assert _genesis({}).config().max_pending_per_client == quotas.Limits().max_pending
