"""Persisted convictions (`Conviction`): one per replica (the first stands: never pardoned),
kept by LevelDBStore and MemoryStore across `recover()` and reopen, untouched by `Prune`, and a
damaged one is a clear CorruptionError."""

from __future__ import annotations

import pytest
from ledger_helpers import CHAIN_ID, GENESIS_HASH

from consensus import Conviction, Prune, RecoveredState
from storage import CorruptionError, MemoryStore, keys, open_store


def test_convictions_round_trip_through_recover_and_the_first_one_stands(store):
    assert store.recover().convicted == ()
    store.persist([Conviction(2, 9, "equivocation")])
    store.persist([Conviction(0, 4, "equivocation"), Conviction(2, 12, "equivocation")])
    store.persist([Prune(100)])  # convictions are not consensus garbage
    assert store.recover().convicted == (
        Conviction(0, 4, "equivocation"), Conviction(2, 9, "equivocation"),
    )


def test_convictions_survive_reopen(tmp_path):
    s = open_store(tmp_path / "db", CHAIN_ID, GENESIS_HASH, create=True)
    s.persist([Conviction(1, 3, "equivocation")])
    s.close()
    s = open_store(tmp_path / "db", CHAIN_ID, GENESIS_HASH, create=False)
    try:
        assert s.recover().convicted == (Conviction(1, 3, "equivocation"),)
    finally:
        s.close()


def test_a_damaged_conviction_is_corruption():
    s = MemoryStore(CHAIN_ID, GENESIS_HASH)
    s.persist([Conviction(1, 3, "equivocation")])
    s.corrupt(keys.conviction(1), b"\x93junk")
    with pytest.raises(CorruptionError, match="Conviction"):
        s.recover()
    s = MemoryStore(CHAIN_ID, GENESIS_HASH)
    s.persist([Conviction(1, 3, "equivocation")])
    good = dict(s.raw_items())[keys.conviction(1)]
    s.corrupt(keys.conviction(2), good)  # replica 1's conviction under replica 2's key
    with pytest.raises(CorruptionError, match="wrong key"):
        s.recover()


def test_recovered_state_defaults_to_no_convictions():
    assert RecoveredState().convicted == ()
