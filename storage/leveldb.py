"""LevelDBStore: the node's ledger on disk (plyvel).

Owns opening the database (clear StorageError for missing directory, lock held by another
process, wrong chain id, wrong schema — with nothing written) and the plyvel engine under the
shared ledger logic (storage.ledger). Every write is one `write_batch`; consensus records and
blocks use `sync=True`. Reads and snapshots are thread-safe; one writer at a time is assumed.
Imports: stdlib, plyvel, structlog, consensus (via storage.ledger).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import plyvel

from . import keys
from .interface import COMPRESSIONS, CorruptionError, StorageError
from .ledger import DEFAULT_DEDUP_WINDOW, KVStateReader, LedgerStore, Op, log
from .merkle_tree import DEFAULT_RETAIN


def _storage_error(exc: Exception) -> StorageError:
    """LevelDB's own errors as ours (paranoid checks turn bad checksums into CorruptionError)."""
    text = exc.args[0].decode(errors="replace") if exc.args and isinstance(
        exc.args[0], bytes
    ) else str(exc)
    log.error("storage.leveldb_error", reason=text)
    if isinstance(exc, plyvel.CorruptionError):
        return CorruptionError(f"LevelDB reports corruption: {text}")
    return StorageError(f"LevelDB error: {text}")


class _PlyvelReader:
    """get/items over a plyvel DB, PrefixedDB or Snapshot."""

    def __init__(self, db) -> None:
        self._db = db

    def get(self, key: bytes) -> bytes | None:
        try:
            return self._db.get(key)
        except plyvel.Error as exc:
            raise _storage_error(exc) from exc

    def items(
        self, start: bytes, stop: bytes | None, reverse: bool = False
    ) -> Iterator[tuple[bytes, bytes]]:
        try:
            it = self._db.iterator(start=start, stop=stop, reverse=reverse)
        except plyvel.Error as exc:
            raise _storage_error(exc) from exc
        try:
            while True:
                try:
                    item = next(it)
                except StopIteration:
                    return
                except plyvel.Error as exc:
                    raise _storage_error(exc) from exc
                yield item
        finally:
            it.close()


class _SeekReader(_PlyvelReader):
    """Point reads by iterator seek instead of Get, for the application state.

    LevelDB charges a Get that consults more than one table file to the first one and
    compacts that file once its allowance (file size / 16 KiB, at least 100) is spent; an
    iterator only samples one read per MiB. The executor reads one absent key per new KV
    put, so with Get every freshly flushed table was compacted into level 2 within a second,
    rewriting all of level 2 each time (the cost grew with the ledger: tx/s fell by 40 %
    within a minute). A seek costs ~8 us instead of ~2 us. (Bypassing the block cache with
    fill_cache=False cost ~8 % more CPU per tx at saturation: the recent tables' blocks are
    read again and again.)"""

    def get(self, key: bytes) -> bytes | None:
        try:
            it = self._db.iterator(start=key, stop=key + b"\x00")
        except plyvel.Error as exc:
            raise _storage_error(exc) from exc
        try:
            item = next(it, None)
        except plyvel.Error as exc:
            raise _storage_error(exc) from exc
        finally:
            it.close()
        return None if item is None else item[1]


class _HeldSeekReader(_PlyvelReader):
    """_SeekReader's point reads through ONE iterator held for a group of blocks.

    Creating a LevelDB iterator (a merging iterator over the memtables and every table) cost
    ~8 of the ~13 us of a seek-based read of an absent key; re-seeking a held one ~5 us. The
    iterator sees the state as of its creation, so it may only be held while nothing writes
    the state: the executor holds it from the start of a group of blocks until their commit
    (the group's own writes are in its overlays). Range reads use fresh iterators."""

    def __init__(self, db) -> None:
        super().__init__(db)
        try:
            self._it = db.iterator()
        except plyvel.Error as exc:
            raise _storage_error(exc) from exc

    def get(self, key: bytes) -> bytes | None:
        it = self._it
        try:
            it.seek(key)
            k, v = next(it)
        except StopIteration:
            return None
        except plyvel.Error as exc:
            raise _storage_error(exc) from exc
        return v if k == key else None

    def close(self) -> None:
        self._it.close()


class _RoutedReader:
    """get/items over the ledger's DBs (three, four with the state tree's), each key going to
    its keyspace's DB.

    A range read goes to the DB of its start key's keyspace and must stay within it."""

    def __init__(self, main, bodies, records, tree=None) -> None:
        self._main = _PlyvelReader(main)
        self._bodies = _PlyvelReader(bodies)
        records_reader = _PlyvelReader(records)
        self._route = {p: records_reader for p in keys.RECORD_KEYSPACES}
        self._route[keys.BODY] = self._bodies
        self._route[keys.EVENTS] = self._bodies
        if tree is not None:
            self._route[keys.MERKLE] = _PlyvelReader(tree)

    def get(self, key: bytes) -> bytes | None:
        p = key[:1]
        if p == keys.BODY:
            # ledgers written before the split keep their bodies in the main DB
            return self._bodies.get(key) or self._main.get(key)
        return self._route.get(p, self._main).get(key)

    def items(
        self, start: bytes, stop: bytes | None, reverse: bool = False
    ) -> Iterator[tuple[bytes, bytes]]:
        p = start[:1]
        reader = self._route.get(p)
        if reader is None:
            return self._main.items(start, stop, reverse)
        end = keys.prefix_end(p)
        if stop is None or stop > end:
            raise ValueError(f"range {start!r}..{stop!r} leaves the {p!r} keyspace")
        return reader.items(start, stop, reverse)


class _PlyvelKV(_RoutedReader):
    """The ledger's KV engine: the main DB, the block bodies' DB and the consensus records' DB.

    Why three: in one LSM every level-0 flush spans all keyspaces (tx hashes and state keys
    are random), so each compaction into level 1 rewrote everything in it again and again.
    Block bodies are a third of what a tx writes and their keys only grow: alone, they are
    flushed into tables that never overlap and are never rewritten. The consensus records
    (votes, prepared certificates with their whole batch: ~185 B per tx) are written and
    pruned within seconds: alone, they die in their own small LSM instead of doubling the
    main DB's flushes. The state tree's nodes (keyspace A, with the tree on) have a fourth:
    ~1 KB per tx of hashes written once and deleted a hundred blocks later, which in the main
    DB more than doubled its flushes, and every flush there is compacted with the random tx
    hashes of the whole level below (throughput with the tree on: +25 % in their own DB).
    Everything else (headers, tx and client indexes, app state, meta) stays in the main
    DB, whose batches keep their all-or-nothing order (meta height first, headers last).

    Order and durability: body ops are written FIRST and always synced, then the main batch
    (synced if the caller asks: sync_blocks), so a header never exists without its body, even
    after a power cut with unsynced blocks; a crash between the two leaves bodies above the
    meta height, which nothing reads and the re-commit of those heights overwrites. Records
    are written only by `persist`, synced, in their own batch: a power cut can lose unsynced
    blocks behind durable votes, which the replica fetches again from its peers. The tree's
    batch goes just before the main one, synced like it: a crash between them leaves a tree
    version above the meta height (the re-commit of that height writes the same nodes again);
    a tree without the root of the meta height (a power cut without fsync) is rebuilt from
    the state at open (storage.ledger_core._open_auth).

    `fsync=False` (the node's `fsync = false`) turns every one of those syncs into a plain
    write: each batch still reaches the OS before `write` returns (LevelDB flushes its log
    buffer per record), so a kill -9 loses nothing, but a power cut or OS crash may lose the
    last votes as well as blocks."""

    def __init__(self, db: plyvel.DB, bodies: plyvel.DB, records: plyvel.DB,
                 tree: plyvel.DB | None = None, fsync: bool = True) -> None:
        super().__init__(db, bodies, records, tree)
        self.fsync = fsync
        self.db = db
        self.bodies = bodies
        self.records = records
        self.tree = tree
        self._order = (bodies, records, tree, db)
        self._slot = {p: 1 for p in keys.RECORD_KEYSPACES}
        self._slot[keys.BODY] = 0
        self._slot[keys.EVENTS] = 0  # like bodies: written once, only-growing keys
        if tree is not None:
            self._slot[keys.MERKLE] = 2
        # the app-state keyspace, for its live reader (keys without the prefix byte)
        self.state_db = db.prefixed_db(keys.STATE)

    def write(self, ops: Sequence[Op], sync: bool) -> None:
        # batches in write order: bodies (always synced), records, tree, main
        dbs = self._order
        batches: list = [None, None, None, None]
        route = self._slot.get
        for k, v in ops:
            i = route(k[:1], 3)
            wb = batches[i]
            if wb is None:
                wb = batches[i] = dbs[i].write_batch(sync=(sync or i == 0) and self.fsync)
            if v is None:
                wb.delete(k)
            else:
                wb.put(k, v)
        try:
            for wb in batches:
                if wb is not None:
                    wb.write()
        except plyvel.Error as exc:
            raise _storage_error(exc) from exc

    def move_records(self) -> int:
        """Move consensus records out of the main DB (ledgers written before records had their own DB): copy them
        to the records DB (synced), then delete them from the main DB. A crash in between
        copies the same records again at the next open. Returns how many moved."""
        moved = [kv for p in keys.RECORD_KEYSPACES for kv in self.db.iterator(prefix=p)]
        if not moved:
            return 0
        try:
            with self.records.write_batch(sync=self.fsync) as rb:
                for k, v in moved:
                    rb.put(k, v)
            with self.db.write_batch(sync=self.fsync) as wb:
                for k, _ in moved:
                    wb.delete(k)
        except plyvel.Error as exc:
            raise _storage_error(exc) from exc
        return len(moved)

    def drop_main_tree(self) -> int:
        """Delete state-tree keys from the main DB (ledgers written before the tree had its
        own DB: the tree, missing from its DB, is rebuilt at open). Returns how many."""
        old = [k for k, _ in self.db.iterator(prefix=keys.MERKLE)]
        try:
            for i in range(0, len(old), 4096):
                with self.db.write_batch(sync=self.fsync) as wb:
                    for k in old[i:i + 4096]:
                        wb.delete(k)
        except plyvel.Error as exc:
            raise _storage_error(exc) from exc
        return len(old)

    @contextmanager
    def snapshot(self) -> Iterator[_RoutedReader]:
        snap = self.db.snapshot()
        # after the main one: they hold every body, record and tree node the main snapshot
        # relies on (the tree's are written before the main batch)
        bsnap = self.bodies.snapshot()
        rsnap = self.records.snapshot()
        tsnap = self.tree.snapshot() if self.tree is not None else None
        try:
            yield _RoutedReader(snap, bsnap, rsnap, tsnap)
        finally:
            if tsnap is not None:
                tsnap.close()
            rsnap.close()
            bsnap.close()
            snap.close()

    def close(self) -> None:
        for db in (self.records, self.bodies, self.tree, self.db):
            if db is not None and not db.closed:
                db.close()


BODIES_DIR = "bodies"
"""Subdirectory of the ledger directory holding the block-body DB (LevelDB ignores it)."""
RECORDS_DIR = "records"
"""Subdirectory of the ledger directory holding the consensus records' DB."""
TREE_DIR = "tree"
"""Subdirectory of the ledger directory holding the state tree's DB (with the tree on)."""
TREE_MEMTABLE_BYTES = 4 * 1024 * 1024
"""LevelDB memtable of the state tree's DB: ~4 s of its writes at 1,000 tx/s."""
BLOCK_CACHE_BYTES = 1024 * 1024
"""LevelDB block cache of each of the DBs (LevelDB's default is 8 MiB).

Small on purpose: the ledger's reads are mostly of keys never read again (a new tx's state key
by seek, a fresh block for a peer), so a bigger cache does not raise throughput (1 vs 8 MiB:
2,448 vs 2,448 tx/s, mean of three alternating runs) but does fill for minutes, and a node's
RSS rose with it (+6 MB from 2 to 10 minutes at 1,000 tx/s with 8 MiB; docs/perf/history.md)."""
MAIN_MEMTABLE_BYTES = 4 * 1024 * 1024
"""LevelDB memtable of the main DB (LevelDB's default; see `staggered_memtable_bytes`)."""
SIDE_MEMTABLE_BYTES = 2 * 1024 * 1024
"""LevelDB memtable of the bodies and records DBs (the main DB's: `staggered_memtable_bytes`).

Bounded below: LevelDB runs the flushes and compactions of every DB of a process on ONE
background thread, so while the main DB compacts (up to ~3 s under load) the other DBs'
full memtables wait for it, and a DB whose memtable and its predecessor are both full stops
its writers (a vote persist!). 2 MiB holds >= 4 s of records or bodies at 2,000 tx/s; 1 MiB
doubled the main DB's compaction work in a replay of the write mix. Bounded above by
memory: each memtable swings between empty and full (x2 while flushed) in every node."""


MAX_OPEN_FILES = 1000
"""LevelDB's table cache per DB (its default). Each open table keeps its index and bloom-filter
blocks in the heap (main DB: ~68 KB per ~1.8-MB table, about 7 B per committed tx), so this
bounds that memory (~65 MB for the main DB at 1,000) and RSS grows with the ledger until the
cache is full. A lower value caps it sooner at the cost of reads of tables outside the cache
(a random seek 42 vs 11 µs with 64 of 113 tables cached; docs/perf/history.md)."""
MIN_OPEN_FILES, MAX_MAX_OPEN_FILES = 74, 50_000  # LevelDB clamps to this range


def _open_db(where: str, ledger: str, create: bool, **options) -> plyvel.DB:
    """plyvel.DB with clear StorageErrors (locked, missing, corrupt) naming the ledger."""
    try:
        return plyvel.DB(where, create_if_missing=create, paranoid_checks=True, **options)
    except plyvel.IOError as exc:
        msg = exc.args[0].decode(errors="replace") if exc.args and isinstance(
            exc.args[0], bytes
        ) else str(exc)
        if "lock" in msg.lower():
            log.error("storage.open_failed", path=where, reason="locked")
            raise StorageError(
                f"ledger {ledger} is locked by another process (is a node already running "
                f"on this home directory?): {msg}"
            ) from exc
        log.error("storage.open_failed", path=where, reason=msg)
        raise StorageError(f"cannot open ledger {ledger}: {msg}") from exc
    except plyvel.CorruptionError as exc:
        log.error("storage.open_failed", path=where, reason="corrupt")
        raise CorruptionError(f"ledger {ledger} is corrupt (LevelDB): {exc}") from exc
    except plyvel.Error as exc:
        log.error("storage.open_failed", path=where, reason=str(exc))
        raise StorageError(f"cannot open ledger {ledger}: {exc}") from exc


class LevelDBStore(LedgerStore):
    """storage.Store on LevelDB. See storage.ledger for the batch layout and recovery."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        chain_id: bytes,
        genesis_hash: bytes,
        create: bool = False,
        dedup_window: int = DEFAULT_DEDUP_WINDOW,
        strict_votes: bool = True,
        lru_cache_size: int = BLOCK_CACHE_BYTES,
        sync_blocks: bool = True,
        compression: str = "snappy",
        memtable_bytes: int = MAIN_MEMTABLE_BYTES,
        fsync: bool = True,
        max_open_files: int = MAX_OPEN_FILES,
        authenticated_state: bool = False,
        state_versions: int = DEFAULT_RETAIN,
    ) -> None:
        if compression not in COMPRESSIONS:
            raise StorageError(f"compression must be one of {COMPRESSIONS}, got {compression!r}")
        path = os.fspath(path)
        self.path = path
        if not create and not os.path.isdir(path):
            log.error("storage.open_failed", path=path, reason="missing directory")
            raise StorageError(f"ledger directory {path} does not exist (create=False)")
        if create:
            parent = os.path.dirname(os.path.abspath(path))
            os.makedirs(parent, exist_ok=True)
        comp = None if compression == "none" else "snappy"
        if not MIN_OPEN_FILES <= max_open_files <= MAX_MAX_OPEN_FILES:
            raise StorageError(f"max_open_files must be {MIN_OPEN_FILES}..{MAX_MAX_OPEN_FILES}, "
                               f"got {max_open_files}")
        db = _open_db(path, path, create, lru_cache_size=lru_cache_size, bloom_filter_bits=10,
                      write_buffer_size=memtable_bytes, compression=comp,
                      max_open_files=max_open_files)
        opened = [db]
        # side DBs this open creates: removed again if the ledger is refused (wrong chain,
        # uninitialised), so a refused open leaves the directory as it found it
        sides = [(BODIES_DIR, comp, SIDE_MEMTABLE_BYTES), (RECORDS_DIR, None, SIDE_MEMTABLE_BYTES)]
        if authenticated_state:  # hashes do not compress
            sides.append((TREE_DIR, None, TREE_MEMTABLE_BYTES))
        fresh = [os.path.join(path, sub) for sub, _, _ in sides
                 if not os.path.isdir(os.path.join(path, sub))]
        try:
            # bodies, records and tree (see _PlyvelKV); created on first open of an older
            # ledger too. Memtables: see SIDE_MEMTABLE_BYTES
            # records: never compressed (pruned within seconds: compressing them is waste)
            for sub, sub_comp, memtable in sides:
                opened.append(_open_db(os.path.join(path, sub), path, True,
                                       lru_cache_size=BLOCK_CACHE_BYTES,
                                       write_buffer_size=memtable,
                                       compression=sub_comp, max_open_files=max_open_files))
        except BaseException:
            for d in opened:
                d.close()
            raise
        kv = _PlyvelKV(*opened, fsync=fsync)
        if authenticated_state:
            try:
                dropped = kv.drop_main_tree()
            except BaseException:
                kv.close()
                raise
            if dropped:
                log.info("storage.tree_moved", path=path, keys=dropped)
        self.fsync = fsync
        try:
            super().__init__(
                kv, chain_id, genesis_hash, create, dedup_window, strict_votes, where=path,
                sync_blocks=sync_blocks, authenticated_state=authenticated_state,
                state_versions=state_versions,
            )
            moved = kv.move_records()
        except BaseException as exc:
            kv.close()
            if isinstance(exc, StorageError):
                for d in fresh:
                    shutil.rmtree(d, ignore_errors=True)
            raise
        if moved:
            log.info("storage.records_moved", path=path, records=moved)
        self._state_reader = _SeekReader(kv.state_db)

    def state(self) -> KVStateReader:
        return KVStateReader(self._state_reader, prefix=b"", guards=self.depth_guard)

    @contextmanager
    def execution_state(self) -> Iterator[KVStateReader]:
        """The live state for executing a group of blocks, read through one held iterator
        (cheaper point reads). Valid only until the state is next written: the caller commits
        the group's writes after leaving this context or only after its last read."""
        reader = _HeldSeekReader(self._kv.state_db)
        try:
            yield KVStateReader(reader, prefix=b"", guards=self.depth_guard)
        finally:
            reader.close()


def staggered_memtable_bytes(node_index: int) -> int:
    """The main DB's memtable for node `node_index`: 4, 4.5, 5 or 5.5 MiB.

    Why: replicas write the same stream, so with equal memtables every node flushed and
    compacted its main DB at the same instant (within 0.1 s on a 4-node testnet); on a shared
    machine all of them slowed at once and the quorum with them (commits paused for 0.3 s at
    a time, p99 latency at half load > 1 s). Different sizes spread the compactions apart, so
    at most one replica of a quorum is slowed by its own. Never below LevelDB's default:
    smaller memtables mean more compaction work."""
    return MAIN_MEMTABLE_BYTES + (node_index % 4) * 512 * 1024


def open_store(
    path: str | os.PathLike[str],
    chain_id: bytes,
    genesis_hash: bytes,
    create: bool,
    dedup_window: int = DEFAULT_DEDUP_WINDOW,
    sync_blocks: bool = True,
    compression: str = "snappy",
    memtable_bytes: int = MAIN_MEMTABLE_BYTES,
    fsync: bool = True,
    max_open_files: int = MAX_OPEN_FILES,
    authenticated_state: bool = False,
    state_versions: int = DEFAULT_RETAIN,
) -> LevelDBStore:
    """Open (or with create=True, initialise) the node's ledger at `path`. `fsync=False`: no
    write is fsynced (kill -9 still loses nothing; a power cut can lose votes: see _PlyvelKV).
    `authenticated_state`: keep the state tree (storage.merkle_tree) for the last
    `state_versions` heights."""
    return LevelDBStore(path, chain_id, genesis_hash, create=create, dedup_window=dedup_window,
                        sync_blocks=sync_blocks, compression=compression,
                        memtable_bytes=memtable_bytes, fsync=fsync,
                        max_open_files=max_open_files, authenticated_state=authenticated_state,
                        state_versions=state_versions)
