"""Prometheus metrics of one node: its own `CollectorRegistry` (several nodes may share a
process in tests), exposed as text by the RPC server's `GET /metrics`.

Owns metric names and labels. Imports: prometheus_client only. Must not import trio, consensus,
storage or network.
"""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)


class NodeMetrics:
    def __init__(self, node_index: int) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        # process_* (CPU, RSS, fds) and python_* (version, GC) of the node's process
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        GCCollector(registry=r)
        self.node_index = node_index
        self.height = Gauge("bftnode_height", "Last committed block height", registry=r)
        self.view = Gauge("bftnode_view", "Current PBFT view", registry=r)
        self.in_view_change = Gauge("bftnode_in_view_change", "1 while in a view change", registry=r)
        self.view_changes = Counter("bftnode_view_changes", "Views entered after the first", registry=r)
        self.stable_checkpoint = Gauge("bftnode_stable_checkpoint", "Stable checkpoint seq", registry=r)
        self.blocks = Counter("bftnode_blocks_committed", "Blocks executed and stored", registry=r)
        self.txs = Counter("bftnode_txs_committed", "Transactions executed", registry=r)
        self.txs_skipped = Counter(
            "bftnode_txs_skipped", "Ordered but not executed txs", ["reason"], registry=r
        )
        self.queue_depth = Gauge("bftnode_queue_depth", "Items waiting", ["queue"], registry=r)
        self.peers = Gauge("bftnode_peers", "Connected validator peers", registry=r)
        self.messages_in = Counter("bftnode_messages_in", "Peer messages decoded", ["type"], registry=r)
        self.messages_out = Counter("bftnode_messages_out", "Messages sent", ["type"], registry=r)
        self.rejected = Counter(
            "bftnode_rejected_inputs", "Inputs refused (bad bytes, bad tx, ...)", ["reason"],
            registry=r,
        )
        self.evidence = Counter(
            "bftnode_evidence", "Misbehaviour evidence by kind", ["kind", "replica"], registry=r
        )
        self.state_certificates = Gauge(
            "bftnode_certified_height", "Highest block with a stored state certificate",
            registry=r)
        self.state_divergences = Counter(
            "bftnode_state_divergences",
            "Blocks whose roots 2f+1 validators certify differently from ours", registry=r)
        self.step_seconds = Histogram(
            "bftnode_step_seconds", "Replica.step + applying its Output", registry=r,
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
        )
        self.commit_seconds = Histogram(
            "bftnode_block_commit_seconds", "Execute + store one block", registry=r,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
        )
        self.persist_seconds = Histogram(
            "bftnode_persist_seconds", "Synced write of consensus records", registry=r,
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25),
        )

        self.group_events = Histogram(
            "bftnode_group_events", "Events stepped per group commit (one persist + commit)",
            registry=r, buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
        )
        self.blocks_per_commit = Histogram(
            "bftnode_blocks_per_commit", "Blocks written per synced block commit", registry=r,
            buckets=(1, 2, 4, 8, 16, 32, 64),
        )

        self.client_table = Gauge(
            "bftnode_client_table",
            "Client dedup table: clients held, evicted (total), loaded back (total)",
            ["what"], registry=r,
        )
        self.sig_cache = Gauge(
            "bftnode_signature_cache", "Verified-signature cache: hits, misses, size",
            ["what"], registry=r,
        )

    def text(self) -> bytes:
        return generate_latest(self.registry)

    def value(self, name: str, labels: dict[str, str] | None = None) -> float:
        """Current value of a sample (tests and the status table)."""
        v = self.registry.get_sample_value(name, labels or {})
        return 0.0 if v is None else v
