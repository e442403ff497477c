"""The nemesis run's report: verdicts and figures as one JSON object, the history as JSON
lines, and a Jepsen-style timeline plot (faults as shaded bands, one dot per op at its
invocation time and latency, coloured ok / fail / info).
Imports: stdlib, matplotlib (only in `plot`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

VERDICTS = ("linearizable", "lost_writes", "mutual_exclusion", "chain_locks",
            "exactly_once", "agreement")
COLORS = {"ok": "#4c9be8", "fail": "#e8607a", "info": "#f0b400"}
BANDS = {"partition-minority": "#c7b3e6", "partition-majority": "#a98fd6",
         "partition-bridge": "#d4c4ee", "partition-one-way": "#e2d8f3", "kill": "#f4a6a6",
         "pause": "#f9d29d", "clock-skew": "#a8dadc", "netem": "#b8e0b8",
         "byzantine": "#bdbdbd"}


def op_counts(ops: Sequence[dict]) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for o in ops:
        row = out.setdefault(o["f"], {"ok": 0, "fail": 0, "info": 0})
        row[o["type"]] += 1
    return out


def overall(verdicts: dict[str, str]) -> str:
    vals = set(verdicts.values())
    return "violation" if "violation" in vals else "unknown" if "unknown" in vals else "ok"


def write_history(out: Path, ops: Sequence[dict], faults: Sequence[dict]) -> Path:
    p = out / "history.jsonl"
    with p.open("w") as fh:
        for f in faults:
            fh.write(json.dumps({"nemesis": f}) + "\n")
        for o in ops:
            fh.write(json.dumps(o, default=str) + "\n")
    return p


def plot(out: Path, ops: Sequence[dict], faults: Sequence[dict], title: str,
         end_s: float) -> Path:
    """timeline.png: x = time since the run began (s), y = op latency (ms, log); ops that
    never answered (info) are drawn at their give-up time."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    fig, ax = plt.subplots(figsize=(14, 5.5), dpi=110)
    kinds_seen: dict[str, str] = {}
    for f in faults:
        if f.get("started") is None:
            continue
        color = BANDS.get(f["kind"], "#dddddd")
        ax.axvspan(f["started"], f["ended"] if f.get("ended") is not None else end_s,
                   color=color, alpha=0.55, lw=0)
        kinds_seen[f["kind"]] = color
    for typ in ("ok", "info", "fail"):
        xs, ys = [], []
        for o in ops:
            if o["type"] != typ:
                continue
            done = o.get("complete") if o.get("complete") is not None else o.get("gave_up")
            if done is None:
                continue
            xs.append(o["invoke"])
            ys.append(max(0.1, (done - o["invoke"]) * 1000))
        ax.scatter(xs, ys, s=5, color=COLORS[typ], label=f"{typ} ({len(xs)})",
                   alpha=0.8, lw=0)
    ax.set_yscale("log")
    ax.set_xlim(0, end_s)
    ax.set_xlabel("time since start (s)")
    ax.set_ylabel("latency (ms)")
    ax.set_title(title)
    handles, _ = ax.get_legend_handles_labels()
    handles += [Patch(color=c, alpha=0.55, label=k) for k, c in kinds_seen.items()]
    ax.legend(handles=handles, loc="upper left", fontsize=7, ncol=2, framealpha=0.85)
    fig.tight_layout()
    p = out / "timeline.png"
    fig.savefig(p)
    plt.close(fig)
    return p


def text_summary(r: dict[str, Any]) -> str:
    lines = [f"nemesis seed {r['seed']}: {r['result']} ({r['duration_s']} s, "
             f"{r['ops']} ops, checker {r['checker_s']} s)"]
    for k in VERDICTS:
        lines.append(f"  {k:>16}: {r['verdicts'].get(k)}")
    lines.append(f"  {'faults':>16}: {r['faults']}")
    for k, why in r.get("faults_skipped", {}).items():
        lines.append(f"  {'not injected':>16}: {k}: {why}")
    for k, why in r.get("faults_emulated", {}).items():
        lines.append(f"  {'emulated':>16}: {k}: {why}")
    lines.append(f"  {'report':>16}: {r.get('out')}")
    return "\n".join(lines)
