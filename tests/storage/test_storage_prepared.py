"""Persisted prepared certificates (`PreparedCert`): kept by (view, seq) in LevelDBStore and
MemoryStore, returned by `recover()`, dropped by `Prune` with the votes, and a damaged one is a
clear CorruptionError."""

from __future__ import annotations

import pytest
from ledger_helpers import AUTHS, CHAIN_ID, GENESIS_HASH, ChainBuilder

from consensus import Commit, OwnVote, Prepare, PreparedCert, PreparedProof, Prune, ViewState
from storage import CorruptionError, MemoryStore, keys, open_store


def _proof(view: int, seq: int) -> PreparedProof:
    pp = ChainBuilder(seed=seq).next_pre_prepare(2)
    pp = AUTHS[view % 4].sign(type(pp)(view, seq, pp.time_ms, pp.requests, pp.digest, view % 4))
    backups = [r for r in range(4) if r != view % 4][:2]
    prepares = tuple(AUTHS[r].sign(Prepare(view, seq, pp.digest, r)) for r in backups)
    return PreparedProof(pp, prepares)


def test_prepared_certificates_round_trip_through_recover(store):
    a, b, c = _proof(0, 1), _proof(0, 2), _proof(1, 2)  # seq 2 prepared in two views
    commit = AUTHS[1].sign(Commit(0, 1, a.pre_prepare.digest, 1))
    store.persist([PreparedCert(a), OwnVote(commit)])
    store.persist([PreparedCert(b), PreparedCert(c), PreparedCert(c)])  # a repeat is harmless
    rs = store.recover()
    assert sorted(rs.prepared, key=lambda p: (p.pre_prepare.seq, p.pre_prepare.view)) == [a, b, c]
    assert rs.own_votes == (commit,)


def test_prepared_certificates_survive_reopen(tmp_path):
    s = open_store(tmp_path / "db", CHAIN_ID, GENESIS_HASH, create=True)
    proof = _proof(0, 5)
    s.persist([PreparedCert(proof)])
    s.close()
    s = open_store(tmp_path / "db", CHAIN_ID, GENESIS_HASH, create=False)
    try:
        assert s.recover().prepared == (proof,)
    finally:
        s.close()


def test_unsynced_loss_never_loses_a_persisted_certificate():
    s = MemoryStore(CHAIN_ID, GENESIS_HASH)
    proof = _proof(0, 3)
    s.persist([PreparedCert(proof)])
    s.crash(lose_unsynced=True)
    assert s.recover().prepared == (proof,)


def test_prune_drops_prepared_certificates_at_or_below_the_checkpoint(store):
    low, edge, high = _proof(0, 3), _proof(1, 4), _proof(1, 5)
    store.persist([PreparedCert(p) for p in (low, edge, high)])
    store.persist([ViewState(1, False), Prune(4)])
    assert store.recover().prepared == (high,)


def test_a_certificate_under_the_wrong_key_is_corruption():
    s = MemoryStore(CHAIN_ID, GENESIS_HASH)
    s.persist([PreparedCert(_proof(0, 3))])
    raw = s._kv.get(keys.prepared(0, 3))
    s.corrupt(keys.prepared(0, 4), raw)
    with pytest.raises(CorruptionError, match="prepared certificate under the wrong key"):
        s.recover()
