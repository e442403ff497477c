"""Certified snapshots: the page format a node serves its state tree in, and the pure check a
fetching node runs on each page against a certified state root (no I/O; stdlib + the tree's
verifier).

A snapshot at height H is every leaf of the state tree at version H (the tree keys are ledger
keys: app state and each client's executed-seqs record: `keys.AUTH_KEYSPACES`), sent in
pages in key order. Page i covers the key range [after_key, next) where `after_key` is b"" for
the first page and the previous page's `next`; a page with `more` ends at its last key (its
proof shows the range [after_key, last + 00) complete), the last page's proof shows
[after_key, end) complete. So the pages of one snapshot, each verified, are exactly the tree.
Imports: stdlib, storage.{keys,merkle_proof}.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from . import keys
from .merkle_proof import ProofError, verify_range

SNAPSHOT_PAGE_BYTES = 1024 * 1024  # key + value bytes per page (its proof adds ~25 %; frames
# are at most 8 MiB)
SNAPSHOT_PAGE_ITEMS = 16_384  # = consensus.messages.MAX_SNAPSHOT_ITEMS


@dataclass(frozen=True, slots=True)
class SnapshotPage:
    """One page of a snapshot at `height`: tree leaves (ledger key, value) in key order from
    `after_key` on, the range proof, and whether more pages follow."""

    height: int
    after_key: bytes
    items: tuple[tuple[bytes, bytes], ...]
    proof: bytes
    more: bool


def verify_page(state_root: bytes, after_key: bytes, items: Sequence[tuple[bytes, bytes]],
                proof: bytes, more: bool) -> bytes | None:
    """Check that `items` are ALL the tree's entries in [after_key, last] (more) or
    [after_key, end) (the last page) under `state_root`; returns where the next page starts
    (None after the last page). Raises ProofError (dropped, altered, extra or reordered
    entries, a proof for another root, a page passed off as the last)."""
    for k, _v in items:
        if k[:1] not in keys.AUTH_KEYSPACES:
            raise ProofError(f"snapshot key {k[:16]!r} outside the state tree's keyspaces")
    if more:
        if not items:
            raise ProofError("an empty page that claims more")
        nxt = verify_range(state_root, after_key, None, items, proof, limit=len(items))
        if nxt is None:  # cannot happen with hi=None, but a page must move forward
            raise ProofError("page does not advance")
        return nxt
    verify_range(state_root, after_key, None, items, proof)
    return None
