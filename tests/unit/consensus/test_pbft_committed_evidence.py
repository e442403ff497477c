"""Committed evidence (issue 7): the CONFLICT proof exchange, validator-signed evidence
transactions, convictions as a deterministic function of the agreed log, and the primary
rotation skipping convicted replicas."""

from consensus import (
    Conflict,
    Conviction,
    Forward,
    NewView,
    Prepare,
    PrePrepare,
    Receive,
    RecoveredState,
    Replica,
    Request,
    Tick,
    batch_digest,
    parse_evidence_op,
    sign_request,
)
from consensus.bodies import header
from consensus.evidence import encode_proof, evidence_request, verify_proof
from consensus.phases.evidence import CONFLICTS_PER_INTERVAL
from testnet.adversary import ByzantineReplica
from testnet.checkers import find_equivocations

FAST = {"timeout_request_ms": 200, "timeout_view_change_ms": 200, "status_interval_ms": 50}


def _byzantine(c, i: int, *strategies: str) -> None:
    c.replicas[i] = ByzantineReplica(c.replicas[i], list(strategies), c.auth(i), seed=7)


def _convicted_on(c, who: int, replicas) -> bool:
    return all(who in c.replicas[i].convicted for i in replicas)


def _proof_against(c, accused: int, view: int = 0, seq: int = 50, forge: bool = False) -> bytes:
    """Two pre-prepares for one slot signed by `accused` (or, with forge, by someone else)."""
    signer = c.auth((accused + 1) % c.config.n if forge else accused)
    pps = [
        signer.sign(PrePrepare(view, seq, t, (), batch_digest(t, ()), accused)) for t in (1, 2)
    ]
    return encode_proof(*pps)


def _evidence_ops(c, i: int, accused: int) -> list[int]:
    """Heights of replica i's executed blocks holding a validator-signed evidence tx."""
    found = []
    for seq, ex in sorted(c.executed[i].items()):
        for r in ex.requests:
            op = parse_evidence_op(r.op)
            if r.client_id in c.keys and op is not None and op.accused == accused:
                found.append(seq)
    return found


def test_proof_exchange_convicts_a_lone_equivocating_primary_everywhere_at_one_height(
    cluster_cls,
):
    c = cluster_cls(**FAST)
    _byzantine(c, 0, "equivocate")  # each backup gets its own batch: nothing prepares
    reqs = [c.request(0, k) for k in range(6)]
    for k, r in enumerate(reqs):
        c.submit(r, to=1 + k % 3)
    honest = [1, 2, 3]
    assert c.run_until(
        lambda: c.all_executed(reqs, honest) and _convicted_on(c, 0, honest), timeout_ms=10_000
    )
    convictions = {c.replicas[i].convicted[0] for i in honest}
    assert len(convictions) == 1, convictions
    height, kind = convictions.pop()
    assert kind == "equivocation"
    assert height in _evidence_ops(c, 1, 0)  # the evidence tx is an ordinary tx in that block
    # the backups learned of the equivocation by showing each other their pre-prepares
    assert any(isinstance(m, Conflict) for m in c.sent)
    assert all(c.replicas[i].primary != 0 for i in honest)
    c.assert_agreement()
    assert [p for p in find_equivocations(c.sent) if p[0].replica != 0] == []


def test_a_conflict_with_the_primarys_other_pre_prepare_is_a_proof(cluster_cls):
    c = cluster_cls()
    a0 = c.auth(0)
    r1, r2 = c.request(0, 1), c.request(0, 2)
    pp1 = a0.sign(PrePrepare(0, 1, 0, (r1,), batch_digest(0, (r1,)), 0))
    pp2 = a0.sign(PrePrepare(0, 1, 0, (r2,), batch_digest(0, (r2,)), 0))
    backup = c.replicas[1]
    backup.step(Receive(0, pp1))
    # replica 2 voted for pp2: replica 1 shows it pp1, once
    out = backup.step(Receive(2, c.auth(2).sign(Prepare(0, 1, pp2.digest, 2))))
    shown = [s for s in out.send if isinstance(s.message, Conflict)]
    assert [(s.to, s.message.pre_prepare) for s in shown] == [(2, header(pp1))]
    again = backup.step(Receive(2, c.auth(2).sign(Prepare(0, 1, pp2.digest, 2))))
    assert not [s for s in again.send if isinstance(s.message, Conflict)]
    # replica 2 accepted pp2; replica 1's CONFLICT gives it the proof
    other = c.replicas[2]
    other.step(Receive(0, pp2))
    out = other.step(Receive(1, shown[0].message))
    assert [(e.kind, e.replica) for e in out.evidence] == [("equivocation", 0)]
    fwd = [s.message for s in out.send if isinstance(s.message, Forward)]
    assert len(fwd) == 1 and len(fwd[0].requests) == 1
    tx = fwd[0].requests[0]
    assert tx.client_id == c.keys[2]  # signed with replica 2's validator key
    op = parse_evidence_op(tx.op)
    assert (op.accused, op.kind) == (0, "equivocation")
    assert verify_proof(c.auth(3), 0, op.proof) is None  # any replica accepts the proof


def test_a_conflict_with_a_forged_pre_prepare_is_evidence_against_its_sender(cluster_cls):
    c = cluster_cls()
    r1, r2 = c.request(0, 1), c.request(0, 2)
    pp1 = c.auth(0).sign(PrePrepare(0, 1, 0, (r1,), batch_digest(0, (r1,)), 0))
    forged = c.auth(2).sign(PrePrepare(0, 1, 0, (r2,), batch_digest(0, (r2,)), 0))
    backup = c.replicas[1]
    backup.step(Receive(0, pp1))
    out = backup.step(Receive(2, c.auth(2).sign(Conflict(forged, 2))))
    assert [(e.kind, e.replica) for e in out.evidence] == [("bad-conflict", 2)]
    assert 0 not in backup.convicted


def test_conflicts_to_one_peer_are_budgeted(cluster_cls):
    c = cluster_cls()
    backup = c.replicas[1]
    a0, a2 = c.auth(0), c.auth(2)
    sent = 0
    for seq in range(1, 40):
        pp = a0.sign(PrePrepare(0, seq, 0, (), batch_digest(0, ()), 0))
        backup.step(Receive(0, pp))
        junk = a2.sign(Prepare(0, seq, bytes([seq]) * 32, 2))  # a peer voting junk everywhere
        out = backup.step(Receive(2, junk))
        sent += sum(isinstance(s.message, Conflict) for s in out.send)
    assert sent == CONFLICTS_PER_INTERVAL
    assert backup.dropped["conflict-rate-limited"] > 0


def _commit_evidence(c, proof: bytes, accused: int = 0, filer: int = 1):
    tx = evidence_request(c.auth(filer), accused, "equivocation", "test", proof, 1)
    c.submit(tx, to=filer)
    return tx


def test_convicting_the_current_primary_starts_a_view_change_at_once(cluster_cls):
    c = cluster_cls(**FAST)
    tx = _commit_evidence(c, _proof_against(c, 0))
    # well before any request timer (200 ms) could fire
    assert c.run_until(lambda: c.all_executed([tx]), timeout_ms=20, dt=1)
    assert all(c.replicas[i].convicted == c.replicas[0].convicted for i in range(4))
    (height, kind), = c.replicas[1].convicted.values()
    assert kind == "equivocation" and height >= 1
    assert all(c.replicas[i].view == 1 for i in range(4))
    req = c.request(0, 1)
    c.submit(req, to=2)
    assert c.run_until(lambda: c.all_executed([req]), timeout_ms=2_000)
    assert all(c.replicas[i].view == 1 and c.replicas[i].primary == 1 for i in range(4))
    c.assert_agreement()


def test_a_forged_proof_is_refused_before_ordering_and_convicts_nobody(cluster_cls):
    c = cluster_cls(**FAST)
    tx = _commit_evidence(c, _proof_against(c, 2, forge=True), accused=2)
    refused = [r for r in c.replies[1] if getattr(r, "request", None) == tx]
    assert refused and refused[0].reason.startswith("evidence proof:")
    assert not c.run_until(lambda: c.all_executed([tx]), timeout_ms=1_000)
    assert all(c.replicas[i].convicted == {} for i in range(4))


def test_evidence_that_does_not_prove_itself_is_refused(cluster_cls):
    from consensus.evidence import check_evidence

    c = cluster_cls(**FAST)
    good = _proof_against(c, 2)
    cases = {
        "a report": evidence_request(c.auth(1), 2, "bad-signature", "r", b"x" * 50_000, 1),
        "random proof": evidence_request(c.auth(1), 2, "equivocation", "r", b"\x00" * 500, 2),
        "not a validator": sign_request(
            b"test-chain", c.client(5),
            Request(b"", 1, evidence_request(c.auth(1), 2, "equivocation", "r", good, 3).op)),
        "accused out of range": evidence_request(c.auth(1), 9, "equivocation", "r", good, 4),
    }
    for name, tx in cases.items():
        assert check_evidence(c.auth(0), 4, tx) is not None, name
    assert check_evidence(c.auth(0), 4, evidence_request(c.auth(1), 2, "equivocation", "r",
                                                          good, 5)) is None


def test_the_false_evidence_strategy_convicts_nobody(cluster_cls):
    c = cluster_cls(**FAST)
    _byzantine(c, 3, "false-evidence")
    reqs = [c.request(0, k) for k in range(3)]
    for r in reqs:
        c.submit(r, to=1)
    assert c.run_until(lambda: c.all_executed(reqs, [0, 1, 2]), timeout_ms=5_000)
    c.tick(1_000)
    # its fake proofs are refused before ordering: nothing recorded, nobody convicted
    assert not any(_evidence_ops(c, i, j) for i in (0, 1, 2) for j in (0, 1, 2))
    assert all(c.replicas[i].convicted == {} for i in range(4))
    assert all(c.replicas[i].view == 0 for i in range(3))


def test_a_restarted_replica_keeps_its_convictions(cluster_cls):
    c = cluster_cls(**FAST)
    tx = _commit_evidence(c, _proof_against(c, 0))
    assert c.run_until(lambda: c.all_executed([tx]) and c.replicas[2].view == 1, timeout_ms=500)
    before = c.replicas[2].convicted
    c.crash(2)
    c.restart(2)
    assert c.replicas[2].convicted == before
    assert c.replicas[2].health()["convicted"] == {0: {"height": before[0][0],
                                                       "kind": "equivocation"}}


def _restored_cluster(cluster_cls, view: int, convicted: tuple[int, ...]):
    c = cluster_cls(**FAST)
    rs = RecoveredState(view=view, convicted=tuple(
        Conviction(r, 0, "equivocation") for r in convicted))
    c.replicas = [Replica(c.config, i, c.auth(i), rs) for i in range(4)]
    return c


def test_view_changes_skip_a_convicted_primary(cluster_cls):
    c = _restored_cluster(cluster_cls, view=3, convicted=(0,))
    c.crash(3)  # the primary of view 3 is silent: the next view, 4, belongs to convicted 0
    req = c.request(0, 1)
    c.submit(req, to=1)
    assert c.run_until(lambda: c.all_executed([req]), timeout_ms=5_000)
    assert {c.replicas[i].view for i in (0, 1, 2)} == {5}
    assert all(c.replicas[i].primary == 1 for i in (0, 1, 2))
    assert c.replicas[1].health()["skipped_in_rotation"] == [0]


def test_a_new_view_from_a_convicted_primary_is_refused(cluster_cls):
    c = _restored_cluster(cluster_cls, view=3, convicted=(0,))
    r = c.replicas[1]
    before = r.view
    nv = c.auth(0).sign(NewView(4, (), (), 0))
    r.step(Receive(0, nv))
    assert r.view == before
    assert r.dropped["new-view-from-convicted-primary"] == 1


def test_more_than_f_convictions_stop_the_skipping(cluster_cls):
    c = _restored_cluster(cluster_cls, view=0, convicted=(0, 1))
    for i in range(4):
        c.step(i, Tick(1))
    # keys are compromised: the rotation no longer skips anyone (replica 0 stays primary)
    assert all(c.replicas[i].view == 0 and not c.replicas[i].in_view_change for i in range(4))
    assert "compromised" in c.replicas[2].health()["why"]
    req = c.request(0, 1)
    c.submit(req, to=0)
    assert c.run_until(lambda: c.all_executed([req]), timeout_ms=1_000)


def _filed(out) -> list:
    """Evidence txs relayed in this output (validator-signed evidence ops)."""
    return [parse_evidence_op(r.op) for s in out.send if isinstance(s.message, Forward)
            for r in s.message.requests if parse_evidence_op(r.op) is not None]


def test_one_proof_per_accused_and_reports_stay_off_the_ledger(cluster_cls):
    c = cluster_cls()
    backup, a0 = c.replicas[1], c.auth(0)
    filed = []
    for seq in (1, 2, 3):  # the primary equivocates at three slots
        for t in (0, 1):
            pp = a0.sign(PrePrepare(0, seq, t, (), batch_digest(t, ()), 0))
            filed += _filed(backup.step(Receive(0, pp)))
    assert [(op.accused, op.kind) for op in filed] == [(0, "equivocation")]
    # replica 2 sends messages with broken signatures: evidence for the logs, none filed
    reports, local = [], []
    for seq in range(1, 6):
        bad = c.auth(2).sign(Prepare(0, seq, bytes(32), 2))
        out = backup.step(Receive(2, type(bad)(0, seq, bytes(32), 2, b"x" * 64)))
        reports += _filed(out)
        local += [e.kind for e in out.evidence]
    assert reports == [] and "bad-signature" in local
    assert backup.convicted == {}  # filing is not convicting: only executed proofs convict
