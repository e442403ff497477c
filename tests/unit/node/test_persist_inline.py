"""Which persists and block groups the node writes on the event loop (small votes, few txs)
and which it hands to a worker thread (big batches, checkpoints, prunes, view changes), and
when the node counts as quiet enough to write even slow ones on the loop."""

from __future__ import annotations

import pytest
import trio

from bftnode.node.driver import QUIET_BYTES_PER_S, DriverMixin, _Inbound, _small_persist
from bftnode.node.executor import INLINE_MAX_BYTES, INLINE_MAX_REQUESTS, _small_blocks
from consensus import (
    Commit,
    Config,
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


def _pp(n: int, op_bytes: int = 2) -> PrePrepare:
    reqs = tuple(Request(b"\x02" * 32, i, b"o" * op_bytes) for i in range(n))
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


def test_request_bytes_are_counted_too() -> None:
    # one large request can stall a synced LevelDB write for seconds: never on the loop
    assert _small_persist([OwnVote(_pp(2, INLINE_MAX_BYTES // 2))])
    assert not _small_persist([PreparedCert(PreparedProof(_pp(1, 2 * 1024 * 1024), ()))])
    assert not _small_persist([OwnVote(_pp(2, INLINE_MAX_BYTES // 2 + 1))])
    assert not _small_blocks([_ex(1, 1, INLINE_MAX_BYTES + 1)])
    assert _small_blocks([_ex(1, 1, INLINE_MAX_BYTES)])


def test_checkpoints_prunes_convictions_and_view_changes_go_to_the_thread() -> None:
    vote = OwnVote(Prepare(0, 1, D, 1))
    assert not _small_persist([vote, Prune(16)])
    assert not _small_persist([vote, StableCheckpoint(16, D, ())])
    assert not _small_persist([Conviction(2, 9, "equivocation")])
    assert not _small_persist([ViewState(1, False), OwnVote(NewView(1, (), (), 1))])


def _ex(seq: int, n: int, op_bytes: int = 2) -> Execute:
    pp = _pp(n, op_bytes)
    return Execute(seq, 0, 1, pp.requests, (), D, D, D, pp, ())


def test_block_groups_with_few_txs_execute_inline() -> None:
    assert _small_blocks([_ex(1, 5)])
    assert _small_blocks([_ex(1, 0), _ex(2, INLINE_MAX_REQUESTS)])
    assert not _small_blocks([_ex(1, INLINE_MAX_REQUESTS), _ex(2, 1)])
    assert not _small_blocks([_ex(1, 100)])


class _Quiet(DriverMixin):
    """The parts of a node `_inbox_idle` reads: its inbox, its peer-byte window and f."""

    def __init__(self, n: int) -> None:
        self.consensus_config = Config(n=n)
        self._inbox_send, self._inbox_recv = trio.open_memory_channel(16)
        self._inbox_bytes = 0
        self._in_window = (0.0, {}, 0)
        self._inbox_room = trio.Event()

    def take(self, sender: int, size: int) -> None:
        self._inbox_bytes += size
        self._taken(_Inbound(sender, Prepare(0, 1, D, sender), size))

    def next_window(self) -> bool:
        self._in_window = (self._in_window[0] - 1.0, *self._in_window[1:])
        return self._inbox_idle()


@pytest.mark.parametrize("n", [4, 7])
def test_the_f_busiest_peers_do_not_make_a_node_busy(n: int) -> None:
    """Megabytes a second from up to f peers (Byzantine ones flooding at link speed) leave
    the node quiet, so its small writes stay on the loop; the same from f + 1 peers, or a
    message waiting in the inbox, does not."""
    node = _Quiet(n)
    f = node.consensus_config.f
    big = 4 * QUIET_BYTES_PER_S
    assert node._inbox_idle()
    for peer in range(1, f + 1):
        node.take(peer, big)
    node.take(f + 1, QUIET_BYTES_PER_S // 4)
    assert node.next_window()
    for peer in range(1, f + 2):
        node.take(peer, big)
    assert not node.next_window()
    assert node.next_window()  # an idle second since
    node._inbox_send.send_nowait(object())
    assert not node._inbox_idle()
