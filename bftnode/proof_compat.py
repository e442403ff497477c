"""TEMPORARY shim (issue 28): the names of the "roots" work (consensus.messages.StateVote,
storage.results_root) that proofs are written against, taken from their real modules when
present, else defined here exactly as the shared spec gives them. The merge with the roots
branch leaves only the real imports (delete the fallbacks below).

Spec: StateVote(_Msg, tag=15) fields seq, block_hash, state_root, results_root, replica, sig;
results leaf = sha256(0x00 || canonical msgpack of (tx_hash, client_id, request_seq, height,
index, code, result)); results root = RFC 6962 Merkle (empty: sha256(b"")).
Imports: stdlib, msgspec, consensus (messages), storage.merkle_proof (ProofError).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import msgspec

from storage.merkle_proof import ProofError

try:  # the real message, once the roots work is merged
    from consensus.messages import StateVote  # type: ignore[attr-defined]
except ImportError:  # TEMPORARY: same fields and tag, so the signed bytes are the same
    from consensus.messages import U63, Digest, ReplicaNo, Sig, _Msg

    class StateVote(_Msg, tag=15):  # type: ignore[no-redef]
        seq: U63
        block_hash: Digest
        state_root: Digest
        results_root: Digest
        replica: ReplicaNo
        sig: Sig = b""

try:
    from storage.results_root import (  # type: ignore[import-not-found]
        result_leaf,
        results_proof,
        results_root,
        verify_result,
    )
except ImportError:  # TEMPORARY: RFC 6962 over the block's tx results
    _enc = msgspec.msgpack.Encoder()

    def result_leaf(r: Any) -> bytes:  # type: ignore[misc]
        body = _enc.encode((r.tx_hash, r.client_id, r.request_seq, r.height, r.index, r.code,
                            r.result))
        return hashlib.sha256(b"\x00" + body).digest()

    def _node(a: bytes, b: bytes) -> bytes:
        return hashlib.sha256(b"\x01" + a + b).digest()

    def _split(n: int) -> int:
        k = 1
        while k * 2 < n:
            k *= 2
        return k

    def results_root(leaves: Sequence[bytes]) -> bytes:  # type: ignore[misc]
        if not leaves:
            return hashlib.sha256(b"").digest()
        if len(leaves) == 1:
            return leaves[0]
        k = _split(len(leaves))
        return _node(results_root(leaves[:k]), results_root(leaves[k:]))

    def results_proof(leaves: Sequence[bytes], index: int) -> list[bytes]:  # type: ignore[misc]
        if len(leaves) <= 1:
            return []
        k = _split(len(leaves))
        if index < k:
            return results_proof(leaves[:k], index) + [results_root(leaves[k:])]
        return results_proof(leaves[k:], index - k) + [results_root(leaves[:k])]

    def verify_result(root: bytes, leaf: bytes, index: int, count: int,  # type: ignore[misc]
                      proof: Sequence[bytes]) -> None:
        if not 0 <= index < count:
            raise ProofError(f"result index {index} outside a block of {count}")
        path = list(proof)

        def walk(lo: int, n: int) -> bytes:
            if n == 1:
                return leaf
            k = _split(n)
            if not path:
                raise ProofError("results path too short")
            sib = path.pop()
            if index - lo < k:
                return _node(walk(lo, k), sib)
            return _node(sib, walk(lo + k, n - k))

        if walk(0, count) != root or path:
            raise ProofError("the tx result is not in the block's results root")

__all__ = ["StateVote", "result_leaf", "results_proof", "results_root", "verify_result"]
