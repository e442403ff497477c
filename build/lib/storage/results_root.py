"""The results root: a Merkle root over one block's tx results, and its inclusion proofs.

Pure code (stdlib, hashlib, msgspec) shared by the node, which stores the root in each block
header, and the client, which checks a tx result against a certified root. The tree is RFC 6962
(Certificate Transparency) style over the block's results in block order:

    leaf      sha256(0x00 | msgpack([tx_hash, client_id, request_seq, height, index, code, result]))
    internal  sha256(0x01 | left | right)   (left: the largest power-of-two prefix of the leaves)
    empty     sha256(b"")

A proof is the audit path of RFC 6962 section 2.1.1 (sibling hashes, leaf first); `verify_result`
recomputes the root from (leaf, index, count, path) as RFC 9162 section 2.1.3.2 does.
Must not import anything of ours beyond storage.merkle_proof (for ProofError).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import msgspec

from .merkle_proof import ProofError

EMPTY_RESULTS_ROOT = hashlib.sha256(b"").digest()
MAX_PATH = 64  # a path longer than this cannot belong to any count below 2**64

_encoder = msgspec.msgpack.Encoder()


def result_leaf(r: Any) -> bytes:
    """Leaf hash of a storage.interface.TxResult (any object with its fields)."""
    enc = _encoder.encode(
        (r.tx_hash, r.client_id, r.request_seq, r.height, r.index, r.code, r.result))
    return hashlib.sha256(b"\x00" + enc).digest()


def _node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two below n (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def results_root(leaves: Sequence[bytes]) -> bytes:
    """Root over leaf hashes (`result_leaf`) in block order; sha256(b"") for none."""
    if not leaves:
        return EMPTY_RESULTS_ROOT
    level = list(leaves)
    # bottom-up: pair adjacent nodes, an odd last node moves up unchanged; this builds the same
    # tree as RFC 6962's recursive split at the largest power of two
    while len(level) > 1:
        nxt = [_node(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return level[0]


def results_proof(leaves: Sequence[bytes], index: int) -> list[bytes]:
    """Audit path of leaf `index`: sibling hashes from the leaf up to the root."""
    if not 0 <= index < len(leaves):
        raise IndexError(f"leaf index {index} outside 0..{len(leaves) - 1}")
    path: list[bytes] = []
    lo, hi = 0, len(leaves)
    spine: list[bytes] = []  # siblings from the root down
    while hi - lo > 1:
        k = _split(hi - lo)
        if index < lo + k:
            spine.append(results_root(leaves[lo + k:hi]))
            hi = lo + k
        else:
            spine.append(results_root(leaves[lo:lo + k]))
            lo = lo + k
    path.extend(reversed(spine))
    return path


def verify_result(root: bytes, leaf: bytes, index: int, count: int,
                  proof: Sequence[bytes]) -> None:
    """Check that `leaf` is leaf `index` of `count` under `root`; raises ProofError if not."""
    if not 0 <= index < count:
        raise ProofError(f"leaf index {index} outside a block of {count} results")
    if len(proof) > MAX_PATH or any(
            not isinstance(p, bytes) or len(p) != 32 for p in proof):
        raise ProofError("malformed results proof (each step must be 32 bytes)")
    fn, sn = index, count - 1
    h = leaf
    for p in proof:
        if sn == 0:
            raise ProofError("results proof is longer than the tree is deep")
        if fn & 1 or fn == sn:
            h = _node(p, h)
            if not fn & 1:
                while fn & 1 == 0 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            h = _node(h, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("results proof is shorter than the tree is deep")
    if h != root:
        raise ProofError("tx result does not match the results root")
