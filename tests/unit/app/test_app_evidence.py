"""The `evidence` op: evidence transactions that validators commit (consensus/evidence.py) are
ordinary txs to the application. It records them with a deterministic result, refuses those
not signed by a validator key, and never changes KV state; a proof kind (consensus executes
only valid, first proofs) writes the conviction record `x/<accused>` that snapshots carry."""

from __future__ import annotations

from bftnode.app import KVApplication, MemoryState, ops
from bftnode.app.errors import PERMISSION
from consensus import FastSigner, Request, parse_evidence_op
from consensus.auth import Authenticator, FastVerifier
from consensus.evidence import evidence_request

VALIDATORS = [FastSigner.from_seed_int(i) for i in range(4)]
KEYS = [s.public_key for s in VALIDATORS]


def _evidence_tx(filer: int = 1, accused: int = 0) -> Request:
    auth = Authenticator(b"chain", VALIDATORS[filer], FastVerifier(), KEYS)
    return evidence_request(auth, accused, "equivocation", "two pre-prepares", b"\x92\x01\x02", 7)


def test_the_consensus_evidence_op_is_a_valid_app_op():
    tx = _evidence_tx()
    op = ops.decode_op(tx.op)
    assert isinstance(op, ops.Evidence)
    assert (op.accused, op.kind, op.proof) == (0, "equivocation", b"\x92\x01\x02")
    assert parse_evidence_op(tx.op).accused == 0  # one format on both sides
    assert KVApplication().check_tx(tx.op) is None


def test_a_validator_signed_evidence_tx_is_recorded_without_touching_kv_state():
    app, st = KVApplication(validators=KEYS), MemoryState()
    st.apply(app.execute_block(st, 1, 10, [Request(b"c" * 32, 1, ops.put(b"k", b"v"))]).writes)
    before = dict(st.iterate(b""))
    eff = app.execute_block(st, 2, 20, [_evidence_tx()])
    code, raw = eff.results[0]
    assert code == 0
    assert ops.decode_result(raw) == {
        "evidence": "recorded", "accused": 0, "kind": "equivocation", "revision": 1,
    }
    empty = app.execute_block(st, 2, 20, [])  # what any block writes (height, time, revision)
    conviction = (b"x/" + bytes(8), (2).to_bytes(8, "big") + b"equivocation")
    assert set(eff.writes) == set(empty.writes) | {conviction} and eff.events == ()
    st.apply(eff.writes)
    after = dict(st.iterate(b""))
    changed = {k for k in after if before.get(k) != after[k]}
    assert changed == {b"m/height", b"m/time", b"x/" + bytes(8)}  # no KV key, no revision
    assert app.convictions(st) == [(0, 2, "equivocation")]
    # a second proof against the same replica keeps the first conviction
    again = app.execute_block(st, 3, 30, [_evidence_tx(filer=2)])
    assert conviction[0] not in dict(again.writes)


def test_evidence_from_a_non_validator_fails_with_permission_denied():
    app, st = KVApplication(validators=KEYS), MemoryState()
    tx = Request(b"x" * 32, 1, _evidence_tx().op)
    eff = app.execute_block(st, 1, 10, [tx])
    code, raw = eff.results[0]
    assert code == PERMISSION and "validator" in ops.decode_result(raw)["error"]
