"""Attack-runner check "no client load, faults heal -> heartbeat blocks within T" (issue 27).

A scenario with `[expect] idle_block_s = T` runs without client load; the primary's heartbeat
blocks are the only blocks. Judged from the heights the runner's monitors recorded (status
polled every 50 ms), before any probe transaction is sent:

- after every perturbation, an honest node holds a block above the height at that moment
  within T (a healed cluster is never stuck at one height);
- after the heal (the later of the last perturbation and the first answer of a node it
  restarted), every live honest node holds a block above the height at the last perturbation
  within T.

Imports: stdlib only (the runner passes itself and its Check class).
"""

from __future__ import annotations

import time
from typing import Any

POLL_S = 0.05


def _first_above(run: Any, nodes: list[int], t: float, height: int) -> dict[int, float]:
    """Per node: the first time after `t` it was seen above `height`."""
    with run.lock:
        return {i: min((tt for tt, h in run.heights[i] if tt > t and h > height), default=None)
                for i in nodes}


def _answered_after(run: Any, i: int, t: float) -> float | None:
    with run.lock:
        return min((tt for tt, _ in run.heights[i] if tt > t), default=None)


def idle_block_checks(run: Any, bound_s: float, check: Any) -> list[Any]:
    """Wait (at most until the last bound passes) and judge; returns Check objects."""
    faults = list(run.faults)
    if not faults:
        return [check("idle heartbeat blocks", "info", "no perturbation to heal from")]
    last = faults[-1]
    restarted = [f.node for f in faults if f.action in ("restart", "wipe-restart")
                 and f.t >= last.t]
    end = time.monotonic() + 3 * bound_s + 10
    while time.monotonic() < end:  # until the restarted node answered and the bound passed
        heal = max([last.t] + [_answered_after(run, i, last.t) or run.now() for i in restarted])
        if run.now() > heal + bound_s:
            break
        time.sleep(POLL_S)
    heal = max([last.t] + [_answered_after(run, i, last.t) or float("inf") for i in restarted])
    checks = []
    slow = []
    per_fault = []
    for f in faults:
        first = _first_above(run, list(run.honest), f.t, f.height)
        got = [t for t in first.values() if t is not None]
        s = (min(got) - f.t) if got else None
        per_fault.append(f"{f.action} node{f.node} at {f.t:.1f}s -> "
                         + (f"{s:.2f}s" if s is not None else "none"))
        if s is None or s > bound_s:
            slow.append(per_fault[-1])
    checks.append(check("idle heartbeat block after every fault", "violated" if slow else "ok",
                        ("over " if slow else "") + f"{bound_s:g}s bound: "
                        + "; ".join(slow or per_fault)))
    live = run.live_honest()
    first = _first_above(run, live, last.t, last.height)
    late = {i: t for i, t in first.items() if t is None or t - heal > bound_s}
    figures = ", ".join(f"node{i} {'-' if t is None else f'{t - heal:+.2f}s'}"
                        for i, t in sorted(first.items()))
    checks.append(check(
        "idle heartbeat blocks on every node after the heal",
        "violated" if late or heal == float("inf") else "ok",
        f"heal at {heal:.1f}s (last fault {last.action} node{last.node} at {last.t:.1f}s); "
        f"first block above height {last.height}: {figures} (bound {bound_s:g}s)"))
    return checks
