"""The results root (storage.results_root): RFC 6962 tree over a block's tx results, with
inclusion proofs that verify, and fail on any change of leaf, index, count, path or root."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from storage.interface import TxResult
from storage.merkle_proof import ProofError
from storage.results_root import (
    EMPTY_RESULTS_ROOT,
    result_leaf,
    results_proof,
    results_root,
    verify_result,
)


def _ref_root(leaves: list[bytes]) -> bytes:
    """RFC 6962 section 2.1, recursively, as written there."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return leaves[0]
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return hashlib.sha256(b"\x01" + _ref_root(leaves[:k]) + _ref_root(leaves[k:])).digest()


def _leaves(n: int) -> list[bytes]:
    return [hashlib.sha256(i.to_bytes(4, "big")).digest() for i in range(n)]


def _result(**kw) -> TxResult:
    base = dict(tx_hash=bytes(32), client_id=b"c" * 32, request_seq=1, height=5, index=0,
                code=0, result=b"\x80")
    base.update(kw)
    return TxResult(**base)


def test_empty_block_root_is_sha256_of_nothing():
    assert results_root([]) == EMPTY_RESULTS_ROOT == hashlib.sha256(b"").digest()


def test_leaf_covers_every_field_of_the_result():
    leaf = result_leaf(_result())
    for field, value in [("tx_hash", b"\x01" * 32), ("client_id", b"d" * 32),
                         ("request_seq", 2), ("height", 6), ("index", 1), ("code", 3),
                         ("result", b"\x81")]:
        assert result_leaf(_result(**{field: value})) != leaf, field


def test_leaf_is_domain_separated_from_internal_nodes():
    enc = b"\x97"  # not the point: the leaf starts with 0x00, a node with 0x01
    assert result_leaf(_result()) != hashlib.sha256(b"\x01" + enc).digest()


@settings(max_examples=60, deadline=None)
@given(st.integers(min_value=0, max_value=70))
def test_root_matches_the_rfc_6962_recursion(n):
    leaves = _leaves(n)
    assert results_root(leaves) == _ref_root(leaves)


@settings(max_examples=80, deadline=None)
@given(st.integers(min_value=1, max_value=70), st.data())
def test_every_leaf_proof_verifies(n, data):
    leaves = _leaves(n)
    root = results_root(leaves)
    i = data.draw(st.integers(min_value=0, max_value=n - 1))
    verify_result(root, leaves[i], i, n, results_proof(leaves, i))


@settings(max_examples=80, deadline=None)
@given(st.integers(min_value=2, max_value=40), st.data())
def test_a_proof_fails_for_another_leaf_index_count_or_path(n, data):
    leaves = _leaves(n)
    root = results_root(leaves)
    i = data.draw(st.integers(min_value=0, max_value=n - 1))
    path = results_proof(leaves, i)
    j = data.draw(st.integers(min_value=0, max_value=n - 1).filter(lambda j: j != i))
    with pytest.raises(ProofError):
        verify_result(root, leaves[j], i, n, path)  # another leaf at i
    with pytest.raises(ProofError):
        verify_result(root, leaves[i], j, n, path)  # the leaf at another index
    with pytest.raises(ProofError):
        verify_result(root, leaves[i], i, n, path[:-1])  # a step short
    with pytest.raises(ProofError):
        verify_result(root, leaves[i], i, n, path + [bytes(32)])  # a step too many
    if path:
        k = data.draw(st.integers(min_value=0, max_value=len(path) - 1))
        bad = list(path)
        bad[k] = bytes([bad[k][0] ^ 1]) + bad[k][1:]
        with pytest.raises(ProofError):
            verify_result(root, leaves[i], i, n, bad)
    with pytest.raises(ProofError):
        verify_result(results_root(leaves[:-1]), leaves[i], i, n, path)


def test_single_result_block_has_an_empty_path():
    leaves = _leaves(1)
    assert results_root(leaves) == leaves[0]
    assert results_proof(leaves, 0) == []
    verify_result(leaves[0], leaves[0], 0, 1, [])


def test_bad_inputs_raise_clear_errors():
    leaves = _leaves(3)
    with pytest.raises(IndexError):
        results_proof(leaves, 3)
    with pytest.raises(ProofError, match="outside"):
        verify_result(results_root(leaves), leaves[0], 3, 3, [])
    with pytest.raises(ProofError, match="32 bytes"):
        verify_result(results_root(leaves), leaves[0], 0, 3, [b"short"])
