"""Is this node fit to serve: the four conditions of `health` and the freshness of reads.

`assess` is the pure rule (unit-tested on its own); `HealthMixin` (part of `Node`) feeds it
from the node: how long the replica has been in a view change and since the node last
committed (noted by `_note_progress`, which the replica task calls after every step through
`_update_gauges`), the peers' heights (their Status / heartbeat traffic, as the replica keeps
them: `peers_executed`), and the validators connected. `read_info` is what every read answer
carries: the height it was read at and `catching_up`.
Imports: stdlib, bftnode.node.reads.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from .reads import _jsonable

PEERS_REFRESH_S = 0.25  # peers' heights for `catching_up` are re-read at most this often
DEFAULTS = {"health_view_change_s": 10.0, "health_stall_s": 10.0,
            "health_max_behind_blocks": 50}

# the reason codes of a not-ok health answer (a closed set: metrics and tests rely on it)
NOT_RUNNING, VIEW_CHANGE, STALLED, BEHIND, NO_QUORUM = (
    "not_running", "view_change", "stalled", "behind", "no_quorum")


@dataclass(frozen=True, slots=True)
class HealthInputs:
    running: bool
    height: int
    peer_height: int  # the highest height a peer reported (0: none known)
    connected: int  # validators connected, this node included
    validators: int
    quorum: int  # 2f+1
    view_change_s: float | None  # in a view change this long (None: not in one)
    since_commit_s: float  # since the height last rose (or since start)


@dataclass(frozen=True, slots=True)
class HealthBounds:
    view_change_s: float = DEFAULTS["health_view_change_s"]
    stall_s: float = DEFAULTS["health_stall_s"]
    max_behind: int = DEFAULTS["health_max_behind_blocks"]

    @classmethod
    def from_config(cls, config: Any) -> HealthBounds:
        if config is None:
            return cls()
        return cls(config.health_view_change_s, config.health_stall_s,
                   config.health_max_behind_blocks)


def assess(i: HealthInputs, b: HealthBounds) -> list[tuple[str, str]]:
    """The (code, explanation) of every condition that makes the node unfit; [] when ok."""
    out: list[tuple[str, str]] = []
    if not i.running:
        out.append((NOT_RUNNING, "node not running"))
    if in_stuck_view_change(i, b):
        out.append((VIEW_CHANGE, f"in a view change for {i.view_change_s:.1f}s "
                                 f"(bound {b.view_change_s:g}s)"))
    if i.peer_height > i.height and i.since_commit_s > b.stall_s:
        out.append((STALLED, f"no commit for {i.since_commit_s:.1f}s while a peer is at height "
                             f"{i.peer_height} (this node: {i.height}; bound {b.stall_s:g}s)"))
    behind = i.peer_height - i.height
    if behind > b.max_behind:
        out.append((BEHIND, f"{behind} blocks behind a peer (height {i.height}, peer "
                            f"{i.peer_height}; bound {b.max_behind})"))
    if i.connected < i.quorum:
        out.append((NO_QUORUM, f"{i.connected} of {i.validators} validators connected (this "
                               f"node included), fewer than 2f+1 = {i.quorum}"))
    return out


def in_stuck_view_change(i: HealthInputs, b: HealthBounds) -> bool:
    """In a view change past the bound with no commit within it either. A replica alone in a
    higher view (its VIEW-CHANGE sent, the others committing in the lower one) may not vote in
    the lower view again (its VIEW-CHANGE could then hide what it prepared there), so PBFT
    keeps it waiting until the others change view; meanwhile it executes their certified
    blocks by block sync and its VIEW-CHANGE counts toward their next view change. Such a
    node serves current reads: it is noted (`following_view_change`), not unfit."""
    return (i.view_change_s is not None and i.view_change_s > b.view_change_s
            and i.since_commit_s > b.view_change_s)


def following_view_change(i: HealthInputs, b: HealthBounds) -> str | None:
    """The note for a node in a long view change that keeps committing (see above)."""
    if i.view_change_s is None or i.view_change_s <= b.view_change_s or in_stuck_view_change(
            i, b):
        return None
    return (f"in a view change for {i.view_change_s:.1f}s while the chain commits: this node "
            f"follows it by block sync (last commit {i.since_commit_s:.1f}s ago) and waits for "
            f"the others' next view change")


def catching_up(height: int, peer_height: int, b: HealthBounds) -> bool:
    """Like CometBFT's sync_info.catching_up: a peer is more than `max_behind` blocks ahead."""
    return peer_height - height > b.max_behind


class HealthMixin:
    """`health`, `read_info` and the progress notes they rest on; part of `Node`."""

    _vc_since: float | None = None
    _progress_at: float = 0.0
    _height_noted: int = -1
    _peers_at: tuple[float, int] = (-1e9, 0)

    def _note_progress(self, in_view_change: bool) -> None:
        now = time.monotonic()
        if in_view_change:
            if self._vc_since is None:
                self._vc_since = now
        else:
            self._vc_since = None
        if self._height != self._height_noted:
            self._height_noted, self._progress_at = self._height, now

    def _replica_health(self) -> dict:
        try:
            return dict(self.replica.health())
        except Exception as exc:  # health is diagnostics; never let it break the RPC
            return {"error": repr(exc)}

    def _peer_height(self, info: dict | None = None) -> int:
        now = time.monotonic()
        if info is None:
            at, h = self._peers_at
            if now - at < PEERS_REFRESH_S:
                return h
            info = self._replica_health()
        pe = info.get("peers_executed")
        h = max((v for v in pe.values() if isinstance(v, int)), default=0) if isinstance(
            pe, dict) else 0
        self._peers_at = (now, h)
        return h

    def health_inputs(self, info: dict | None = None) -> HealthInputs:
        now = time.monotonic()
        if self._height_noted < 0:  # never noted (no step yet): count from now
            self._note_progress(bool(self.replica.in_view_change))
        running = self.started.is_set() and not self.stopped.is_set()
        vc = None if self._vc_since is None else now - self._vc_since
        return HealthInputs(
            running=running, height=self._height, peer_height=self._peer_height(info),
            connected=self._connected_peers() + 1, validators=self.consensus_config.n,
            quorum=self.consensus_config.quorum, view_change_s=vc,
            since_commit_s=now - self._progress_at)

    def health(self) -> dict:
        info = self._replica_health()
        i = self.health_inputs(info)
        bounds = self.health_bounds
        bad = assess(i, bounds)
        note = following_view_change(i, bounds)
        return {"ok": not bad, "why": [text for _, text in bad],
                "notes": [] if note is None else [note],
                "reasons": [code for code, _ in bad], "height": i.height,
                "peers": i.connected - 1, "peer_height": i.peer_height,
                "catching_up": catching_up(i.height, i.peer_height, bounds),
                "in_view_change_s": None if i.view_change_s is None else round(
                    i.view_change_s, 3),
                "since_commit_s": round(i.since_commit_s, 3),
                "replica": _jsonable(info)}

    def read_info(self) -> dict:
        """{height, catching_up, lag_ms}: what a read served now would be read at (lag_ms:
        wall clock minus the last block's agreed time; an idle chain adds heartbeats)."""
        h = self._height
        lag = max(0, time.time_ns() // 1_000_000 - self.last_block_time_ms) if h else None
        return {"height": h, "catching_up": catching_up(h, self._peer_height(), self.health_bounds),
                "lag_ms": lag}
