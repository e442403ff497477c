"""The application gives identical effects over the real LevelDB-backed StateReader
(storage.ledger.KVStateReader on plyvel in tmp_path) as over MemoryState, and the Overlay
agrees with a plain dict model."""

from __future__ import annotations

import random
from collections.abc import Iterator

import plyvel
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bftnode.app import KVApplication, MemoryState, ops, quotas
from bftnode.app.errors import INTERNAL, PERMISSION, QUOTA
from bftnode.app.overlay import Overlay
from consensus import Request
from storage.ledger import KVStateReader


class _Plyvel:
    """storage.ledger.KVReader over a plyvel DB (start <= key < stop)."""

    def __init__(self, db: plyvel.DB) -> None:
        self.db = db

    def get(self, key: bytes) -> bytes | None:
        return self.db.get(key)

    def items(self, start: bytes, stop: bytes | None, reverse: bool = False
              ) -> Iterator[tuple[bytes, bytes]]:
        with self.db.iterator(start=start, stop=stop, reverse=reverse) as it:
            yield from it


def _random_op(rng: random.Random, leases: list[int], tokens: dict) -> tuple[bytes, bytes]:
    client = rng.choice([b"A", b"B"])
    key = rng.choice([b"a", b"a\x00", b"ab", b"b", b"c\x00\xff"])
    lease = rng.choice(leases) if leases and rng.random() < 0.8 else 77
    choice = rng.randrange(11)
    op = [
        lambda: ops.put(key, bytes([rng.randrange(256)]), lease=lease if rng.random() < .3 else 0),
        lambda: ops.delete(key, prefix=rng.random() < 0.3),
        lambda: ops.range_(b"a", prefix=True, revision=rng.randrange(0, 30)),
        lambda: ops.range_(b"a", range_end=b"b\x01", revision=rng.randrange(0, 30)),
        lambda: ops.txn([ops.compare(key, "version", ">", rng.randrange(3))],
                        [ops.put_op(key, b"t")], [ops.delete_op(key)]),
        lambda: ops.lease_grant(ttl_ms=rng.randrange(100, 3000)),
        lambda: ops.lease_keepalive(lease),
        lambda: ops.lock_acquire(b"L", lease),
        lambda: ops.lock_release(b"L", tokens.get("L", 1)),
        lambda: ops.compact(rng.randrange(1, 40)),
        lambda: ops.lease_revoke(lease),
    ][choice]()
    return client, op


@pytest.mark.integration
def _run_blocks(tmp_path, apps, make_op, seed: int, per_block: int, first=(),
                after=None) -> list:
    """300 blocks of `make_op` txs (plus `first` in block 1), each executed by `apps[0]` on real
    plyvel and by `apps[1]` in memory: equal results every block and equal state at the end
    (`after(mem)` runs after each block). The results of every block, for more checks."""
    db = plyvel.DB(str(tmp_path / "state"), create_if_missing=True)
    try:
        disk = KVStateReader(_Plyvel(db), prefix=b"")
        mem = MemoryState()
        rng = random.Random(seed)
        leases: list[int] = []
        tokens: dict = {}
        time_ms, seq, results = 1000, 0, []
        for height in range(1, 301):
            time_ms += rng.choice([50, 100, 400, 1200])
            reqs = list(first) if height == 1 else []
            seq += len(reqs)
            for _ in range(rng.randrange(0, per_block)):
                seq += 1
                client, op = make_op(rng, leases, tokens)
                reqs.append(Request(client, seq, op))
            on_disk = apps[0].execute_block(disk, height, time_ms, reqs)
            in_mem = apps[1].execute_block(mem, height, time_ms, reqs)
            assert on_disk == in_mem, f"block {height} differs"
            with db.write_batch(sync=False) as wb:
                for k, v in on_disk.writes:
                    if v is None:
                        wb.delete(k)
                    else:
                        wb.put(k, v)
            mem.apply(in_mem.writes)
            for e in on_disk.events:
                if e.kind == "lease_granted":
                    leases.append(e.lease)
                if e.kind == "lock_granted":
                    tokens[b"E" + e.key if e.scope == "election" else "L"] = e.token
            results += on_disk.results
            if after is not None:
                after(mem)
        assert list(db.iterator()) == mem.items()
        return results
    finally:
        db.close()


def test_identical_effects_on_leveldb_and_in_memory(tmp_path):
    app = KVApplication()
    results = _run_blocks(tmp_path, (app, app), _random_op, 20240601, 6)
    assert sum(1 for code, _ in results if code == 0) > 200  # a good share of ~750 txs did work


ADMIN = b"\x01" * 32
_NAMES = [b"a", b"a\x00", b"ab", b"b", b"c\x00\xff"]


def _hostile_op(rng: random.Random, leases: list[int], tokens: dict) -> tuple[bytes, bytes]:
    """Permission, quota and election ops mixed into the KV ops, from admin and others."""
    if rng.random() < 0.6:
        client, op = _random_op(rng, leases, tokens)
        return rng.choice([client, b"B" * 32, b"C" * 32]), op
    key, role = rng.choice(_NAMES), rng.choice(["r1", "r2"])
    lease = rng.choice(leases) if leases else 77
    kind = rng.randrange(9)
    if kind < 4:  # admin: roles, grants on keys, prefixes and ranges (empty, "\0"), bindings
        end = rng.choice([b"", b"\x00", b"b", b"a"])
        return ADMIN, rng.choice([
            ops.auth_role_add(role), ops.auth_role_delete(role),
            ops.auth_grant(role, rng.choice(["read", "write", "readwrite"]), key,
                           prefix=rng.random() < 0.5, range_end=end),
            ops.auth_revoke(role, "write", key, range_end=end),
            ops.auth_bind(rng.choice([b"B", b"C"]) * 32, role),
            ops.auth_unbind(b"B" * 32, role), ops.auth_enable(rng.random() < 0.8)])
    client = rng.choice([b"B", b"C"]) * 32
    value = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 40)))
    return client, [
        lambda: ops.campaign(key, lease, value),
        lambda: ops.proclaim(key, tokens.get(b"E" + key, 1), value),
        lambda: ops.resign(key, tokens.get(b"E" + key, 1)),
        lambda: ops.put(key, value, prev_kv=True),
        lambda: ops.delete(key, prefix=True, prev_kv=True),
    ][kind - 4]()


@pytest.mark.integration
def test_identical_effects_with_permissions_quotas_and_elections(tmp_path):
    params = {"admins": [ADMIN.hex()], "auth_enabled": True,
              "quotas": {"max_keys": 2, "max_bytes": 40, "max_leases": 2}}
    # C may write everywhere (until a random op takes it away)
    first = [Request(ADMIN, 1, op) for op in (
        ops.auth_role_add("all"), ops.auth_bind(b"C" * 32, "all"),
        ops.auth_grant("all", "readwrite", b"", prefix=True))]

    def usage_is_a_recount(mem: MemoryState) -> None:
        assert quotas.all_usage(mem) == quotas.recount(mem)

    results = _run_blocks(tmp_path, (KVApplication(params=params), KVApplication(params=params)),
                          _hostile_op, 20261207, 8, first, usage_is_a_recount)
    codes = {code for code, _ in results}
    assert {0, PERMISSION, QUOTA} <= codes and INTERNAL not in codes


# ---------------------------------------------------------------- overlay vs dict

_keys = st.sampled_from([b"", b"a", b"a\x00", b"ab", b"b", b"ba", b"c"])


@settings(max_examples=200, deadline=None)
@given(
    base=st.dictionaries(_keys, st.binary(max_size=2), max_size=6),
    writes=st.lists(st.tuples(_keys, st.none() | st.binary(max_size=2)), max_size=10),
    prefix=st.sampled_from([b"", b"a", b"b", b"c", b"z"]),
    start=st.none() | _keys,
    reverse=st.booleans(),
)
def test_overlay_iterates_like_the_merged_dict(base, writes, prefix, start, reverse):
    model = dict(base)
    overlay = Overlay(MemoryState(base.items()))
    for k, v in writes:
        if v is None:
            overlay.delete(k)
            model.pop(k, None)
        else:
            overlay.put(k, v)
            model[k] = v
    want = sorted((k, v) for k, v in model.items() if k.startswith(prefix))
    if start is not None:
        want = [(k, v) for k, v in want if (k <= start if reverse else k >= start)]
    if reverse:
        want.reverse()
    assert list(overlay.iterate(prefix, start, reverse)) == want
    assert all(overlay.get(k) == model.get(k) for k, _ in writes)
