"""Certified snapshots in the ledger: serve the state tree at a height in pages from one held
LevelDB snapshot (`open_snapshot` / `snapshot_page`), and import a snapshot page by page
(`begin_import`, `import_page`, `finish_import`) into a ledger that is behind.

Serving reads tree nodes only (a leaf holds its value), so pruned blocks and the tree's own
version pruning do not matter while the held snapshot lives. An import stages each verified page
unsynced under `Z` (the ledger's own state is untouched meanwhile); `finish_import`, under the
'importing' marker, replaces the covered keyspaces with the staged pages, writes the block at
the snapshot height as the new chain base (one synced batch), rebuilds the tree and refuses
(CorruptionError, marker kept: recover() then refuses to run) if its root differs from the
certified one. The client index does not travel (it is not in the tree): each imported client's
top and floor come from its G record (storage.client_seqs), the floor at the top.
Imports: stdlib, consensus,
storage.{keys,kv,interface,records,client_seqs,ledger_core,snapshot,merkle_tree}.
"""

from __future__ import annotations

from contextlib import ExitStack

from consensus import CommittedBlock
from consensus.codec import chain_digest

from . import keys
from .client_seqs import Seqs
from .interface import CorruptionError, StorageError
from .kv import KVReader, Op
from .ledger_core import LedgerCore, log
from .records import BlockBody, BlockHeader, ChainBase, encode
from .snapshot import SNAPSHOT_PAGE_BYTES, SNAPSHOT_PAGE_ITEMS, SnapshotPage

_BATCH_OPS = 4096


class HeldSnapshot:
    """A consistent read view of the ledger kept open across calls (close it when done)."""

    def __init__(self, store: LedgerSnapshot) -> None:
        self._stack = ExitStack()
        self.reader: KVReader = self._stack.enter_context(store._kv.snapshot())
        self.item_bytes = 0  # the last page's mean entry size: sizes the next page

    def close(self) -> None:
        self._stack.close()


class LedgerSnapshot(LedgerCore):
    """Snapshot serving and import (see the module docstring)."""

    # ------------------------------------------------------------------ serving

    def open_snapshot(self) -> HeldSnapshot:
        if self.auth is None:
            raise StorageError(f"{self.where}: snapshots need the state tree "
                               "(authenticated_state)")
        return HeldSnapshot(self)

    def snapshot_page(self, held: HeldSnapshot, height: int, after_key: bytes,
                      max_items: int = SNAPSHOT_PAGE_ITEMS,
                      max_bytes: int = SNAPSHOT_PAGE_BYTES) -> SnapshotPage:
        """The page of the tree at `height` starting at `after_key`: at most `max_items`
        entries and `max_bytes` of keys and values (at least one entry). Raises
        storage.StaleVersion if the held snapshot has no tree at `height`."""
        auth = self.auth
        assert auth is not None
        if held.item_bytes:  # one proof per page, not two, while entry sizes stay alike
            max_items = max(1, min(max_items, max_bytes // held.item_bytes))
        _, entries, proof = auth.prove(height, after_key, None, max_items + 1, held.reader)
        more = len(entries) > max_items
        entries = entries[:max_items]
        size, cut = 0, 0
        for k, v in entries:
            size += len(k) + len(v)
            if size > max_bytes and cut:
                break
            cut += 1
        more = more or cut < len(entries)
        if more:
            entries = entries[:cut]
            _, entries, proof = auth.prove(height, after_key, None, cut, held.reader)
        if entries:
            held.item_bytes = max(1, sum(len(k) + len(v) for k, v in entries) // len(entries))
        return SnapshotPage(height, after_key, tuple(entries), proof, more)

    # ------------------------------------------------------------------ import

    def begin_import(self, height: int) -> None:
        """Start staging a snapshot at `height` (above ours): forget earlier staged pages."""
        if self.auth is None:
            raise StorageError(f"{self.where}: snapshots need the state tree "
                               "(authenticated_state)")
        if height <= self._height:
            self._fail("import", f"{self.where}: snapshot at {height} not above our height "
                                 f"{self._height}")
        self._delete_prefixes((keys.STAGING,))

    def import_page(self, items: tuple[tuple[bytes, bytes], ...]) -> None:
        """Stage one verified page (tree keys = ledger keys of the covered keyspaces); the
        ledger's own state is untouched until `finish_import`."""
        ops: list[Op] = []
        for k, v in items:
            if k[:1] not in keys.AUTH_KEYSPACES:
                self._fail("import", f"{self.where}: snapshot key {k[:16]!r} outside the "
                                     "state tree's keyspaces")
            ops.append((keys.STAGING + k, v))
        self._kv.write(ops, sync=False)

    def _tops_of_seqs(self, k: bytes, v: bytes) -> list[Op]:
        """An imported client's top (W) and floor (F), from its G record: the floor at its top,
        since the import brings no client-index entries (a status by client and seq at or
        below it is known by the tx's hash only)."""
        try:
            cid = keys.parse_client_seqs(k)
            top = Seqs.decode(v).top
        except ValueError as exc:
            self._fail("import", f"{self.where}: snapshot record {k[:16]!r}: {exc}")
            raise  # unreachable
        return [(keys.client_top(cid), keys.u64(top)), (keys.client_floor(cid), keys.u64(top))]

    def _delete_prefixes(self, prefixes: tuple[bytes, ...]) -> None:
        kv = self._kv
        ops: list[Op] = []
        for p in prefixes:
            for k, _ in kv.items(p, keys.prefix_end(p)):
                ops.append((k, None))
                if len(ops) >= _BATCH_OPS:
                    kv.write(ops, sync=False)
                    ops = []
        kv.write(ops, sync=False)

    def finish_import(self, height: int, block_hash: bytes, committed_block: CommittedBlock,
                      prev_hash: bytes, state_root: bytes,
                      results_root: bytes = bytes(32)) -> None:
        """Make the imported state the ledger's state at `height`: the block's certificate
        and header (with the certified roots) become the chain base, the tree is rebuilt and
        must hash to `state_root`."""
        pp = committed_block.pre_prepare
        if pp.seq != height or chain_digest(prev_hash, height, pp.digest) != block_hash:
            self._fail("import", f"{self.where}: the block does not match snapshot height "
                                 f"{height} / its hash")
        if height <= self._height:
            self._fail("import", f"{self.where}: snapshot at {height} not above our height "
                                 f"{self._height}")
        kv = self._kv
        kv.write([(keys.META_IMPORTING, keys.u64(height))], sync=True)
        # the tx-attribute index was built from the blocks the import replaces
        self._delete_prefixes((*keys.AUTH_KEYSPACES, keys.CLIENT_INDEX, keys.CLIENT_TOP,
                               keys.CLIENT_FLOOR, keys.CLIENT_WINDOW, keys.MERKLE,
                               keys.TX_ATTR, keys.TX_ATTR_BY_HEIGHT))
        ops: list[Op] = []
        for k, v in kv.items(keys.STAGING, keys.prefix_end(keys.STAGING)):
            ops += [(k[1:], v), (k, None)]
            if k[1:2] == keys.CLIENT_SEQS:
                ops += self._tops_of_seqs(k[1:], v)
            if len(ops) >= _BATCH_OPS:
                kv.write(ops, sync=False)
                ops = []
        kv.write(ops, sync=False)
        self._windows.clear()
        self._live_records = None
        hdr = BlockHeader(height, block_hash, prev_hash, pp.digest, pp.time_ms, pp.view,
                          state_root, results_root=results_root)
        kv.write([
            (keys.body(height), encode(BlockBody((), (), committed_block))),
            (keys.header(height), encode(hdr)),
            (keys.block_hash(block_hash), keys.u64(height)),
            (keys.META_BASE, encode(ChainBase(height, block_hash))),
            (keys.META_HEIGHT, keys.u64(height)),
            (keys.META_VERIFIED, keys.u64(height)),
            (keys.META_TX_ATTRS, keys.u64(height)),  # the base block has no txs to index
        ], sync=True)  # syncs every page written before it
        self._load_tip()
        self._rebuild_auth(derive_seqs=False)
        root = self.auth.root_hash(height) if self.auth is not None else None
        if root != state_root:
            self._fail("import", f"{self.where}: imported state hashes to "
                                 f"{root.hex() if root else None}, not the certified "
                                 f"{state_root.hex()}", CorruptionError)
        self._kv.write([(keys.META_IMPORTING, None)], sync=True)
        log.info("storage.snapshot_imported", where=self.where, height=height)
