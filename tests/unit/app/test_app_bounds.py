"""Execution is total and bounded (issue 35): any op bytes a client can sign give a result
code, never an exception, and no single tx or block of txs does unbounded work.

Reproductions of the reported failures: op bytes nested 10,000 deep under an unknown field;
a txn of 128 full-keyspace range reads on a populated state; a block of many compact ops on
a long history."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bftnode.app import KVApplication, MemoryState, ops
from bftnode.app.errors import BAD_OP
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
