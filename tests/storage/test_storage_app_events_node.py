"""The node's stored app events through the real path: KVApplication executes signed txs,
`execute_and_commit` stores the block with its events, and `bftnode.node.app_events` reads
back the same AppEvent structs (a txn's puts at one revision, a lease grant) on LevelDB
after reopening; an application without a codec gets plain msgpack values."""

from __future__ import annotations

from ledger_helpers import CHAIN_ID, CLIENTS, GENESIS_HASH, make_block, make_pre_prepare

from bftnode.app import KVApplication
from bftnode.app import ops as O
from bftnode.app.events import AppEvent, decode_events, encode_events
from bftnode.node import app_events
from bftnode.node.executor import execute_and_commit
from consensus import Request, sign_request
from consensus.codec import GENESIS_CHAIN_DIGEST
from storage import open_store


def test_stored_events_equal_the_executed_ones_after_reopen(tmp_path):
    app = KVApplication()
    store = open_store(tmp_path / "db", CHAIN_ID, GENESIS_HASH, create=True)
    ops = [[O.put(b"a", b"1"), O.txn(success=[O.put_op(b"b", b"2"), O.put_op(b"c", b"3")])],
           [O.lease_grant(ttl=30.0)], []]
    prev, seq, executed = GENESIS_CHAIN_DIGEST, 0, {}
    for h, block_ops in enumerate(ops, start=1):
        reqs = []
        for op in block_ops:
            seq += 1
            reqs.append(sign_request(CHAIN_ID, CLIENTS[0], Request(b"", seq, op)))
        block = make_block(make_pre_prepare(0, h, 1000 + h, tuple(reqs)), prev)
        prev = block.execute.block_hash
        [(_, effects)] = execute_and_commit(store, app, [block.execute])
        executed[h] = list(effects.events)
    store.close()
    store = open_store(tmp_path / "db", CHAIN_ID, GENESIS_HASH, create=False)
    got = {h: list(app_events.stored(store, app, h)) for h in executed}
    assert got == executed
    assert [(e.key, e.revision) for e in got[1]] == [(b"a", 1), (b"b", 2), (b"c", 2)]
    assert [e.kind for e in got[2]] == ["lease_granted"] and got[3] == []
    assert all(isinstance(e, AppEvent) for e in got[1])
    plain = app_events.stored(store, object(), 1)  # no codec: plain msgpack values back
    assert [t[1] for t in plain] == [b"a", b"b", b"c"]
    assert app_events.stored(store, app, 4) is None  # not committed
    store.close()


def test_the_kv_codec_round_trips_every_field():
    ev = AppEvent("lock_granted", b"L", 9, value=None, create_revision=3, version=2, lease=7,
                  token=9, owner=b"o", deadline_ms=5, tx_index=1, height=4, time_ms=6,
                  scope="election")
    assert decode_events(encode_events([ev, ev])) == [ev, ev]
