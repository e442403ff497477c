"""tx_search's query language (bftnode.rpc.tx_query): what it takes, what it refuses (naming
it), and the height range it reads."""

from __future__ import annotations

import pytest

from bftnode.rpc import errors as E
from bftnode.rpc.errors import RPCError
from bftnode.rpc.tx_query import MAX_SEARCH_BLOCKS, TxQuery, parse


def test_height_ranges_hash_and_code():
    assert parse("tx.height>5 AND tx.height<=10") == TxQuery(6, 10)
    assert parse("tx.height = 7") == TxQuery(7, 7)
    assert parse("tx.height>=3 AND tx.height<3") == TxQuery(3, 2)  # empty: reads nothing
    h = "ab" * 32
    assert parse(f"tx.hash='{h}'").tx_hash == bytes.fromhex(h)
    assert parse(f"tx.hash=\"0x{h}\" AND tx.code=0") == TxQuery(1, None, bytes.fromhex(h), 0)
    assert list(parse("tx.height>=2 AND tx.height<5").heights(100)) == [2, 3, 4]
    assert list(parse("tx.height>8").heights(10)) == [9, 10]


@pytest.mark.parametrize("query, needle", [
    ("message.sender='x'", "'message.sender' is not indexed"),
    ("tx.signer='ab'", "'tx.signer' is not indexed"),
    ("kv.key>'x'", "attributes take = only"),
    ("kv.key EXISTS", "cannot read condition 'kv.key EXISTS'"),
    ("kv.key='" + "x" * 1025 + "'", "indexed up to 1024 bytes"),
    ("tx.height>5 OR tx.height<2", "cannot read condition"),
    ("tx.hash<'ab'", "takes = only"),
    ("tx.hash='zz'", "64 hex"),
    ("tx.code>1", "= only"),
    ("tx.height='x'", "integer"),
    ("", "empty"),
    ("tx.height>1" + " AND tx.height>1" * 200, "longer than"),
    ("kv.key='a'" + " AND kv.key='a'" * 4, "at most 4 event attribute conditions"),
])
def test_refusals_name_the_problem(query, needle):
    with pytest.raises(RPCError) as e:
        parse(query)
    assert e.value.code == E.INVALID_PARAMS and needle in e.value.message, e.value.message


def test_indexed_event_attributes():
    q = parse("tx.height>5 AND kv.key='x' AND lock.key=\"L\"")
    assert q == TxQuery(6, None, attrs=((b"kv.key", b"x"), (b"lock.key", b"L")))
    assert parse("kv.key='0xAB' AND lease.id=7").attrs == ((b"kv.key", b"0xAB"), (b"lease.id", b"7"))
    assert parse("election.key='e'").attrs == ((b"election.key", b"e"),)


def test_a_range_over_the_block_cap_is_refused_not_truncated():
    with pytest.raises(RPCError) as e:
        parse("tx.height>=1").heights(MAX_SEARCH_BLOCKS + 5)
    assert "span more than" in e.value.message


def test_subscription_queries_take_tm_event_tx_and_match_committed_txs():
    from bftnode.rpc.tx_query import matches, parse_subscription

    q = parse_subscription("tm.event='Tx' AND kv.key='k' AND tx.height>=3 AND tx.code=0")
    assert q == TxQuery(3, None, code=0, attrs=((b"kv.key", b"k"),))
    assert parse_subscription('tm.event = "Tx"') == TxQuery()
    h = b"\x01" * 32
    assert matches(q, 3, h, 0, {(b"kv.key", b"k"), (b"lease.id", b"1")})
    assert not matches(q, 2, h, 0, {(b"kv.key", b"k")})  # below tx.height
    assert not matches(q, 3, h, 1, {(b"kv.key", b"k")})  # code
    assert not matches(q, 3, h, 0, {(b"kv.key", b"other")})  # attribute
    with pytest.raises(RPCError) as e:
        parse_subscription("tm.event='NewBlock'")
    assert "topic blocks" in e.value.message
    with pytest.raises(RPCError):
        parse_subscription("tm.event='Tx' AND foo.bar='x'")


def test_a_blocks_tx_attributes_are_worked_out_once_for_every_subscriber():
    # every `txs` subscription with a query matches a block's txs by their events' attributes:
    # read once per block per node, shared by all its WebSocket connections
    from types import SimpleNamespace

    from bftnode.app.events import AppEvent
    from bftnode.rpc.websocket import ATTRS_KEPT, WSConnection

    class Node:
        reads = 0

        def app_events(self, height):
            Node.reads += 1
            return [AppEvent("put", b"k%d" % height, height, tx_index=0),
                    AppEvent("put", b"j", height, lease=7, tx_index=1)]

    node = Node()
    conns = [SimpleNamespace(node=node) for _ in range(3)]
    block = SimpleNamespace(height=5)
    got = [WSConnection._tx_attrs(c, block) for c in conns]
    assert Node.reads == 1 and all(g == got[0] for g in got)
    assert got[0] == {0: {(b"kv.key", b"k5")}, 1: {(b"kv.key", b"j"), (b"lease.id", b"7")}}
    for h in range(6, 6 + ATTRS_KEPT):  # bounded: the oldest heights are forgotten
        WSConnection._tx_attrs(conns[0], SimpleNamespace(height=h))
    WSConnection._tx_attrs(conns[1], block)
    assert Node.reads == 2 + ATTRS_KEPT
