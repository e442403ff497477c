"""Snapshot catch-up and block pruning in the simulator: each replica's `SnapshotShell`
(bftnode.node.snapshot, the node's own code) over its MemoryStore, serving the state
certificates the replicas' StateVotes formed (SimOptions.authenticated_state); wiping a replica's disk; and,
after a replica installs a snapshot, persisting the convictions its state records, rebuilding
it from its store and telling the checkers
which blocks and requests the snapshot covered.
Imports: stdlib, bftnode.node.snapshot, storage, testnet.sim.stores.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bftnode.node.snapshot import SnapshotShell, snapshot_convictions
from storage.memory import MemoryStore

from .stores import SimBlocks, SimRecords


@dataclass(frozen=True, slots=True)
class SnapshotMark:
    """In a replica's executed log: the block a snapshot installed (not executed by it)."""

    seq: int
    block_hash: bytes
    time_ms: int
    requests: tuple = ()


def make_shell(cluster: Any, node: Any) -> SnapshotShell:
    cfg = cluster.config
    return SnapshotShell(node.store, cfg, node.auth, node.rid,
                         clock=lambda: cluster.now / 1000)


def wipe(cluster: Any, node: Any) -> None:
    """The replica's disk is gone: a fresh store; the checkers forget what it persisted and
    executed (its next life starts from nothing)."""
    node.store = MemoryStore(dedup_window=cluster.config.dedup_window, strict_votes=node.honest,
                             name=f"sim-r{node.rid}/{node.slot}-wiped",
                             authenticated_state=cluster.opts.authenticated_state)
    node.records = SimRecords()
    node.blocks = SimBlocks(cluster.config.dedup_window)
    if node in cluster.live_nodes:
        cluster.remaining += sum(1 for k in cluster.submitted_keys if k in node.executed)
    node.executed = set()
    node.shell = make_shell(cluster, node)


def installed(cluster: Any, node: Any) -> None:
    """After a snapshot install: the replica restarts from its store; its executed log gets
    the snapshot's block; requests the snapshot holds count as executed by it."""
    store = node.store
    convictions = snapshot_convictions(cluster.app, store)
    if convictions:
        node.records.apply(convictions)
        store.persist(convictions)
    node.replica = cluster.factory(cluster.config, node.rid, node.auth,
                                   store.recover(max_clients=cluster.config.max_clients))
    h = store.height()
    block = store.block(h)
    first = cluster.agreed.get(h)
    if first is not None and first[0] != block.hash:
        cluster.violate("divergence", node.rid, f"snapshot block {h} differs from replica "
                        f"{first[1]}'s")
    node.blocks.blocks[h] = SnapshotMark(h, block.hash, block.time_ms)
    node.blocks.last, node.blocks.last_hash, node.blocks.last_time_ms = h, block.hash, \
        block.time_ms
    live = node in cluster.live_nodes
    for key in list(cluster.submitted_keys):
        # the snapshot holds each client's executed-seqs record (tree state), not the tx
        # records; below its window it no longer tells (the sim's clients never skip a
        # window's worth)
        if key in node.executed:
            continue
        rec = store._seqs_at(store._kv, key[0])
        if rec is not None and rec.executed(key[1]) is not False:
            node.executed.add(key)
            if live:
                cluster.remaining -= 1
    cluster.counts["snapshots_installed"] = cluster.counts.get("snapshots_installed", 0) + 1
