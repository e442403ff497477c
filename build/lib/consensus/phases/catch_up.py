"""Catch-up (state transfer): STATUS, FETCH-BLOCKS and BLOCK-SYNC.

Peers' STATUS tells us who is ahead (`on_status`); a replica behind asks one peer at a time for
committed blocks (`_maybe_fetch`), serves others' fetches through the shell (`on_fetch_blocks`
-> `ServeFetch`, `_on_fetched_blocks`), and executes fetched blocks whose commit certificate
verifies (`on_block_sync`, `certificates.verify_committed_block`).
"""

from __future__ import annotations

from ..certificates import verify_committed_block
from ..errors import LocalProtocolError
from ..events import FetchedBlocks, ServeFetch
from ..messages import BlocksPruned, BlockSync, FetchBlocks, Status
from .state import ReplicaState

MAX_FETCH_BLOCKS = 64  # blocks per FetchBlocks / BlockSync
SERVES_PER_INTERVAL = 4  # FetchBlocks answered per peer per status interval


class CatchUpMixin(ReplicaState):
    """STATUS exchange and block fetch/sync."""

    def _status(self) -> Status:
        return self.auth.sign(
            Status(self._view, self._in_vc, self._last_executed, self._stable_seq, self.id))

    def on_status(self, sender: int, st: Status) -> None:
        if st.last_executed < 0 or st.stable_seq < 0 or st.view < 0:
            self._evidence("invalid-message", sender, "negative status fields", st)
            return
        self._peer_executed[sender] = st.last_executed
        self._note_heard(sender)  # phases/liveness.py
        if st.view < self._view or (st.view == self._view and st.in_view_change):
            self._maybe_resend_new_view(sender)
        if self._last_executed - st.last_executed > self.config.watermark_window // 2:
            self._answer_status(sender)
        self._resend_stable_checkpoint(sender, st)  # phases/liveness.py

    def _answer_status(self, to: int) -> None:
        """A peer far behind (e.g. restarted from nothing) learns at once who is ahead, so its
        catch-up spreads over every peer from the start instead of the first one heard from.
        At most once per status interval per peer."""
        if self._once_per_status_interval(self._status_answered, to):
            self._send(to, self._status())

    def _weak_target(self) -> int:
        """A height at least one honest replica has executed: the (f+1)-th highest claim."""
        claims = sorted(self._peer_executed.values(), reverse=True)
        f = self.config.f
        target = claims[f] if len(claims) > f else 0
        weak = self._checkpoints.highest_weak()
        if weak is not None:
            target = max(target, weak[0])
        return max(target, self._stable_seq)

    def _fetch_target(self) -> int:
        """The highest height any peer claims (a liar only wastes one rate-limited fetch)."""
        return max(self._weak_target(), max(self._peer_executed.values(), default=0))

    def _maybe_fetch(self) -> None:
        target = self._fetch_goal
        behind = target - self._last_executed
        if behind <= 0:
            if self._fetch_asked:  # caught up: the next catch-up spreads its load afresh
                self._fetch_asked.clear()
            return
        if self._now < self._fetch_retry_ms:
            return
        stalled = self._now - self._last_progress_ms >= self.config.status_interval_ms // 2
        if not (stalled or behind > self.config.watermark_window // 2 or self._in_vc):
            return
        peers = sorted(p for p, e in self._peer_executed.items() if e > self._last_executed)
        weak = self._checkpoints.highest_weak()
        if weak is not None and weak[0] > self._last_executed:
            peers = sorted(set(peers) | {r for r in weak[1] if r != self.id})
        if not peers:
            return
        # a peer not heard from yet (e.g. just after our restart) is asked once too: it may
        # well be ahead, and one wasted retry interval per peer is the cost if it is not
        peers += [p for p in range(self.config.n) if p != self.id
                  and p not in self._peer_executed and p not in self._fetch_asked]
        # ask the peer asked least so far (ties: the first after our own id): catch-up load
        # spreads over the peers, and every peer that claims to be ahead is asked before any
        # is asked twice, so a forger among them is met (and convicted) rather than skipped
        # by whichever honest peer answers first
        order = [p for p in peers if p > self.id] + [p for p in peers if p < self.id]
        peer = min(order, key=lambda p: self._fetch_asked.get(p, 0))
        self._fetch_asked[peer] = self._fetch_asked.get(peer, 0) + 1
        start = self._last_executed + 1
        end = min(target, start + MAX_FETCH_BLOCKS - 1)
        self._send(peer, self.auth.sign(FetchBlocks(start, end, self.id)))
        self._fetch_retry_ms = self._now + self.config.status_interval_ms

    def on_fetch_blocks(self, sender: int, fb: FetchBlocks) -> None:
        if fb.from_seq < 1 or fb.to_seq < fb.from_seq:
            self._evidence("invalid-message", sender, "bad fetch range", fb)
            return
        if fb.from_seq > self._last_executed:
            return
        if not self._within_budget(self._serves, sender, SERVES_PER_INTERVAL,
                                   "fetch-rate-limited"):
            return
        end = min(fb.to_seq, fb.from_seq + MAX_FETCH_BLOCKS - 1, self._last_executed)
        self._out.fetch.append(ServeFetch(sender, fb.from_seq, end))

    def _on_fetched_blocks(self, ev: FetchedBlocks) -> None:
        if not 0 <= ev.to < self.config.n or ev.to == self.id:
            raise LocalProtocolError(f"FetchedBlocks for bad replica {ev.to}")
        if ev.blocks:
            blocks = tuple(ev.blocks[:MAX_FETCH_BLOCKS])
            self._send(ev.to, self.auth.sign(BlockSync(blocks, self.id)))
        elif ev.base:  # the fetch starts below our lowest kept block: go for a snapshot
            self._send(ev.to, self.auth.sign(BlocksPruned(ev.base, ev.snapshot_seq, self.id)))

    def on_block_sync(self, sender: int, bs: BlockSync) -> None:
        if len(bs.blocks) > MAX_FETCH_BLOCKS:
            self._evidence("bad-block-sync", sender, "too many blocks")
            return
        progressed = False
        for block in bs.blocks:
            pp = block.pre_prepare
            if pp.seq <= self._last_executed:
                # a late answer for blocks we already executed: an honest one matches our
                # digests (no work); one that differs must carry a valid certificate, else the
                # sender forged it (checked even after we caught up from someone else)
                ours = self._executed_digests.get(pp.seq)
                if ours is not None and ours != pp.digest:
                    reason = verify_committed_block(self.config, self.auth, block)
                    if reason:
                        self._evidence("bad-block-sync", sender, reason, block.pre_prepare)
                        return
                continue
            if pp.seq != self._last_executed + 1:
                break
            reason = verify_committed_block(self.config, self.auth, block)
            if reason:
                self._evidence("bad-block-sync", sender, reason, block.pre_prepare)
                return
            self._committed[pp.seq] = (pp, block.commits)
            self._execute_ready()
            progressed = True
        if progressed:
            self._fetch_retry_ms = self._now  # keep going while behind
            self._peer_executed[sender] = max(
                self._peer_executed.get(sender, 0), self._last_executed
            )
