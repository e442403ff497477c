"""Heavy legal load in attack scenarios (issue 36): what the runner measures and judges about
honest clients' latency, view changes and commits after a view change, and what the honest
nodes dropped from a relaying validator.

Owns `latency_summary` (the put load's submit -> commit figures), `heavy_load_checks` (the
checks `[expect]` asks for: `max_view`, `max_commit_after_view_change_s`, and, against a
baseline run of the same scenario without its byzantine nodes, `max_p50_ratio` and
`max_p99_ratio`), `relay_stats` (each live honest node's `health` drop counters for
forwarded requests) and `without_byzantine` (the baseline twin of a scenario).

Everything is read through JSON-RPC or from the runner's own measurements (testnet/attack.py's
`Run`: `put_lat_ms`, `view_log`, `faults`).

Imports: stdlib, httpx, testnet.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import httpx

from testnet.bench import percentile

OK, VIOLATED, INFO = "ok", "violated", "info"
RELAY_DROPS = ("forwarded-request-over-rate", "forwarded-request-over-share",
               "forwarded-request-not-admitted", "forwarded-request-already-pending")
"""A relay's requests an honest replica did not admit: past the relay's admission rate or its
pool share (both dropped before their signatures are checked), not admitted after the check
(share or the pool's
request cap), or already held (see consensus.replica `on_forward`)."""


def without_byzantine(sc: Any) -> Any:
    """The baseline twin of a scenario: the same load, schedule and consensus settings, every
    node honest (nothing to compare latency with itself)."""
    return replace(sc, byzantine={}, name=f"{sc.name} (baseline)",
                   expect=replace(sc.expect, max_p50_ratio=0.0, max_p99_ratio=0.0,
                                  evidence=False, convicted=()))


def latency_summary(lat_ms: list[float]) -> dict[str, Any]:
    s = sorted(lat_ms)
    return {"n": len(s), "p50": percentile(s, 50), "p90": percentile(s, 90),
            "p99": percentile(s, 99), "max": round(s[-1], 2) if s else None}


def max_view(run: Any) -> int:
    """The highest view any honest node was seen in (status polled every 50 ms)."""
    with run.lock:
        seen = [v for _, i, v in run.view_log if i in run.honest]
    return max(seen + [v for i, v in run.views.items() if i in run.honest], default=0)


def relay_stats(call: Any, urls: dict[int, str]) -> dict[str, Any]:
    """Per live honest node: its drop counters for forwarded requests and its pool size."""
    out: dict[str, Any] = {}
    with httpx.Client() as http:
        for i, url in urls.items():
            try:
                rep = call(http, url, "health", timeout=5).get("replica") or {}
            except Exception as exc:
                out[str(i)] = {"error": f"{type(exc).__name__}: {exc}"[:120]}
                continue
            dropped = rep.get("dropped") or {}
            out[str(i)] = {**{k: int(dropped.get(k, 0)) for k in RELAY_DROPS},
                           "pending_requests": rep.get("pending_requests")}
    return out


def heavy_load_checks(run: Any, baseline: dict[str, Any] | None, check: Any) -> list[Any]:
    """`check` is testnet.attack.Check (name, result, detail)."""
    exp = run.sc.expect
    checks = []
    top = max_view(run)
    if exp.max_view >= 0:
        checks.append(check("no view change" if exp.max_view == 0 else "views bounded",
                            VIOLATED if top > exp.max_view else OK,
                            f"highest view of an honest node {top} (bound {exp.max_view})"))
    if exp.max_commit_after_view_change_s > 0:
        bound = exp.max_commit_after_view_change_s
        rows, bad = [], []
        for f in run.faults:
            if f.action not in ("kill", "kill-hard", "pause", "partition"):
                continue
            if f.commit_after_view_change_s is None:
                bad.append(f"{f.action} node{f.node} at {f.t:.1f}s: no commit in a later view "
                           f"seen (next view {f.next_view}, commit {f.next_commit_s})")
                continue
            rows.append(f"{f.action} node{f.node}: view {f.next_view} seen "
                        f"{f.view_change_s:.2f}s after it, commit "
                        f"{f.commit_after_view_change_s:.2f}s after that "
                        f"({f.next_commit_s:.2f}s after the fault)")
            if f.commit_after_view_change_s > bound:
                bad.append(rows[-1])
        detail = "; ".join(bad or rows) or "no fault to time"
        checks.append(check("commit after view change", VIOLATED if bad or not rows else OK,
                            f"{detail} (bound {bound:g}s)"))
    mine = latency_summary(run.put_lat_ms)
    if baseline is not None:
        base = baseline.get("put_latency_ms") or {}
        for q, ratio in (("p50", exp.max_p50_ratio), ("p99", exp.max_p99_ratio)):
            if ratio <= 0:
                continue
            b, m = base.get(q), mine.get(q)
            if not b or m is None:
                checks.append(check(f"honest put {q} vs baseline", VIOLATED,
                                    f"no figure: baseline {b}, this run {m}"))
                continue
            checks.append(check(f"honest put {q} vs baseline", VIOLATED if m > ratio * b
                                else OK, f"{m:.1f} ms vs {b:.1f} ms without the byzantine "
                                f"node(s): x{m / b:.2f} (bound x{ratio:g})"))
    else:
        checks.append(check("honest put latency", INFO,
                            f"p50 {mine['p50']} ms, p99 {mine['p99']} ms over {mine['n']} puts"
                            + (" (no baseline run: --baseline compares)"
                               if exp.max_p50_ratio or exp.max_p99_ratio else "")))
    return checks
