"""Bad checkpoints leave evidence (§4.3 extended): a signed CHECKPOINT whose state digest differs
from the block hash this replica computed at that seq, or from the proven stable checkpoint, is
`Evidence("bad-checkpoint")` against its signer; two different checkpoints from one replica for
one seq are `Evidence("equivocation")`. Bad checkpoints are outvoted, never adopted."""

from consensus import Checkpoint, Receive

SMALL = {"checkpoint_interval": 4, "watermark_window": 8, "batch_max": 1}
BAD = b"\xbb" * 32
WORSE = b"\xcc" * 32


def _run_to(c, k: int) -> None:
    reqs = [c.request(0, i) for i in range(k)]
    for r in reqs:
        c.submit(r)
    assert c.run_until(lambda: c.all_executed(reqs))


def _no_checkpoints(s, t, m):
    return [] if isinstance(m, Checkpoint) else None


def test_checkpoint_differing_from_our_executed_block_hash_is_bad_checkpoint(cluster_cls):
    c = cluster_cls(**SMALL)
    c.tamper = _no_checkpoints  # seq 4 executes everywhere but does not become stable
    _run_to(c, 4)
    rep = c.replicas[1]
    assert rep.last_executed == 4 and rep.stable_seq == 0
    bad = c.auth(2).sign(Checkpoint(4, BAD, 2))
    out = rep.step(Receive(2, bad))
    assert [(e.kind, e.replica) for e in out.evidence] == [("bad-checkpoint", 2)]
    assert out.evidence[0].messages == (bad,)
    assert "checkpoint 4" in out.evidence[0].reason
    # a matching checkpoint from another replica is fine
    good = c.auth(3).sign(Checkpoint(4, c.executed[1][4].block_hash, 3))
    assert rep.step(Receive(3, good)).evidence == []


def test_a_repeated_bad_checkpoint_counts_once(cluster_cls):
    c = cluster_cls(**SMALL)
    c.tamper = _no_checkpoints
    _run_to(c, 4)
    bad = c.auth(2).sign(Checkpoint(4, BAD, 2))
    assert len(c.replicas[1].step(Receive(2, bad)).evidence) == 1
    assert c.replicas[1].step(Receive(2, bad)).evidence == []


def test_a_bad_checkpoint_that_arrives_before_we_execute_is_judged_at_execution(cluster_cls):
    c = cluster_cls(**SMALL)
    c.tamper = _no_checkpoints
    rep = c.replicas[1]
    bad = c.auth(2).sign(Checkpoint(4, BAD, 2))
    assert rep.step(Receive(2, bad)).evidence == []  # nothing to compare with yet
    _run_to(c, 4)
    assert [(e.kind, e.replica) for e in c.evidence[1]] == [("bad-checkpoint", 2)]
    assert c.evidence[1][0].messages == (bad,)


def test_checkpoint_conflicting_with_the_stable_checkpoint_is_bad_checkpoint(cluster_cls):
    c = cluster_cls(**SMALL)
    c.tamper = lambda s, t, m: [] if isinstance(m, Checkpoint) and s == 2 else None
    _run_to(c, 4)
    rep = c.replicas[1]
    assert rep.stable_seq == 4  # 0, 1 and 3 made it stable without replica 2
    out = rep.step(Receive(2, c.auth(2).sign(Checkpoint(4, BAD, 2))))
    assert [(e.kind, e.replica) for e in out.evidence] == [("bad-checkpoint", 2)]
    assert "stable checkpoint" in out.evidence[0].reason
    good = c.auth(2).sign(Checkpoint(4, rep.last_block_hash, 2))
    assert rep.step(Receive(2, good)).evidence == []


def test_late_checkpoint_below_the_stable_seq_is_still_judged(cluster_cls):
    c = cluster_cls(**SMALL)
    c.tamper = lambda s, t, m: [] if isinstance(m, Checkpoint) and s == 2 else None
    _run_to(c, 8)
    rep = c.replicas[1]
    assert rep.stable_seq == 8
    out = rep.step(Receive(2, c.auth(2).sign(Checkpoint(4, BAD, 2))))
    assert [e.kind for e in out.evidence] == ["bad-checkpoint"]
    good = c.auth(2).sign(Checkpoint(4, c.executed[1][4].block_hash, 2))
    assert rep.step(Receive(2, good)).evidence == []


def test_two_different_checkpoints_from_one_replica_are_equivocation(cluster_cls):
    c = cluster_cls(**SMALL)
    c.tamper = _no_checkpoints
    _run_to(c, 4)
    rep = c.replicas[1]
    ours = c.executed[1][4].block_hash
    a2 = c.auth(2)
    assert rep.step(Receive(2, a2.sign(Checkpoint(4, ours, 2)))).evidence == []
    out = rep.step(Receive(2, a2.sign(Checkpoint(4, BAD, 2))))
    assert sorted(e.kind for e in out.evidence) == ["bad-checkpoint", "equivocation"]
    eq = next(e for e in out.evidence if e.kind == "equivocation")
    assert {m.state_digest for m in eq.messages} == {ours, BAD}


def test_bad_checkpoints_are_outvoted_not_adopted(cluster_cls):
    c = cluster_cls(**SMALL)
    a2 = c.auth(2)

    def lie(s, t, m):
        if isinstance(m, Checkpoint) and s == 2:
            return [a2.sign(Checkpoint(m.seq, WORSE, 2))]
        return None

    c.tamper = lie
    _run_to(c, 8)
    for i in (0, 1, 3):
        rep = c.replicas[i]
        assert rep.stable_seq == 8 and rep._stable_digest == c.executed[i][8].block_hash
        assert {e.kind for e in c.evidence[i]} == {"bad-checkpoint"}
        assert {e.replica for e in c.evidence[i]} == {2}


def test_an_honest_run_has_no_checkpoint_evidence(cluster_cls):
    c = cluster_cls(**SMALL)
    _run_to(c, 12)
    assert all(c.evidence[i] == [] for i in range(4))
    assert all(c.replicas[i].stable_seq == 12 for i in range(4))
