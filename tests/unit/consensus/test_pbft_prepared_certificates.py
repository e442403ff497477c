"""Prepared certificates are durable (our extension to Castro-Liskov §4.4/§4.5): a replica
persists each prepared certificate with its COMMIT, so after a restart its VIEW-CHANGE still
proves every batch it prepared, and a batch that may have committed is never dropped."""

import dataclasses

import msgspec

from consensus import (
    Commit,
    OwnVote,
    PreparedCert,
    Receive,
    Replica,
    StableCheckpoint,
    ViewChange,
)
from consensus.bodies import header
from consensus.messages import PreparedProof

FAST = {"timeout_request_ms": 200, "timeout_view_change_ms": 200, "status_interval_ms": 50}


def _no_commits(s, t, m):
    return [] if isinstance(m, Commit) else None


def test_a_prepared_certificate_is_persisted_in_the_output_that_sends_our_commit(cluster_cls):
    c = cluster_cls(**FAST)
    outputs = []
    original = c.apply

    def spy(rid, out):
        if rid == 1:
            outputs.append(out)
        original(rid, out)

    c.apply = spy
    c.submit(c.request(0, 1))
    c.tick(5)  # batch_delay_ms passes: the primary proposes
    with_commit = [
        o for o in outputs
        if any(isinstance(s.message, Commit) and s.message.replica == 1 for s in o.send)
    ]
    assert len(with_commit) == 1
    out = with_commit[0]
    certs = [r for r in out.persist if isinstance(r, PreparedCert)]
    votes = [r.message for r in out.persist if isinstance(r, OwnVote)]
    assert len(certs) == 1 and any(isinstance(v, Commit) for v in votes)
    proof = certs[0].proof
    assert (proof.pre_prepare.view, proof.pre_prepare.seq) == (0, 1)
    assert len({p.replica for p in proof.prepares}) == c.config.quorum - 1
    assert all(p.digest == proof.pre_prepare.digest for p in proof.prepares)


def _restarted_view_change(c, rid: int) -> ViewChange:
    """Replica `rid` restarts from its records; the others' request timers then start a view
    change that it joins (f+1 rule). Returns the VIEW-CHANGE it signs."""
    c.crash(rid)
    # after the restart it hears only VIEW-CHANGEs: it cannot re-learn the batch from the
    # others' retransmissions, only from its own disk
    c.tamper = lambda s, t, m: (
        [] if isinstance(m, Commit) or (t == rid and not isinstance(m, ViewChange)) else None
    )
    c.restart(rid)
    before = len(c.sent)

    def mine():
        return [m for m in c.sent[before:] if isinstance(m, ViewChange) and m.replica == rid]

    assert c.run_until(lambda: bool(mine()), timeout_ms=5_000)
    return mine()[0]


def test_restored_replica_view_change_carries_its_persisted_prepared_certificate(cluster_cls):
    c = cluster_cls(**FAST)
    c.tamper = _no_commits  # prepares everywhere, commits nowhere
    c.submit(c.request(0, 1))
    c.tick(5)  # batch_delay_ms passes: the primary proposes
    prepared = c.replicas[1]._prepared[1]
    vc = _restarted_view_change(c, 1)
    # carried as a header with its prepares: the VIEW-CHANGE does not grow with the batch
    assert vc.prepared == (PreparedProof(header(prepared.pre_prepare), prepared.prepares),)


def test_without_the_record_a_restarted_replica_forgets_what_it_prepared(cluster_cls):
    """The control: the same run with PreparedCert records stripped (the old behaviour)."""
    c = cluster_cls(**FAST)
    c.tamper = _no_commits
    c.submit(c.request(0, 1))
    c.tick(5)  # batch_delay_ms passes: the primary proposes
    c.records[1] = [r for r in c.records[1] if not isinstance(r, PreparedCert)]
    assert _restarted_view_change(c, 1).prepared == ()


def test_restore_keeps_the_highest_view_certificate_per_seq_and_none_below_stable(cluster_cls):
    c = cluster_cls(**FAST)
    c.tamper = _no_commits
    c.submit(c.request(0, 1))
    c.tick(5)  # batch_delay_ms passes: the primary proposes
    proof = c.replicas[1]._prepared[1]
    pp = proof.pre_prepare
    newer = msgspec.structs.replace(proof, pre_prepare=msgspec.structs.replace(pp, view=3))
    below = msgspec.structs.replace(proof, pre_prepare=msgspec.structs.replace(pp, seq=4))
    stable = StableCheckpoint(4, b"h" * 32, ())
    restored = dataclasses.replace(c.recovered(1), prepared=(newer, proof))
    assert Replica(c.config, 1, c.auth(1), restored)._prepared == {1: newer}
    restored = dataclasses.replace(restored, prepared=(below,), stable_checkpoint=stable)
    assert Replica(c.config, 1, c.auth(1), restored)._prepared == {}


def test_restored_current_view_slot_commits_when_the_missing_commits_arrive(cluster_cls):
    c = cluster_cls(**FAST)
    c.tamper = _no_commits
    req = c.request(0, 1)
    c.submit(req)
    c.tick(5)
    digest = c.replicas[1]._prepared[1].pre_prepare.digest
    c.crash(1)
    c.restart(1)  # a backup: before, it kept only its own votes, not the primary's batch
    assert not c.executed[1]
    for i in (2, 3):
        c.step(1, Receive(i, c.auth(i).sign(Commit(0, 1, digest, i))))
    assert c.executed[1][1].requests == (req,) and c.executed[1][1].digest == digest
