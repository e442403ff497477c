"""The ledger contract, run against LevelDBStore (real plyvel in tmp_path) and MemoryStore."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ledger_helpers import AUTHS, CHAIN_ID, GENESIS_HASH, ChainBuilder, make_block, make_pre_prepare

from consensus import (
    Checkpoint,
    Commit,
    NewView,
    OwnVote,
    Prepare,
    Prune,
    StableCheckpoint,
    ViewChange,
    ViewState,
    request_digest,
)
from consensus.codec import GENESIS_CHAIN_DIGEST
from storage import (
    CorruptionError,
    LevelDBStore,
    MemoryStore,
    SimulatedCrash,
    StateChunk,
    StorageError,
    keys,
    open_store,
)
from storage.records import BlockHeader, decode, encode


def _vote(kind, view, seq, digest=b"d" * 32, replica=1):
    return AUTHS[replica].sign(kind(view, seq, digest, replica))


# ------------------------------------------------------------------ blocks


def test_fresh_store_recovers_genesis_state(store):
    rs = store.recover()
    assert (rs.view, rs.last_executed, rs.last_block_hash) == (0, 0, GENESIS_CHAIN_DIGEST)
    assert store.height() == 0 and store.block(1) is None


def test_committed_block_is_readable_with_certificate_txs_and_state(store):
    cb = ChainBuilder()
    b1 = cb.next_block(3, ((b"a", b"1"), (b"b", b"2")))
    store.commit_block(b1)
    got = store.block(1)
    assert got.hash == b1.execute.block_hash and got.prev_hash == GENESIS_CHAIN_DIGEST
    assert got.txs == b1.execute.requests and got.time_ms == b1.execute.time_ms
    assert got.committed.pre_prepare == b1.execute.pre_prepare
    assert store.committed_block(1).commits == b1.execute.commits
    for i, req in enumerate(b1.execute.requests):
        assert store.tx(request_digest(req)) == b1.results[i]
        assert store.tx_by_client(req.client_id, req.request_seq) == b1.results[i]
    assert store.state().get(b"a") == b"1"
    store.commit_block(cb.next_block(1, ((b"a", None),)))
    assert store.state().get(b"a") is None and store.height() == 2
    assert [b.height for b in store.blocks(1)] == [1, 2]


def test_block_with_wrong_height_or_prev_hash_is_refused_and_nothing_written(store):
    cb = ChainBuilder()
    store.commit_block(cb.next_block())
    before = store.recover()
    skipped = ChainBuilder(height=5, prev_hash=cb.prev_hash).next_block()
    with pytest.raises(StorageError, match="next is 2"):
        store.commit_block(skipped)
    forked = ChainBuilder(height=1, prev_hash=b"x" * 32).next_block(2, ((b"z", b"1"),))
    with pytest.raises(StorageError, match="prev_hash"):
        store.commit_block(forked)
    assert store.recover() == before and store.state().get(b"z") is None
    bad = cb.next_block()
    bad = dataclasses.replace(bad, results=bad.results[:-1])
    with pytest.raises(StorageError, match="results"):
        store.commit_block(bad)
    assert store.height() == 1


def test_state_iteration_by_prefix_start_and_direction(store):
    cb = ChainBuilder()
    writes = tuple((b"k%d" % i, b"v%d" % i) for i in range(5)) + ((b"other", b"x"),)
    store.commit_block(cb.next_block(0, writes))
    st = store.state()
    assert [k for k, _ in st.iterate(b"k")] == [b"k0", b"k1", b"k2", b"k3", b"k4"]
    assert [k for k, _ in st.iterate(b"k", start=b"k2")] == [b"k2", b"k3", b"k4"]
    assert [k for k, _ in st.iterate(b"k", reverse=True)][:2] == [b"k4", b"k3"]
    assert [k for k, _ in st.iterate(b"k", start=b"k2", reverse=True)] == [b"k2", b"k1", b"k0"]
    assert [k for k, _ in st.iterate(b"")][-1] == b"other"


def test_snapshot_is_unchanged_by_later_commits(store):
    cb = ChainBuilder()
    store.commit_block(cb.next_block(0, ((b"a", b"1"),)))
    with store.snapshot() as snap:
        store.commit_block(cb.next_block(0, ((b"a", b"2"), (b"b", b"3"))))
        assert snap.get(b"a") == b"1" and snap.get(b"b") is None
        assert list(snap.iterate(b"")) == [(b"a", b"1")]
    assert store.state().get(b"a") == b"2"


def test_client_window_is_bounded_by_dedup_window(tmp_path):
    s = MemoryStore(CHAIN_ID, GENESIS_HASH, dedup_window=5)
    cb = ChainBuilder()
    for _ in range(10):
        s.commit_block(cb.next_block(3))
    rs = s.recover()
    for cid, top in cb.client_seq.items():
        assert rs.client_executed[cid] == tuple(range(max(1, top - 4), top + 1))
    # the tx index itself keeps everything
    first = cb.client_seq and next(iter(cb.client_seq))
    assert s.tx_by_client(first, 1) is not None


def test_client_histories_answer_what_recover_restores(store):
    """LoadClients' answer (real LevelDB and the memory engine): each client's window as
    recover() restores it, a never-seen client as empty, with the height it reflects."""
    cb = ChainBuilder(seed=3)
    for _ in range(12):
        store.commit_block(cb.next_block(4))
    full = store.recover().client_executed
    assert full and store.recover().clients_complete
    unknown = bytes(32)
    height, hist = store.client_histories((*full, unknown))
    assert height == store.height() == 12
    assert dict(hist) == {**full, unknown: ()}
    for cid, seqs in full.items():
        assert seqs[-1] == cb.client_seq[cid]


def test_recover_caps_the_restored_clients_and_says_so(store):
    cb = ChainBuilder(seed=4)
    for _ in range(8):
        store.commit_block(cb.next_block(5))
    n = len(cb.client_seq)
    assert n >= 3
    part = store.recover(max_clients=2)
    assert len(part.client_executed) == 2 and not part.clients_complete
    full = store.recover(max_clients=n)
    assert len(full.client_executed) == n and full.clients_complete
    assert {c: full.client_executed[c] for c in part.client_executed} == part.client_executed


def test_legacy_per_seq_window_keys_are_folded_into_the_client_top(tmp_path):
    """Ledgers before session 5 kept one E-key per seq in the window and no W-key."""
    s = MemoryStore(CHAIN_ID, GENESIS_HASH, dedup_window=5)
    cb = ChainBuilder()
    for _ in range(6):
        s.commit_block(cb.next_block(3))
    want = s.recover().client_executed
    for cid, top in cb.client_seq.items():
        s.corrupt(keys.client_top(cid), None)
        for seq in range(top - 4, top + 1):
            s.corrupt(keys.client_window(cid, seq), keys.u64(1))
    s.crash()
    assert s.recover().client_executed == want
    raw = dict(s.raw_items())
    assert not any(k.startswith(keys.CLIENT_WINDOW) for k in raw)
    assert {keys.from_u64(raw[keys.client_top(c)]) for c in cb.client_seq} == set(
        cb.client_seq.values())
    s.commit_block(cb.next_block(3))  # and the ledger goes on from there
    assert s.recover().last_executed == 7


def test_export_and_import_state_move_the_chain_base(store, tmp_path):
    cb = ChainBuilder()
    writes = tuple((b"key%04d" % i, b"val%d" % i) for i in range(50))
    store.commit_block(cb.next_block(2, writes))
    store.commit_block(cb.next_block(2, ((b"key0000", None),)))
    chunks = list(store.export_state(chunk_items=7))
    assert {c.height for c in chunks} == {2} and chunks[0].block_hash == cb.prev_hash
    assert sum(len(c.items) for c in chunks) == 49
    other = MemoryStore(CHAIN_ID, GENESIS_HASH)
    other.commit_block(ChainBuilder(seed=9).next_block(0, ((b"stale", b"x"),)))
    cert = store.committed_block(2)
    other.import_state(2, cb.prev_hash, chunks, cert, prev_hash=store.block(1).hash)
    assert other.state().get(b"stale") is None and other.state().get(b"key0001") == b"val1"
    rs = other.recover()
    assert (rs.last_executed, rs.last_block_hash) == (2, cb.prev_hash)
    other.commit_block(cb.next_block(1))
    assert other.recover().last_executed == 3


# ------------------------------------------------------------------ consensus records


def test_records_round_trip_through_recover(store):
    pp = ChainBuilder().next_pre_prepare(2)
    votes = [pp, _vote(Prepare, 0, 1), _vote(Commit, 0, 1)]
    cp = StableCheckpoint(1, b"h" * 32, (AUTHS[0].sign(Checkpoint(1, b"h" * 32, 0)),))
    store.persist([ViewState(3, True)] + [OwnVote(v) for v in votes] + [cp])
    rs = store.recover()
    assert (rs.view, rs.in_view_change) == (3, True)
    assert set(rs.own_votes) == set(votes) and rs.stable_checkpoint == cp


def test_prune_drops_old_votes_and_old_view_changes_but_keeps_blocks(store):
    cb = ChainBuilder()
    store.commit_block(cb.next_block())
    vc1 = AUTHS[1].sign(ViewChange(1, 0, bytes(32), (), (), 1))
    vc2 = AUTHS[1].sign(ViewChange(2, 0, bytes(32), (), (), 1))
    nv2 = AUTHS[2].sign(NewView(2, (), (), 2))
    keep = [_vote(Prepare, 2, 9), _vote(Commit, 2, 9), vc2, nv2]
    store.persist(
        [OwnVote(v) for v in [_vote(Prepare, 0, 3), _vote(Commit, 1, 8), vc1, *keep]]
        + [ViewState(2, False), Prune(8)]
    )
    assert set(store.recover().own_votes) == set(keep)
    assert store.block(1) is not None


def test_conflicting_own_vote_is_refused_and_nothing_written(store):
    store.persist([OwnVote(_vote(Prepare, 0, 1, b"a" * 32))])
    store.persist([OwnVote(_vote(Prepare, 0, 1, b"a" * 32))])  # identical: fine
    with pytest.raises(StorageError, match="conflicting"):
        store.persist([ViewState(1, False), OwnVote(_vote(Prepare, 0, 1, b"b" * 32))])
    rs = store.recover()
    assert rs.view == 0 and [v.digest for v in rs.own_votes] == [b"a" * 32]


def test_vote_and_view_checks_hold_after_reopen_and_after_a_torn_persist(tmp_path):
    """persist reads a vote slot only if it is known to be stored, and caches the view: both
    are re-read from disk after a reopen and after a crash, whatever landed."""
    s = open_store(tmp_path / "db", CHAIN_ID, GENESIS_HASH, create=True)
    s.persist([ViewState(3, False), OwnVote(_vote(Prepare, 3, 1, b"a" * 32))])
    s.close()
    s = open_store(tmp_path / "db", CHAIN_ID, GENESIS_HASH, create=False)
    with pytest.raises(StorageError, match="conflicting"):
        s.persist([OwnVote(_vote(Prepare, 3, 1, b"b" * 32))])
    with pytest.raises(StorageError, match="back"):
        s.persist([ViewState(2, False)])
    s.close()
    m = MemoryStore(CHAIN_ID, GENESIS_HASH)
    m.persist([OwnVote(_vote(Prepare, 0, 1, b"a" * 32))])  # the slot set is now loaded
    m.tear_next_write(2)
    with pytest.raises(SimulatedCrash):
        m.persist([ViewState(5, False), OwnVote(_vote(Prepare, 5, 2, b"a" * 32))])
    m.crash()
    with pytest.raises(StorageError, match="conflicting"):
        m.persist([OwnVote(_vote(Prepare, 5, 2, b"b" * 32))])
    with pytest.raises(StorageError, match="back"):
        m.persist([ViewState(4, False)])


def test_view_never_goes_back(store):
    store.persist([ViewState(4, False)])
    with pytest.raises(StorageError, match="back"):
        store.persist([ViewState(3, False)])
    assert store.recover().view == 4


# ------------------------------------------------------------------ corruption


def test_torn_block_batch_is_detected_at_recovery():
    for keep in (1, 2, 5):
        s = MemoryStore(CHAIN_ID, GENESIS_HASH)
        cb = ChainBuilder()
        s.commit_block(cb.next_block())
        s.tear_next_write(keep)
        with pytest.raises(SimulatedCrash):
            s.commit_block(cb.next_block(3, ((b"x", b"y"),)))
        s.crash(lose_unsynced=False)
        with pytest.raises(CorruptionError, match="block 2 is missing"):
            s.recover()


def test_torn_batch_with_nothing_applied_recovers_to_the_previous_block():
    s = MemoryStore(CHAIN_ID, GENESIS_HASH)
    cb = ChainBuilder()
    s.commit_block(cb.next_block())
    s.tear_next_write(0)
    with pytest.raises(SimulatedCrash):
        s.commit_block(cb.next_block())
    s.crash(lose_unsynced=True)
    assert s.recover().last_executed == 1


def test_unsynced_writes_are_lost_on_crash_but_synced_ones_stay():
    s = MemoryStore(CHAIN_ID, GENESIS_HASH)
    s.commit_block(ChainBuilder().next_block())
    s._mem.write([(keys.state(b"unsynced"), b"1")], sync=False)
    assert s.state().get(b"unsynced") == b"1"
    s.crash(lose_unsynced=True)
    assert s.state().get(b"unsynced") is None and s.recover().last_executed == 1


@pytest.mark.parametrize(
    "damage,message",
    [
        (lambda s: s.corrupt(keys.VIEW_KEY, b"\xc1garbage"), "undecodable ViewState"),
        (lambda s: s.corrupt(keys.vote(2, 0, 1), b"\x93\x01"), "undecodable OwnVote"),
        (lambda s: s.corrupt(keys.header(2), None), "missing"),
        (lambda s: s.corrupt(keys.header(4), s._mem.get(keys.header(3))), "above meta height"),
        (lambda s: s.corrupt(keys.META_HEIGHT, keys.u64(5)), "block 5 is missing"),
    ],
)
def test_corrupted_records_are_reported_with_a_clear_message(damage, message):
    s = MemoryStore(CHAIN_ID, GENESIS_HASH)
    cb = ChainBuilder()
    for _ in range(3):
        s.commit_block(cb.next_block())
    s.corrupt(keys.META_VERIFIED, keys.u64(0))  # force a full chain check
    damage(s)
    with pytest.raises(CorruptionError, match=message):
        s.recover()


def test_broken_hash_chain_is_detected():
    s = MemoryStore(CHAIN_ID, GENESIS_HASH)
    cb = ChainBuilder()
    for _ in range(3):
        s.commit_block(cb.next_block())
    s.recover()  # sets the verified marker to 3
    hdr = decode(BlockHeader, s._mem.get(keys.header(2)), b"")
    s.corrupt(keys.header(2), encode(msgspec.structs.replace(hdr, digest=b"\x00" * 32)))
    assert s.recover().last_executed == 3  # verified marker: old blocks are not rechecked
    with pytest.raises(CorruptionError, match="block 2 hash"):
        s.verify_chain()


def test_reopen_verifies_only_blocks_after_the_marker(tmp_path):
    s = open_store(tmp_path / "db", CHAIN_ID, GENESIS_HASH, create=True)
    cb = ChainBuilder()
    for _ in range(5):
        s.commit_block(cb.next_block())
    s.recover()
    s.close()
    s = open_store(tmp_path / "db", CHAIN_ID, GENESIS_HASH, create=False)
    assert s._meta_u64(s._kv, keys.META_VERIFIED) == 5
    rs = s.recover()
    assert rs.last_executed == 5 and rs.last_block_hash == cb.prev_hash
    s.close()


def test_uncompressed_tables_and_switching_compression_keep_every_block(tmp_path):
    cb = ChainBuilder()
    blocks = [cb.next_block() for _ in range(6)]
    s = open_store(tmp_path / "db", CHAIN_ID, GENESIS_HASH, create=True, compression="none")
    for b in blocks[:3]:
        s.commit_block(b)
    s.close()
    # the other setting reads the first one's tables (LevelDB flags compression per block)
    s = open_store(tmp_path / "db", CHAIN_ID, GENESIS_HASH, create=False, compression="snappy")
    assert s.recover().last_executed == 3
    for b in blocks[3:]:
        s.commit_block(b)
    s._kv.db.compact_range()  # rewrite every table with the current setting
    s.close()
    s = open_store(tmp_path / "db", CHAIN_ID, GENESIS_HASH, create=False, compression="none")
    rs = s.recover()
    assert rs.last_executed == 6 and rs.last_block_hash == cb.prev_hash
    s.verify_chain()
    s.close()
    with pytest.raises(StorageError, match="compression"):
        open_store(tmp_path / "db2", CHAIN_ID, GENESIS_HASH, create=True, compression="lz4")


def test_a_small_table_cache_reads_every_block_and_bad_sizes_are_refused(tmp_path):
    cb = ChainBuilder(seed=9)
    blocks = [cb.next_block(3, ((b"k%d" % i, b"v"),)) for i in range(5)]
    s = open_store(tmp_path / "db", CHAIN_ID, GENESIS_HASH, create=True, max_open_files=74)
    for b in blocks:
        s.commit_block(b)
    s._kv.db.compact_range()
    s.close()
    s = open_store(tmp_path / "db", CHAIN_ID, GENESIS_HASH, create=False, max_open_files=74)
    assert s.recover().last_executed == 5 and s.state().get(b"k4") == b"v"
    s.close()
    for bad in (10, 60_000):
        with pytest.raises(StorageError, match="max_open_files"):
            open_store(tmp_path / "db3", CHAIN_ID, GENESIS_HASH, create=True, max_open_files=bad)


# ------------------------------------------------------------------ bad opens


def _files(path):
    return sorted((p.name, p.stat().st_size) for p in path.iterdir()) if path.exists() else None


def test_missing_directory_without_create_is_refused(tmp_path):
    with pytest.raises(StorageError, match="does not exist"):
        open_store(tmp_path / "nope", CHAIN_ID, GENESIS_HASH, create=False)
    assert not (tmp_path / "nope").exists()


def test_uninitialised_directory_without_create_is_refused(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(StorageError, match="cannot open|not initialised"):
        open_store(tmp_path / "empty", CHAIN_ID, GENESIS_HASH, create=False)


def _make_db(path):
    s = open_store(path, CHAIN_ID, GENESIS_HASH, create=True)
    s.commit_block(ChainBuilder().next_block())
    s.close()


def test_wrong_chain_id_or_genesis_is_refused_and_nothing_written(tmp_path):
    db = tmp_path / "db"
    _make_db(db)
    for chain, gen, msg in [(b"other", GENESIS_HASH, "belongs to chain"),
                            (CHAIN_ID, b"\x01" * 32, "genesis hash")]:
        with pytest.raises(StorageError, match=msg):
            LevelDBStore(db, chain, gen, create=True)
    s = open_store(db, CHAIN_ID, GENESIS_HASH, create=False)
    assert s.recover().last_executed == 1 and s.height() == 1
    s.close()


def test_wrong_schema_version_is_refused(tmp_path):
    import plyvel

    db = tmp_path / "db"
    _make_db(db)
    raw = plyvel.DB(str(db))
    raw.put(keys.META_SCHEMA, keys.u64(99))
    raw.close()
    with pytest.raises(StorageError, match="schema version 99"):
        open_store(db, CHAIN_ID, GENESIS_HASH, create=False)
    raw = plyvel.DB(str(db))
    assert raw.get(keys.META_SCHEMA) == keys.u64(99)  # untouched
    raw.close()


def test_db_locked_by_another_process_is_refused_with_a_clear_message(tmp_path):
    db = tmp_path / "db"
    _make_db(db)
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import plyvel, sys; d = plyvel.DB(sys.argv[1]); print('open', flush=True); "
         "sys.stdin.read()", str(db)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "open"  # waits until the lock is held
        with pytest.raises(StorageError, match="locked by another process"):
            open_store(db, CHAIN_ID, GENESIS_HASH, create=False)
    finally:
        holder.stdin.close()
        holder.wait(timeout=10)
    s = open_store(db, CHAIN_ID, GENESIS_HASH, create=False)
    assert s.height() == 1
    s.close()


def test_stored_blocks_are_usable_as_sync_material(store):
    cb = ChainBuilder()
    blocks = [cb.next_block(2) for _ in range(3)]
    for b in blocks:
        store.commit_block(b)
    for b in blocks:
        cbk = store.committed_block(b.execute.seq)
        assert cbk.pre_prepare == b.execute.pre_prepare and len(cbk.commits) == 3
    assert store.committed_block(4) is None and store.committed_block(0) is None
    assert isinstance(next(store.export_state()), StateChunk)


def test_a_request_is_never_committed_twice(store):
    cb = ChainBuilder()
    b1 = cb.next_block(2)
    store.commit_block(b1)
    again = make_pre_prepare(0, 2, cb.time_ms + 1, b1.execute.requests[:1])
    with pytest.raises(StorageError, match="already committed"):
        store.commit_block(make_block(again, cb.prev_hash))
    assert store.height() == 1


def test_leveldb_checksum_failure_is_a_clear_corruption_error(tmp_path):
    db = tmp_path / "db"
    s = open_store(db, CHAIN_ID, GENESIS_HASH, create=True)
    cb = ChainBuilder()
    for _ in range(20):
        s.commit_block(cb.next_block(3))
    s.close()
    (wal,) = db.glob("*.log")  # small writes stay in the write-ahead log
    data = bytearray(wal.read_bytes())
    data[len(data) // 2 : len(data) // 2 + 8] = b"\xff" * 8
    wal.write_bytes(bytes(data))
    with pytest.raises(CorruptionError, match="corrupt"):
        open_store(db, CHAIN_ID, GENESIS_HASH, create=False).recover()


def test_committed_lookup_by_client_seq_after_restart_and_above_the_window(store):
    # the in-memory "above every executed seq" short cut must agree with the index
    cb = ChainBuilder()
    blocks = [cb.next_block(3) for _ in range(3)]
    for b in blocks:
        store.commit_block(b)
    for b in blocks:
        for r in b.execute.requests:
            got = store.tx_by_client(r.client_id, r.request_seq)
            assert got is not None and got.height == b.execute.seq
            assert store.tx_by_client(r.client_id, r.request_seq + 10_000) is None
    # a duplicate is refused whether or not the client's bounds are cached
    store._windows.clear()
    again = make_pre_prepare(0, 4, cb.time_ms + 1, blocks[-1].execute.requests[:1])
    with pytest.raises(StorageError, match="already committed"):
        store.commit_block(make_block(again, cb.prev_hash))


# ------------------------------------------------------------------ execution reads


@given(
    stored=st.dictionaries(st.binary(min_size=1, max_size=4), st.binary(max_size=3), max_size=12),
    probes=st.lists(st.binary(min_size=1, max_size=5), max_size=25),
)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_execution_state_reads_what_the_live_state_reads(tmp_path_factory, stored, probes):
    """One held iterator answers point reads like a fresh read: present keys, absent keys
    before, between (k1 vs k10) and after every stored key, repeated and out of order."""
    s = open_store(tmp_path_factory.mktemp("db") / "db", CHAIN_ID, GENESIS_HASH, create=True)
    try:
        cb = ChainBuilder()
        s.commit_block(cb.next_block(0, tuple(stored.items())))
        live = s.state()
        with s.execution_state() as held:
            for key in [*probes, *stored, *reversed(probes)]:
                assert held.get(key) == live.get(key) == stored.get(key)
            assert list(held.iterate(b"")) == sorted(stored.items())
    finally:
        s.close()


def test_execution_state_reads_the_state_of_its_start_and_a_new_one_reads_later_commits(
        tmp_path):
    s = open_store(tmp_path / "db", CHAIN_ID, GENESIS_HASH, create=True)
    try:
        cb = ChainBuilder()
        s.commit_block(cb.next_block(0, ((b"a", b"1"),)))
        with s.execution_state() as held:
            assert held.get(b"a") == b"1"
            s.commit_block(cb.next_block(0, ((b"a", b"2"), (b"b", b"3"))))
            assert held.get(b"a") == b"1" and held.get(b"b") is None  # its start, not later
        with s.execution_state() as held:
            assert held.get(b"a") == b"2" and held.get(b"b") == b"3"
    finally:
        s.close()
