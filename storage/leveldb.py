"""LevelDBStore: the node's ledger on disk (plyvel).

Owns opening the database (clear StorageError for missing directory, lock held by another
process, wrong chain id, wrong schema — with nothing written) and the plyvel engine under the
shared ledger logic (storage.ledger). Every write is one `write_batch`; consensus records and
blocks use `sync=True`. Reads and snapshots are thread-safe; one writer at a time is assumed.
Imports: stdlib, plyvel, structlog, consensus (via storage.ledger).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import plyvel

from . import keys
from .interface import COMPRESSIONS, CorruptionError, StorageError
from .ledger import DEFAULT_DEDUP_WINDOW, KVStateReader, LedgerStore, Op, log


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


class _BodiesReader(_PlyvelReader):
    """A reader whose block-body keys (K) live in a second DB (point reads only)."""

    def __init__(self, db, bodies) -> None:
        super().__init__(db)
        self._bodies = _PlyvelReader(bodies)

    def get(self, key: bytes) -> bytes | None:
        if key[:1] == keys.BODY:
            # ledgers written before the split keep their bodies in the main DB
            return self._bodies.get(key) or super().get(key)
        return super().get(key)


class _PlyvelKV(_BodiesReader):
    """The ledger's KV engine: one main DB, plus a second DB for the block bodies.

    Why two: bodies are a third of what a tx writes and their keys only ever grow, but in a
    shared LSM every level-0 flush spans all keyspaces (tx hashes and state keys are random),
    so each compaction into level 1 rewrote the bodies again and again. Alone in their own
    DB, sequential bodies are flushed into tables that never overlap and are moved down
    without rewriting. Crash order: a batch's body ops are written (and synced) FIRST, the
    rest after, so a header (written last in the main batch) never exists without its body;
    a crash between the two leaves bodies above the meta height, which nothing reads and the
    re-commit of those heights overwrites. Unsynced writes (sync_blocks=False) survive kill -9;
    for a power cut, the bodies are fsynced before any synced main write (which would make
    the unsynced headers before it durable)."""

    def __init__(self, db: plyvel.DB, bodies: plyvel.DB) -> None:
        super().__init__(db, bodies)
        self.db = db
        self.bodies = bodies
        self._bodies_unsynced = False
        # the app-state keyspace, for its live reader (keys without the prefix byte)
        self.state_db = db.prefixed_db(keys.STATE)

    def write(self, ops: Sequence[Op], sync: bool) -> None:
        wb = self.db.write_batch(sync=sync)
        bb = None
        body = keys.BODY
        for k, v in ops:
            if k[:1] == body:
                if bb is None:
                    bb = self.bodies.write_batch(sync=sync)
                if v is None:
                    bb.delete(k)
                else:
                    bb.put(k, v)
            elif v is None:
                wb.delete(k)
            else:
                wb.put(k, v)
        if bb is None and sync and self._bodies_unsynced:
            # a synced main write also makes earlier unsynced headers durable: their bodies
            # must be durable first (an empty synced batch fsyncs the bodies' log)
            bb = self.bodies.write_batch(sync=True)
        try:
            if bb is not None:
                bb.write()
                self._bodies_unsynced = not sync
            wb.write()
        except plyvel.Error as exc:
            raise _storage_error(exc) from exc

    @contextmanager
    def snapshot(self) -> Iterator[_PlyvelReader]:
        snap = self.db.snapshot()
        bsnap = self.bodies.snapshot()  # after: holds every body the main snapshot names
        try:
            yield _BodiesReader(snap, bsnap)
        finally:
            bsnap.close()
            snap.close()

    def close(self) -> None:
        for db in (self.bodies, self.db):
            if not db.closed:
                db.close()


BODIES_DIR = "bodies"
"""Subdirectory of the ledger directory holding the block-body DB (LevelDB ignores it)."""


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
        lru_cache_size: int = 8 * 1024 * 1024,
        sync_blocks: bool = True,
        compression: str = "snappy",
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
        db = _open_db(path, path, create, lru_cache_size=lru_cache_size, bloom_filter_bits=10,
                      compression=comp)
        try:
            # the block bodies (see _PlyvelKV); created on first open of an older ledger too
            bodies = _open_db(os.path.join(path, BODIES_DIR), path, True,
                              lru_cache_size=2 * 1024 * 1024, compression=comp)
        except BaseException:
            db.close()
            raise
        kv = _PlyvelKV(db, bodies)
        try:
            super().__init__(
                kv, chain_id, genesis_hash, create, dedup_window, strict_votes, where=path,
                sync_blocks=sync_blocks,
            )
        except BaseException:
            kv.close()
            raise
        self._state_reader = _SeekReader(kv.state_db)

    def state(self) -> KVStateReader:
        return KVStateReader(self._state_reader, prefix=b"")


def open_store(
    path: str | os.PathLike[str],
    chain_id: bytes,
    genesis_hash: bytes,
    create: bool,
    dedup_window: int = DEFAULT_DEDUP_WINDOW,
    sync_blocks: bool = True,
    compression: str = "snappy",
) -> LevelDBStore:
    """Open (or with create=True, initialise) the node's ledger at `path`."""
    return LevelDBStore(path, chain_id, genesis_hash, create=create, dedup_window=dedup_window,
                        sync_blocks=sync_blocks, compression=compression)
