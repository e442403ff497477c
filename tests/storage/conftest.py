"""Shared fixtures of the storage tests: `store` runs a test on LevelDBStore (real plyvel in
tmp_path) and on MemoryStore (the simulator's twin with the same ledger code)."""

from __future__ import annotations

import pytest
from ledger_helpers import CHAIN_ID, GENESIS_HASH

from storage import MemoryStore, open_store


@pytest.fixture(params=["leveldb", "memory"])
def store(request, tmp_path):
    if request.param == "leveldb":
        s = open_store(tmp_path / "db", CHAIN_ID, GENESIS_HASH, create=True)
    else:
        s = MemoryStore(CHAIN_ID, GENESIS_HASH)
    yield s
    s.close()
