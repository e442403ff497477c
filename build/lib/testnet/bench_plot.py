"""Tables and plots of `python -m testnet bench --sweep` results.

Owns the markdown table and the PNG (tx/s and p50 latency per swept dimension). matplotlib is
imported lazily (only to draw), with the headless Agg backend. Imports: stdlib, matplotlib.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

COLUMNS = ("dimension", "value", "tx_per_s", "p50_ms", "p99_ms", "txs_per_block",
           "cpu_us_per_tx", "bytes_per_tx", "rss_max_mb", "lost")


def markdown_table(rows: list[dict[str, Any]]) -> str:
    """One row per sweep point; a failed point shows its error."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['dimension']} | {r['value']} | error: {r['error']} |"
                         + " |" * (len(COLUMNS) - 3))
            continue
        lines.append("| " + " | ".join("" if r.get(c) is None else str(r.get(c))
                                       for c in COLUMNS) + " |")
    return "\n".join(lines) + "\n"


def plot_sweep(rows: list[dict[str, Any]], path: str | Path) -> str | None:
    """Write a PNG with one panel per dimension (tx/s bars, p50 line); None without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    dims: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        if "error" not in r:
            dims.setdefault(r["dimension"], []).append(r)
    if not dims:
        return None
    fig, axes = plt.subplots(1, len(dims), figsize=(4.2 * len(dims), 3.6), squeeze=False)
    for ax, (dim, pts) in zip(axes[0], dims.items(), strict=True):
        labels = [str(p["value"]) for p in pts]
        ax.bar(labels, [p.get("tx_per_s") or 0 for p in pts], color="#4c72b0")
        ax.set_xlabel(dim)
        ax.set_ylabel("committed tx/s", color="#4c72b0")
        lat = ax.twinx()
        lat.plot(labels, [p.get("p50_ms") or 0 for p in pts], "o-", color="#dd8452")
        lat.set_ylabel("p50 latency (ms, saturated)", color="#dd8452")
        ax.set_title(f"4-node base, vary {dim}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return str(path)
