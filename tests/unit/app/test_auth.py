"""Permissions (bftnode/app/auth.py): refusals with PERMISSION and nothing applied, grants that
make the same op succeed, admin-only ops, and the genesis params."""

from __future__ import annotations

import pytest
from app_chain import Chain

from bftnode.app import KVApplication, MemoryState, auth_ops, ops
from bftnode.app.auth import check_params
from bftnode.app.errors import BAD_OP, NOT_FOUND, PERMISSION
from bftnode.genesis import Genesis, GenesisError

ADMIN, BOB, EVE = b"\x01" * 32, b"\x02" * 32, b"\x03" * 32
PARAMS = {"admins": [ADMIN.hex()], "auth_enabled": True}


def _chain(**params) -> Chain:
    chain = Chain(app=KVApplication(params={**PARAMS, **params}))
    # keys the admin wrote: another client's data that an unpermitted op must not touch
    chain.block(*[(ADMIN, ops.put(f"data/{i}".encode(), b"v")) for i in range(3)],
                (ADMIN, ops.put(b"other", b"o")))
    return chain


def _refused(chain: Chain, client: bytes, op: bytes) -> dict:
    before = chain.state.items()
    rev = chain.query("revision")["revision"]
    code, res = chain.block((client, op)).results[0]
    assert code == PERMISSION, res
    assert res["reason"] == "permission_denied" and "permission" in res["error"]
    # nothing applied beyond the block's own bookkeeping (height, time)
    after = [kv for kv in chain.state.items() if not kv[0].startswith(b"m/")]
    assert after == [kv for kv in before if not kv[0].startswith(b"m/")]
    assert chain.query("revision")["revision"] == rev
    return res


def _admin(chain: Chain, *op_list: bytes) -> None:
    blk = chain.block(*[(ADMIN, op) for op in op_list])
    for i in range(len(op_list)):
        blk.ok(i)


UNPERMITTED = {
    "put": ops.put(b"data/0", b"x"),
    "delete": ops.delete(b"data/0"),
    "prefix delete": ops.delete(b"data/", prefix=True),
    "compact": ops.compact(1),
    "range": ops.range_(b"data/", prefix=True),
    "txn": ops.txn(success=[ops.put_op(b"data/1", b"x")]),
    "lock": ops.lock_acquire(b"data/lock", 1),
}


@pytest.mark.parametrize("name", sorted(UNPERMITTED))
def test_an_unpermitted_op_is_refused_whole(name):
    chain = _chain()
    _refused(chain, BOB, UNPERMITTED[name])


def test_a_prefix_grant_makes_the_same_ops_succeed():
    chain = _chain()
    _admin(chain, ops.auth_role_add("data-rw"),
           ops.auth_grant("data-rw", "readwrite", b"data/", prefix=True),
           ops.auth_bind(BOB, "data-rw"))
    blk = chain.block((BOB, UNPERMITTED["put"]), (BOB, UNPERMITTED["range"]),
                      (BOB, UNPERMITTED["txn"]), (BOB, UNPERMITTED["prefix delete"]))
    assert blk.ok(1)["count"] == 3
    assert blk.ok(3)["deleted"] == 3
    assert chain.query("kv_get", key=b"other")["value"] == b"o"  # outside the grant
    _refused(chain, BOB, ops.put(b"other", b"x"))
    _refused(chain, BOB, ops.compact(1))  # compaction stays the admins'


def test_a_txn_touching_one_unpermitted_key_fails_whole_whichever_branch_runs():
    chain = _chain()
    _admin(chain, ops.auth_role_add("w"), ops.auth_grant("w", "readwrite", b"data/", prefix=True),
           ops.auth_bind(BOB, "w"))
    both = [ops.put_op(b"data/1", b"x"), ops.put_op(b"other", b"x")]
    _refused(chain, BOB, ops.txn(success=both))
    # the failure branch would never run, and still counts (etcd checks both)
    _refused(chain, BOB, ops.txn(success=[both[0]], failure=[both[1]]))
    # a compare reads its key: read permission needed
    _refused(chain, BOB, ops.txn(compare=[ops.compare(b"other", "version", ">", 0)],
                                 success=[both[0]]))


def test_read_and_write_are_separate_and_a_range_grant_must_cover_a_prefix_delete():
    chain = _chain()
    _admin(chain, ops.auth_role_add("r"), ops.auth_grant("r", "read", b"data/", prefix=True),
           ops.auth_role_add("w"), ops.auth_grant("w", "write", b"data/0", range_end=b"data/2"),
           ops.auth_bind(BOB, "r"), ops.auth_bind(BOB, "w"))
    assert chain.block((BOB, ops.range_(b"data/", prefix=True))).ok()["count"] == 3
    _refused(chain, BOB, ops.delete(b"data/", prefix=True))  # data/2.. not covered
    chain.block((BOB, ops.delete(b"data/1"))).ok()
    _refused(chain, BOB, ops.delete(b"data/2"))
    # two grants whose union covers the prefix
    _admin(chain, ops.auth_grant("w", "write", b"data/2", range_end=b"data0"),
           ops.auth_grant("w", "write", b"data/", range_end=b"data/0"))
    assert chain.block((BOB, ops.delete(b"data/", prefix=True))).ok()["deleted"] == 2


def test_a_write_only_client_cannot_read_values_through_prev_kv():
    chain = _chain()
    _admin(chain, ops.auth_role_add("w"), ops.auth_grant("w", "write", b"data/", prefix=True),
           ops.auth_bind(BOB, "w"))
    _refused(chain, BOB, ops.put(b"data/0", b"x", prev_kv=True))
    _refused(chain, BOB, ops.delete(b"data/", prefix=True, prev_kv=True))
    _refused(chain, BOB, ops.txn(success=[ops.put_op(b"data/1", b"x", prev_kv=True)]))
    chain.block((BOB, ops.put(b"data/0", b"x"))).ok()  # without prev_kv: a plain write
    _admin(chain, ops.auth_grant("w", "read", b"data/", prefix=True))
    assert chain.block((BOB, ops.put(b"data/0", b"y", prev_kv=True))).ok()["prev"]["value"] == b"x"


def test_revoke_unbind_and_role_delete_take_permissions_away():
    chain = _chain()
    _admin(chain, ops.auth_role_add("w"), ops.auth_grant("w", "readwrite", b"data/", prefix=True),
           ops.auth_bind(BOB, "w"), ops.auth_bind(EVE, "w"))
    chain.block((BOB, ops.put(b"data/9", b"b"))).ok()
    _admin(chain, ops.auth_revoke("w", "write", b"data/", prefix=True))
    _refused(chain, BOB, ops.put(b"data/9", b"c"))
    chain.block((BOB, ops.range_(b"data/9"))).ok()  # read stays
    _admin(chain, ops.auth_unbind(BOB, "w"))
    _refused(chain, BOB, ops.range_(b"data/9"))
    _admin(chain, ops.auth_role_delete("w"))
    st = chain.query("auth_status")
    assert st["roles"] == [] and st["bindings"] == []  # EVE unbound with the role
    code, res = chain.block((ADMIN, ops.auth_bind(BOB, "w"))).results[0]
    assert code == NOT_FOUND and "does not exist" in res["error"]


def test_auth_ops_need_an_admin_even_with_checks_off():
    chain = _chain(auth_enabled=False)
    chain.block((BOB, ops.delete(b"data/", prefix=True))).ok()  # checks off: as without auth
    for op in (ops.auth_role_add("x"), ops.auth_enable(True), ops.auth_bind(BOB, "x")):
        res = _refused(chain, BOB, op)
        assert "admin" in res["error"]
    _admin(chain, ops.auth_enable(True))
    _refused(chain, BOB, ops.put(b"data/0", b"x"))
    _admin(chain, ops.auth_enable(False))
    chain.block((BOB, ops.put(b"data/0", b"x"))).ok()


@pytest.mark.parametrize("role", ["r\n", "r\r", "", "-r", "r" * 65, "r/x"])
def test_a_role_name_outside_the_pattern_is_a_bad_op(role):
    chain = _chain()
    code, res = chain.block((ADMIN, ops.encode_op(ops.AuthRoleAdd(role)))).results[0]
    assert code == BAD_OP, res
    assert chain.query("auth_status")["roles"] == []


def test_admin_passes_every_check_and_status_lists_everything():
    chain = _chain()
    _admin(chain, ops.compact(1), ops.delete(b"data/", prefix=True),
           ops.auth_role_add("r"), ops.auth_grant("r", "read", b"", prefix=True),
           ops.auth_bind(BOB, "r"))
    st = chain.query("auth_status")
    assert st["enabled"] is True and st["admins"] == [ADMIN.hex()]
    assert st["roles"] == [{"role": "r", "permissions": [
        {"perm": "read", "key": b"", "range_end": b"\x00"}]}]
    assert st["bindings"] == [{"client": BOB.hex(), "roles": ["r"]}]
    assert chain.block((BOB, ops.range_(b"", prefix=True))).ok()["count"] == 1


def test_locks_need_write_on_the_name_and_puts_need_their_own_lease():
    chain = _chain()
    _admin(chain, ops.auth_role_add("w"), ops.auth_grant("w", "write", b"jobs/", prefix=True),
           ops.auth_bind(BOB, "w"), ops.auth_bind(EVE, "w"))
    lease = chain.block((BOB, ops.lease_grant(ttl_ms=60_000))).ok()["id"]
    assert chain.block((BOB, ops.lock_acquire(b"jobs/a", lease))).ok()["acquired"]
    _refused(chain, BOB, ops.lock_acquire(b"data/a", lease))
    _refused(chain, EVE, ops.put(b"jobs/k", b"v", lease=lease))  # BOB's lease
    chain.block((BOB, ops.put(b"jobs/k", b"v", lease=lease))).ok()


def test_a_lease_revoke_needs_write_on_the_keys_it_would_delete():
    chain = _chain()
    _admin(chain, ops.auth_role_add("w"), ops.auth_grant("w", "write", b"jobs/", prefix=True),
           ops.auth_bind(BOB, "w"))
    lease = chain.block((BOB, ops.lease_grant(ttl_ms=60_000))).ok()["id"]
    chain.block((BOB, ops.put(b"jobs/k", b"v", lease=lease))).ok()
    _admin(chain, ops.auth_revoke("w", "write", b"jobs/", prefix=True))
    _refused(chain, BOB, ops.lease_revoke(lease))  # BOB may no longer delete jobs/k
    assert chain.query("kv_get", key=b"jobs/k")["found"]
    _admin(chain, ops.auth_grant("w", "write", b"jobs/k"))
    assert chain.block((BOB, ops.lease_revoke(lease))).ok()["deleted_keys"] == 1
    # a lease without keys, or another client's lease, is decided as before
    own = chain.block((BOB, ops.lease_grant(ttl_ms=60_000))).ok()["id"]
    chain.block((BOB, ops.lease_revoke(own))).ok()
    code, _ = chain.block((EVE, ops.lease_revoke(own))).results[0]
    assert code == NOT_FOUND


def test_no_admins_means_exactly_todays_behaviour():
    plain, params = Chain(), Chain(app=KVApplication(params={"quotas": {}}))
    for c in (plain, params):
        c.block((BOB, ops.put(b"a", b"1")), (EVE, ops.delete(b"a", prefix=True)),
                (EVE, ops.compact(1)))
        code, _ = c.block((BOB, ops.auth_role_add("r"))).results[0]
        assert code == PERMISSION
    assert plain.state.items() == params.state.items()
    assert plain.query("auth_status")["enabled"] is False


def test_the_same_blocks_give_the_same_state_on_a_replay():
    chain = _chain()
    _admin(chain, ops.auth_role_add("w"), ops.auth_grant("w", "write", b"data/", prefix=True),
           ops.auth_bind(BOB, "w"))
    chain.block((BOB, ops.delete(b"data/", prefix=True)), (EVE, ops.put(b"data/1", b"e")))
    again, state = KVApplication(params=PARAMS), MemoryState()
    for height, time_ms, txs in chain.log:
        state.apply(again.execute_block(state, height, time_ms, txs).writes)
    assert state.items() == chain.state.items()


@pytest.mark.parametrize(("app", "message"), [
    ({"admins": "ab"}, "app.admins"),
    ({"admins": ["zz" * 32]}, "app.admins[0]"),
    ({"admins": ["ab"]}, "app.admins[0]"),
    ({"auth_enabled": True}, "at least one key"),
    ({"admins": [ADMIN.hex()], "auth_enabled": "yes"}, "app.auth_enabled"),
])
def test_bad_genesis_params_are_refused_naming_the_field(app, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        check_params(app)
    with pytest.raises(GenesisError, match="app"):
        Genesis.from_dict({"chain_id": "c", "validators": [
            {"index": 0, "public_key": "aa" * 32, "p2p_multiaddr": "/ip4/127.0.0.1/tcp/1"}],
            "app": app})


class _CountingPerms(list):
    walks = 0

    def __iter__(self):
        _CountingPerms.walks += 1
        return super().__iter__()


def test_a_txn_of_many_keys_walks_the_grants_once_per_permission_kind(monkeypatch):
    # a txn names up to 384 keys and a client may hold 64 x 256 grants: walking every grant
    # for every key cost ~0.5 s of every replica's block time per such txn
    chain = _chain()
    _admin(chain, ops.auth_role_add("w"), ops.auth_bind(BOB, "w"),
           *[ops.auth_grant("w", "readwrite", b"k%03d" % i) for i in range(100)])
    real = auth_ops.permissions_of
    monkeypatch.setattr(auth_ops, "permissions_of", lambda s, c: _CountingPerms(real(s, c)))
    keys = [b"k%03d" % i for i in range(100)]
    op = ops.txn(compare=[ops.compare(k, "version", "=", 0) for k in keys],
                 success=[ops.put_op(k, b"v") for k in keys],
                 failure=[ops.range_op(k) for k in keys])
    _CountingPerms.walks = 0
    assert chain.block((BOB, op)).ok()["succeeded"]
    assert _CountingPerms.walks <= 2  # once for read, once for write
    _refused(chain, BOB, ops.txn(success=[*(ops.put_op(k, b"w") for k in keys),
                                          ops.put_op(b"k100", b"w")]))
