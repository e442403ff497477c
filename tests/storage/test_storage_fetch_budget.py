"""What a node answers a peer's FetchBlocks with (bftnode.node.executor.blocks_for_fetch), read from
a real LevelDB ledger: contiguous from the asked height, bounded in blocks and in bytes."""

from __future__ import annotations

from ledger_helpers import CHAIN_ID, GENESIS_HASH, ChainBuilder

from bftnode.node.executor import FETCH_MAX_BLOCKS, blocks_for_fetch
from consensus.types import request_size
from storage import open_store


def _ledger(tmp_path, blocks: int, txs: int):
    s = open_store(tmp_path / "db", CHAIN_ID, GENESIS_HASH, create=True)
    cb = ChainBuilder()
    s.commit_blocks([cb.next_block(txs) for _ in range(blocks)])
    return s


def _bytes(cb) -> int:
    return sum(request_size(len(r.op)) for r in cb.pre_prepare.requests)


def test_answer_is_contiguous_and_stops_at_the_tip(tmp_path):
    s = _ledger(tmp_path, 10, 3)
    try:
        got = blocks_for_fetch(s, 4, 50)
        assert [b.pre_prepare.seq for b in got] == list(range(4, 11))
        assert blocks_for_fetch(s, 11, 20) == ()
    finally:
        s.close()


def test_answer_is_bounded_in_blocks(tmp_path):
    s = _ledger(tmp_path, FETCH_MAX_BLOCKS + 6, 1)
    try:
        got = blocks_for_fetch(s, 1, FETCH_MAX_BLOCKS + 6)
        assert [b.pre_prepare.seq for b in got] == list(range(1, FETCH_MAX_BLOCKS + 1))
    finally:
        s.close()


def test_answer_is_bounded_in_request_bytes_but_never_empty(tmp_path):
    s = _ledger(tmp_path, 12, 5)
    try:
        sizes = [_bytes(s.committed_block(h)) for h in (1, 2, 3, 4)]
        budget = sum(sizes[:3]) + sizes[3] // 2  # room for three blocks and a half
        got = blocks_for_fetch(s, 1, 12, max_bytes=budget)
        assert [b.pre_prepare.seq for b in got] == [1, 2, 3]
        assert sum(_bytes(b) for b in got) <= budget
        # a first block larger than the whole budget still goes (else no progress)
        assert [b.pre_prepare.seq for b in blocks_for_fetch(s, 5, 12, max_bytes=1)] == [5]
    finally:
        s.close()
