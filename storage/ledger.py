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

Split by job: storage.kv (the engine interface and batch builder), storage.ledger_core (open
checks, cached tip), storage.ledger_records (`persist`), storage.ledger_blocks
(`commit_blocks`), storage.ledger_recovery (`recover`), storage.ledger_prune (`prune_blocks`),
storage.ledger_snapshot (snapshot pages and their import); this module assembles `LedgerStore`
and holds its reads and state transfer.
Imports: stdlib, msgspec, structlog, consensus (messages/events/codec only).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager

from consensus import CommittedBlock, StateVote
from consensus.codec import chain_digest

from . import keys, tx_attrs
from .interface import (
    CorruptionError,
    StateCertificate,
    StateChunk,
    StateReader,
    StorageError,
    StoredBlock,
    TxResult,
)
from .kv import KV, KVReader, KVStateReader, Op
from .ledger_blocks import LedgerBlocks
from .ledger_core import DEFAULT_DEDUP_WINDOW, SCHEMA_VERSION, WINDOW_CACHE_CLIENTS, log
from .ledger_prune import LedgerPrune
from .ledger_records import LedgerRecords
from .ledger_recovery import LedgerRecovery
from .ledger_snapshot import LedgerSnapshot
from .read_view import ReadView
from .records import BlockBody, BlockHeader, ChainBase, StateCert, TxRecord, decode, encode

__all__ = [
    "DEFAULT_DEDUP_WINDOW",
    "KV",
    "KVReader",
    "KVStateReader",
    "LedgerStore",
    "Op",
    "SCHEMA_VERSION",
    "WINDOW_CACHE_CLIENTS",
    "log",
]


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


class LedgerStore(LedgerRecords, LedgerBlocks, LedgerRecovery, LedgerPrune, LedgerSnapshot):
    """Implements storage.Store over a KV engine. Subclasses open the engine."""

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
            results_root=hdr.results_root,
            state_certificate=self._certificate_at(reader, hdr.height),
        )

    def block(self, height: int) -> StoredBlock | None:
        if not 0 < height <= self._height:
            return None
        hdr = self._header_at(self._kv, height)
        return None if hdr is None else self._stored_block(self._kv, hdr)

    def block_height(self, block_hash: bytes) -> int | None:
        """The height of the stored block with hash `block_hash` (None: not stored)."""
        return self._height_of(self._kv, block_hash)

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
        return self._tx_at(self._kv, tx_hash)

    def app_events(self, height: int) -> bytes | None:
        """The app events the node stored with block `height` (its own encoding); None when
        the block is not stored (pruned, not yet committed) or was stored without them (a
        state-transfer base, a ledger from before events were kept)."""
        if not 0 < height <= self._height:
            return None
        return self._kv.get(keys.events(height))

    def tx_attrs_indexed(self) -> int:
        """The event-attribute index covers blocks up to this height (storage.tx_attrs)."""
        return self._attrs_to

    def index_tx_attrs(self, blocks: Sequence[tuple[int, Sequence[tx_attrs.Entry]]]) -> None:
        """Index stored blocks the commits did not (ascending heights right above
        `tx_attrs_indexed()`: an older ledger, `tx_index` turned on later), in one unsynced
        batch: derived data, indexed again if lost."""
        if not blocks:
            return
        if blocks[0][0] <= self._attrs_to:
            raise StorageError(f"{self.where}: tx attributes of height {blocks[0][0]} are "
                               "indexed already")
        self._kv.write(tx_attrs.index_ops(blocks), sync=False)
        self._attrs_to = blocks[-1][0]

    def block_roots(self, height: int) -> tuple[bytes, bytes] | None:
        """(state_root, results_root) of block `height` from its header alone."""
        if not 0 < height <= self._height:
            return None
        hdr = self._header_at(self._kv, height)
        return None if hdr is None else (hdr.state_root, hdr.results_root)

    # -------------------------------------------------------------- state certificates

    def put_state_certificate(self, seq: int, votes: Sequence[StateVote]) -> None:
        """Store block `seq`'s state certificate (not synced: a lost one is only a height
        less to prove, and the next block's comes one block interval later)."""
        if not votes or len({(v.seq, v.block_hash, v.state_root, v.results_root)
                             for v in votes}) != 1 or votes[0].seq != seq:
            self._fail("certificate", f"{self.where}: state certificate for {seq} must be "
                       "votes with one seq and equal roots")
        self._kv.write([(keys.state_certificate(seq), encode(StateCert(tuple(votes))))],
                       sync=False)
        self._latest_certified = max(self._latest_certified_height(), seq)

    def state_certificate(self, seq: int) -> StateCertificate | None:
        return self._certificate_at(self._kv, seq)

    def _certificate_at(self, reader: KVReader, seq: int) -> StateCertificate | None:
        key = keys.state_certificate(seq)
        raw = reader.get(key)
        if raw is None:
            return None
        votes = decode(StateCert, raw, key).votes
        if not votes:
            raise CorruptionError(f"{self.where}: empty state certificate at {seq}")
        v = votes[0]
        return StateCertificate(v.seq, v.block_hash, v.state_root, v.results_root, votes)

    def latest_certified(self) -> int:
        return self._latest_certified_height()

    def _latest_certified_height(self) -> int:
        if self._latest_certified is None:
            last = next(iter(self._kv.items(keys.STATE_CERT, keys.prefix_end(keys.STATE_CERT),
                                            reverse=True)), None)
            self._latest_certified = 0 if last is None else keys.from_u64(last[0][1:])
        return self._latest_certified

    def _tx_at(self, reader: KVReader, tx_hash: bytes) -> TxResult | None:
        raw = reader.get(keys.tx(tx_hash))
        return None if raw is None else _tx_result(tx_hash, decode(TxRecord, raw, keys.tx(tx_hash)))

    def client_floor(self, client_id: bytes) -> int:
        """See storage.interface.Store.client_floor."""
        return self._floor_at(self._kv, client_id)

    def tx_by_client(self, client_id: bytes, request_seq: int) -> TxResult | None:
        if len(client_id) > 255 or request_seq < 0:
            return None
        if self._above_window(client_id, request_seq):
            return None
        th = self._kv.get(keys.client_index(client_id, request_seq))
        return None if th is None else self.tx(th)

    def state(self) -> StateReader:
        return KVStateReader(self._kv, guards=self.depth_guard)

    @contextmanager
    def snapshot(self) -> Iterator[StateReader]:
        with self._kv.snapshot() as snap:
            yield KVStateReader(snap)

    @contextmanager
    def read_view(self) -> Iterator[ReadView]:
        """A consistent view of height, blocks, txs and state (storage.read_view); safe to
        read from a thread other than the writer's."""
        with self._kv.snapshot() as snap:
            yield ReadView(self, snap)

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
            (keys.block_hash(block_hash), keys.u64(height)),
            (keys.META_BASE, encode(ChainBase(height, block_hash))),
            (keys.META_HEIGHT, keys.u64(height)),
            (keys.META_VERIFIED, keys.u64(height)),
            (keys.META_IMPORTING, None),
        ]
        kv.write(ops, sync=True)  # syncs every earlier unsynced chunk too
        self._load_tip()
        if self.auth is not None:  # a crash before this rebuilds it at the next open
            self._rebuild_auth()

    # ------------------------------------------------------------------ authenticated state

    def state_root(self, height: int | None = None) -> bytes:
        """The state tree's root hash at `height` (default: the last block); raises
        storage.StaleVersion if that height is not retained, StorageError if the tree is off."""
        if self.auth is None:
            raise StorageError(f"{self.where}: authenticated state is off")
        return self.auth.root_hash(self._height if height is None else height)

    def prove(
        self, lo: bytes, hi: bytes | None, height: int | None = None, limit: int | None = None
    ) -> tuple[int, bytes, list[tuple[bytes, bytes]], bytes]:
        """(height, root hash, entries with lo <= key < hi up to `limit`, proof) from one
        snapshot; keys are tree keys (ledger keys: keys.AUTH_KEYSPACES). Check with
        storage.merkle_proof.verify_range(root, lo, hi, entries, proof, limit)."""
        if self.auth is None:
            raise StorageError(f"{self.where}: authenticated state is off")
        with self._kv.snapshot() as snap:
            at = self._meta_u64(snap, keys.META_HEIGHT) if height is None else height
            root, entries, proof = self.auth.prove(at, lo, hi, limit, snap)
        return at, root, entries, proof

    def close(self) -> None:
        self._kv.close()
