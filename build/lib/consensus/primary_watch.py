"""A backup's primary watch: has the primary gone silent (crashed, or cut off from us)?

A live primary sends us something at least every `status_interval_ms`: its STATUS (every
replica sends one each interval, whatever the load), and besides PRE-PREPAREs, votes,
checkpoints and idle heartbeat blocks. Any valid signed message from it counts as heard (a
slow primary under saturation still sends its STATUS and its votes, so it is never silent). A
backup suspects the primary once it has heard nothing from it for `silence_ms(config)` (one
status interval and a half: one STATUS may come late, not two), measured from when we entered
the view, so a client's request timer is not the only way to detect a dead primary:

- only while at least f other backups were heard from within the same bound: alone or
  partitioned, our VIEW-CHANGE could not gather a quorum, and once the partition heals we
  would sit alone in a view the others never join;
- confirmed on a later step: the silence is seen on one Tick (armed) and still holds on a
  later Tick (`CONFIRM_DIVISOR`); a node whose own loop stalled processes the Tick before the
  messages that queued up meanwhile, and those get their chance in between.

(The replica also skips the suspicion while it is behind its peers: they hear the primary.)
Pure: no clock, times are inputs.
"""

from __future__ import annotations

from .types import Config

CONFIRM_DIVISOR = 10  # the confirming Tick comes status_interval_ms / 10 after the arming one


def silence_ms(config: Config) -> int:
    """How long a backup hears nothing from the primary before suspecting it."""
    return config.status_interval_ms * 3 // 2


class PrimaryWatch:
    __slots__ = ("heard", "view", "since", "armed", "bound", "confirm")

    def __init__(self, config: Config) -> None:
        self.heard: dict[int, int] = {}  # replica -> when a valid message from it last came
        self.view = -1  # the view the watch runs for
        self.since = 0  # when we entered that view (or started)
        self.armed: int | None = None  # when silence was first seen, awaiting a later Tick
        self.bound = silence_ms(config)
        self.confirm = max(1, config.status_interval_ms // CONFIRM_DIVISOR)

    def heard_from(self, replica: int, now: int) -> None:
        self.heard[replica] = now

    def _last(self, primary: int) -> int:
        return max(self.since, self.heard.get(primary, self.since))

    def suspect(self, now: int, view: int, primary: int, me: int, f: int) -> bool:
        """On a Tick (normal case, we are a backup): True if the primary is to be suspected."""
        if view != self.view:
            self.view, self.since, self.armed = view, now, None
        if now - self._last(primary) < self.bound:
            self.armed = None
            return False
        peers = sum(1 for r, t in self.heard.items()
                    if r not in (primary, me) and now - t < self.bound)
        if peers < f:
            self.armed = None
            return False
        if self.armed is None:
            self.armed = now
            return False
        return now > self.armed

    def deadline(self, now: int, view: int, primary: int) -> int | None:
        """When `suspect` is next worth asking (None: at the next regular Tick)."""
        if view != self.view:
            return None  # the next Tick starts the watch for this view
        if self.armed is not None:
            return self.armed + self.confirm
        due = self._last(primary) + self.bound
        return due if due > now else None  # overdue but not armed: too few peers heard
