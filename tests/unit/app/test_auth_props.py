"""Properties of the permission checks: coverage by a union of grants agrees with a brute-force
check of every key where a gap could start, and random ops from permitted/unpermitted clients never apply a
refused op and replay to the same state."""

from __future__ import annotations

import itertools

from app_chain import Chain
from hypothesis import given, settings
from hypothesis import strategies as st
from op_strategies import op_bytes

from bftnode.app import KVApplication, MemoryState, ops
from bftnode.app.auth import WRITE, _covered
from bftnode.app.auth_ops import prefix_end
from bftnode.app.errors import INTERNAL, PERMISSION
from consensus import Request

ALPHABET = [b"a", b"b", b"\xff"]
KEYS = [b"".join(p) for n in range(0, 4) for p in itertools.product(ALPHABET, repeat=n)]
NONEMPTY = KEYS[1:]
ADMIN, BOB = b"\x01" * 32, b"\x02" * 32


def _interval(key: bytes, kind: str | bytes) -> tuple[bytes, bytes | None]:
    if isinstance(kind, bytes):
        return key, kind  # [key, kind): empty when kind <= key
    if kind == "key":
        return key, key + b"\x00"
    if kind == "prefix":
        return key, prefix_end(key)
    return key, None  # every key >= key


def _inside(k: bytes, iv: tuple[bytes, bytes | None]) -> bool:
    return iv[0] <= k and (iv[1] is None or k < iv[1])


spans = st.tuples(st.sampled_from(KEYS), st.sampled_from(["key", "prefix", "from"]))
ranges = st.tuples(st.sampled_from(KEYS), st.sampled_from(NONEMPTY))  # [key, end), maybe empty


@settings(max_examples=300, deadline=None)
@given(st.lists(spans | ranges, max_size=6), spans | ranges)
def test_coverage_by_a_union_of_grants_matches_brute_force(grants, want):
    perms = [(WRITE, *_interval(k, kind)) for k, kind in grants]
    target = _interval(*want)
    # a gap, if any, starts at the target's start or at some grant's end: check those keys
    candidates = [target[0]] + [p[2] for p in perms if p[2] is not None]
    brute = all(any(_inside(k, p[1:]) for p in perms)
                for k in candidates if _inside(k, target))
    assert _covered(perms, WRITE, *target) == brute


write_ops = st.one_of(
    st.builds(lambda k: ops.put(k, b"v"), st.sampled_from(NONEMPTY)),
    st.builds(lambda k, p: ops.delete(k, prefix=p), st.sampled_from(NONEMPTY), st.booleans()),
    st.builds(lambda a, b: ops.txn(success=[ops.put_op(a, b"t"), ops.delete_op(b)]),
              st.sampled_from(NONEMPTY), st.sampled_from(NONEMPTY)),
)


@settings(max_examples=60, deadline=None)
@given(st.lists(spans, max_size=3), st.lists(write_ops, min_size=1, max_size=8))
def test_refused_ops_never_apply_and_the_chain_replays(grants, txs):
    params = {"admins": [ADMIN.hex()], "auth_enabled": True}
    chain = Chain(app=KVApplication(params=params))
    setup = [ops.auth_role_add("r")] + [
        ops.auth_grant("r", "write", k, prefix=kind == "prefix",
                       range_end=b"\x00" if kind == "from" else b"")
        for k, kind in grants] + [ops.auth_bind(BOB, "r")]
    chain.block(*[(ADMIN, op) for op in setup], (ADMIN, ops.put(b"ab", b"seed")))
    for op in txs:
        before = [kv for kv in chain.state.items() if not kv[0].startswith(b"m/")]
        code, _ = chain.block((BOB, op)).results[0]
        after = [kv for kv in chain.state.items() if not kv[0].startswith(b"m/")]
        assert code in (0, PERMISSION)
        if code == PERMISSION:
            assert after == before
    state, app = MemoryState(), KVApplication(params=params)
    for height, time_ms, reqs in chain.log:
        state.apply(app.execute_block(state, height, time_ms, reqs).writes)
    assert state.items() == chain.state.items()


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([ADMIN, BOB, b"\x03" * 32]), op_bytes()), min_size=1,
                max_size=6))
def test_any_op_bytes_under_checks_run_alike_and_never_reach_the_guard(txs):
    params = {"admins": [ADMIN.hex()], "auth_enabled": True}
    base = Chain(app=KVApplication(params=params))
    base.block((ADMIN, ops.auth_role_add("r")), (ADMIN, ops.auth_bind(BOB, "r")),
               (ADMIN, ops.auth_grant("r", "readwrite", b"k", prefix=True)),
               (ADMIN, ops.put(b"key/1", b"v")), (BOB, ops.lease_grant(ttl_ms=60_000)))
    reqs = [Request(c, i + 100, op) for i, (c, op) in enumerate(txs)]
    one, two = (KVApplication(params=params).execute_block(base.state, base.height + 1,
                                                           base.time_ms + 1, reqs)
                for _ in range(2))
    assert one == two
    assert all(code != INTERNAL for code, _ in one.results)
