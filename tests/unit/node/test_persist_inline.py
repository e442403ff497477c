"""Which persists and block groups the node writes on the event loop (small votes, few txs)
and which it hands to a worker thread (big batches, checkpoints, prunes, view changes)."""

from __future__ import annotations

from bftnode.node.driver import _small_persist
from bftnode.node.executor import INLINE_MAX_REQUESTS, _small_blocks
from consensus import (
    Commit,
    Conviction,
    Execute,
    NewView,
    OwnVote,
    Prepare,
    PreparedCert,
    PreparedProof,
    PrePrepare,
    Prune,
    Request,
    StableCheckpoint,
    ViewState,
)

D = b"\x01" * 32


def _pp(n: int) -> PrePrepare:
    reqs = tuple(Request(b"\x02" * 32, i, b"op") for i in range(n))
    return PrePrepare(0, 1, 1, reqs, D, 0)


def test_votes_and_small_batches_are_inline() -> None:
    assert _small_persist([OwnVote(Prepare(0, 1, D, 1))])
    assert _small_persist([OwnVote(Commit(0, 1, D, 1)), ViewState(0, False)])
    assert _small_persist([OwnVote(_pp(5))])
    assert _small_persist([PreparedCert(PreparedProof(_pp(5), ())), OwnVote(Commit(0, 1, D, 1))])


def test_requests_are_counted_over_the_whole_persist() -> None:
    half = INLINE_MAX_REQUESTS // 2 + 1
    assert _small_persist([OwnVote(_pp(INLINE_MAX_REQUESTS))])
    assert not _small_persist([OwnVote(_pp(INLINE_MAX_REQUESTS + 1))])
    assert not _small_persist([PreparedCert(PreparedProof(_pp(half), ())),
                               PreparedCert(PreparedProof(_pp(half), ()))])


def test_checkpoints_prunes_convictions_and_view_changes_go_to_the_thread() -> None:
    vote = OwnVote(Prepare(0, 1, D, 1))
    assert not _small_persist([vote, Prune(16)])
    assert not _small_persist([vote, StableCheckpoint(16, D, ())])
    assert not _small_persist([Conviction(2, 9, "equivocation")])
    assert not _small_persist([ViewState(1, False), OwnVote(NewView(1, (), (), 1))])


def _ex(seq: int, n: int) -> Execute:
    pp = _pp(n)
    return Execute(seq, 0, 1, pp.requests, (), D, D, D, pp, ())


def test_block_groups_with_few_txs_execute_inline() -> None:
    assert _small_blocks([_ex(1, 5)])
    assert _small_blocks([_ex(1, 0), _ex(2, INLINE_MAX_REQUESTS)])
    assert not _small_blocks([_ex(1, INLINE_MAX_REQUESTS), _ex(2, 1)])
    assert not _small_blocks([_ex(1, 100)])
