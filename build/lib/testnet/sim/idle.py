"""Checker "no client load, faults heal -> a block within T" (issue 27: no idle stalls).

Liveness must not depend on client traffic: once every temporary fault is over (partitions
healed, crashed replicas restarted), the primary's heartbeat blocks must advance again. The
`IdleWatch` notes, at the heal time, the highest height any honest replica has executed; the
check holds once every correct replica (honest, not counted as faulty) has executed a block
above it, and fails if that takes more than `SimOptions.idle_block_ms` (T) of virtual time.
Runs with `--requests 0` make it the only thing that keeps the run going after the heal.

With a replica whose fault never heals (Byzantine, permanently one-way, Twins) the bound is
T + `SimOptions.idle_faulty_extra_ms`: the next primaries may be faulty ones, each costing an
idle-watchdog period and a view-change timeout (measured over 2,000 such seeds: at most
6.6 s; healing faults only: at most 3.9 s).
Imports: stdlib only (the cluster is passed in).
"""

from __future__ import annotations

from typing import Any


class IdleWatch:
    """One run's idle-liveness check; `attach` schedules the baseline at the heal time."""

    def __init__(self, cluster: Any, bound_ms: int, heal_ms: int) -> None:
        self.cluster = cluster
        if cluster.faulty:
            bound_ms += cluster.opts.idle_faulty_extra_ms
        self.bound_ms = bound_ms
        self.heal_ms = heal_ms
        self.baseline: int | None = None  # highest honest height at the heal
        self.met_ms: int | None = None  # when every correct replica passed it

    @classmethod
    def attach(cls, cluster: Any, bound_ms: int, heal_ms: int) -> IdleWatch:
        watch = cls(cluster, bound_ms, heal_ms)
        cluster.at(heal_ms, watch._mark, "idle-watch")
        return watch

    def _mark(self) -> None:
        self.baseline = max((nd.blocks.last for nd in self.cluster.nodes if nd.honest),
                            default=0)

    def done(self, now: int) -> bool:
        """True once every correct replica executed a block above the baseline."""
        if self.met_ms is not None:
            return True
        if self.baseline is None:
            return False
        if all(nd.up and nd.blocks.last > self.baseline for nd in self.cluster.live_nodes):
            self.met_ms = now
            return True
        return False

    def failed(self, now: int) -> bool:
        return self.met_ms is None and now > self.heal_ms + self.bound_ms

    def figures(self) -> dict[str, Any]:
        return {
            "idle_liveness": "ok" if self.met_ms is not None else "stalled",
            "idle_block_bound_ms": self.bound_ms,
            "idle_block_after_heal_ms": (None if self.met_ms is None
                                         else self.met_ms - self.heal_ms),
            "idle_baseline_height": self.baseline,
        }
