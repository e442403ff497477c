"""TEMPORARY (issue 28, until the "roots" work lands: validators' StateVotes and the stored
StateCertificate): a stand-in for `Node.state_certificate(height)` on LOCAL chains, where
every validator's key is on this disk. It certifies the node's OWN roots of a height by
signing StateVotes with 2f+1 of the local validator keys, so proofs can be served and checked
end to end before real certificates exist. The merge with the roots branch deletes this
module and its two call sites (testnet/adversary/node.py, tests/integration/proofs).

Never in the product: it would let one node certify anything.
Imports: stdlib, consensus, storage, bftnode.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bftnode.keys import NodeKey, load_key_file
from bftnode.proof_compat import StateVote, result_leaf, results_root
from consensus import request_digest
from consensus.codec import signing_bytes
from storage.merkle_tree import StaleVersion

KEPT = 512


@dataclass(frozen=True)
class ShimCertificate:
    seq: int
    block_hash: bytes
    state_root: bytes
    results_root: bytes
    votes: tuple[Any, ...]


class ShimCertifier:
    """`__call__(height=None)`: the certificate of a stored height (None: the latest)."""

    def __init__(self, node: Any, keys: Sequence[NodeKey], domain: bytes) -> None:
        self.node = node
        n = len(keys)
        self.quorum = 2 * ((n - 1) // 3) + 1
        self.signers = [(i, k.signer()) for i, k in enumerate(keys)][: self.quorum]
        self.domain = domain
        self._cache: OrderedDict[int, ShimCertificate] = OrderedDict()

    def __call__(self, height: int | None = None) -> ShimCertificate | None:
        store = self.node.store
        h = store.height() if height is None else height
        if h <= 0 or h > store.height():
            return None
        got = self._cache.get(h)
        if got is not None:
            return got
        block = store.block(h)
        if block is None:
            return None
        try:
            sroot = store.state_root(h)
        except StaleVersion:
            return None
        leaves = [result_leaf(store.tx(request_digest(r))) for r in block.txs]
        rroot = results_root(leaves)
        votes = []
        for i, signer in self.signers:
            v = StateVote(h, block.hash, sroot, rroot, i)
            votes.append(StateVote(h, block.hash, sroot, rroot, i,
                                   signer.sign(self.domain + signing_bytes(v))))
        cert = ShimCertificate(h, block.hash, sroot, rroot, tuple(votes))
        self._cache[h] = cert
        while len(self._cache) > KEPT:
            self._cache.popitem(last=False)
        return cert


def install(node: Any, keys: Sequence[NodeKey]) -> ShimCertifier:
    """Give `node` (bftnode.node.Node) a `state_certificate` from the local keys."""
    cert = ShimCertifier(node, keys, node.domain)
    node.state_certificate = cert
    return cert


def local_keys(home: str | Path) -> list[NodeKey] | None:
    """Every validator's key of a local testnet home's chain (its sibling homes), in index
    order; None when they are not all on this disk."""
    home = Path(home)
    genesis = json.loads((home / "genesis.json").read_text())
    want = [v["public_key"] for v in sorted(genesis["validators"], key=lambda v: v["index"])]
    found: dict[str, NodeKey] = {}
    for p in home.parent.glob("*/node_key.json"):
        try:
            k = load_key_file(p)
        except Exception:
            continue
        found[k.public_key.hex()] = k
    if not all(w in found for w in want):
        return None
    return [found[w] for w in want]
