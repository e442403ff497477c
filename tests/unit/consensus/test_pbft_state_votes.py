"""State votes (consensus.state_votes, phases/state_roots): each replica signs the roots of
every block it stored; 2f+1 equal votes certify them; a quorum on other roots than ours is a
divergence alarm; the vote table is bounded per replica and by a horizon."""

from __future__ import annotations

import msgspec

from consensus import (
    Config,
    Executed,
    FastSigner,
    FastVerifier,
    Receive,
    RecoveredState,
    Replica,
    StateVote,
    Tick,
)
from consensus.auth import Authenticator
from consensus.state_votes import StateVotes

SMALL = {"checkpoint_interval": 4, "watermark_window": 8, "batch_max": 1, "state_votes": True}
H, S, R = b"h" * 32, b"s" * 32, b"r" * 32
DOMAIN = b"test-chain"


def _certs(c, i):
    return {x.seq: x for x in c.certified[i]}


def test_every_block_gets_one_certificate_of_2f_plus_1_matching_votes(cluster_cls):
    c = cluster_cls(**SMALL)
    reqs = [c.request(0, k) for k in range(6)]
    for r in reqs:
        c.submit(r)
    assert c.run_until(lambda: c.all_executed(reqs))
    c.deliver_all()
    for i in range(4):
        certs = _certs(c, i)
        assert len(certs) == len(c.certified[i])  # one per seq
        assert sorted(certs) == sorted(c.executed[i])
        for seq, cert in certs.items():
            votes = cert.votes
            assert len(votes) == c.config.quorum
            assert [v.replica for v in votes] == sorted({v.replica for v in votes})
            roots = c.stores[i].block_roots(seq)
            assert {(v.block_hash, v.state_root, v.results_root) for v in votes} == {
                (c.executed[i][seq].block_hash, *roots)}
            assert all(c.replicas[i].auth.verify(v) for v in votes)
        assert c.replicas[i].certified_height == max(c.executed[i])
        assert c.stores[i].latest_certified() == max(c.executed[i])
        assert not c.diverged[i]


def test_votes_are_off_unless_configured(cluster_cls):
    c = cluster_cls(checkpoint_interval=4, watermark_window=8, batch_max=1)
    req = c.request(0, 1)
    c.submit(req)
    assert c.run_until(lambda: c.all_executed([req]))
    assert not any(isinstance(m, StateVote) for m in c.sent)
    rep = c.replicas[1]
    vote = c.replicas[0].auth.sign(StateVote(1, H, S, R, 0))
    rep.step(Receive(0, vote))
    assert rep.dropped["state-votes-off"] == 1


def test_a_replica_outvoted_on_its_roots_raises_a_divergence(cluster_cls):
    c = cluster_cls(**SMALL)
    bad = 3
    orig = c._ports[bad].step

    def wrong_roots(event):  # replica 3 computed another state root for every block
        if isinstance(event, Executed):
            event = Executed(event.seq, event.block_hash, b"\x01" * 32, event.results_root)
        return orig(event)

    c._ports[bad].step = wrong_roots
    req = c.request(0, 1)
    c.submit(req)
    assert c.run_until(lambda: c.all_executed([req]))
    c.deliver_all()
    assert [d.seq for d in c.diverged[bad]] == [1]
    assert c.diverged[bad][0].ours[1] == b"\x01" * 32
    for i in range(3):  # the honest ones certify their roots and raise nothing
        assert not c.diverged[i]
        assert all(v.replica != bad for v in _certs(c, i)[1].votes)
        assert not [e for e in c.evidence[i] if e.kind.startswith("state")]


def _replica(n: int = 4, i: int = 0, **cfg) -> tuple[Replica, list[Authenticator]]:
    signers = [FastSigner.from_seed_int(k) for k in range(n)]
    keys = [s.public_key for s in signers]
    auths = [Authenticator(DOMAIN, s, FastVerifier(), keys) for s in signers]
    config = Config(n=n, checkpoint_interval=4, watermark_window=8, state_votes=True,
                    heartbeat_ms=0, **cfg)
    rep = Replica(config, i, auths[i])
    rep.step(Tick(1))
    return rep, auths


def _vote(auths, replica: int, seq: int, state: bytes = S) -> StateVote:
    return auths[replica].sign(StateVote(seq, H, state, R, replica))


def test_peer_votes_certify_even_before_we_execute():
    rep, auths = _replica()
    out = rep.step(Receive(1, _vote(auths, 1, 3)))
    assert not out.certified
    rep.step(Receive(2, _vote(auths, 2, 3)))
    out = rep.step(Receive(3, _vote(auths, 3, 3)))
    assert [c.seq for c in out.certified] == [3]
    assert [v.replica for v in out.certified[0].votes] == [1, 2, 3]
    assert rep.certified_height == 3
    rep.step(Receive(1, _vote(auths, 1, 3)))
    assert rep.dropped["state-vote-late"] == 1


def test_a_forged_vote_is_evidence_and_never_counts():
    rep, auths = _replica()
    forged = msgspec.structs.replace(_vote(auths, 1, 2), state_root=b"x" * 32)
    out = rep.step(Receive(1, forged))
    assert [e.kind for e in out.evidence] == ["bad-signature"]
    assert len(rep._state_votes) == 0


def test_two_votes_with_different_roots_for_one_seq_is_evidence_first_counts():
    rep, auths = _replica()
    rep.step(Receive(1, _vote(auths, 1, 2)))
    out = rep.step(Receive(1, _vote(auths, 1, 2, state=b"z" * 32)))
    assert [e.kind for e in out.evidence] == ["state-vote-conflict"]
    rep.step(Receive(1, _vote(auths, 1, 2)))
    assert rep.dropped["state-vote-repeat"] == 1
    assert len(rep._state_votes) == 1


def test_votes_beyond_the_horizon_are_dropped_unverified():
    rep, auths = _replica()
    far = rep._state_votes.horizon + 1
    rep.step(Receive(1, _vote(auths, 1, far)))
    assert rep.dropped["state-vote-beyond-horizon"] == 1
    assert len(rep._state_votes) == 0
    rep.step(Receive(1, _vote(auths, 1, far - 1)))
    assert len(rep._state_votes) == 1


def test_one_replica_holds_at_most_max_seqs_votes_and_evicts_only_its_own():
    config = Config(n=4, checkpoint_interval=4, watermark_window=8, state_votes=True)
    table = StateVotes(config)
    signer = FastSigner.from_seed_int(1)
    honest = StateVote(5, H, S, R, 2)
    assert table.add(honest) is None
    for seq in range(1, 3 * table.max_seqs):
        table.add(StateVote(seq, H, S, R, 1, signer.sign(b"%d" % seq)))
    assert len(table) == table.max_seqs + 1
    assert table._votes[5].get(2) == honest


def test_certified_seqs_are_forgotten_a_horizon_later():
    config = Config(n=4, checkpoint_interval=4, watermark_window=8, state_votes=True)
    table = StateVotes(config)
    for seq in range(1, 4 * table.max_seqs):
        for r in range(3):
            table.add(StateVote(seq, H, S, R, r))
        found = table.certificate(seq)
        assert found is not None
        table.certify(seq, found[0])
    assert len(table._certified) <= table.max_seqs
    assert len(table) == 0
    assert table.unwanted(1, 0) == "state-vote-old"


def _recovered(last_executed: int) -> tuple[Replica, list[Authenticator]]:
    """Replica 0 restarted with blocks up to `last_executed` executed, at time 1."""
    signers = [FastSigner.from_seed_int(k) for k in range(4)]
    auths = [Authenticator(DOMAIN, s, FastVerifier(), [x.public_key for x in signers])
             for s in signers]
    config = Config(n=4, checkpoint_interval=4, watermark_window=8, state_votes=True,
                    heartbeat_ms=0)
    rep = Replica(config, 0, auths[0], RecoveredState(last_executed=last_executed))
    rep.step(Tick(1))
    return rep, auths


def test_a_replica_catching_up_far_below_the_certified_height_does_not_vote():
    rep, auths = _recovered(200)
    for r in (1, 2, 3):
        rep.step(Receive(r, _vote(auths, r, 150)))
    assert rep.certified_height == 150
    old = 150 - rep._state_votes.max_seqs
    out = rep.step(Executed(old, H, S, R))
    assert not [s for s in out.send if isinstance(s.message, StateVote)]
    out = rep.step(Executed(old + 1, H, S, R))
    assert [s.message.seq for s in out.send if isinstance(s.message, StateVote)] == [old + 1]


def test_a_replica_that_lost_the_votes_of_a_block_certifies_it_once_the_loss_ends(cluster_cls):
    c = cluster_cls(**SMALL)
    lossy = {"on": True}

    def drop_votes_to_3(sender, to, msg):  # every StateVote to replica 3 is lost meanwhile
        return [] if lossy["on"] and to == 3 and isinstance(msg, StateVote) else None

    c.tamper = drop_votes_to_3
    reqs = [c.request(0, k) for k in range(3)]
    for r in reqs:
        c.submit(r)
    assert c.run_until(lambda: c.all_executed(reqs))
    c.deliver_all()
    assert sorted(_certs(c, 0)) == sorted(c.executed[0])
    assert not _certs(c, 3)  # it heard no vote but its own
    lossy["on"] = False
    sent_before = len(c.sent)
    # no new block: only the resend (3's own vote) and the answers to it can repair it
    assert c.run_until(lambda: sorted(_certs(c, 3)) == sorted(c.executed[3]),
                       timeout_ms=3 * c.config.status_interval_ms)
    votes = [m for m in c.sent[sent_before:] if isinstance(m, StateVote)]
    assert {v.seq for v in votes} == set(c.executed[3])
    assert not c.diverged[3]
    # repaired: nothing more is resent or answered
    quiet_from = len(c.sent)
    c.run_until(lambda: False, timeout_ms=3 * c.config.status_interval_ms)
    assert not [m for m in c.sent[quiet_from:] if isinstance(m, StateVote)]


def test_late_votes_are_answered_at_most_once_a_status_interval_and_only_with_our_own():
    rep, auths = _recovered(5)
    rep.step(Executed(3, H, S, R))  # our own vote for 3 (sent)
    for r in (1, 2):
        rep.step(Receive(r, _vote(auths, r, 3)))
    assert rep.certified_height == 3
    first = rep.step(Receive(3, _vote(auths, 3, 3)))  # late: the usual case, not answered
    assert not first.send
    again = rep.step(Receive(3, _vote(auths, 3, 3)))  # its resend: it lacks the certificate
    assert [(s.to, s.message.replica, s.message.seq) for s in again.send] == [(3, 0, 3)]
    flood = [rep.step(Receive(3, _vote(auths, 3, 3))) for _ in range(50)]
    assert not [s for out in flood for s in out.send]  # within the interval: nothing more
    rep.step(Tick(1 + rep.config.status_interval_ms))
    later = rep.step(Receive(3, _vote(auths, 3, 3)))
    assert [s.to for s in later.send] == [3]
    assert all(len(seqs) <= rep._state_votes.max_seqs for seqs in rep._late_heard.values())
