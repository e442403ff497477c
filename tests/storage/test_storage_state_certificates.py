"""Block roots and state certificates in the ledger: each header holds the state tree's root
(with the tree on) and the results root (always); certificates are stored per height (R
keyspace, main DB), read back with their block, and the latest is known after a reopen."""

from __future__ import annotations

import msgspec
import pytest
from ledger_helpers import AUTHS, CHAIN_ID, CLIENTS, GENESIS_HASH, make_block, make_pre_prepare

from consensus import Request, StateVote, sign_request
from consensus.codec import GENESIS_CHAIN_DIGEST
from storage import MemoryStore, StorageError, open_store
from storage.records import BlockHeader, encode
from storage.results_root import EMPTY_RESULTS_ROOT, result_leaf, results_root


def _commit(store, seq: int, prev: bytes, n_txs: int = 2, writes=()):
    reqs = tuple(sign_request(CHAIN_ID, CLIENTS[0], Request(b"", seq * 10 + i, b"op%d" % i))
                 for i in range(n_txs))
    commit = make_block(make_pre_prepare(0, seq, 1000 + seq, reqs), prev, writes)
    store.commit_block(commit)
    return commit


def _votes(seq: int, block_hash: bytes, sr: bytes, rr: bytes, who=(0, 1, 2)):
    return tuple(AUTHS[i].sign(StateVote(seq, block_hash, sr, rr, i)) for i in who)


def test_header_holds_the_results_root_of_the_blocks_results(store):
    c1 = _commit(store, 1, GENESIS_CHAIN_DIGEST)
    c2 = _commit(store, 2, c1.execute.block_hash, n_txs=0)
    sr, rr = store.block_roots(1)
    assert sr == bytes(32)  # tree off: the state root stays zero
    assert rr == results_root([result_leaf(r) for r in c1.results]) != EMPTY_RESULTS_ROOT
    assert store.block_roots(2) == (bytes(32), EMPTY_RESULTS_ROOT)
    assert store.block(1).results_root == rr
    assert store.block_roots(3) is None
    assert c2.execute.seq == 2


def test_header_holds_the_state_tree_root_with_the_tree_on(tmp_path):
    s = MemoryStore(CHAIN_ID, GENESIS_HASH, authenticated_state=True)
    c1 = _commit(s, 1, GENESIS_CHAIN_DIGEST, writes=((b"k", b"v"),))
    _commit(s, 2, c1.execute.block_hash)
    for h in (1, 2):
        assert s.block_roots(h)[0] == s.state_root(h) != bytes(32)
    assert s.block_roots(1)[0] != s.block_roots(2)[0]  # block 2 wrote tx records


def test_headers_written_before_results_root_still_decode():
    old = msgspec.msgpack.encode([1, b"h" * 32, b"p" * 32, b"d" * 32, 5, 0, bytes(32)])
    hdr = msgspec.msgpack.decode(old, type=BlockHeader)
    assert hdr.results_root == bytes(32)
    assert encode(hdr) != old  # new headers carry the field


def test_certificates_are_stored_read_with_their_block_and_survive_reopen(tmp_path):
    s = open_store(tmp_path / "db", CHAIN_ID, GENESIS_HASH, create=True)
    c1 = _commit(s, 1, GENESIS_CHAIN_DIGEST)
    c2 = _commit(s, 2, c1.execute.block_hash)
    assert s.latest_certified() == 0 and s.state_certificate(1) is None
    assert s.block(1).state_certificate is None
    sr, rr = s.block_roots(2)
    votes = _votes(2, c2.execute.block_hash, sr, rr)
    s.put_state_certificate(2, votes)
    cert = s.state_certificate(2)
    assert (cert.seq, cert.block_hash, cert.state_root, cert.results_root) == (
        2, c2.execute.block_hash, sr, rr)
    assert cert.votes == votes
    assert s.block(2).state_certificate == cert
    with s.read_view() as view:
        assert view.block(2).state_certificate == cert
    assert s.latest_certified() == 2
    s.close()
    s = open_store(tmp_path / "db", CHAIN_ID, GENESIS_HASH, create=False)
    assert s.latest_certified() == 2 and s.state_certificate(2) == cert
    s.close()


def test_a_certificate_of_mixed_votes_is_refused(store):
    c1 = _commit(store, 1, GENESIS_CHAIN_DIGEST)
    sr, rr = store.block_roots(1)
    votes = _votes(1, c1.execute.block_hash, sr, rr)
    other = AUTHS[3].sign(StateVote(1, c1.execute.block_hash, b"x" * 32, rr, 3))
    with pytest.raises(StorageError, match="equal roots"):
        store.put_state_certificate(1, votes[:2] + (other,))
    with pytest.raises(StorageError):
        store.put_state_certificate(2, votes)
    with pytest.raises(StorageError):
        store.put_state_certificate(1, ())


@pytest.mark.parametrize("engine", ["leveldb", "memory"])
def test_certificates_go_with_their_pruned_blocks(engine, tmp_path):
    s = open_store(tmp_path / "db", CHAIN_ID, GENESIS_HASH, create=True,
                   authenticated_state=True) if engine == "leveldb" else MemoryStore(
        CHAIN_ID, GENESIS_HASH, authenticated_state=True)
    prev = GENESIS_CHAIN_DIGEST
    for h in range(1, 9):
        c = _commit(s, h, prev)
        prev = c.execute.block_hash
        s.put_state_certificate(h, _votes(h, prev, *s.block_roots(h)))
    assert s.prune_blocks(6) == 6
    assert [h for h in range(1, 9) if s.state_certificate(h) is not None] == [6, 7, 8]
    assert s.latest_certified() == 8
