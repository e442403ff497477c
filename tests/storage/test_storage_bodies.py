"""Block bodies and consensus records in their own LevelDBs (storage.leveldb._PlyvelKV):
layout, crash order, older ledgers."""

from __future__ import annotations

import time

import plyvel
import pytest
from ledger_helpers import CHAIN_ID, GENESIS_HASH, ChainBuilder

from consensus import ViewState
from storage import CorruptionError, StorageError, keys, open_store
from storage.leveldb import BODIES_DIR, RECORDS_DIR


def _raw(path):
    return plyvel.DB(str(path))


def _one_block_ledger(db):
    """A closed ledger holding block 1, and the next block (not committed)."""
    s = open_store(db, CHAIN_ID, GENESIS_HASH, create=True)
    cb = ChainBuilder()
    b1, b2 = cb.next_block(2), cb.next_block(2)
    s.commit_block(b1)
    s.close()
    return b1, b2


def test_bodies_live_in_their_own_db_and_everything_else_in_the_main_one(tmp_path):
    db = tmp_path / "db"
    s = open_store(db, CHAIN_ID, GENESIS_HASH, create=True)
    cb = ChainBuilder()
    blocks = [cb.next_block(3) for _ in range(3)]
    s.commit_blocks(blocks[:2])
    s.commit_block(blocks[2])
    s.close()
    main, bodies = _raw(db), _raw(db / BODIES_DIR)
    try:
        assert [k for k, _ in bodies.iterator()] == [keys.body(h) for h in (1, 2, 3)]
        assert not any(True for _ in main.iterator(prefix=keys.BODY))
        assert main.get(keys.header(3)) is not None
    finally:
        main.close()
        bodies.close()
    s = open_store(db, CHAIN_ID, GENESIS_HASH, create=False)
    assert s.verify_chain() == 3
    assert s.block(2).txs == blocks[1].execute.requests
    assert s.committed_block(3).pre_prepare == blocks[2].execute.pre_prepare
    s.close()


def test_crash_between_the_bodies_and_the_main_write_recovers_to_the_old_height(tmp_path):
    db = tmp_path / "db"
    _b1, b2 = _one_block_ledger(db)
    # what a kill -9 between the two writes of commit_block(b2) leaves: its body only
    s2 = open_store(db, CHAIN_ID, GENESIS_HASH, create=False)
    s2._kv.write([(keys.body(2), b"a body nothing refers to")], sync=True)
    s2.close()
    s = open_store(db, CHAIN_ID, GENESIS_HASH, create=False)
    rs = s.recover()
    assert rs.last_executed == 1 and s.block(2) is None
    s.commit_block(b2)  # the re-commit overwrites the orphan body
    assert s.block(2).txs == b2.execute.requests
    s.close()
    s = open_store(db, CHAIN_ID, GENESIS_HASH, create=False)
    assert s.verify_chain() == 2 and s.block(2).hash == b2.execute.block_hash
    s.close()


def test_a_ledger_with_bodies_in_the_main_db_is_read_and_extended(tmp_path):
    """Ledgers written before the split keep their bodies in the main DB."""
    db = tmp_path / "db"
    b1, b2 = _one_block_ledger(db)
    bodies = _raw(db / BODIES_DIR)
    raw_body = bodies.get(keys.body(1))
    bodies.close()
    main = _raw(db)
    main.put(keys.body(1), raw_body)
    main.close()
    plyvel.destroy_db(str(db / BODIES_DIR))
    s = open_store(db, CHAIN_ID, GENESIS_HASH, create=False)
    assert s.verify_chain() == 1 and s.block(1).txs == b1.execute.requests
    s.commit_block(b2)
    assert s.block(1).txs == b1.execute.requests and s.block(2).txs == b2.execute.requests
    s.close()


def test_lost_bodies_db_is_reported_as_corruption(tmp_path):
    db = tmp_path / "db"
    _one_block_ledger(db)
    plyvel.destroy_db(str(db / BODIES_DIR))
    s = open_store(db, CHAIN_ID, GENESIS_HASH, create=False)
    with pytest.raises(CorruptionError, match="block 1 body missing"):
        s.verify_chain()
    s.close()


def test_consensus_records_live_in_their_own_db_and_older_ledgers_move_them_there(tmp_path):
    db = tmp_path / "db"
    s = open_store(db, CHAIN_ID, GENESIS_HASH, create=True)
    s.persist([ViewState(2, False)])
    s.commit_block(ChainBuilder().next_block(2))
    s.close()
    records = _raw(db / RECORDS_DIR)
    view = records.get(keys.VIEW_KEY)
    assert view is not None
    # an older ledger: its records in the main DB, none in the records DB
    records.delete(keys.VIEW_KEY)
    records.close()
    main = _raw(db)
    assert main.get(keys.VIEW_KEY) is None
    main.put(keys.VIEW_KEY, view)
    main.close()
    s = open_store(db, CHAIN_ID, GENESIS_HASH, create=False)
    assert s.recover().view == 2
    s.close()
    main, records = _raw(db), _raw(db / RECORDS_DIR)
    try:
        assert main.get(keys.VIEW_KEY) is None and records.get(keys.VIEW_KEY) == view
    finally:
        main.close()
        records.close()


def test_a_range_read_may_not_leave_a_routed_keyspace(tmp_path):
    s = open_store(tmp_path / "db", CHAIN_ID, GENESIS_HASH, create=True)
    try:
        with pytest.raises(ValueError, match="leaves"):
            list(s._kv.items(keys.VOTE, None))
    finally:
        s.close()


def test_a_refused_open_leaves_no_side_databases_behind(tmp_path):
    db = tmp_path / "db"
    _one_block_ledger(db)
    plyvel.destroy_db(str(db / RECORDS_DIR))  # as an older ledger: no records DB yet
    with pytest.raises(StorageError, match="belongs to chain"):
        open_store(db, b"another chain", GENESIS_HASH, create=False)
    assert not (db / RECORDS_DIR).exists() and (db / BODIES_DIR).exists()


def test_main_memtable_is_staggered_by_node_and_honoured(tmp_path):
    from storage.leveldb import MAIN_MEMTABLE_BYTES, staggered_memtable_bytes

    sizes = [staggered_memtable_bytes(i) for i in range(4)]
    assert len(set(sizes)) == 4 and min(sizes) == MAIN_MEMTABLE_BYTES
    assert staggered_memtable_bytes(4) == sizes[0]

    def tables_after_writing(memtable: int, name: str, flushed: bool = False) -> int:
        """Main-DB table files after ~4.6 MiB of unsynced state writes (a flush makes one).
        `flushed`: wait (with a deadline) for the background flush to write its table, which
        a loaded machine may not have started by the time we close."""
        db = tmp_path / name
        s = open_store(db, CHAIN_ID, GENESIS_HASH, create=True, memtable_bytes=memtable)
        try:
            for b in range(46):
                s._kv.write([(keys.state(b"%02d-%04d" % (b, i)), b"x" * 1000)
                             for i in range(100)], sync=False)
            deadline = time.monotonic() + 20
            while flushed and not list(db.glob("*.ldb")) and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            s.close()  # waits for a started flush; an unfilled memtable stays in the log
        return len(list(db.glob("*.ldb")))

    assert tables_after_writing(4 * 2**20, "small", flushed=True) >= 1
    assert tables_after_writing(6 * 2**20, "large") == 0  # still all in the memtable
