"""Byzantine strategies are pure, deterministic rewriters of an honest replica's output.

The real replica drives the strategies that need real traffic (silent, equivocate, slow);
rewriters of rarer messages (view-change, new-view, checkpoint) get a scripted inner replica
that returns exactly the output under test.
"""

import msgspec
import pytest

from consensus import (
    Authenticator,
    Checkpoint,
    ClientRequest,
    Config,
    FastSigner,
    FastVerifier,
    NewView,
    Output,
    Prepare,
    PreparedProof,
    PrePrepare,
    Request,
    Send,
    Status,
    Tick,
    ViewChange,
    batch_digest,
    decode,
    sign_request,
)
from consensus.codec import GENESIS_CHAIN_DIGEST
from testnet.adversary import ByzantineReplica, Collusion
from testnet.sim.cluster import default_replica_factory

CFG = Config(n=4)
SIGNERS = [FastSigner.from_seed_int(i) for i in range(4)]
KEYS = [s.public_key for s in SIGNERS]
DOMAIN = b"byz-test"


def _auth(i):
    return Authenticator(DOMAIN, SIGNERS[i], FastVerifier(), KEYS)


def _request(seq=1):
    return sign_request(DOMAIN, FastSigner.from_seed_int(99, b"c"), Request(b"", seq, b"op"))


def _primary_output(strategies, seed=0):
    rid = 0
    inner = default_replica_factory(CFG, rid, _auth(rid), None)
    byz = ByzantineReplica(inner, strategies, _auth(rid), replica_id=rid, config=CFG, seed=seed)
    outs = [byz.step(Tick(0)), byz.step(ClientRequest(_request())), byz.step(Tick(100))]
    return byz, [s for o in outs for s in o.send]


def _pre_prepares(sends):
    return [s for s in sends if isinstance(s.message, PrePrepare)]


def test_silent_sends_nothing():
    _, sends = _primary_output(["silent"])
    assert sends == []


def test_equivocating_primary_shows_different_batches_to_different_replicas():
    _, sends = _primary_output(["equivocate"])
    pps = _pre_prepares(sends)
    assert {s.to for s in pps} == {1, 2, 3}, "every backup hears a pre-prepare"
    assert len({s.message.digest for s in pps}) >= 2
    assert all(_auth(1).verify(s.message) for s in pps), "each version is validly signed"


def test_strategies_are_deterministic_in_their_seed():
    a = _primary_output(["equivocate", "flood"], seed=5)[1]
    b = _primary_output(["equivocate", "flood"], seed=5)[1]
    assert a == b


def test_slow_holds_pre_prepares_until_just_under_the_request_timeout():
    byz, sends = _primary_output(["slow"])
    assert _pre_prepares(sends) == []
    held_until = 100 + int(CFG.timeout_request_ms * 0.9)
    assert _pre_prepares(byz.step(Tick(held_until - 1)).send) == []
    assert _pre_prepares(byz.step(Tick(held_until)).send)


class Scripted:
    """An inner replica that returns the next scripted output."""

    def __init__(self, outputs):
        self.outputs = list(outputs)
        self.view = 1
        self.last_executed = 0

    def step(self, event):
        return self.outputs.pop(0) if self.outputs else Output()


def _wrap(strategies, outputs, rid=1, collusion=None):
    return ByzantineReplica(Scripted(outputs), strategies, _auth(rid), replica_id=rid,
                            config=CFG, collusion=collusion)


def _vc(rid=1, prepared=()):
    return _auth(rid).sign(ViewChange(2, 0, GENESIS_CHAIN_DIGEST, (), prepared, rid))


def test_bad_checkpoint_rewrites_the_digest_and_resigns():
    cp = _auth(1).sign(Checkpoint(4, b"x" * 32, 1))
    out = _wrap(["bad-checkpoint"], [Output(send=[Send(None, cp)])]).step(Tick(1))
    (sent,) = out.send
    assert sent.message.state_digest != cp.state_digest and _auth(0).verify(sent.message)


def test_bad_sync_serves_blocks_whose_certificate_no_longer_verifies():
    from consensus import BlockSync, Commit, CommittedBlock
    from consensus.certificates import verify_committed_block

    req = _request()
    pp = _auth(0).sign(PrePrepare(0, 1, 5, (req,), batch_digest(5, (req,)), 0))
    commits = tuple(_auth(i).sign(Commit(0, 1, pp.digest, i)) for i in range(3))
    good = CommittedBlock(pp, commits)
    assert verify_committed_block(CFG, _auth(0), good) is None
    bs = _auth(1).sign(BlockSync((good,), 1))
    out = _wrap(["bad-sync"], [Output(send=[Send(2, bs)])]).step(Tick(1))
    (sent,) = out.send
    assert _auth(0).verify(sent.message)  # the envelope itself is validly signed
    (forged,) = sent.message.blocks
    assert verify_committed_block(CFG, _auth(0), forged) is not None


def test_fake_view_change_fabricates_certificates_colluders_sign_validly():
    group = Collusion({0: _auth(0), 1: _auth(1)}, seed=3)
    out = _wrap(["fake-view-change"], [Output(send=[Send(None, _vc())])],
                collusion=group).step(Tick(1))
    vc = out.send[0].message
    assert vc.prepared and _auth(2).verify(vc)
    proof = vc.prepared[0]
    assert isinstance(proof, PreparedProof)
    # view 1's primary is replica 1 (a colluder): its pre-prepare verifies; of the backups'
    # prepares only the one by colluder 0 does, the others are forged
    assert _auth(2).verify(proof.pre_prepare)
    valid = [p.replica for p in proof.prepares if _auth(2).verify(p)]
    assert valid == [0] and len(proof.prepares) == 2 * CFG.f
    # a second colluder lies the same way
    other = _wrap(["fake-view-change"], [Output(send=[Send(None, _vc(0))])], rid=0,
                  collusion=group).step(Tick(1)).send[0].message
    assert other.prepared[0].pre_prepare.digest == proof.pre_prepare.digest


def test_equivocating_backup_splits_its_view_change():
    pp = _auth(1).sign(PrePrepare(1, 1, 5, (), batch_digest(5, ()), 1))
    proof = PreparedProof(pp, ())
    out = _wrap(["equivocate"], [Output(send=[Send(None, _vc(prepared=(proof,)))])]).step(
        Tick(1))
    versions = {len(s.message.prepared) for s in out.send}
    assert versions == {0, 1}


def test_invalid_new_view_changes_what_it_signs():
    vcs = tuple(_vc(i) for i in range(3))
    pp = _auth(2).sign(PrePrepare(2, 1, 5, (), batch_digest(5, ()), 2))
    nv = _auth(2).sign(NewView(2, vcs, (pp,), 2))
    for seed in range(6):
        byz = ByzantineReplica(Scripted([Output(send=[Send(None, nv)])]),
                               ["invalid-new-view"], _auth(2), replica_id=2, config=CFG,
                               seed=seed)
        bad = byz.step(Tick(1)).send[0].message
        assert bad != nv and _auth(0).verify(bad)


def test_forge_never_produces_a_valid_signature_for_another_replica():
    prep = _auth(1).sign(Prepare(0, 1, b"d" * 32, 1))
    byz = _wrap(["forge"], [Output(send=[Send(None, prep)]) for _ in range(20)])
    forged = []
    for t in range(20):
        forged += [s.message for s in byz.step(Tick(t)).send if s.message != prep]
    assert forged
    for m in forged:
        if hasattr(m, "replica") and m.replica != 1:
            assert not _auth(0).verify(m), m


def test_flood_sends_undecodable_bytes_on_ticks_only():
    byz = _wrap(["flood"], [])
    sent = [s.message for t in range(40) for s in byz.step(Tick(t)).send]
    assert any(isinstance(m, bytes) for m in sent)
    assert byz.step(ClientRequest(_request())).send == []


def test_wrapper_delegates_replica_properties():
    byz, _ = _primary_output(["silent"])
    assert byz.view == 0 and byz.replica_id == 0
    assert msgspec.structs.asdict(Prepare(0, 0, b"", 0))  # msgspec available for rewriters


# ---------------------------------------------------------------- one validator vs. the honest


def _ticks(strategies, until_ms=2_000, step_ms=10, rid=1):
    byz = _wrap(strategies, [], rid=rid)
    return [s for t in range(0, until_ms, step_ms) for s in byz.step(Tick(t)).send]


def _ints(value):
    if isinstance(value, list):
        return [i for v in value for i in _ints(v)]
    return [value] if isinstance(value, int) and not isinstance(value, bool) else []


def _signed_by(rid, wire_array):
    """True iff the untyped wire array [tag, ..., sig] carries a valid signature by `rid`."""
    body = msgspec.msgpack.encode([*wire_array[:-1], b""])
    return FastVerifier().verify(KEYS[rid], DOMAIN + body, wire_array[-1])


def test_poison_ints_signs_block_sync_view_change_new_view_and_pre_prepare_out_of_range():
    from testnet.adversary import POISON_INTS

    sent = _ticks(["poison-ints"], until_ms=2_000)  # replica 1 is view 1's primary
    assert sent and all(isinstance(s.message, bytes) and s.to is None for s in sent)
    arrays = [msgspec.msgpack.decode(s.message[1:]) for s in sent]
    tags = {a[0] for a in arrays}
    assert {13, 7, 8, 2} <= tags  # BlockSync, ViewChange, NewView, PrePrepare
    assert {3, 4, 5, 9, 10, 12} <= tags  # and votes, checkpoint, forward, status, fetch
    assert all(_signed_by(1, a) for a in arrays), "only the ranges are wrong"
    seen = {v for a in arrays for v in _ints(a) if v in POISON_INTS}
    assert seen == set(POISON_INTS), "every poison value goes out over four rounds"
    for a in arrays:  # digests and signatures keep their lengths
        assert len(a[-1]) == 64


def test_deep_nest_adds_one_deeply_nested_trailing_element_to_valid_messages():
    from testnet.adversary import DeepNest

    byz = _wrap([DeepNest(depth=5_000)], [], rid=2)
    sent = [s.message for t in range(0, 1_200, 100) for s in byz.step(Tick(t)).send]
    assert len(sent) >= 2 and all(isinstance(m, bytes) for m in sent)
    for i, m in enumerate(sent[:2]):
        nested = (b"\x81\xc0" if i % 2 else b"\x91") * 5_000 + b"\xc0"
        assert m.endswith(nested)
        head = m[1]
        trimmed = m[:1] + bytes([head - 1]) + m[2: len(m) - len(nested)]
        status = decode(trimmed)  # without the extra element: a validly signed STATUS
        assert isinstance(status, Status) and _auth(0).verify(status)


def test_checkpoint_flood_sends_signed_votes_for_far_future_seqs_and_withholds_its_own():
    from consensus.checkpoint import CheckpointVotes

    own = _auth(1).sign(Checkpoint(4, b"x" * 32, 1))
    byz = _wrap(["checkpoint-flood"], [Output(send=[Send(None, own)])])
    cps = [s.message for s in byz.step(Tick(0)).send]
    assert own not in cps
    assert len(cps) > CheckpointVotes(CFG).max_seqs, "more seqs than the table holds"
    assert all(isinstance(c, Checkpoint) and _auth(0).verify(c) for c in cps)
    assert all(c.seq % CFG.checkpoint_interval == 0 and c.seq > CFG.watermark_window
               for c in cps)
    again = [s.message for s in byz.step(Tick(600)).send]
    assert again == cps, "repeated, each seq with the same digest (no equivocation)"


def test_bloat_sends_max_size_validly_signed_pre_prepares_for_future_slots():
    from consensus import encode
    from consensus.codec import MAX_MESSAGE_BYTES

    byz = _wrap(["bloat"], [])
    pps = [s.message for t in range(0, 750, 250) for s in byz.step(Tick(t)).send]
    assert len(pps) == 3 and all(isinstance(p, PrePrepare) for p in pps)
    assert {p.view for p in pps} == {1, 2, 3}  # this view and the next two
    for p in pps:
        size = len(encode(p))
        assert MAX_MESSAGE_BYTES - 256 * 1024 < size <= MAX_MESSAGE_BYTES
        assert _auth(0).verify(p) and p.digest == batch_digest(p.time_ms, p.requests)
        assert all(len(r.op) <= CFG.max_request_bytes for r in p.requests)
        assert p.seq > CFG.watermark_window
    assert all(_auth(0).verify_request(r) for r in pps[0].requests[:3])
    assert len({(p.view, p.seq) for p in pps}) == 3, "a new slot each time"


def test_forward_junk_relays_badly_signed_requests_under_real_keys():
    from consensus.normal import check_request

    byz = _wrap(["forward-junk:300"], [])
    fwds = [s.message for t in range(0, 200, 50) for s in byz.step(Tick(t)).send]
    assert len(fwds) == 4 and all(_auth(0).verify(f) for f in fwds)
    reqs = [r for f in fwds for r in f.requests]
    assert len(reqs) == 1_200 and len({r.request_seq for r in reqs}) == 1_200
    assert {r.client_id for r in reqs} <= set(KEYS)
    assert all(check_request(CFG, _auth(0), r) == "bad client signature" for r in reqs[:50])


def test_new_strategies_parse_with_parameters_and_ask_for_ticks():
    from testnet.adversary import parse_strategy

    for spec in ("poison-ints:250", "deep-nest:2000", "checkpoint-flood:40", "bloat:512",
                 "forward-junk:100", "bloat:512:100", "deep-nest:2000:50"):
        assert repr(parse_strategy(spec)) == spec
    assert parse_strategy("forward-junk:100:20").every_ms == 20
    for bad in ("poison-ints:1:2", "bloat:0", "bloat:8:0", "slow:1:2"):
        with pytest.raises(ValueError):
            parse_strategy(bad)
    out = _wrap(["forward-junk:1"], []).step(Tick(0))
    assert out.next_deadline_ms == 50, "the shell must tick it at its own rate"
