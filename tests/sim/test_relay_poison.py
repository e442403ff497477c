"""One Byzantine validator relays client-signed requests whose op bytes no client library
builds (issue 35, `relay-poison`): a map nested 10,000 deep under an unknown field, huge
integers, wrong types, unknown ops, bytes that are not msgpack. They pass every check before
ordering (their client signatures are valid), so the honest replicas order them; executing
them must give each an error result, the same on every replica, and stop nobody.

The simulator checks the ordering side (honest replicas never raise, safety and liveness hold,
the poison requests are ordered and executed by every honest replica, primary or backup
relaying them); the application side runs the same op bytes through `KVApplication`.
Seeded; the seed is in every failure message.
"""

from __future__ import annotations

import pytest

from bftnode.app import KVApplication, MemoryState, ops
from consensus import Request, request_digest, sign_request
from testnet.adversary import RelayPoison, parse_strategy, poison_ops, relay_poison_signer
from testnet.sim import SimOptions
from testnet.sim.cluster import SimCluster

SEED = 35
MAX_REQUEST_BYTES = 64 * 1024  # consensus.Config's default


def _verdict(res) -> str:
    f = res.figures
    return (f"seed {res.seed}: safety={res.safety} liveness={res.liveness} "
            f"honest_raised={f['honest_raised']} {f['honest_exceptions'][:2]} "
            f"view_changes={f['view_changes']} committed={res.committed}\n"
            + "\n".join(res.trace[-10:]))


@pytest.mark.parametrize("n", [4, 7])
@pytest.mark.parametrize("who", ["primary", "backup"])
def test_relayed_poison_is_ordered_and_executed_by_every_honest_replica(n, who):
    rid = 0 if who == "primary" else n - 1
    # the rate floor raised: this judges how poison executes, not admission (a round of ~16
    # near-64-KB ops is over the default 72 KiB/s floor)
    cluster = SimCluster(SimOptions(n=n, byzantine={rid: ["relay-poison:10000:250"]},
                                    source_rate_bytes=8 * 1024 * 1024), SEED)
    res = cluster.run()
    assert res.figures["honest_raised"] == "ok", _verdict(res)
    assert res.safety == "ok", _verdict(res)
    assert res.liveness == "ok", _verdict(res)
    poisoner = relay_poison_signer(rid, fast=True).public_key
    executed = [{seq for cid, seq in node.executed if cid == poisoner}
                for node in cluster.nodes if node.honest]
    assert all(executed), f"a replica executed no poison request: {executed}\n{_verdict(res)}"
    # the first round (one request per variant) is ordered everywhere
    first = set(range(1, len(poison_ops(10_000, MAX_REQUEST_BYTES)) + 1))
    assert all(first <= e for e in executed), _verdict(res)


def test_every_poison_op_is_refused_before_ordering_and_fails_at_execution():
    strategy = parse_strategy("relay-poison")
    assert isinstance(strategy, RelayPoison) and strategy.depth == 10_000
    variants = poison_ops(strategy.depth, MAX_REQUEST_BYTES)
    names = {name for name, _ in variants}
    assert {"deep-map", "deep-map-before-tag", "huge-revision", "wrong-types",
            "unknown-op", "many-items"} <= names, names
    deep = dict(variants)["deep-map"]
    assert deep.count(b"\x81\xc0") >= 10_000  # a map nested 10,000 deep
    signer = relay_poison_signer(3)
    reqs = strategy.round_requests(b"chain", signer, 0, MAX_REQUEST_BYTES)
    assert [r.request_seq for r in reqs] == list(range(1, len(variants) + 1))
    assert all(len(r.op) <= MAX_REQUEST_BYTES for r in reqs)
    app = KVApplication()
    for name, op in variants:
        with pytest.raises(ops.OpError):
            ops.decode_op(op)
        assert app.check_tx(op), name  # the RPC edge refuses them: only a relay orders them
    valid = sign_request(b"chain", signer, Request(b"", 999, ops.put(b"after", b"ok")))
    effects = app.execute_block(MemoryState(), 1, 1_000, [*reqs, valid])
    codes = {name: code for (name, _), (code, _) in zip(variants, effects.results, strict=False)}
    assert all(code == 1 for code in codes.values()), codes  # bad_op, never internal_error
    assert effects.results[-1][0] == 0  # the block goes on: the next tx executes
    again = app.execute_block(MemoryState(), 1, 1_000, [*reqs, valid])
    assert again == effects  # deterministic: every replica gets the same results
    assert len({request_digest(r) for r in reqs}) == len(reqs)
