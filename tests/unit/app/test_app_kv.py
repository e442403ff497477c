"""MVCC KV on the agreed log: revisions, versions, history reads, txn, compaction, bad ops."""

from __future__ import annotations

import pytest

from bftnode.app import AppError, AppInvariantError, KVApplication, MemoryState, ops
from bftnode.app.errors import BAD_OP, COMPACTED, FUTURE_REVISION, NOT_FOUND
from consensus import Request


def test_each_mutating_tx_advances_the_revision_by_one(chain):
    b = chain.block(ops.put(b"a", b"1"), ops.put(b"b", b"2"), ops.put(b"a", b"3"))
    assert [r["revision"] for _, r in b.results] == [1, 2, 3]
    got = chain.query("kv_get", key="a")
    assert (got["value"], got["create_revision"], got["mod_revision"], got["version"]) == (
        b"3", 1, 3, 2,
    )
    assert got["revision"] == 3


def test_later_txs_in_a_block_see_earlier_writes(chain):
    b = chain.block(
        ops.put(b"k", b"v1"),
        ops.txn([ops.compare(b"k", "value", "=", b"v1")], [ops.put_op(b"k", b"v2")]),
    )
    assert b.ok(1)["succeeded"] is True
    assert chain.query("kv_get", key="k")["value"] == b"v2"


def test_delete_of_a_missing_key_changes_nothing(chain):
    chain.block(ops.put(b"a", b"1"))
    b = chain.block(ops.delete(b"zzz"))
    assert b.ok() == {"deleted": 0, "revision": 1}
    assert b.events == ()


def test_delete_prefix_and_prev_kv(chain):
    chain.block(ops.put(b"p/1", b"x"), ops.put(b"p/2", b"y"), ops.put(b"q", b"z"))
    b = chain.block(ops.delete(b"p/", prefix=True, prev_kv=True))
    res = b.ok()
    assert res["deleted"] == 2 and [p["key"] for p in res["prev"]] == [b"p/1", b"p/2"]
    assert res["revision"] == 4  # both deletes share one revision
    assert chain.query("kv_range", key="", prefix=True)["count"] == 1


def test_range_at_a_past_revision_sees_the_old_values(chain):
    chain.block(ops.put(b"a", b"1"), ops.put(b"b", b"1"))  # rev 1, 2
    chain.block(ops.put(b"a", b"2"), ops.delete(b"b"))  # rev 3, 4
    at2 = chain.query("kv_range", key="", revision=2)
    assert [(kv["key"], kv["value"]) for kv in at2["kvs"]] == [(b"a", b"1"), (b"b", b"1")]
    at3 = chain.query("kv_range", key="", revision=3)
    assert [(kv["key"], kv["value"]) for kv in at3["kvs"]] == [(b"a", b"2"), (b"b", b"1")]
    assert chain.query("kv_get", key="b")["found"] is False
    assert chain.query("kv_get", key="b", revision=2)["value"] == b"1"
    with pytest.raises(AppError) as exc:
        chain.query("kv_get", key="a", revision=99)
    assert exc.value.code == FUTURE_REVISION


def test_range_limit_count_and_keys_only(chain):
    chain.block(*(ops.put(b"k%d" % i, b"v") for i in range(5)))
    res = chain.block(ops.range_(b"k", prefix=True, limit=2, keys_only=True)).ok()
    assert res["count"] == 5 and res["more"] is True and len(res["kvs"]) == 2
    assert "value" not in res["kvs"][0]


def test_txn_compares_and_uses_one_revision(chain):
    chain.block(ops.put(b"a", b"1"))
    guard = [ops.compare(b"a", "version", "=", 1), ops.compare(b"missing", "value", "=", None)]
    b = chain.block(
        ops.txn(guard, [ops.put_op(b"a", b"2"), ops.put_op(b"b", b"2"), ops.range_op(b"a")])
    )
    res = b.ok()
    assert res["succeeded"] is True and res["revision"] == 2
    assert res["responses"][2]["kvs"][0]["value"] == b"2"
    assert {e.revision for e in b.events} == {2}
    b = chain.block(ops.txn([ops.compare(b"a", "mod", "<", 2)], [ops.delete_op(b"a")],
                            [ops.range_op(b"a")]))
    assert b.ok()["succeeded"] is False and b.ok()["revision"] == 2  # read-only branch


def test_a_failing_txn_writes_nothing(chain):
    b = chain.block(ops.txn([], [ops.put_op(b"a", b"1"), ops.put_op(b"b", b"1", lease=42)]))
    code, res = b.results[0]
    assert code == NOT_FOUND and "lease 42" in res["error"]
    assert chain.query("kv_get", key="a")["found"] is False
    assert chain.query("revision")["revision"] == 0


def test_compaction_drops_old_revisions_but_keeps_current_reads(chain):
    chain.block(ops.put(b"a", b"1"), ops.put(b"a", b"2"), ops.put(b"b", b"1"), ops.delete(b"b"))
    b = chain.block(ops.compact(3))
    assert b.ok()["revision"] == 4  # compaction does not advance the revision
    with pytest.raises(AppError) as exc:
        chain.query("kv_get", key="a", revision=2)
    assert exc.value.code == COMPACTED
    assert chain.query("kv_get", key="a", revision=3)["value"] == b"2"
    assert chain.query("kv_get", key="a")["value"] == b"2"
    code, _ = chain.block(ops.compact(2)).results[0]
    assert code == COMPACTED
    def history():
        return [k[2:3] + bytes([k[-1]]) for k, _ in chain.state.iterate(b"h/")]

    assert history() == [b"a\x02", b"b\x03", b"b\x04"]  # newest <= 3 per key, and later
    chain.block(ops.compact(4))
    assert history() == [b"a\x02"]  # b's value and its tombstone are both gone


def test_bad_ops_are_rejected_with_a_reason_and_lose_nothing(chain):
    app = KVApplication()
    assert app.check_tx(b"\xc1garbage") is not None
    assert "op" in app.check_tx(ops.encode_result({"op": "nope"}))
    assert app.check_tx(ops.encode_result({"op": "put", "key": b"k", "value": b"v", "x": 1}))
    assert app.check_tx(ops.lease_grant(ttl_ms=0)) is not None
    assert app.check_tx(ops.put(b"k", b"v")) is None
    b = chain.block(b"\xc1garbage", ops.put(b"k", b"v"))
    assert b.results[0][0] == BAD_OP and "invalid op" in b.results[0][1]["error"]
    assert b.ok(1)["revision"] == 1


def test_queries_reject_unknown_methods_and_bad_params(chain):
    with pytest.raises(AppError):
        chain.query("nope")
    with pytest.raises(AppError):
        chain.query("kv_get")
    with pytest.raises(AppError):
        chain.query("lease_ttl", id=-1)


def test_heights_and_times_must_not_go_backwards():
    app, st = KVApplication(), MemoryState()
    st.apply(app.execute_block(st, 5, 1000, []).writes)
    with pytest.raises(AppInvariantError):
        app.execute_block(st, 5, 2000, [])
    with pytest.raises(AppInvariantError):
        app.execute_block(st, 6, 999, [])


def test_result_bytes_are_msgpack_maps_and_jsonable(chain):
    eff = KVApplication().execute_block(
        MemoryState(), 1, 1, [Request(b"c", 1, ops.put(b"k", b"\xff", prev_kv=True))]
    )
    assert ops.decode_result(eff.results[0][1]) == {"revision": 1, "prev": None}
    assert ops.jsonable({"v": b"\xff", "k": b"k"}) == {"v": {"base64": "/w=="}, "k": "k"}


def test_range_end_reads_a_half_open_interval_now_and_in_the_past(chain):
    chain.block(*(ops.put(k, b"1") for k in (b"a", b"b", b"b\x00", b"c", b"d")))  # rev 1..5
    chain.block(ops.put(b"b", b"2"), ops.delete(b"c"))  # rev 6, 7
    now = chain.query("kv_range", key="b", range_end="d")
    assert [(kv["key"], kv["value"]) for kv in now["kvs"]] == [(b"b", b"2"), (b"b\x00", b"1")]
    past = chain.query("kv_range", key="b", range_end="d", revision=5)
    assert [kv["key"] for kv in past["kvs"]] == [b"b", b"b\x00", b"c"]
    assert past["kvs"][0]["value"] == b"1"
    tail = chain.block(ops.range_(b"c", range_end=b"\x00")).ok()
    assert [kv["key"] for kv in tail["kvs"]] == [b"d"]
