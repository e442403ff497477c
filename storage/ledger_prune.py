"""Block pruning (`retain_blocks`): `prune_blocks` deletes the oldest blocks (header, body with
its certificate, state certificate, app events, their tx-attribute index entries, their tx
records and — when the state tree is off — the client-index entries
below each client's dedup window) in bounded steps, and `base_height` answers the lowest block
kept.

Each step is one unsynced batch that also moves the chain base (META base + verified marker)
to the last block it deleted, so `recover()` and `verify_chain()` check the chain from there.
With the state tree on, each block already deletes the client-index entries its clients' windows
left (their floors, storage.ledger_blocks), so pruning leaves the client index alone; tx
records go.
Imports: stdlib, consensus.codec, storage.{keys,kv,records,ledger_core,tx_attrs}.
"""

from __future__ import annotations

from consensus.codec import request_digest

from . import keys, tx_attrs
from .kv import Op
from .ledger_core import LedgerCore
from .records import BlockBody, ChainBase, decode, encode

PRUNE_STEP_BLOCKS = 64  # blocks deleted per call (one batch): never a long stall


class LedgerPrune(LedgerCore):
    """`base_height` and `prune_blocks` (see the module docstring)."""

    _base_cache: int | None = None

    def _load_tip(self) -> None:
        super()._load_tip()
        self._base_cache = None  # a crash may have undone a pruning step

    def base_height(self) -> int:
        """The lowest height whose block is stored (height + 1 when none is)."""
        if self._base_cache is None:
            first = next(iter(self._kv.items(keys.HEADER, keys.prefix_end(keys.HEADER))), None)
            self._base_cache = self._height + 1 if first is None else keys.from_u64(first[0][1:])
        return min(self._base_cache, self._height + 1) if self._height else 1

    def prune_blocks(self, below: int, max_blocks: int = PRUNE_STEP_BLOCKS) -> int:
        """Delete up to `max_blocks` of the oldest blocks with height < `below` (never the
        last block); returns the new base height. One unsynced batch: a crash loses at most
        this step, which the next call repeats."""
        below = min(below, self._height)
        start = self.base_height()
        stop = min(below, start + max_blocks)
        if stop <= start:
            return start
        kv = self._kv
        ops: list[Op] = []
        last_hash = None
        for h in range(start, stop):
            hdr = self._header_at(kv, h)
            if hdr is None:
                continue
            last_hash = hdr.hash
            ops.append((keys.header(h), None))
            ops.append((keys.block_hash(hdr.hash), None))
            raw = kv.get(keys.body(h))
            if raw is not None:
                ops.extend(self._tx_index_ops(decode(BlockBody, raw, keys.body(h)),
                                              client_index=self.auth is None))
                ops.append((keys.body(h), None))
            ops.append((keys.events(h), None))
            ops.extend(tx_attrs.prune_ops(kv, h))
            ops.append((keys.state_certificate(h), None))  # proofs and snapshots: newer ones
        base = self._base(kv)
        if last_hash is not None and stop - 1 > base.height:
            ops.append((keys.META_BASE, encode(ChainBase(stop - 1, last_hash))))
            if self._meta_u64(kv, keys.META_VERIFIED) < stop - 1:
                ops.append((keys.META_VERIFIED, keys.u64(stop - 1)))
        kv.write(ops, sync=False)
        self._base_cache = stop
        return stop

    def _tx_index_ops(self, body: BlockBody, client_index: bool) -> list[Op]:
        """Deletes of a pruned block's tx records, and (`client_index`) of its client-index
        entries that lie below their client's dedup window (recovery reads the window back
        from them)."""
        ops: list[Op] = []
        for req in body.executed():
            ops.append((keys.tx(request_digest(req)), None))
            if not client_index:
                continue
            top = self._client_top(req.client_id)
            if top is not None and req.request_seq <= top - self.dedup_window:
                ops.append((keys.client_index(req.client_id, req.request_seq), None))
        return ops


def prune_below(height: int, retain_blocks: int, serve_floor: int) -> int:
    """Heights below the result may be pruned: keep the last `retain_blocks` blocks, and every
    block from `serve_floor` (the height a snapshot is served at: peers that import it replay
    the blocks after it) on. `retain_blocks` 0 keeps everything."""
    if retain_blocks <= 0:
        return 0
    return max(0, min(height - retain_blocks + 1, serve_floor))
