"""`ReadView`: a consistent read of the ledger at one committed height, for readers that run
off the writer's task (the node's RPC worker threads).

A view is taken from one engine snapshot (plyvel snapshots are safe to read from any thread;
MemoryStore's snapshot is a copy taken under its lock), so its height, blocks, txs and
application state all agree, whatever the writer commits meanwhile. Nothing in a view reads
the store's cached tip or any other state the writer mutates, except `LedgerStore`'s window
cache of client tops (a dict read, atomic under the GIL, and only ever raised: a seq above
the current top was not executed at any earlier height either).
Imports: stdlib, storage.
"""

from __future__ import annotations

from typing import Any

from . import keys, tx_attrs
from .interface import StateReader, StorageError, StoredBlock, TxResult
from .kv import KVReader, KVStateReader


class ReadView:
    """The ledger as of `height` (the last block committed when the view was taken).
    `store`: the storage.ledger.LedgerStore it was taken from (its decoding helpers)."""

    __slots__ = ("_reader", "_store", "base", "height", "time_ms")

    def __init__(self, store: Any, reader: KVReader) -> None:
        self._store = store
        self._reader = reader
        self.height = store._meta_u64(reader, keys.META_HEIGHT)
        hdr = store._header_at(reader, self.height) if self.height else None
        self.time_ms = hdr.time_ms if hdr is not None else 0
        # the lowest block kept (read after the snapshot: pruning only raises it, so every
        # block the view misses below it was pruned)
        self.base = store.base_height()

    @property
    def state(self) -> StateReader:
        """The application state at `height`."""
        return KVStateReader(self._reader)

    def block(self, height: int) -> StoredBlock | None:
        if not 0 < height <= self.height:
            return None
        hdr = self._store._header_at(self._reader, height)
        return None if hdr is None else self._store._stored_block(self._reader, hdr)

    def block_height(self, block_hash: bytes) -> int | None:
        h = self._store._height_of(self._reader, block_hash)
        return h if h is not None and h <= self.height else None

    def tx(self, tx_hash: bytes) -> TxResult | None:
        return self._store._tx_at(self._reader, tx_hash)

    def prove(self, version: int, lo: bytes, hi: bytes | None, limit: int | None = None
              ) -> tuple[bytes, list[tuple[bytes, bytes]], bytes]:
        """(root, entries of [lo, hi) up to `limit`, range proof) of the state tree at
        `version` (tree keys: ledger keys), read from this view's snapshot. Raises
        StorageError when the store keeps no tree, storage.StaleVersion when `version` is
        not retained."""
        auth = self._store.auth
        if auth is None:
            raise StorageError("authenticated state is off on this node")
        return auth.prove(version, lo, hi, limit, self._reader)

    def tx_attrs_indexed(self) -> int:
        """The event-attribute index covers blocks up to this height (storage.tx_attrs)."""
        return min(tx_attrs.indexed_to(self._reader), self.height)

    def find_tx_attr(self, attr: bytes, value: bytes, lo: int, hi: int,
                     limit: int) -> list[tuple[int, int, bytes]]:
        """(height, tx index, tx hash) of the txs that emitted `attr` = `value`, lo..hi."""
        return tx_attrs.find(self._reader, attr, value, lo, min(hi, self.height), limit)

    def client_floor(self, client_id: bytes) -> int:
        """The client's floor (storage.keys F): its request_seqs at or below it have no
        client-index entry (0: none removed; always 0 with the state tree off)."""
        return self._store._floor_at(self._reader, client_id)

    def tx_by_client(self, client_id: bytes, request_seq: int) -> TxResult | None:
        if len(client_id) > 255 or request_seq < 0:
            return None
        if self._store._above_window(client_id, request_seq):
            return None
        th = self._reader.get(keys.client_index(client_id, request_seq))
        return None if th is None else self.tx(th)
