"""The state tree's depth bound under consensus (SimOptions.authenticated_state): clients
writing nested keys (x, xx, xxx, ...) next to honest puts; every honest replica refuses the
same txs with DEPTH_LIMIT and reaches the same state roots."""

from __future__ import annotations

import pytest

import storage.merkle_depth
from bftnode.app import ops as O
from bftnode.app.errors import DEPTH_LIMIT
from consensus import request_digest
from testnet.sim.cluster import SimCluster, SimOptions


def _op(i: int) -> bytes:
    return O.put(b"x" * (i + 1), b"v") if i % 2 else O.put(b"honest/%d" % i, b"v")


@pytest.mark.parametrize("seed", [1, 2])
def test_replicas_refuse_the_same_deep_inserts_and_agree_on_roots(seed, monkeypatch):
    monkeypatch.setattr(storage.merkle_depth, "MAX_STATE_DEPTH", 24)
    cluster = SimCluster(SimOptions(n=4, requests=80, authenticated_state=True,
                                    request_op=_op), seed)
    res = cluster.run()
    assert res.ok, res.failure_text()
    stores = [node.store for node in cluster.nodes if node.honest]
    top = min(s.height() for s in stores)
    codes = []
    for s in stores:
        per = {}
        for b in s.blocks(1, top + 1):
            for r in b.txs:
                per[r.op] = s.tx(request_digest(r)).code
        codes.append(per)
    assert all(c == codes[0] for c in codes)
    assert len(codes[0]) == 80
    honest = [c for op, c in codes[0].items() if b"honest/" in op]
    nested = [c for op, c in codes[0].items() if b"honest/" not in op]
    assert set(honest) == {0}
    assert DEPTH_LIMIT in nested and 0 in nested
    for h in range(max(1, top - 99), top + 1):
        assert len({s.state_root(h) for s in stores}) == 1, h
    assert all(s.auth.height(top) <= 24 for s in stores)
