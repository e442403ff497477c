"""The tx-attribute index (storage.tx_attrs, keyspaces I and J): a value's txs come back by
one range read in height order within the asked heights; pruning a block deletes what its
height indexed; a block's entries ride in its own batch, and the node catches up on blocks
committed without them (bftnode.node.tx_attrs). On real plyvel and on MemoryStore."""

from __future__ import annotations

import pytest
from ledger_helpers import CHAIN_ID, GENESIS_HASH, ChainBuilder, open_engine

from bftnode.app.events import DELETE, LEASE_GRANTED, LOCK_GRANTED, PUT, AppEvent, event_attrs
from bftnode.node import app_events
from bftnode.node import tx_attrs as node_attrs
from storage import keys, open_store, tx_attrs


def _entries(block, attr=b"kv.key"):
    """Each tx indexed under its own request seq's key and a shared value."""
    ex = block.execute
    out = []
    for i, (req, res) in enumerate(zip(ex.requests, block.results, strict=True)):
        out.append((attr, b"k%d" % (req.request_seq % 3), i, res.tx_hash))
        out.append((attr, b"all", i, res.tx_hash))
    return out


@pytest.mark.parametrize("engine", ["leveldb", "memory"])
def test_a_value_finds_its_txs_in_height_order_within_the_range(engine, tmp_path):
    s = open_engine(engine, tmp_path / "db")
    cb = ChainBuilder(seed=3)
    blocks = [cb.next_block(ntx=3) for _ in range(10)]
    s.commit_blocks(blocks)
    s.index_tx_attrs([(b.execute.seq, _entries(b)) for b in blocks])
    assert s.tx_attrs_indexed() == 10
    with s.read_view() as v:
        every = v.find_tx_attr(b"kv.key", b"all", 1, 10, 1000)
        assert [(h, i) for h, i, _ in every] == [(h, i) for h in range(1, 11) for i in range(3)]
        by_hash = {r.tx_hash: (b.execute.seq, r.index) for b in blocks for r in b.results}
        assert all(by_hash[th] == (h, i) for h, i, th in every)
        assert [h for h, _, _ in v.find_tx_attr(b"kv.key", b"all", 4, 6, 1000)] == [4] * 3 + \
            [5] * 3 + [6] * 3
        assert len(v.find_tx_attr(b"kv.key", b"all", 1, 10, 7)) == 7  # the limit
        assert v.find_tx_attr(b"kv.key", b"none", 1, 10, 100) == []
        assert v.find_tx_attr(b"kv.ke", b"yall", 1, 10, 100) == []  # no prefix confusion
        assert v.find_tx_attr(b"lock.key", b"all", 1, 10, 100) == []
    with pytest.raises(Exception, match="indexed already"):
        s.index_tx_attrs([(10, [])])
    assert s.prune_blocks(5) == 5
    with s.read_view() as v:
        assert {h for h, _, _ in v.find_tx_attr(b"kv.key", b"all", 1, 10, 1000)} == \
            set(range(5, 11))
    left = [k for k, _ in s._kv.items(keys.TX_ATTR_BY_HEIGHT,
                                      keys.prefix_end(keys.TX_ATTR_BY_HEIGHT))]
    assert [keys.from_u64(k[1:]) for k in left] == list(range(5, 11))
    s.close()


def test_values_too_long_are_not_indexed(tmp_path):
    s = open_engine("memory", tmp_path)
    cb = ChainBuilder(seed=4)
    b = cb.next_block(ntx=1)
    s.commit_block(b)
    th = b.results[0].tx_hash
    s.index_tx_attrs([(1, [(b"kv.key", b"x" * (tx_attrs.MAX_VALUE + 1), 0, th),
                           (b"kv.key", b"x" * tx_attrs.MAX_VALUE, 0, th)])])
    with s.read_view() as v:
        assert v.find_tx_attr(b"kv.key", b"x" * tx_attrs.MAX_VALUE, 1, 1, 10) == [(1, 0, th)]
        assert v.find_tx_attr(b"kv.key", b"x" * (tx_attrs.MAX_VALUE + 1), 1, 1, 10) == []


def test_event_attrs_name_each_tx_once_and_skip_block_start_expiries():
    evs = [AppEvent(PUT, b"a", 1, tx_index=0), AppEvent(PUT, b"a", 2, tx_index=0),
           AppEvent(DELETE, b"b", 3, tx_index=1),
           AppEvent(LOCK_GRANTED, b"L", 4, lease=7, tx_index=2, scope="lock"),
           AppEvent(LOCK_GRANTED, b"E", 4, lease=7, tx_index=2, scope="election"),
           AppEvent(LEASE_GRANTED, b"", 0, lease=9, tx_index=3),
           AppEvent(PUT, b"expired", 5, tx_index=-1)]
    assert event_attrs(evs) == [
        (b"kv.key", b"a", 0), (b"kv.key", b"b", 1), (b"lock.key", b"L", 2),
        (b"lease.id", b"7", 2), (b"election.key", b"E", 2), (b"lease.id", b"9", 3)]


class _App:
    def event_attrs(self, events):
        return event_attrs(events)

    def encode_events(self, events):
        from bftnode.app.events import encode_events
        return encode_events(events)

    def decode_events(self, raw):
        from bftnode.app.events import decode_events
        return decode_events(raw)


@pytest.mark.parametrize("engine", ["leveldb", "memory"])
def test_blocks_carry_their_entries_and_catch_up_indexes_the_ones_that_did_not(engine, tmp_path):
    """A block committed with its entries is indexed in its own batch while the index
    reaches the block before it; blocks committed without (a ledger from before the index,
    `tx_index` off) or above a gap are left to `catch_up`, which indexes them from the stored
    blocks and events a bounded step at a time. A reopened store knows how far it reached."""
    s = open_engine(engine, tmp_path / "db")
    app = _App()
    cb = ChainBuilder(seed=8)

    def commit(evs, attrs: bool):
        b = cb.next_block(ntx=2)
        ents = tuple(node_attrs.entries(app, [r.tx_hash for r in b.results], evs))
        s.commit_block(type(b)(b.execute, b.results, b.state_writes, b.state_root,
                               app_events.encode(app, evs), ents if attrs else None))
        return b

    first = commit([AppEvent(PUT, b"one", 1, tx_index=1)], attrs=True)
    assert s.tx_attrs_indexed() == 1 and not node_attrs.behind(s)
    later = [commit([AppEvent(PUT, b"later", seq, tx_index=0)], attrs=seq > 4)
             for seq in range(2, 8)]  # 2..4 without entries, 5..7 with: above a gap
    assert s.tx_attrs_indexed() == 1 and node_attrs.behind(s)
    assert node_attrs.catch_up(s, app, max_blocks=4) == 4
    assert s.tx_attrs_indexed() == 5
    assert node_attrs.catch_up(s, app, max_blocks=4) == 2
    assert not node_attrs.behind(s)
    nxt = commit([AppEvent(PUT, b"later", 8, tx_index=1)], attrs=True)  # contiguous again
    assert s.tx_attrs_indexed() == 8
    later.append(nxt)
    with s.read_view() as v:
        assert v.find_tx_attr(b"kv.key", b"one", 1, 9, 10) == [(1, 1, first.results[1].tx_hash)]
        found = v.find_tx_attr(b"kv.key", b"later", 1, 9, 10)
        assert found == [(b.execute.seq, 0 if b is not nxt else 1,
                          b.results[0 if b is not nxt else 1].tx_hash) for b in later]
    if engine == "leveldb":
        s.close()
        s = open_store(tmp_path / "db", CHAIN_ID, GENESIS_HASH, create=False)
        s.recover()
        assert s.tx_attrs_indexed() == 8
    s.close()
