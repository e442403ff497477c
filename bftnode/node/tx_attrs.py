"""The node's side of the tx-attribute index (storage.tx_attrs): what each committed tx is
found by in `tx_search` (`entries`, which the executor puts in each block's own batch), and
`catch_up` from the stored blocks and events where the index does not reach (a ledger from
before the index, or from while `tx_index` was off).

A tx is indexed under what its application events name (`EventAttrs`, optional on an
Application; the KV application: `kv.key`, `lock.key`, `election.key`, `lease.id`); a node
with `tx_index = false` keeps no index. Indexing and pruning both run on the executor task,
one after the other, so a pruned height is never indexed again.
Imports: stdlib, structlog, consensus.codec, bftnode.node.app_events.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import structlog

from consensus.codec import request_digest

from . import app_events

CATCH_UP_BLOCKS = 16  # blocks indexed from storage per executed group (a bounded step)
WARN_EVERY_S = 60.0  # a failing index write is logged at most this often
log = structlog.get_logger("bftnode.node")
_warned_at = -WARN_EVERY_S


def _warn(reason: str, **kw: Any) -> None:
    global _warned_at
    now = time.monotonic()
    if now - _warned_at >= WARN_EVERY_S:
        _warned_at = now
        log.warning("node.tx_attrs_not_indexed", reason=reason, **kw)


@runtime_checkable
class EventAttrs(Protocol):
    """Optional on an Application: (attribute, value, tx index) of a block's events."""

    def event_attrs(self, events: Sequence[Any]) -> list[tuple[bytes, bytes, int]]: ...


@runtime_checkable
class AttrIndex(Protocol):
    """Optional on a Store (storage.LedgerStore has it)."""

    def tx_attrs_indexed(self) -> int: ...

    def index_tx_attrs(self, blocks: Sequence[tuple[int, Sequence[Any]]]) -> None: ...

    def base_height(self) -> int: ...

    def height(self) -> int: ...

    def block(self, height: int) -> Any: ...


def entries(app: Any, tx_hashes: Sequence[bytes],
            events: Sequence[Any]) -> list[tuple[bytes, bytes, int, bytes]]:
    """A block's index entries from its executed txs' hashes (in block order) and its app
    events: (attribute, value, tx index, tx hash)."""
    out: list[tuple[bytes, bytes, int, bytes]] = []
    if isinstance(app, EventAttrs) and events:
        for attr, value, i in app.event_attrs(events):
            if 0 <= i < len(tx_hashes):
                out.append((attr, value, i, tx_hashes[i]))
    return out


def catch_up(store: Any, app: Any, max_blocks: int = CATCH_UP_BLOCKS) -> int:
    """Index up to `max_blocks` stored blocks above the index; how many it did. A block whose
    events are not stored has nothing to index."""
    if not isinstance(store, AttrIndex):
        return 0
    try:
        return _catch_up(store, app, max_blocks)
    except Exception as exc:  # derived data: the next group tries again
        _warn(str(exc))
        return 0


def _catch_up(store: Any, app: Any, max_blocks: int) -> int:
    start = max(store.tx_attrs_indexed() + 1, store.base_height())
    stop = min(store.height(), start + max_blocks - 1)
    blocks = []
    for h in range(start, stop + 1):
        block = store.block(h)
        txs = [] if block is None else [request_digest(r) for r in block.txs]
        evs = app_events.stored(store, app, h) or ()
        blocks.append((h, entries(app, txs, evs)))
    if blocks:
        store.index_tx_attrs(blocks)
    return len(blocks)


def behind(store: Any) -> bool:
    return isinstance(store, AttrIndex) and store.tx_attrs_indexed() < store.height()
