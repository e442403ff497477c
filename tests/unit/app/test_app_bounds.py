"""Execution is total and bounded (issue 35): any op bytes a client can sign give a result
code, never an exception, and no single tx or block of txs does unbounded work.

Reproductions of the reported failures: op bytes nested 10,000 deep under an unknown field;
a txn of 128 full-keyspace range reads on a populated state; a block of many compact ops on
a long history."""

from __future__ import annotations

import random
from collections.abc import Iterator

import pytest
from app_chain import Chain
from hypothesis import given, settings
from hypothesis import strategies as st

from bftnode.app import KVApplication, MemoryState, budgets, ops
from bftnode.app import layout as L
from bftnode.app.compaction import running
from bftnode.app.errors import BAD_OP, BUDGET_EXCEEDED, NOT_FOUND, AppError
from bftnode.app.overlay import Overlay
from consensus import Request

DEPTH = 10_000


def _deep_map(depth: int = DEPTH) -> bytes:
    """{"x": {"x": ... nil}} nested `depth` maps deep."""
    return b"\x81\xa1x" * depth + b"\xc0"


def _deep_array(depth: int = DEPTH) -> bytes:
    return b"\x91" * depth + b"\xc0"


DEEP_OPS = {
    # an unknown field before the "op" tag: the decoder must skip it to find the tag
    "unknown field before the tag": b"\x82\xa3zzz" + _deep_map() + b"\xa2op\xa3put",
    "unknown array before the tag": b"\x82\xa3zzz" + _deep_array() + b"\xa2op\xa3put",
    # the same inside a txn's success list
    "inside a txn sub-op": (
        b"\x82\xa2op\xa3txn\xa7success\x91\x82\xa3zzz" + _deep_map() + b"\xa2op\xa3put"
    ),
    "as a compare value": (
        b"\x82\xa2op\xa3txn\xa7compare\x91\x84\xa3key\xc4\x01a\xa6target\xa7version"
        b"\xa6result\xa1=\xa5value" + _deep_map()
    ),
    "a bare deep map": _deep_map(),
}


@pytest.mark.parametrize("name", sorted(DEEP_OPS))
def test_deeply_nested_op_bytes_are_an_op_error(name):
    with pytest.raises(ops.OpError):
        ops.decode_op(DEEP_OPS[name])


@pytest.mark.parametrize("name", sorted(DEEP_OPS))
def test_check_tx_refuses_deeply_nested_op_bytes_without_raising(name):
    reason = KVApplication().check_tx(DEEP_OPS[name])
    assert isinstance(reason, str) and reason.startswith("invalid op")


def test_an_ordered_deeply_nested_op_is_a_bad_op_result_and_the_block_goes_on():
    app, state = KVApplication(), MemoryState()
    txs = [Request(b"c", i, op) for i, op in enumerate(DEEP_OPS.values())]
    txs.append(Request(b"c", 99, ops.put(b"k", b"v")))
    eff = app.execute_block(state, 1, 1_000, txs)
    assert [code for code, _ in eff.results] == [BAD_OP] * len(DEEP_OPS) + [0]
    again = KVApplication().execute_block(MemoryState(), 1, 1_000, txs)  # a restarted node
    assert again == eff


# ---------------------------------------------------------------- bounded reads


def _populated(keys: int, value_bytes: int) -> tuple[KVApplication, MemoryState]:
    app, state = KVApplication(), MemoryState()
    txs = [Request(b"c", i, ops.put(b"key/%06d" % i, b"v" * value_bytes)) for i in range(keys)]
    state.apply(app.execute_block(state, 1, 1_000, txs).writes)
    return app, state


def test_a_txn_of_128_full_range_reads_fails_with_a_small_result():
    app, state = _populated(keys=1_000, value_bytes=200)
    reads = [ops.range_op(b"", prefix=True)] * ops.MAX_TXN_OPS
    eff = app.execute_block(state, 2, 2_000, [Request(b"c", 1, ops.txn(success=reads))])
    (code, raw), = eff.results
    result = ops.decode_result(raw)
    assert code != 0 and result["reason"] == "budget_exceeded", result.get("error")
    assert len(raw) <= 4096
    assert eff.writes == app.execute_block(state, 2, 2_000, []).writes  # nothing of the txn


def test_one_full_range_read_of_a_small_state_still_succeeds():
    app, state = _populated(keys=200, value_bytes=100)
    eff = app.execute_block(state, 2, 2_000, [Request(b"c", 1, ops.range_(b"", prefix=True))])
    (code, raw), = eff.results
    assert code == 0 and ops.decode_result(raw)["count"] == 200


# ---------------------------------------------------------------- bounded compaction


class CountingState(MemoryState):
    """A MemoryState that counts the entries it hands out (gets and iterated entries)."""

    def __init__(self, items=()) -> None:
        super().__init__(items)
        self.reads = 0

    def get(self, key: bytes) -> bytes | None:
        self.reads += 1
        return super().get(key)

    def iterate(self, prefix: bytes, start: bytes | None = None, reverse: bool = False
                ) -> Iterator[tuple[bytes, bytes]]:
        for item in super().iterate(prefix, start, reverse):
            self.reads += 1
            yield item


def _long_history(keys: int, versions: int) -> tuple[KVApplication, CountingState, int]:
    app, state = KVApplication(), CountingState()
    height = 0
    for _ in range(versions):
        height += 1
        txs = [Request(b"c", i, ops.put(b"k%d" % i, b"v%d" % height)) for i in range(keys)]
        state.apply(app.execute_block(state, height, height * 1_000, txs).writes)
    return app, state, height


def test_a_block_of_compacts_reads_a_bounded_part_of_a_long_history():
    app, state, height = _long_history(keys=10, versions=1_000)  # 10,000 history entries
    compacts = [Request(b"c", i, ops.compact(100 + 50 * i)) for i in range(50)]
    state.reads = 0
    state.apply(app.execute_block(state, height + 1, (height + 1) * 1_000, compacts).writes)
    assert state.reads <= 5_000, f"one block read {state.reads} state entries"


# ---------------------------------------------------------------- budgets, precisely


@pytest.fixture
def small_budgets(monkeypatch):
    """Budgets small enough to reach with a handful of keys."""
    monkeypatch.setattr(budgets, "OP_SCAN_ENTRIES", 50)
    monkeypatch.setattr(budgets, "TX_SCAN_ENTRIES", 120)
    monkeypatch.setattr(budgets, "OP_READ_BYTES", 4_000)
    monkeypatch.setattr(budgets, "TX_READ_BYTES", 9_000)


def _result(eff, i: int = 0) -> tuple[int, dict]:
    code, raw = eff.results[i]
    return code, ops.decode_result(raw)


def test_an_op_past_its_entry_budget_fails_and_the_txn_writes_nothing(small_budgets):
    app, state = _populated(keys=60, value_bytes=1)
    txn = ops.txn(success=[ops.put_op(b"new", b"x"), ops.range_op(b"key/", prefix=True)])
    eff = app.execute_block(state, 2, 2_000, [Request(b"c", 1, txn)])
    code, res = _result(eff)
    assert code == BUDGET_EXCEEDED and res["reason"] == "budget_exceeded"
    assert res["error"] == "op read more than 50 state entries"
    assert b"k/new" not in dict(eff.writes)


def test_ops_within_their_budget_still_add_up_to_the_tx_budget(small_budgets):
    app, state = _populated(keys=45, value_bytes=1)  # one range: 45 keys + 1 metadata read
    one = app.execute_block(state, 2, 2_000, [Request(b"c", 1, ops.range_(b"key/", prefix=True))])
    assert _result(one)[0] == 0
    three = ops.txn(success=[ops.range_op(b"key/", prefix=True)] * 3)
    code, res = _result(app.execute_block(state, 2, 2_000, [Request(b"c", 1, three)]))
    assert (code, res["error"]) == (BUDGET_EXCEEDED, "tx read more than 120 state entries")


def test_bytes_read_have_a_budget_too(small_budgets):
    app, state = _populated(keys=30, value_bytes=200)  # ~6,400 bytes of keys and values
    code, res = _result(app.execute_block(
        state, 2, 2_000, [Request(b"c", 1, ops.range_(b"key/", prefix=True, keys_only=True))]))
    assert (code, res["error"]) == (BUDGET_EXCEEDED, "op read more than 4000 bytes of state")


def test_a_result_larger_than_the_cap_fails_but_one_largest_value_fits():
    app, state = _populated(keys=2, value_bytes=ops.MAX_VALUE_BYTES)
    one = app.execute_block(state, 2, 2_000, [Request(b"c", 1, ops.range_(b"key/000000"))])
    code, raw = one.results[0]
    assert code == 0 and len(raw) <= budgets.TX_RESULT_BYTES
    both = app.execute_block(state, 2, 2_000, [Request(b"c", 1, ops.range_(b"key/", prefix=True))])
    code, res = _result(both)
    assert code == BUDGET_EXCEEDED and res["error"].startswith("result of 2097")
    assert len(both.results[0][1]) < 200


def test_budget_failures_are_the_same_on_every_replica():
    txs = [Request(b"c", 1, ops.txn(success=[ops.range_op(b"", prefix=True)] * 20))]
    runs = []
    for _ in range(2):
        app, state = _populated(keys=3_000, value_bytes=10)
        runs.append(app.execute_block(state, 2, 2_000, txs))
    assert runs[0] == runs[1] and runs[0].results[0][0] == BUDGET_EXCEEDED


# ---------------------------------------------------------------- per block


def test_a_block_of_full_range_txns_reads_within_the_block_budget_and_small_txs_still_run():
    app, state = _populated(keys=3_000, value_bytes=10)
    heavy = ops.txn(success=[ops.range_op(b"", prefix=True)] * ops.MAX_TXN_OPS)
    txs = [Request(b"h", i, heavy) for i in range(100)]
    txs += [Request(b"c", 1, ops.put(b"small", b"x")), Request(b"c", 2, ops.range_(b"key/000001"))]
    counting = CountingState(state.items())
    eff = app.execute_block(counting, 2, 2_000, txs)
    bound = budgets.BLOCK_SCAN_ENTRIES + len(txs) * (budgets.TX_FLOOR_ENTRIES + 1) + 100
    assert counting.reads <= bound, f"one block read {counting.reads} entries (bound {bound})"
    codes = [code for code, _ in eff.results]
    assert set(codes[:100]) == {BUDGET_EXCEEDED} and codes[100:] == [0, 0]
    last = ops.decode_result(eff.results[99][1])["error"]
    assert "block had left" in last and "retry in a later block" in last
    assert app.execute_block(CountingState(state.items()), 2, 2_000, txs) == eff


def test_results_of_one_block_share_a_result_budget():
    app, state = _populated(keys=1, value_bytes=ops.MAX_VALUE_BYTES)
    reads = [Request(b"c", i, ops.range_(b"key/000000")) for i in range(20)]
    eff = app.execute_block(state, 2, 2_000, reads)
    codes = [code for code, _ in eff.results]
    fits = budgets.BLOCK_RESULT_BYTES // ops.MAX_VALUE_BYTES - 1
    assert codes[:fits] == [0] * fits and set(codes[fits + 1:]) == {BUDGET_EXCEEDED}
    assert sum(len(raw) for _, raw in eff.results) <= (
        budgets.BLOCK_RESULT_BYTES + budgets.TX_RESULT_BYTES)


# ---------------------------------------------------------------- compaction in steps


def _history(state) -> set[tuple[bytes, int]]:
    return {L.parse_hist_key(hk) for hk, _ in state.iterate(L.HIST)}


def _one_shot(history: dict[tuple[bytes, int], bool], target: int) -> set[tuple[bytes, int]]:
    """What compacting to `target` keeps of {(key, rev): is_tombstone}, computed plainly."""
    keep = set()
    for key in {k for k, _ in history}:
        revs = sorted(r for k, r in history if k == key)
        below = [r for r in revs if r <= target]
        keep |= {(key, r) for r in revs if r > target}
        if below and not history[(key, below[-1])]:
            keep.add((key, below[-1]))
    return keep


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_compaction_in_small_steps_is_invisible_to_reads_and_ends_like_one_pass(
        monkeypatch, seed):
    monkeypatch.setattr(budgets, "COMPACT_STEP_ENTRIES", 7)  # passes split inside a key's history
    rng = random.Random(seed)
    keys = [b"a", b"a\x00", b"ab", b"b", b"c\x00\xff", b"d"]
    compacting, twin = Chain(), Chain()
    tombstone: dict[tuple[bytes, int], bool] = {}

    def block(*txs, compact: int = 0):
        a = compacting.block(*txs, *([ops.compact(compact)] if compact else []))
        b = twin.block(*txs)
        assert a.results[: len(txs)] == b.results
        for e in b.events:
            tombstone[(e.key, e.revision)] = e.kind == "delete"
        return a

    def random_writes():
        return [ops.delete(k) if rng.random() < 0.2 else ops.put(k, b"%d" % rng.randrange(99))
                for k in rng.sample(keys, 3)]

    for _ in range(40):
        block(*random_writes())
    targets = [rng.randrange(20, 60), rng.randrange(70, 100)]
    assert block(compact=targets[0]).ok(0)["compact_revision"] == targets[0]
    blocks = 0
    while running(compacting.state):
        blocks += 1
        second = targets[1] if blocks == 3 else 0
        b = block(*random_writes(), compact=second)
        if second:  # a later compact arrives mid-pass
            assert b.ok(3)["compact_revision"] == second
        floor = targets[1] if blocks >= 3 else targets[0]
        now = compacting.query("revision")["revision"]
        for rev in {floor, (floor + now) // 2, now}:  # reads at or above the floor: unchanged
            assert (compacting.query("kv_range", key="", revision=rev)["kvs"]
                    == twin.query("kv_range", key="", revision=rev)["kvs"])
        assert blocks < 200
    assert blocks > 10  # it really took many blocks
    assert _history(compacting.state) == _one_shot(tombstone, targets[1])
    assert len(_history(compacting.state)) < len(_history(twin.state)) - 50


# ---------------------------------------------------------------- overlay


_okeys = st.sampled_from([b"", b"a", b"a\x00", b"a\xff", b"ab", b"b", b"\xff", b"\xff\xff",
                          b"\xff\x00"])


@settings(max_examples=300, deadline=None)
@given(
    base=st.dictionaries(_okeys, st.binary(max_size=2), max_size=6),
    block_writes=st.lists(st.tuples(_okeys, st.none() | st.binary(max_size=2)), max_size=40),
    tx_writes=st.lists(st.tuples(_okeys, st.none() | st.binary(max_size=2)), max_size=40),
    prefix=st.sampled_from([b"", b"a", b"b", b"\xff", b"\xff\xff", b"z"]),
    start=st.none() | _okeys,
    reverse=st.booleans(),
)
def test_stacked_overlays_iterate_like_the_merged_dict(base, block_writes, tx_writes, prefix,
                                                         start, reverse):
    def want(model):  # MemoryState is the plain sorted-list reference
        return list(MemoryState(model.items()).iterate(prefix, start, reverse))

    def write(overlay, model, writes):
        for i, (k, v) in enumerate(writes):
            if v is None:
                overlay.delete(k)
                model.pop(k, None)
            else:
                overlay.put(k, v)
                model[k] = v
            if i % 5 == 0:  # iterating between writes keeps the sorted keys fresh
                assert list(overlay.iterate(prefix, start, reverse)) == want(model)

    model = dict(base)
    block = Overlay(MemoryState(base.items()))
    write(block, model, block_writes)
    tx = Overlay(block)
    write(tx, model, tx_writes)
    assert list(tx.iterate(prefix, start, reverse)) == want(model)
    tx.merge_into(block)
    assert list(block.iterate(prefix, start, reverse)) == want(model)
    assert [block.get(k) for k in sorted(model)] == [model[k] for k in sorted(model)]


# ---------------------------------------------------------------- queries


def test_a_query_reads_within_the_tx_budget(small_budgets):
    app, state = _populated(keys=150, value_bytes=1)
    with pytest.raises(AppError) as err:
        app.query(state, "kv_range", {"key": b"key/", "count_only": True}, 2, 2_000)
    assert err.value.code == BUDGET_EXCEEDED and "state entries" in err.value.message
    page = app.query(state, "kv_range", {"key": b"key/", "limit": 10}, 2, 2_000)
    assert len(page["kvs"]) == 10 and page["more"] and page["count_exact"] is False
    assert 10 <= page["count"] < 150
    small = app.query(state, "kv_range", {"key": b"key/00001", "limit": 5}, 2, 2_000)
    assert (small["count"], small["more"], "count_exact" in small) == (10, True, False)
    with pytest.raises(AppError):  # a page larger than the budget still fails
        app.query(state, "kv_range", {"key": b"key/", "limit": 100}, 2, 2_000)


# ---------------------------------------------------------------- lease expiry per block


def test_leases_aligned_to_one_deadline_expire_a_bounded_number_per_block():
    app, state = KVApplication(), MemoryState()
    n = budgets.LEASE_EXPIRIES_PER_BLOCK * 2 + 100
    grants = [Request(b"c", i, ops.lease_grant(ttl_ms=1_000)) for i in range(n)]
    state.apply(app.execute_block(state, 1, 1_000, grants).writes)
    first = 1  # the first lease's id (its grant's revision)
    live = app.execute_block(state, 2, 1_500, [Request(b"c", 9_999, ops.put(
        b"before", b"v", lease=first + n - 1))])
    assert live.results[0][0] == 0  # the last lease is live before its deadline
    state.apply(live.writes)
    expired_per_block = []
    for height in range(3, 7):
        txs = [Request(b"c", 10_000 + height, ops.lease_keepalive(first + n - 1)),
               Request(b"c", 20_000 + height, ops.put(b"k%d" % height, b"v", lease=first + n - 1))]
        eff = app.execute_block(state, height, 5_000 + height, txs)
        state.apply(eff.writes)
        expired_per_block.append(sum(1 for e in eff.events if e.kind == "lease_expired"))
        # the last lease is overdue in every block, removed or not: no op revives or uses it
        assert [code for code, _ in eff.results] == [NOT_FOUND, NOT_FOUND]
    assert expired_per_block == [budgets.LEASE_EXPIRIES_PER_BLOCK] * 2 + [100, 0]
