"""A backup's request timer: does the primary make progress on our oldest pending request?

PBFT suspects the primary when a request waits longer than the timer. Under a deep queue an
honest primary committing at capacity makes requests wait longer than that, and the batches
are round-robin over sources and clients (fair.py), so waiting time alone is the wrong signal.
The timer watches the oldest pending request instead:

- the watched request executes (or leaves the pool): watch the next oldest, a fresh period;
- a period of `timeout_ms` ends and the watched request is still pending: the primary is
  suspected unless, in that period, it executed at least max(1, min(batch_max, pending) / 4)
  requests or a quarter of `batch_max_bytes` of request bytes (it works at capacity, in
  requests or in bytes: a few of the largest legal requests can take a period between them;
  or it executed everything pending but ours), and, since the watch
  began, no more than `n * (2 * pending_then + n)` requests (the most a fair primary orders
  ahead of ours: every source's turn for each request queued ahead of it). Then the timer
  runs another period.

So a primary that stalls is suspected after one period, and one that orders everything but our
request after at most that many other requests. Pure: no clock, times are inputs.
"""

from __future__ import annotations

Key = tuple[bytes, int]


class RequestTimer:
    __slots__ = ("deadline", "watch", "budget", "since_watch", "in_period", "in_period_bytes",
                 "extended")

    def __init__(self) -> None:
        self.deadline: int | None = None
        self.watch: Key | None = None
        self.budget = 0  # requests the primary may execute before the watched one
        self.since_watch = 0  # requests executed since the watch began
        self.in_period = 0  # requests executed in the current period
        self.in_period_bytes = 0  # ... and their request bytes
        self.extended = 0  # periods granted for progress (a metric)

    def stop(self) -> None:
        self.deadline = None
        self.watch = None

    def arm(self, now: int, timeout_ms: int, oldest: Key, pending: int, n: int) -> None:
        """Watch `oldest` (if nothing is watched yet) for one period."""
        if self.deadline is not None:
            return
        self.deadline = now + timeout_ms
        self.watch = oldest
        self.budget = n * (2 * pending + n)
        self.since_watch = 0
        self.in_period = 0
        self.in_period_bytes = 0

    def executed(self, count: int, nbytes: int = 0) -> None:
        self.since_watch += count
        self.in_period += count
        self.in_period_bytes += nbytes

    def progressing(self, now: int, timeout_ms: int, pending: int, batch_max: int,
                    n: int, batch_max_bytes: int = 0) -> bool:
        """At the deadline, with the watched request still pending: True (and a new period)
        if the primary worked enough to be given one."""
        need = max(1, min(batch_max, pending) // 4)
        self.budget = max(self.budget, n * (2 * pending + n))  # requests queued since count too
        worked = self.in_period >= need or (
            batch_max_bytes > 0 and self.in_period_bytes >= batch_max_bytes // 4)
        if worked and self.since_watch <= self.budget:
            self.deadline = now + timeout_ms
            self.in_period = 0
            self.in_period_bytes = 0
            self.extended += 1
            return True
        return False
