"""The ledger logic shared by LevelDBStore and MemoryStore, written against a tiny KV engine.

Owns validation, batch layout, recovery and reads; the engines (plyvel, dict) only move bytes.
Because both stores run this same code, MemoryStore's `recover()` is LevelDB's `recover()`.

Ordering rules (what makes a crash at any point recoverable):
* `persist(records)` is ONE synced batch; the caller sends nothing before it returns.
* `commit_block` is ONE batch (fsynced when `sync_blocks`; a node's default is not to: a block
  lost in a crash is fetched again from peers, votes never are) whose FIRST op raises the meta height and whose LAST op
  writes the block header; `commit_blocks` (group commit) writes several blocks the same way,
  headers last. LevelDB applies a batch atomically; if an engine ever applies only a prefix
  (MemoryStore's torn-batch fault), recovery sees "meta height H but no header H" and raises
  CorruptionError instead of running on a half-written block.

Threading: the API is synchronous. One writer at a time is assumed (the node's replica task);
reads may run concurrently from other threads (plyvel reads and snapshots are thread-safe).

Imports: stdlib, msgspec, structlog, consensus (messages/events/codec only).
"""

from __future__ import annotations

import collections
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Protocol

from consensus import Commit as CommitMsg
from consensus import (
    CommittedBlock,
    Conviction,
    NewView,
    OwnVote,
    Prepare,
    PreparedCert,
    PrePrepare,
    Prune,
    Record,
    RecoveredState,
    StableCheckpoint,
    ViewChange,
    ViewState,
)
from consensus.codec import GENESIS_CHAIN_DIGEST, chain_digest, request_digest

from . import keys
from .interface import (
    BlockCommit,
    CorruptionError,
    StateChunk,
    StateReader,
    StorageError,
    StoredBlock,
    TxResult,
)
from .records import BlockBody, BlockHeader, ChainBase, TxRecord, body_for, decode, encode

SCHEMA_VERSION = 1
DEFAULT_DEDUP_WINDOW = 4096
WINDOW_CACHE_CLIENTS = 65_536  # clients whose highest executed request_seq is cached



class _LazyLog:
    """structlog, imported on first use: it costs ~0.3 s of startup and we only log problems."""

    _logger = None

    def __getattr__(self, level: str):
        if _LazyLog._logger is None:
            import structlog

            _LazyLog._logger = structlog.get_logger("storage")
        return getattr(_LazyLog._logger, level)


log = _LazyLog()

Op = tuple[bytes, bytes | None]  # (key, value); None = delete


class KVReader(Protocol):
    def get(self, key: bytes) -> bytes | None: ...

    def items(
        self, start: bytes, stop: bytes | None, reverse: bool = False
    ) -> Iterator[tuple[bytes, bytes]]:
        """Pairs with start <= key < stop (stop None: unbounded), ascending or descending."""


class KV(KVReader, Protocol):
    def write(self, ops: Sequence[Op], sync: bool) -> None:
        """Apply all ops atomically (in order); durable before returning when sync."""

    def snapshot(self) -> AbstractContextManager[KVReader]: ...

    def close(self) -> None: ...


# ------------------------------------------------------------------ state readers


class KVStateReader:
    """StateReader over the S keyspace of a KV reader (live view or snapshot)."""

    def __init__(self, reader: KVReader, prefix: bytes = keys.STATE) -> None:
        self._r = reader
        self._p = prefix

    def get(self, key: bytes) -> bytes | None:
        return self._r.get(self._p + key)

    def iterate(
        self, prefix: bytes, start: bytes | None = None, reverse: bool = False
    ) -> Iterator[tuple[bytes, bytes]]:
        """App keys starting with `prefix`; `start` is the first key yielded (inclusive) in the
        iteration direction."""
        lo = self._p + prefix
        hi = keys.prefix_end(lo)
        if start is not None:
            s = self._p + start
            if reverse:
                nxt = s + b"\x00"  # smallest key > s
                hi = nxt if hi is None or nxt < hi else hi
            elif s > lo:
                lo = s
        if hi is not None and lo >= hi:
            return
        n = len(self._p)
        for k, v in self._r.items(lo, hi, reverse):
            yield k[n:], v


# ------------------------------------------------------------------ helpers


def _vote_key(msg: object) -> bytes:
    if isinstance(msg, PrePrepare):
        return keys.vote(keys.KIND_PRE_PREPARE, msg.view, msg.seq)
    if isinstance(msg, Prepare):
        return keys.vote(keys.KIND_PREPARE, msg.view, msg.seq)
    if isinstance(msg, CommitMsg):
        return keys.vote(keys.KIND_COMMIT, msg.view, msg.seq)
    if isinstance(msg, ViewChange):
        return keys.vote(keys.KIND_VIEW_CHANGE, msg.new_view, 0)
    if isinstance(msg, NewView):
        return keys.vote(keys.KIND_NEW_VIEW, msg.view, 0)
    raise StorageError(f"OwnVote holds a {type(msg).__name__}, which is not a vote")


def _tx_result(tx_hash: bytes, rec: TxRecord) -> TxResult:
    return TxResult(
        tx_hash=tx_hash,
        client_id=rec.client_id,
        request_seq=rec.request_seq,
        height=rec.height,
        index=rec.index,
        code=rec.code,
        result=rec.result,
    )


class _Pending:
    """Ops of one batch with read-your-writes, so records later in a batch see earlier ones."""

    def __init__(self, kv: KVReader) -> None:
        self.kv = kv
        self.ops: list[Op] = []
        self.overlay: dict[bytes, bytes | None] = {}

    def get(self, key: bytes) -> bytes | None:
        if key in self.overlay:
            return self.overlay[key]
        return self.kv.get(key)

    def put(self, key: bytes, value: bytes) -> None:
        self.ops.append((key, value))
        self.overlay[key] = value

    def delete(self, key: bytes) -> None:
        self.ops.append((key, None))
        self.overlay[key] = None

    def keys_with_prefix(self, prefix: bytes, on_disk: set[bytes] | None = None) -> list[bytes]:
        """Live keys under `prefix` after this batch; `on_disk` (the keys known to be stored
        under it) saves a LevelDB scan that would walk every tombstone of earlier deletes."""
        if on_disk is None:
            found = {k for k, _ in self.kv.items(prefix, keys.prefix_end(prefix))}
        else:
            found = {k for k in on_disk if k.startswith(prefix)}
        for k, v in self.overlay.items():
            if k.startswith(prefix):
                if v is None:
                    found.discard(k)
                else:
                    found.add(k)
        return sorted(found)


# ------------------------------------------------------------------ the store


class LedgerStore:
    """Implements storage.Store over a KV engine. Subclasses open the engine."""

    def __init__(
        self,
        kv: KV,
        chain_id: bytes,
        genesis_hash: bytes,
        create: bool,
        dedup_window: int = DEFAULT_DEDUP_WINDOW,
        strict_votes: bool = True,
        where: str = "store",
        sync_blocks: bool = True,
    ) -> None:
        if dedup_window < 1:
            raise ValueError("dedup_window must be >= 1")
        self._kv = kv
        self.chain_id = bytes(chain_id)
        self.genesis_hash = bytes(genesis_hash)
        self.dedup_window = dedup_window
        # refuse to persist an own vote conflicting with a persisted one (would be equivocation)
        self.strict_votes = strict_votes
        self.where = where
        # False: block commits reach the OS (they survive kill -9) but are not fsynced; votes
        # and view state always are. A block lost to a power cut is fetched again from peers.
        self.sync_blocks = sync_blocks
        self.errors: collections.Counter[str] = collections.Counter()
        # client -> highest executed request_seq, for recent clients (see _top_op)
        self._windows: collections.OrderedDict[bytes, int] = collections.OrderedDict()
        self._live_records: set[bytes] | None = None  # see _record_keys
        self._view: int | None = None  # see _current_view
        self._check_or_init_meta(create)
        self._load_tip()

    # -------------------------------------------------------------- open / meta

    def _fail(self, kind: str, message: str, exc: type[StorageError] = StorageError) -> None:
        self.errors[kind] += 1
        log.error("storage.error", where=self.where, kind=kind, reason=message)
        raise exc(message)

    def _check_or_init_meta(self, create: bool) -> None:
        kv = self._kv
        schema = kv.get(keys.META_SCHEMA)
        if schema is None:
            if any(True for _ in kv.items(b"", None)):
                self._fail(
                    "open",
                    f"{self.where}: database has data but no schema marker; "
                    "not a bftnode ledger (or a torn initialisation)",
                )
            if not create:
                self._fail("open", f"{self.where}: ledger not initialised (create=False)")
            kv.write(
                [
                    (keys.META_SCHEMA, keys.u64(SCHEMA_VERSION)),
                    (keys.META_CHAIN_ID, self.chain_id),
                    (keys.META_GENESIS, self.genesis_hash),
                    (keys.META_HEIGHT, keys.u64(0)),
                    (keys.META_VERIFIED, keys.u64(0)),
                    (keys.META_BASE, encode(ChainBase(0, GENESIS_CHAIN_DIGEST))),
                ],
                sync=True,
            )
            return
        if len(schema) != 8 or keys.from_u64(schema) != SCHEMA_VERSION:
            got = keys.from_u64(schema) if len(schema) == 8 else schema
            self._fail(
                "open",
                f"{self.where}: schema version {got} but this build reads {SCHEMA_VERSION}",
            )
        chain = kv.get(keys.META_CHAIN_ID)
        if chain != self.chain_id:
            self._fail(
                "open",
                f"{self.where}: ledger belongs to chain {chain!r}, not {self.chain_id!r}",
            )
        gen = kv.get(keys.META_GENESIS)
        if gen != self.genesis_hash:
            self._fail(
                "open",
                f"{self.where}: genesis hash {gen.hex() if gen else None} "
                f"differs from the expected {self.genesis_hash.hex()}",
            )

    def _meta_u64(self, reader: KVReader, key: bytes) -> int:
        raw = reader.get(key)
        if raw is None:
            self._fail("corrupt", f"{self.where}: meta {key[1:].decode()} missing", CorruptionError)
        try:
            return keys.from_u64(raw)
        except ValueError as exc:
            self._fail("corrupt", f"{self.where}: meta {key!r} malformed: {exc}", CorruptionError)
            raise  # unreachable

    def _base(self, reader: KVReader) -> ChainBase:
        raw = reader.get(keys.META_BASE)
        if raw is None:
            self._fail("corrupt", f"{self.where}: meta base missing", CorruptionError)
        return decode(ChainBase, raw, keys.META_BASE)

    def _header_at(self, reader: KVReader, height: int) -> BlockHeader | None:
        raw = reader.get(keys.header(height))
        return None if raw is None else decode(BlockHeader, raw, keys.header(height))

    def _load_tip(self) -> None:
        """Cache height / last hash / last time from disk (at open and after a crash); forget
        the cached record keys and view (re-read from disk when next needed)."""
        self._live_records = None
        self._view = None
        self._height = self._meta_u64(self._kv, keys.META_HEIGHT)
        base = self._base(self._kv)
        hdr = self._header_at(self._kv, self._height)
        if hdr is None:
            self._last_hash = base.hash
            self._last_time = 0
        else:
            self._last_hash = hdr.hash
            self._last_time = hdr.time_ms

    # -------------------------------------------------------------- consensus records

    def persist(self, records: Sequence[Record]) -> None:
        """Write consensus records in ONE synced batch (validate everything first)."""
        b = _Pending(self._kv)
        view = self._current_view()
        for rec in records:
            if isinstance(rec, ViewState):
                if rec.view < view:
                    self._fail(
                        "persist",
                        f"{self.where}: view would go back from {view} to {rec.view}",
                    )
                view = rec.view
                b.put(keys.VIEW_KEY, encode(rec))
            elif isinstance(rec, OwnVote):
                key = _vote_key(rec.message)
                data = encode(rec)
                # only a stored key is read: a Get of an absent key feeds LevelDB's seek
                # compaction (see _above_window), and nearly every vote is for a new slot
                old = b.get(key) if key in b.overlay or key in self._record_keys() else None
                if old is not None and old != data and self.strict_votes:
                    self._fail(
                        "persist",
                        f"{self.where}: refusing to persist a {type(rec.message).__name__} "
                        f"conflicting with the one persisted for {keys.parse_vote(key)}",
                    )
                if old != data:
                    b.put(key, data)
            elif isinstance(rec, StableCheckpoint):
                raw = b.get(keys.CHECKPOINT_KEY)
                old = None if raw is None else decode(StableCheckpoint, raw, keys.CHECKPOINT_KEY)
                if old is not None and old.seq > rec.seq:
                    log.warning(
                        "storage.stale_checkpoint", where=self.where, have=old.seq, got=rec.seq
                    )
                    self.errors["stale-checkpoint"] += 1
                    continue
                b.put(keys.CHECKPOINT_KEY, encode(rec))
            elif isinstance(rec, PreparedCert):
                pp = rec.proof.pre_prepare
                b.put(keys.prepared(pp.view, pp.seq), encode(rec))
            elif isinstance(rec, Conviction):
                key = keys.conviction(rec.replica)
                if b.get(key) is None:  # the first conviction stands (never pardoned)
                    b.put(key, encode(rec))
            elif isinstance(rec, Prune):
                self._prune(b, rec.upto, view)
            else:
                self._fail("persist", f"{self.where}: not a record: {type(rec).__name__}")
        if b.ops:
            try:
                self._kv.write(b.ops, sync=True)
            except BaseException:
                self._live_records = None  # unknown whether any of it landed: re-read
                self._view = None
                raise
            self._view = view
            if self._live_records is not None:
                for k, v in b.overlay.items():
                    if k.startswith((keys.VOTE, keys.PREPARED)):
                        if v is None:
                            self._live_records.discard(k)
                        else:
                            self._live_records.add(k)

    def _current_view(self) -> int:
        """The stored view (cached: the key is absent until the first view change, and a
        Get of an absent key per persist fed LevelDB's seek compaction)."""
        if self._view is None:
            raw = self._kv.get(keys.VIEW_KEY)
            self._view = 0 if raw is None else decode(ViewState, raw, keys.VIEW_KEY).view
        return self._view

    def _record_keys(self) -> set[bytes]:
        """Vote and prepared-certificate keys on disk (scanned once, then kept in step)."""
        if self._live_records is None:
            self._live_records = {
                k for p in (keys.VOTE, keys.PREPARED)
                for k, _ in self._kv.items(p, keys.prefix_end(p))
            }
        return self._live_records

    def _prune(self, b: _Pending, upto: int, view: int) -> None:
        on_disk = self._record_keys()
        for key in b.keys_with_prefix(keys.VOTE, on_disk):
            kind, v, seq = keys.parse_vote(key)
            if kind in (keys.KIND_VIEW_CHANGE, keys.KIND_NEW_VIEW):
                if v < view:
                    b.delete(key)
            elif seq <= upto:
                b.delete(key)
        for key in b.keys_with_prefix(keys.PREPARED, on_disk):
            if keys.parse_prepared(key)[1] <= upto:
                b.delete(key)

    # -------------------------------------------------------------- blocks

    def commit_block(self, commit: BlockCommit) -> None:
        """Append block height+1 with certificate, state writes, tx index, client top and
        meta height in ONE synced batch. Nothing is written if any check fails."""
        self.commit_blocks((commit,))

    def commit_blocks(self, commits: Sequence[BlockCommit]) -> None:
        """Append consecutive blocks height+1.. in ONE synced batch (group commit: one fsync for
        all of them). Each block is checked as by `commit_block`, against the blocks before it
        in the group; nothing is written if any check fails. Layout: FIRST op raises the meta
        height to the last block, the header ops come LAST in ascending height, so a torn
        prefix always lacks the header of the meta height (see the module docstring)."""
        if not commits:
            return
        h, last_hash = self._height, self._last_hash
        ops: list[Op] = [(keys.META_HEIGHT, keys.u64(h + len(commits)))]  # first
        headers: list[Op] = []
        state_ops: list[Op] = []
        in_group: set[bytes] = set()  # C-keys written by earlier blocks of this group
        per_client: dict[bytes, int] = {}  # highest request_seq committed by this group
        for commit in commits:
            ex = commit.execute
            if ex.seq != h + 1:
                self._fail(
                    "commit", f"{self.where}: block height {ex.seq} but the next is {h + 1}"
                )
            if ex.prev_hash != last_hash:
                self._fail(
                    "commit",
                    f"{self.where}: block {ex.seq} prev_hash {ex.prev_hash.hex()[:16]} "
                    f"!= last block hash {last_hash.hex()[:16]}",
                )
            if chain_digest(ex.prev_hash, ex.seq, ex.digest) != ex.block_hash:
                self._fail("commit", f"{self.where}: block {ex.seq} hash does not match its chain")
            if ex.pre_prepare.digest != ex.digest:
                self._fail("commit", f"{self.where}: block {ex.seq} digest != pre-prepare digest")
            if len(commit.results) != len(ex.requests):
                self._fail(
                    "commit",
                    f"{self.where}: block {ex.seq} has {len(ex.requests)} txs "
                    f"but {len(commit.results)} results",
                )
            ops.append(
                (
                    keys.body(ex.seq),
                    encode(
                        body_for(
                            tuple(ex.requests),
                            tuple(ex.skipped),
                            CommittedBlock(ex.pre_prepare, tuple(ex.commits)),
                        )
                    ),
                )
            )
            for i, (req, res) in enumerate(zip(ex.requests, commit.results, strict=True)):
                th = request_digest(req)
                if (
                    res.tx_hash != th
                    or res.client_id != req.client_id
                    or res.request_seq != req.request_seq
                    or res.height != ex.seq
                ):
                    self._fail(
                        "commit",
                        f"{self.where}: block {ex.seq} result {i} does not describe tx {i} "
                        f"(hash/client/seq/height mismatch)",
                    )
                ck = keys.client_index(req.client_id, req.request_seq)
                if ck in in_group or (
                    not self._above_window(req.client_id, req.request_seq)
                    and self._kv.get(ck) is not None
                ):
                    self._fail(
                        "commit",
                        f"{self.where}: block {ex.seq} tx {i} re-executes request_seq "
                        f"{req.request_seq} of client {req.client_id.hex()[:16]} "
                        "(already committed)",
                    )
                in_group.add(ck)
                ops.append(
                    (
                        keys.tx(th),
                        encode(
                            TxRecord(
                                res.client_id, res.request_seq, res.height, res.index, res.code,
                                res.result,
                            )
                        ),
                    )
                )
                ops.append((ck, th))
                if per_client.get(res.client_id, -1) < res.request_seq:
                    per_client[res.client_id] = res.request_seq
            for k, v in commit.state_writes:  # in block order: a later block's write wins
                state_ops.append((keys.state(k), v))
            headers.append(
                (
                    keys.header(ex.seq),
                    encode(
                        BlockHeader(
                            ex.seq, ex.block_hash, ex.prev_hash, ex.digest, ex.time_ms, ex.view,
                            commit.state_root,
                        )
                    ),
                )
            )
            h, last_hash, last_time = ex.seq, ex.block_hash, ex.time_ms
        window_updates: dict[bytes, int] = {}
        for cid, top in per_client.items():
            op = self._top_op(cid, top, window_updates)
            if op is not None:
                ops.append(op)
        ops.extend(state_ops)
        ops.extend(headers)  # last: the meta height's header proves the whole batch landed
        self._kv.write(ops, sync=self.sync_blocks)
        self._height = h
        self._last_hash = last_hash
        self._last_time = last_time
        for cid, top in window_updates.items():
            self._windows.pop(cid, None)  # re-insert: most recently used last
            self._windows[cid] = top
        while len(self._windows) > WINDOW_CACHE_CLIENTS:
            self._windows.popitem(last=False)

    def _client_top(self, cid: bytes) -> int | None:
        """Highest executed request_seq of a client (None: never executed one)."""
        top = self._windows.get(cid)
        if top is not None:
            return top
        k = keys.client_top(cid)
        # by seek, not Get: an absent-key Get feeds LevelDB's seek compaction (_above_window)
        item = next(iter(self._kv.items(k, k + b"\x00")), None)
        if item is None or item[0] != k:
            return None
        return self._u64_value(k, item[1])

    def _u64_value(self, key: bytes, raw: bytes) -> int:
        try:
            return keys.from_u64(raw)
        except ValueError as exc:
            self._fail("corrupt", f"{self.where}: {key!r} malformed: {exc}", CorruptionError)
            raise  # unreachable

    def _top_op(self, cid: bytes, top: int, window_updates: dict[bytes, int]) -> Op | None:
        """The client's highest executed request_seq, one key per client (W), rewritten only
        when it rises. The dedup window (seqs > top - dedup_window) is read back from the
        client index at recovery, so a tx writes no window entry and deletes none (the
        per-seq window keys and their tombstones were a fifth of the main DB's compaction
        bytes). `window_updates` reaches the cache only after the batch is written."""
        prev = window_updates.get(cid)
        if prev is None:
            prev = self._client_top(cid)
        if prev is not None and prev >= top:
            window_updates[cid] = prev
            return None
        window_updates[cid] = top
        return (keys.client_top(cid), keys.u64(top))

    def recover(self, max_clients: int | None = None) -> RecoveredState:
        """Rebuild the replica's durable state; verify the hash chain past the verified marker.
        `max_clients`: restore the dedup windows of at most this many clients (the replica
        loads the others when they return: `client_histories`); None = all.

        Raises CorruptionError naming what is wrong (torn block, gap, broken chain,
        undecodable record); nothing is repaired silently."""
        kv = self._kv
        if kv.get(keys.META_IMPORTING) is not None:
            self._fail(
                "corrupt",
                f"{self.where}: a state import was interrupted; import again or resync",
                CorruptionError,
            )
        height = self._meta_u64(kv, keys.META_HEIGHT)
        verified = self._meta_u64(kv, keys.META_VERIFIED)
        base = self._base(kv)
        if not base.height <= verified <= max(height, base.height):
            self._fail(
                "corrupt",
                f"{self.where}: verified marker {verified} outside [{base.height}, {height}]",
                CorruptionError,
            )
        if height > base.height and kv.get(keys.header(height)) is None:
            self._fail(
                "corrupt",
                f"{self.where}: meta height is {height} but block {height} is missing "
                "(torn write or lost data)",
                CorruptionError,
            )
        beyond = next(iter(kv.items(keys.header(height + 1), keys.prefix_end(keys.HEADER))), None)
        if beyond is not None:
            self._fail(
                "corrupt",
                f"{self.where}: block {keys.from_u64(beyond[0][1:])} stored above meta height "
                f"{height}",
                CorruptionError,
            )
        if verified > base.height:
            hdr = self._header_at(kv, verified)
            if hdr is None:
                self._fail(
                    "corrupt", f"{self.where}: verified block {verified} missing", CorruptionError
                )
            prev = hdr.hash
        else:
            prev = base.hash
        expect = verified + 1
        for k, v in kv.items(keys.header(expect), keys.header(height + 1)):
            hk = keys.from_u64(k[1:])
            if hk != expect:
                self._fail(
                    "corrupt", f"{self.where}: gap in blocks: {expect} missing", CorruptionError
                )
            hdr = decode(BlockHeader, v, k)
            if hdr.height != hk or hdr.prev_hash != prev:
                self._fail(
                    "corrupt",
                    f"{self.where}: block {hk} does not link to block {hk - 1}",
                    CorruptionError,
                )
            if chain_digest(hdr.prev_hash, hdr.height, hdr.digest) != hdr.hash:
                self._fail(
                    "corrupt", f"{self.where}: block {hk} hash is not its chain digest",
                    CorruptionError,
                )
            prev = hdr.hash
            expect += 1
        if expect != height + 1:
            self._fail(
                "corrupt", f"{self.where}: gap in blocks: {expect} missing", CorruptionError
            )
        last_time = 0
        if height > base.height or kv.get(keys.header(height)) is not None:
            last = self._header_at(kv, height)
            if last is not None:
                last_time = last.time_ms
                self._check_block_complete(kv, last)
        if verified != height:
            kv.write([(keys.META_VERIFIED, keys.u64(height))], sync=False)

        raw = kv.get(keys.VIEW_KEY)
        vs = ViewState(0, False) if raw is None else decode(ViewState, raw, keys.VIEW_KEY)
        votes = []
        for k, v in kv.items(keys.VOTE, keys.prefix_end(keys.VOTE)):
            rec = decode(OwnVote, v, k)
            if _vote_key(rec.message) != k:
                self._fail(
                    "corrupt", f"{self.where}: own vote stored under the wrong key {k!r}",
                    CorruptionError,
                )
            votes.append(rec.message)
        prepared = []
        for k, v in kv.items(keys.PREPARED, keys.prefix_end(keys.PREPARED)):
            proof = decode(PreparedCert, v, k).proof
            if keys.prepared(proof.pre_prepare.view, proof.pre_prepare.seq) != k:
                self._fail(
                    "corrupt", f"{self.where}: prepared certificate under the wrong key {k!r}",
                    CorruptionError,
                )
            prepared.append(proof)
        convicted = []
        for k, v in kv.items(keys.CONVICTION, keys.prefix_end(keys.CONVICTION)):
            conv = decode(Conviction, v, k)
            if keys.conviction(conv.replica) != k:
                self._fail(
                    "corrupt", f"{self.where}: conviction stored under the wrong key {k!r}",
                    CorruptionError,
                )
            convicted.append(conv)
        convicted.sort(key=lambda c: (c.seq, c.replica))
        raw = kv.get(keys.CHECKPOINT_KEY)
        cp = None if raw is None else decode(StableCheckpoint, raw, keys.CHECKPOINT_KEY)
        self._fold_legacy_window(kv)
        clients: dict[bytes, tuple[int, ...]] = {}
        complete = True
        for k, v in kv.items(keys.CLIENT_TOP, keys.prefix_end(keys.CLIENT_TOP)):
            if max_clients is not None and len(clients) >= max_clients:
                complete = False
                break
            try:
                cid = keys.parse_client_top(k)
            except ValueError as exc:
                self._fail("corrupt", f"{self.where}: {exc}", CorruptionError)
            clients[cid] = self._client_window(kv, cid, self._u64_value(k, v))
        self._load_tip()
        return RecoveredState(
            view=vs.view,
            in_view_change=vs.in_view_change,
            own_votes=tuple(votes),
            stable_checkpoint=cp,
            last_executed=height,
            last_block_hash=prev,
            last_time_ms=last_time,
            client_executed=clients,
            clients_complete=complete,
            prepared=tuple(prepared),
            convicted=tuple(convicted),
        )

    def _client_window(self, kv: KV, cid: bytes, top: int) -> tuple[int, ...]:
        """The client's executed request_seqs in (top - dedup_window, top], ascending."""
        lo = max(0, top - self.dedup_window + 1)
        return tuple(
            keys.from_u64(ck[-8:])
            for ck, _ in kv.items(keys.client_index(cid, lo), keys.client_index(cid, top + 1))
        )

    def client_histories(
        self, client_ids: Sequence[bytes]
    ) -> tuple[int, tuple[tuple[bytes, tuple[int, ...]], ...]]:
        """(height, each client's dedup window as `recover` restores it) for clients the
        replica's bounded table left out (consensus.LoadClients). The height is read first:
        the windows reflect at least every block through it."""
        height = self._height
        out = []
        for cid in client_ids:
            if len(cid) > 255:
                out.append((cid, ()))
                continue
            top = self._client_top(cid)
            out.append((cid, () if top is None else self._client_window(self._kv, cid, top)))
        return height, tuple(out)

    def _fold_legacy_window(self, kv: KV) -> None:
        """Ledgers before session 5 kept one E-key per executed seq in the dedup window:
        fold them into the per-client top (W) and delete them, in one synced batch."""
        tops: dict[bytes, int] = {}
        ops: list[Op] = []
        for k, _v in kv.items(keys.CLIENT_WINDOW, keys.prefix_end(keys.CLIENT_WINDOW)):
            try:
                cid, seq = keys.parse_client_window(k)
            except ValueError as exc:
                self._fail("corrupt", f"{self.where}: {exc}", CorruptionError)
            tops[cid] = max(tops.get(cid, seq), seq)
            ops.append((k, None))
        if not ops:
            return
        for cid, top in tops.items():
            raw = kv.get(keys.client_top(cid))
            if raw is None or self._u64_value(keys.client_top(cid), raw) < top:
                ops.append((keys.client_top(cid), keys.u64(top)))
        kv.write(ops, sync=True)
        self._windows.clear()
        log.info("storage.client_window_folded", where=self.where, clients=len(tops),
                 keys=len(ops))

    def _check_block_complete(self, kv: KVReader, hdr: BlockHeader) -> None:
        """The last block's body decodes and every tx of it is indexed."""
        raw = kv.get(keys.body(hdr.height))
        if raw is None:
            self._fail(
                "corrupt", f"{self.where}: block {hdr.height} body missing", CorruptionError
            )
        body = decode(BlockBody, raw, keys.body(hdr.height))
        if body.committed.pre_prepare.digest != hdr.digest:
            self._fail(
                "corrupt",
                f"{self.where}: block {hdr.height} certificate does not match its header",
                CorruptionError,
            )
        for req in body.executed():
            th = request_digest(req)
            if kv.get(keys.tx(th)) is None or kv.get(
                keys.client_index(req.client_id, req.request_seq)
            ) != th:
                self._fail(
                    "corrupt",
                    f"{self.where}: tx {th.hex()[:16]} of block {hdr.height} is not indexed",
                    CorruptionError,
                )

    def verify_chain(self) -> int:
        """Full check of every stored block from the chain base (ignores the marker)."""
        kv = self._kv
        base = self._base(kv)
        kv.write([(keys.META_VERIFIED, keys.u64(base.height))], sync=True)
        self.recover()
        return self._height

    # -------------------------------------------------------------- reads

    def height(self) -> int:
        return self._height

    def last_block_hash(self) -> bytes:
        return self._last_hash

    def _stored_block(self, reader: KVReader, hdr: BlockHeader) -> StoredBlock:
        raw = reader.get(keys.body(hdr.height))
        if raw is None:
            self._fail(
                "corrupt", f"{self.where}: block {hdr.height} body missing", CorruptionError
            )
        body = decode(BlockBody, raw, keys.body(hdr.height))
        return StoredBlock(
            height=hdr.height,
            hash=hdr.hash,
            prev_hash=hdr.prev_hash,
            digest=hdr.digest,
            time_ms=hdr.time_ms,
            view=hdr.view,
            state_root=hdr.state_root,
            txs=body.executed(),
            committed=body.committed,
        )

    def block(self, height: int) -> StoredBlock | None:
        if not 0 < height <= self._height:
            return None
        hdr = self._header_at(self._kv, height)
        return None if hdr is None else self._stored_block(self._kv, hdr)

    def committed_block(self, height: int) -> CommittedBlock | None:
        if not 0 < height <= self._height:
            return None
        raw = self._kv.get(keys.body(height))
        return None if raw is None else decode(BlockBody, raw, keys.body(height)).committed

    def blocks(self, start: int, stop: int | None = None) -> Iterator[StoredBlock]:
        """Stored blocks with start <= height < stop, ascending. Blocks are immutable once
        written, so live reads are consistent without a snapshot (cheap for MemoryStore)."""
        top = self._height + 1 if stop is None else min(stop, self._height + 1)
        for h in range(max(start, 1), top):
            b = self.block(h)
            if b is None:
                continue  # below an imported chain base
            yield b

    def tx(self, tx_hash: bytes) -> TxResult | None:
        raw = self._kv.get(keys.tx(tx_hash))
        return None if raw is None else _tx_result(tx_hash, decode(TxRecord, raw, keys.tx(tx_hash)))

    def _above_window(self, client_id: bytes, request_seq: int) -> bool:
        """True if `request_seq` is above every executed seq of a client whose window bounds
        are cached: it cannot have executed, and no LevelDB read is needed.

        Why it matters: a read of an absent key consults several table files, and LevelDB
        charges such reads to the first file and compacts it when its allowance runs out; one
        such read per tx turned into near-continuous compactions that rewrote the whole of
        level 2 (its cost growing with the ledger)."""
        top = self._windows.get(client_id)
        return top is not None and request_seq > top

    def tx_by_client(self, client_id: bytes, request_seq: int) -> TxResult | None:
        if len(client_id) > 255 or request_seq < 0:
            return None
        if self._above_window(client_id, request_seq):
            return None
        th = self._kv.get(keys.client_index(client_id, request_seq))
        return None if th is None else self.tx(th)

    def state(self) -> StateReader:
        return KVStateReader(self._kv)

    @contextmanager
    def snapshot(self) -> Iterator[StateReader]:
        with self._kv.snapshot() as snap:
            yield KVStateReader(snap)

    # -------------------------------------------------------------- state transfer

    def export_state(self, chunk_items: int = 1024) -> Iterator[StateChunk]:
        """All application state as of one block, from one snapshot, in chunks."""
        with self._kv.snapshot() as snap:
            height = self._meta_u64(snap, keys.META_HEIGHT)
            hdr = self._header_at(snap, height)
            bhash = hdr.hash if hdr is not None else self._base(snap).hash
            items: list[tuple[bytes, bytes]] = []
            for k, v in snap.items(keys.STATE, keys.prefix_end(keys.STATE)):
                items.append((k[1:], v))
                if len(items) >= chunk_items:
                    yield StateChunk(height, bhash, tuple(items))
                    items = []
            yield StateChunk(height, bhash, tuple(items))

    def import_state(
        self,
        height: int,
        block_hash: bytes,
        items: Iterable[tuple[bytes, bytes] | StateChunk],
        committed_block: CommittedBlock,
        prev_hash: bytes | None = None,
    ) -> None:
        """Replace application state with a transferred one; the chain restarts at `height`.

        Writes in several batches guarded by an 'importing' marker (recover() refuses a
        half-done import). Blocks below `height` that we have are kept but no longer verified.
        """
        self._windows.clear()
        self._live_records = None
        if height <= self._height:
            self._fail(
                "import", f"{self.where}: import at {height} not above our height {self._height}"
            )
        pp = committed_block.pre_prepare
        if pp.seq != height:
            self._fail("import", f"{self.where}: certificate is for {pp.seq}, not {height}")
        if prev_hash is not None and chain_digest(prev_hash, height, pp.digest) != block_hash:
            self._fail("import", f"{self.where}: block hash does not match prev_hash/digest")
        kv = self._kv
        kv.write([(keys.META_IMPORTING, keys.u64(height))], sync=True)
        ops: list[Op] = [(k, None) for k, _ in kv.items(keys.STATE, keys.prefix_end(keys.STATE))]
        for item in items:
            pairs = item.items if isinstance(item, StateChunk) else (item,)
            for k, v in pairs:
                ops.append((keys.state(k), v))
                if len(ops) >= 4096:
                    kv.write(ops, sync=False)
                    ops = []
        hdr = BlockHeader(
            height, block_hash, prev_hash or bytes(32), pp.digest, pp.time_ms, pp.view,
            bytes(32),
        )
        ops += [
            (keys.body(height), encode(BlockBody((), (), committed_block))),
            (keys.header(height), encode(hdr)),
            (keys.META_BASE, encode(ChainBase(height, block_hash))),
            (keys.META_HEIGHT, keys.u64(height)),
            (keys.META_VERIFIED, keys.u64(height)),
            (keys.META_IMPORTING, None),
        ]
        kv.write(ops, sync=True)  # syncs every earlier unsynced chunk too
        self._load_tip()

    def close(self) -> None:
        self._kv.close()
