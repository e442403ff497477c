"""The ledger's shared state and its open checks: `LedgerCore` holds the engine, the cached tip
(height, last hash, last time), the client-top cache and the error counters; it checks or
initialises the meta keys at open. The records, blocks and recovery parts of `LedgerStore`
(storage.ledger) build on it.
The state tree (storage.merkle_tree, when `authenticated_state`) is opened here too: rebuilt
from the covered keyspaces when the ledger has no root at its height.
Imports: stdlib, structlog (lazily), consensus.codec,
storage.{keys,kv,interface,records,merkle_tree}.
"""

from __future__ import annotations

import collections

from consensus.codec import GENESIS_CHAIN_DIGEST

from . import keys
from .client_seqs import Seqs
from .interface import CorruptionError, StorageError
from .kv import KV, KVReader, Op
from .merkle_depth import DepthGuard
from .merkle_tree import DEFAULT_RETAIN, PRUNED_TO, AuthTree, StaleVersion
from .records import BlockHeader, ChainBase, decode, encode

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


class LedgerCore:
    """State shared by every part of `LedgerStore`: the engine, the cached tip, the caches."""

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
        authenticated_state: bool = False,
        state_versions: int = DEFAULT_RETAIN,
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
        self._latest_certified: int | None = None  # highest stored state certificate (lazy)
        # the authenticated state tree (storage.merkle_tree), updated in each block's batch
        self.auth = AuthTree(kv, state_versions) if authenticated_state else None
        self._check_or_init_meta(create)
        self._load_tip()
        self._open_auth()

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

    def _height_of(self, reader: KVReader, block_hash: bytes) -> int | None:
        """The height of the stored block with this hash (the B index), None if none."""
        raw = reader.get(keys.block_hash(block_hash))
        return None if raw is None else self._u64_value(keys.block_hash(block_hash), raw)

    def _header_at(self, reader: KVReader, height: int) -> BlockHeader | None:
        raw = reader.get(keys.header(height))
        return None if raw is None else decode(BlockHeader, raw, keys.header(height))

    def _load_tip(self) -> None:
        """Cache height / last hash / last time from disk (at open and after a crash); forget
        the cached record keys and view (re-read from disk when next needed)."""
        self._live_records = None
        self._view = None
        self._latest_certified = None
        if self.auth is not None:
            self.auth.discard()
            self.auth.forget()  # nodes of batches a crash undid may be in it
        self._height = self._meta_u64(self._kv, keys.META_HEIGHT)
        # how far the tx-attribute index reaches (storage.tx_attrs); a torn batch may have
        # moved it past the blocks that landed: those are indexed again, identically
        raw = self._kv.get(keys.META_TX_ATTRS)
        self._attrs_to = min(keys.from_u64(raw), self._height) if raw else 0
        base = self._base(self._kv)
        hdr = self._header_at(self._kv, self._height)
        if hdr is None:
            self._last_hash = base.hash
            self._last_time = 0
        else:
            self._last_hash = hdr.hash
            self._last_time = hdr.time_ms

    # -------------------------------------------------------------- authenticated state

    def _open_auth(self) -> None:
        """With the tree on, make sure it has the root of the current height: a ledger that
        ran without it (or a state import cut short) gets the tree rebuilt from its state."""
        if self.auth is None:
            return
        try:
            self.auth.root(self._height)
        except StaleVersion:
            self._rebuild_auth()
            return
        if not self.auth.format_ok():  # written by an older version of storage.merkle_tree
            self._rebuild_auth()

    def depth_guard(self, height: int) -> DepthGuard | None:
        """The depth bound for executing block `height` over the tree of `height - 1`
        (storage.StaleVersion if that version is not there: blocks are committed one by one
        while the tree is on). None with the tree off."""
        return None if self.auth is None else DepthGuard(self.auth, height - 1)

    @property
    def authenticated_state(self) -> bool:
        """True if this ledger keeps the state tree (then blocks commit one by one: the depth
        bound of each block's execution reads the tree of the block before)."""
        return self.auth is not None

    def _rebuild_auth(self, derive_seqs: bool = True) -> None:
        """Drop the whole tree and build it from the covered keyspaces at the current height
        (first deriving the G records from the client index, unless `derive_seqs` is False:
        a state import brings them, and not the client index)."""
        auth, kv = self.auth, self._kv
        assert auth is not None
        ops: list[Op] = [(k, None) for k, _ in kv.items(keys.MERKLE, keys.prefix_end(keys.MERKLE))]
        if derive_seqs:
            ops += self._derive_client_seqs()
        kv.write(ops, sync=False)  # synced with the tree below
        ops = []
        items = [kv_ for p in keys.AUTH_KEYSPACES for kv_ in kv.items(p, keys.prefix_end(p))]
        try:
            auth.build(self._height, items)
            ops += auth.take_ops()
            ops.append((PRUNED_TO, keys.u64(self._height)))
            kv.write(ops, sync=True)
        except BaseException:
            auth.discard()
            raise
        auth.landed()
        if items:  # not for a new ledger
            log.info("storage.state_tree_built", where=self.where, height=self._height,
                     keys=len(items))

    def _derive_client_seqs(self) -> list[Op]:
        """Each client's G record derived anew from its top (W) and its client-index entries
        in the window (a ledger whose tree covered the client index, format 3, has none; one
        that ran with the tree off has stale ones), except where the index does not cover the
        window: a client whose floor (F) lies above top - dedup_window came by a state import,
        which brings its G record and no index entries, so that record is kept."""
        kv = self._kv
        ops: list[Op] = []
        tops: dict[bytes, int] = {}
        for k, v in kv.items(keys.CLIENT_TOP, keys.prefix_end(keys.CLIENT_TOP)):
            tops[keys.parse_client_top(k)] = self._u64_value(k, v)
        for k, _ in kv.items(keys.CLIENT_SEQS, keys.prefix_end(keys.CLIENT_SEQS)):
            if keys.parse_client_seqs(k) not in tops:
                ops.append((k, None))
        for cid, top in tops.items():
            lo = max(1, top - self.dedup_window + 1)
            if self._floor_at(kv, cid) >= lo and self._seqs_at(kv, cid) is not None:
                continue  # imported: its window is not in the index
            done = [keys.from_u64(ck[-8:]) for ck, _ in
                    kv.items(keys.client_index(cid, lo), keys.client_index(cid, top + 1))]
            if not done or done[-1] != top:
                done.append(top)  # the top executed even if its entry is gone (below F)
            rec = Seqs.of(done, self.dedup_window)
            assert rec is not None
            ops.append((keys.client_seqs(cid), rec.encode()))
        return ops

    # -------------------------------------------------------------- client tops

    def _client_top(self, cid: bytes) -> int | None:
        """Highest executed request_seq of a client (None: never executed one)."""
        top = self._windows.get(cid)
        if top is not None:
            return top
        return self._u64_at(keys.client_top(cid))

    def _u64_at(self, k: bytes, reader: KVReader | None = None) -> int | None:
        # by seek, not Get: an absent-key Get feeds LevelDB's seek compaction (_above_window)
        item = next(iter((reader or self._kv).items(k, k + b"\x00")), None)
        if item is None or item[0] != k:
            return None
        return self._u64_value(k, item[1])

    def _seqs_at(self, reader: KVReader, cid: bytes) -> Seqs | None:
        """The client's executed-seqs record (keys G; state tree on), None if it has none."""
        if len(cid) > 255:
            return None
        k = keys.client_seqs(cid)
        raw = reader.get(k)
        if raw is None:
            return None
        try:
            return Seqs.decode(raw)
        except ValueError as exc:
            self._fail("corrupt", f"{self.where}: {k!r} malformed: {exc}", CorruptionError)
            raise  # unreachable

    def _floor_at(self, reader: KVReader, cid: bytes) -> int:
        """The client's floor (storage.keys F) as `reader` sees it; 0 if none."""
        return 0 if len(cid) > 255 else self._u64_at(keys.client_floor(cid), reader) or 0

    def _u64_value(self, key: bytes, raw: bytes) -> int:
        try:
            return keys.from_u64(raw)
        except ValueError as exc:
            self._fail("corrupt", f"{self.where}: {key!r} malformed: {exc}", CorruptionError)
            raise  # unreachable

    def _above_window(self, client_id: bytes, request_seq: int) -> bool:
        """True if `request_seq` is above every executed seq of a client whose window bounds
        are cached: it cannot have executed, and no LevelDB read is needed.

        Why it matters: a read of an absent key consults several table files, and LevelDB
        charges such reads to the first file and compacts it when its allowance runs out; one
        such read per tx turned into near-continuous compactions that rewrote the whole of
        level 2 (its cost growing with the ledger)."""
        top = self._windows.get(client_id)
        return top is not None and request_seq > top
