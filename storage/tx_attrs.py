"""The event-attribute index of txs: which txs emitted an attribute with a value (CometBFT's
`tx_search` on `kv.key='x'`), answered by a key-range read, not a scan of blocks.

Derived data from each block's txs and app events (bftnode.node.tx_attrs): written in the
block's own batch (`BlockCommit.attrs`) while the index reaches the block before it, else by
`LedgerStore.index_tx_attrs` from the stored blocks; `META_TX_ATTRS` says how far it reaches.
Keys:
`I` + len(attr) (1) + attr + len(value) (2) + value + height (8) + tx index (4) -> tx hash, so
one attribute value's txs are contiguous and in height order; `J` + height -> the I keys that
height wrote, which pruning deletes with the block (storage.ledger_prune).
Imports: stdlib, msgspec, storage.{keys,kv}.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence

import msgspec

from . import keys
from .kv import KVReader, Op

MAX_ATTR = 64  # bytes of an attribute name
MAX_VALUE = 1024  # bytes of an indexed value (a longer one is not indexed)
_POS = struct.Struct(">QI")
_KEYS = msgspec.msgpack.Decoder(list[bytes])

# (attr, value, tx index in its block, tx hash)
Entry = tuple[bytes, bytes, int, bytes]


def _prefix(attr: bytes, value: bytes) -> bytes:
    return (keys.TX_ATTR + bytes((len(attr),)) + attr + len(value).to_bytes(2, "big")
            + value)


def indexable(attr: bytes, value: bytes) -> bool:
    return 0 < len(attr) <= MAX_ATTR and len(value) <= MAX_VALUE


def indexed_to(kv: KVReader) -> int:
    raw = kv.get(keys.META_TX_ATTRS)
    return keys.from_u64(raw) if raw else 0


def index_ops(blocks: Iterable[tuple[int, Sequence[Entry]]]) -> list[Op]:
    """The ops that index `blocks` ((height, entries), ascending) and move META_TX_ATTRS to
    the last of them: for the caller's one batch."""
    ops: list[Op] = []
    last = None
    for height, entries in blocks:
        written = []
        for attr, value, idx, tx_hash in entries:
            if not indexable(attr, value):
                continue
            k = _prefix(attr, value) + _POS.pack(height, idx)
            ops.append((k, tx_hash))
            written.append(k)
        if written:
            ops.append((keys.TX_ATTR_BY_HEIGHT + keys.u64(height),
                        msgspec.msgpack.encode(written)))
        last = height
    if last is not None:
        ops.append((keys.META_TX_ATTRS, keys.u64(last)))
    return ops


def prune_ops(kv: KVReader, height: int) -> list[Op]:
    """Deletes of what indexing wrote for `height`."""
    k = keys.TX_ATTR_BY_HEIGHT + keys.u64(height)
    raw = kv.get(k)
    if raw is None:
        return []
    return [(ik, None) for ik in _KEYS.decode(raw)] + [(k, None)]


def find(kv: KVReader, attr: bytes, value: bytes, lo: int, hi: int,
         limit: int) -> list[tuple[int, int, bytes]]:
    """Up to `limit` (height, tx index, tx hash) whose tx emitted `attr` = `value`, with
    lo <= height <= hi, in height order: one range read."""
    if not indexable(attr, value) or hi < lo:
        return []
    p = _prefix(attr, value)
    out = []
    for k, v in kv.items(p + _POS.pack(lo, 0), p + _POS.pack(hi + 1, 0)):
        height, idx = _POS.unpack_from(k, len(p))
        out.append((height, idx, bytes(v)))
        if len(out) >= limit:
            break
    return out
