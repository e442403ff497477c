"""Prepared certificates survive a whole-cluster crash (persisted `PreparedCert` records).

The scenario the record exists for: every replica commits batch A at seq 1 locally; three of
them crash before executing it (nothing of that output is sent or executed), the fourth crashes
right after executing it and stays down for a while. Two backups restart first and, when
clients retry, start a view change that the old primary joins when it is back: three replicas
that remember A only from disk. Without persisted prepared certificates their VIEW-CHANGEs
carry nothing, the new primary puts another batch at seq 1, and the replica that executed A
diverges from the rest when it returns.
"""

from typing import Any

import pytest

from consensus import Output, Replica
from testnet.sim import SimOptions
from testnet.sim.cluster import SimCluster

TARGET_SEQ = 1


class CrashAtExecute:
    """Wraps a real Replica; at its first Execute of TARGET_SEQ the process dies: either
    before executing (the output's records are durable, nothing is sent or executed) or right
    after executing it. A dead process answers nothing until the cluster crashes it."""

    def __init__(self, inner: Replica, after_execute: bool, on_crash) -> None:
        self.inner = inner
        self.after_execute = after_execute
        self.on_crash = on_crash
        self.dead = False

    def step(self, event: Any) -> Output:
        if self.dead:
            return Output()
        out = self.inner.step(event)
        hit = [ex for ex in out.execute if ex.seq == TARGET_SEQ]
        if not hit:
            return out
        self.dead = True
        self.on_crash(self.inner.id, hit[0])
        if self.after_execute:
            return out
        return Output(persist=out.persist)  # durable, then the process died


def run_whole_cluster_crash(seed: int) -> tuple[SimCluster, Any, dict[int, bytes]]:
    opts = SimOptions(n=4, requests=6, clients=2, submit_window_ms=5, client_retry_ms=1_500,
                      liveness_bound_ms=60_000)
    committed: dict[int, bytes] = {}  # replica -> digest of the batch it committed at seq 1
    cluster: SimCluster

    def on_crash(rid: int, ex: Any) -> None:
        committed[rid] = ex.digest
        cluster.at(cluster.now, lambda: cluster.crash(rid), f"crash r{rid}")
        # 1 and 2 come back first and start a view change once clients retry; the old
        # primary joins it later; the replica that executed A returns after the new view ran
        delay = {0: 5_000, 1: 300, 2: 300, 3: 20_000}[rid]
        cluster.at(cluster.now + delay, lambda: cluster.restart(rid), f"restart r{rid}")

    def factory(config, rid, auth, restored):
        inner = Replica(config, rid, auth, restored)
        if restored is not None:  # a restarted incarnation runs normally
            return inner
        return CrashAtExecute(inner, after_execute=(rid == 3), on_crash=on_crash)

    cluster = SimCluster(opts, seed, factory)
    return cluster, cluster.run(), committed


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_a_batch_committed_before_a_whole_cluster_crash_survives_the_view_change(seed):
    cluster, res, committed = run_whole_cluster_crash(seed)
    assert sorted(committed) == [0, 1, 2, 3], "every replica must reach seq 1 and crash there"
    (digest,) = set(committed.values())
    for node in cluster.nodes:
        assert node.blocks.blocks[TARGET_SEQ].digest == digest, res.failure_text()
    assert res.ok, res.failure_text()
    assert res.figures["max_view"] >= 1, res.failure_text()  # the view change really happened
    assert res.figures["executed_everywhere"] == res.figures["requests"], res.failure_text()
