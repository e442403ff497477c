"""Execution is total (issue 35): whatever op bytes a client signs, `decode_op` returns an op
or raises OpError, `check_tx` returns None or a reason, and `execute_block` returns a result
code for every tx, the same on two independent application instances over two independently
built copies of a populated state, and never the last-resort INTERNAL code.

The state has live leases of clients A, B and C, a held and a queued lock, an election, keys
with history and tombstones, and a compaction pass still walking the history."""

from __future__ import annotations

import logging

import pytest
from app_chain import Chain
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from op_strategies import deep, op_bytes, op_maps, pack

from bftnode.app import KVApplication, MemoryState, budgets, ops
from bftnode.app import application as application_module
from bftnode.app.compaction import running
from bftnode.app.errors import BAD_OP, CODE_NAMES, INTERNAL
from consensus import Request

CLIENTS = [b"A", b"B", b"C", b"X"]  # X has no lease


def _populated() -> Chain:
    chain = Chain()
    chain.block(*[(c, ops.lease_grant(ttl_ms=60_000)) for c in CLIENTS[:3]])  # leases 1, 2, 3
    chain.block((b"A", ops.lock_acquire(b"lock", 1)), (b"B", ops.lock_acquire(b"lock", 2)),
                (b"C", ops.campaign(b"lock", 3, b"leader-c")), (b"A", ops.campaign(b"lock", 1)))
    named = [b"a", b"b", b"k/1", b"key/000001", b"\x00", b"\xff"]
    for version in range(8):
        chain.block(*[ops.put(k, b"v%d" % version, lease=1 if i % 7 == 0 else 0)
                      for i, k in enumerate(named + [b"key/%06d" % i for i in range(300)])])
    chain.block(ops.delete(b"key/0001", prefix=True), ops.put(b"b", b"again"))
    chain.block(ops.compact(900))
    assert running(chain.state), "the base state has a compaction pass in flight"
    return chain


BASES = (_populated(), _populated())  # built twice: nothing shared between the two replicas
APPS = (KVApplication(validators=[b"A"]), KVApplication(validators=[b"A"]))
deltas = st.sampled_from([0, 1, 100, 59_999, 60_001, 10**9])


def _execute(txs: list[tuple[bytes, bytes]], dt: int):
    reqs = [Request(client, i, op) for i, (client, op) in enumerate(txs)]
    effects = [app.execute_block(base.state, base.height + 1, base.time_ms + dt, reqs)
               for app, base in zip(APPS, BASES, strict=True)]
    return reqs, effects


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.lists(st.tuples(st.sampled_from(CLIENTS), op_bytes()), min_size=1, max_size=6), deltas)
def test_any_op_bytes_give_identical_results_on_two_replicas_and_never_raise(txs, dt):
    reqs, (one, two) = _execute(txs, dt)
    assert one == two
    assert len(one.results) == len(reqs)
    for req, (code, raw) in zip(reqs, one.results, strict=True):
        event(CODE_NAMES[code])
        assert code != INTERNAL, ops.decode_result(raw)  # op content never reaches the guard
        assert len(raw) <= budgets.TX_RESULT_BYTES
        result = ops.decode_result(raw)
        assert ("error" in result) == (code != 0)
        reason = APPS[0].check_tx(req.op)  # admission and execution agree on what is an op
        assert (reason is None) == (code != BAD_OP), (reason, result)


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.lists(st.tuples(st.sampled_from(CLIENTS[:3]), op_maps(mutate=False).map(pack)),
                min_size=1, max_size=6), deltas)
def test_well_shaped_ops_mostly_decode_and_run_alike_on_both_replicas(txs, dt):
    _, (one, two) = _execute(txs, dt)
    assert one == two
    for code, _ in one.results:
        event(CODE_NAMES[code])
        assert code != INTERNAL


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.data_too_large])
@given(op_bytes())
def test_decode_op_returns_an_op_or_raises_op_error_only(data):
    try:
        op = ops.decode_op(data)
    except ops.OpError as exc:
        assert str(exc)
        return
    assert ops.decode_op(ops.encode_op(op)) == op  # a decoded op survives a round trip


@pytest.mark.parametrize("depth", [1, 7, 8, 9, 100, 10_000])
@pytest.mark.parametrize("kind", ["map", "array"])
@pytest.mark.parametrize("where", ["before the tag", "after the tag", "in a txn sub-op"])
def test_nesting_at_and_past_the_bound_is_an_op_error_at_every_stack_depth(depth, kind, where):
    nested = deep(depth, kind=kind)
    if where == "before the tag":
        data = pack({"zzz": nested, "op": "put", "key": b"k", "value": b""})
    elif where == "after the tag":
        data = pack({"op": "put", "key": b"k", "value": b"", "zzz": nested})
    else:
        data = pack({"op": "txn", "success": [{"zzz": nested, "op": "put", "key": b"k"}]})

    def at_stack_depth(n: int):
        return at_stack_depth(n - 1) if n else ops.decode_op(data)

    for stack in (0, 300, 800):  # the answer must not depend on how deep the caller is
        with pytest.raises(ops.OpError):
            at_stack_depth(stack)


def test_an_op_of_more_than_max_op_bytes_is_refused_before_decoding():
    data = pack({"op": "evidence", "accused": 0, "kind": "x",
                 "proof": b"p" * budgets.MAX_OP_BYTES})
    with pytest.raises(ops.OpError, match="exceeds"):
        ops.decode_op(data)


@pytest.mark.parametrize("value", [2**63, 2**64 - 1, -(2**63) - 1, 2**64, 1.5])
def test_every_integer_field_has_a_range(value):
    for data in (
        pack({"op": "put", "key": b"k", "value": b"", "lease": value}),
        pack({"op": "range", "key": b"k", "revision": value}),
        pack({"op": "range", "key": b"k", "limit": value}),
        pack({"op": "compact", "revision": value}),
        pack({"op": "lease_grant", "ttl_ms": value}),
        pack({"op": "lease_keepalive", "id": value}),
        pack({"op": "lock_release", "name": b"n", "token": value}),
        pack({"op": "evidence", "accused": value, "kind": "x"}),
        pack({"op": "txn", "compare": [{"key": b"k", "target": "version", "result": "=",
                                        "value": value}]}),
    ):
        with pytest.raises(ops.OpError):
            ops.decode_op(data)


@pytest.mark.parametrize("junk", [None, "put", 7, b"", bytearray(b"\x80")])
def test_check_tx_never_raises(junk):
    assert isinstance(KVApplication().check_tx(junk), str)


# ---------------------------------------------------------------- the last-resort guard


def test_a_bug_in_an_executor_is_an_internal_error_result_logged_and_alike_everywhere(
        monkeypatch, caplog):
    def broken(ctx, op):
        ctx.state.put(b"k/half-done", b"x")
        return {}["missing"]

    monkeypatch.setitem(application_module._EXECUTORS, ops.Put, broken)
    txs = [(b"A", ops.put(b"k", b"v")), (b"A", ops.lease_grant(ttl_ms=10))]
    with caplog.at_level(logging.ERROR, logger=application_module.__name__):
        _, (one, two) = _execute(txs, 1)
    assert one == two
    assert [code for code, _ in one.results] == [INTERNAL, 0]
    assert ops.decode_result(one.results[0][1])["error"] == "internal error (KeyError)"
    assert b"k/half-done" not in dict(one.writes)  # its writes are dropped like any failure
    assert "bug" in caplog.text


@pytest.mark.parametrize("exc", [MemoryError, RecursionError])
def test_the_guard_lets_failures_of_the_node_itself_through(monkeypatch, exc):
    def broken(ctx, op):
        raise exc()

    monkeypatch.setitem(application_module._EXECUTORS, ops.Put, broken)
    with pytest.raises(exc):
        _execute([(b"A", ops.put(b"k", b"v"))], 1)


def test_an_empty_block_on_the_base_state_moves_the_compaction_pass_alike():
    _, (one, two) = _execute([], 1)
    assert one == two
    assert any(k.startswith(b"m/compact_pass") for k, _ in one.writes)
    base = MemoryState(BASES[0].state.items())
    base.apply(one.writes)
    assert base.items() != BASES[0].state.items()
