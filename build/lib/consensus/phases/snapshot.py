"""Snapshot catch-up: BLOCKS-PRUNED, FETCH-SNAPSHOT and SNAPSHOT-CHUNK.

A replica whose FETCH-BLOCKS starts below a peer's lowest kept block is answered BLOCKS-PRUNED
(`_on_fetched_blocks` sees the shell's `base`); it then fetches the peer's certified snapshot
page by page from that ONE peer (`on_blocks_pruned`, `on_snapshot_chunk`): each page goes to
the shell (`CheckSnapshotChunk`), which checks the roots' certificate (`verify_state_certificate`)
and the page's range proof, stages it, and after the last page installs the snapshot and
restores the replica from storage; its verdict comes back as `SnapshotChecked`. Serving is
rate-limited per peer (`on_fetch_snapshot` -> `ServeSnapshot`, `_on_snapshot_read`). Block
sync goes on meanwhile (a peer that lies about its base costs no more than a slow fetch);
blocks after the snapshot height are fetched by block sync as usual.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..auth import Authenticator
from ..certificates import verify_committed_block
from ..codec import chain_digest
from ..errors import LocalProtocolError
from ..events import CheckSnapshotChunk, ServeSnapshot, SnapshotChecked, SnapshotRead
from ..messages import BlocksPruned, FetchSnapshot, SnapshotChunk, StateVote
from ..types import Config
from .state import ReplicaState

SNAPSHOT_SERVES_PER_INTERVAL = 4  # pages served per peer per status interval
SNAPSHOT_IDLE_INTERVALS = 4  # status intervals without a page before a fetch is abandoned


def verify_state_certificate(config: Config, auth: Authenticator, seq: int, block_hash: bytes,
                             state_root: bytes, votes: tuple[StateVote, ...]) -> str | None:
    """THE check of a roots certificate: 2f+1 StateVotes from distinct validators, each for
    (seq, block_hash, state_root) with one results_root, each validly signed."""
    if len(votes) < config.quorum:
        return f"state certificate needs {config.quorum} votes, has {len(votes)}"
    seen: set[int] = set()
    results = {v.results_root for v in votes}
    if len(results) != 1:
        return "state certificate votes differ in results_root"
    for v in votes:
        if v.replica in seen:
            return f"duplicate state vote from replica {v.replica}"
        seen.add(v.replica)
        if v.seq != seq or v.block_hash != block_hash or v.state_root != state_root:
            return f"state vote of replica {v.replica} is for other roots"
        if not auth.verify(v):
            return f"bad state vote signature from replica {v.replica}"
    return None


def check_first_page(config: Config, auth: Authenticator, chunk: SnapshotChunk) -> str | None:
    """The first page's block, prev hash and certificate agree (the block's own commit
    certificate, its chain hash, and 2f+1 state votes for that hash)."""
    if chunk.block is None or not chunk.certificate:
        return "first snapshot page without its block or certificate"
    pp = chunk.block.pre_prepare
    if pp.seq != chunk.height:
        return f"snapshot block is {pp.seq}, not {chunk.height}"
    reason = verify_committed_block(config, auth, chunk.block)
    if reason:
        return reason
    if len(chunk.prev_hash) != 32:
        return "snapshot prev hash is not 32 bytes"
    block_hash = chain_digest(chunk.prev_hash, pp.seq, pp.digest)
    root = chunk.certificate[0].state_root
    return verify_state_certificate(config, auth, chunk.height, block_hash, root,
                                    chunk.certificate)


@dataclass(slots=True)
class SnapshotFetch:
    peer: int
    height: int  # 0 until the first page fixes it
    after_key: bytes  # the page asked for
    last_ms: int
    checking: bool = False


class SnapshotMixin(ReplicaState):
    """Fetching a snapshot from one peer, and serving ours."""

    _snap: SnapshotFetch | None = None

    def on_blocks_pruned(self, sender: int, m: BlocksPruned) -> None:
        if sender not in self._fetch_asked:
            self.dropped["blocks-pruned-unasked"] += 1
            return
        if m.base <= self._last_executed + 1 or self._snap is not None:
            return  # it still has what we need, or a fetch is under way
        if m.snapshot_seq <= self._last_executed:
            self.dropped["pruned-without-snapshot"] += 1
            return
        self._snap = SnapshotFetch(sender, 0, b"", self._now)
        self._send(sender, self.auth.sign(FetchSnapshot(0, b"", self.id)))

    def on_fetch_snapshot(self, sender: int, m: FetchSnapshot) -> None:
        if not self._within_budget(self._snapshot_serves, sender, SNAPSHOT_SERVES_PER_INTERVAL,
                                   "snapshot-rate-limited"):
            return
        self._out.snapshot.append(ServeSnapshot(sender, m.height, m.after_key))

    def _on_snapshot_read(self, ev: SnapshotRead) -> None:
        if not 0 <= ev.to < self.config.n or ev.to == self.id:
            raise LocalProtocolError(f"SnapshotRead for bad replica {ev.to}")
        self._send(ev.to, self.auth.sign(ev.chunk))

    def on_snapshot_chunk(self, sender: int, m: SnapshotChunk) -> None:
        s = self._snap
        if s is None or s.peer != sender or s.checking or m.after_key != s.after_key or (
                s.height and m.height != s.height):
            self.dropped["snapshot-chunk-unasked"] += 1
            return
        if m.height <= self._last_executed:
            self._snap = None  # caught up meanwhile
            return
        s.checking = True
        s.last_ms = self._now
        self._out.snapshot.append(CheckSnapshotChunk(sender, m))

    def _on_snapshot_checked(self, ev: SnapshotChecked) -> None:
        s = self._snap
        if s is None or s.peer != ev.peer:
            return
        if ev.error:
            self._snap = None
            self._evidence("bad-snapshot", ev.peer, ev.error)
            return
        if ev.next_key is None:
            self._snap = None  # installed: the shell restores the replica from storage
            return
        s.height, s.after_key, s.checking, s.last_ms = ev.height, ev.next_key, False, self._now
        self._send(s.peer, self.auth.sign(FetchSnapshot(s.height, s.after_key, self.id)))

    def _snapshot_timeout(self) -> None:
        """Called every status interval: a peer that stopped answering is given up on (the
        next BLOCKS-PRUNED starts a fetch from whoever sends it)."""
        s = self._snap
        if s is not None and not s.checking and (
                self._now - s.last_ms >= SNAPSHOT_IDLE_INTERVALS * self.config.status_interval_ms):
            self.dropped["snapshot-fetch-abandoned"] += 1
            self._snap = None
