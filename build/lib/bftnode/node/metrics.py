"""The node's gauges and counters kept current from its state (the metric families are in
bftnode/metrics.py): view and view changes, checkpoint, client table, signature cache, peers.
`MetricsMixin` is part of `Node`. Imports: stdlib.
"""

from __future__ import annotations

from typing import Any


def _labelled(cache: dict[str, Any], family: Any, label: str) -> Any:
    """A labelled metric child, cached (prometheus' labels() costs a lock + dict lookup)."""
    c = cache.get(label)
    if c is None:
        c = cache[label] = family.labels(label)
    return c


class MetricsMixin:
    """Gauges of `Node`."""

    def _messages_out(self, kind: str) -> Any:
        return _labelled(self._out_counters, self.metrics.messages_out, kind)

    def _messages_in(self, kind: str) -> Any:
        return _labelled(self._in_counters, self.metrics.messages_in, kind)

    def _update_gauges(self) -> None:
        r = self.replica
        view = r.view
        if view != self._view_seen:
            self.metrics.view_changes.inc(max(0, view - self._view_seen))
            self.log.info("view changed", view=view, primary=view % self.consensus_config.n)
            self._view_seen = view
        self.metrics.view.set(view)
        in_vc = bool(r.in_view_change)
        self.metrics.in_view_change.set(1 if in_vc else 0)
        self._note_progress(in_vc)  # health.py: view-change and commit clocks
        self.metrics.stable_checkpoint.set(r.stable_seq)
        table = r.client_table
        if table is not None:
            self.metrics.client_table.labels("size").set(len(table))
            self.metrics.client_table.labels("evictions").set(table.evictions)
            self.metrics.client_table.labels("loads").set(self._client_loads)

    def metrics_text(self) -> bytes:
        v = self.tx_verifier
        self.metrics.sig_cache.labels("hits").set(v.hits)
        self.metrics.sig_cache.labels("misses").set(v.misses)
        self.metrics.sig_cache.labels("size").set(len(v))
        self.metrics.peers.set(self._connected_peers())
        return self.metrics.text()
