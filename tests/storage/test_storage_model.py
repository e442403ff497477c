"""Stateful property test: LevelDBStore and MemoryStore behave exactly like a dict model.

Rules commit blocks with state writes, persist batches of consensus records (including
conflicting votes, going back a view, Prune), reopen (LevelDB: close + open; memory: crash),
and read snapshots while writing. After every step the store's recover(), state and indexes
must equal the model's.
"""

from __future__ import annotations

import shutil
import tempfile

import hypothesis.strategies as st
from hypothesis import settings
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from ledger_helpers import AUTHS, CHAIN_ID, GENESIS_HASH, ChainBuilder, make_pre_prepare

from consensus import (
    Commit,
    OwnVote,
    Prepare,
    Prune,
    StableCheckpoint,
    ViewChange,
    ViewState,
    request_digest,
)
from consensus.codec import GENESIS_CHAIN_DIGEST
from storage import LevelDBStore, MemoryStore, StorageError

WINDOW = 3
KEYS = st.sampled_from([b"a", b"b", b"c", b"d/1", b"d/2"])
WRITES = st.lists(st.tuples(KEYS, st.one_of(st.none(), st.binary(min_size=0, max_size=4))),
                  max_size=4)


def _slot(msg) -> tuple:
    if isinstance(msg, ViewChange):
        return ("vc", msg.new_view, 0)
    return (type(msg).__name__, msg.view, msg.seq)


@st.composite
def votes(draw):
    kind = draw(st.sampled_from(["pp", "p", "c", "vc"]))
    view, seq, variant = draw(st.integers(0, 3)), draw(st.integers(1, 6)), draw(st.integers(0, 1))
    if kind == "pp":
        return make_pre_prepare(view, seq, 1000 + variant, ())
    if kind == "vc":
        return AUTHS[1].sign(ViewChange(view + 1, variant, bytes(32), (), (), 1))
    cls = Prepare if kind == "p" else Commit
    return AUTHS[1].sign(cls(view, seq, bytes([variant]) * 32, 1))


RECORDS = st.lists(
    st.one_of(
        st.builds(OwnVote, votes()),
        st.builds(ViewState, st.integers(0, 4), st.booleans()),
        st.builds(lambda s: StableCheckpoint(s, b"x" * 32, ()), st.integers(0, 6)),
        st.builds(Prune, st.integers(0, 6)),
    ),
    min_size=1,
    max_size=5,
)


class Model:
    def __init__(self) -> None:
        self.blocks: list = []  # BlockCommit
        self.state: dict[bytes, bytes] = {}
        self.view, self.in_vc = 0, False
        self.votes: dict[tuple, object] = {}
        self.checkpoint: StableCheckpoint | None = None
        self.clients: dict[bytes, list[int]] = {}

    def persist(self, records) -> bool:
        """Apply all-or-nothing; False when the store must refuse the batch."""
        view, in_vc = self.view, self.in_vc
        votes, cp = dict(self.votes), self.checkpoint
        for r in records:
            if isinstance(r, ViewState):
                if r.view < view:
                    return False
                view, in_vc = r.view, r.in_view_change
            elif isinstance(r, OwnVote):
                old = votes.get(_slot(r.message))
                if old is not None and old != r.message:
                    return False
                votes[_slot(r.message)] = r.message
            elif isinstance(r, StableCheckpoint):
                if cp is None or r.seq >= cp.seq:
                    cp = r
            elif isinstance(r, Prune):
                votes = {
                    s: m for s, m in votes.items()
                    if not (s[0] == "vc" and s[1] < view)
                    and not (s[0] != "vc" and s[2] <= r.upto)
                }
        self.view, self.in_vc, self.votes, self.checkpoint = view, in_vc, votes, cp
        return True

    def commit(self, block) -> None:
        self.blocks.append(block)
        for k, v in block.state_writes:
            if v is None:
                self.state.pop(k, None)
            else:
                self.state[k] = v
        for r in block.execute.requests:
            self.clients.setdefault(r.client_id, []).append(r.request_seq)

    def client_executed(self) -> dict[bytes, tuple[int, ...]]:
        out = {}
        for c, seqs in self.clients.items():
            top = max(seqs)
            out[c] = tuple(sorted(s for s in seqs if s > top - WINDOW))
        return out


class StoreMachine(RuleBasedStateMachine):
    kind = "memory"

    def __init__(self) -> None:
        super().__init__()
        self.dir = tempfile.mkdtemp(prefix="storage-model-")
        self.store = self._open(create=True)
        self.model = Model()
        self.chain = ChainBuilder(seed=1)

    def _open(self, create: bool):
        if self.kind == "leveldb":
            return LevelDBStore(self.dir + "/db", CHAIN_ID, GENESIS_HASH, create=create,
                                dedup_window=WINDOW)
        return MemoryStore(CHAIN_ID, GENESIS_HASH, dedup_window=WINDOW)

    def teardown(self) -> None:
        self.store.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    @rule(ntx=st.integers(0, 3), writes=WRITES)
    def commit_block(self, ntx, writes):
        b = self.chain.next_block(ntx, tuple(writes))
        self.store.commit_block(b)
        self.model.commit(b)

    @rule(gap=st.integers(2, 3))
    def commit_out_of_order_is_refused(self, gap):
        bad = ChainBuilder(seed=2, height=self.chain.height + gap - 1,
                           prev_hash=self.chain.prev_hash).next_block(1, ((b"a", b"bad"),))
        try:
            self.store.commit_block(bad)
            raise AssertionError("out-of-order block accepted")
        except StorageError:
            pass

    @rule(records=RECORDS)
    def persist(self, records):
        ok = self.model.persist(records)
        try:
            self.store.persist(records)
            assert ok, "store accepted a batch the model refuses"
        except StorageError:
            assert not ok, "store refused a valid batch"

    @rule()
    def reopen(self):
        if self.kind == "leveldb":
            self.store.close()
            self.store = self._open(create=False)
        else:
            self.store.crash(lose_unsynced=True)  # every write is synced: nothing is lost

    @rule(writes=WRITES)
    def snapshot_is_stable_while_writing(self, writes):
        before = dict(self.model.state)
        with self.store.snapshot() as snap:
            self.commit_block(1, writes)
            assert dict(snap.iterate(b"")) == before
            for k in (b"a", b"b", b"c"):
                assert snap.get(k) == before.get(k)

    @precondition(lambda self: self.model.blocks)
    @rule(data=st.data())
    def reads_match_a_stored_block(self, data):
        b = data.draw(st.sampled_from(self.model.blocks))
        ex = b.execute
        got = self.store.block(ex.seq)
        assert (got.hash, got.prev_hash, got.txs) == (ex.block_hash, ex.prev_hash, ex.requests)
        assert self.store.committed_block(ex.seq).commits == ex.commits
        for res, req in zip(b.results, ex.requests, strict=True):
            assert self.store.tx(request_digest(req)) == res
            assert self.store.tx_by_client(req.client_id, req.request_seq) == res

    @invariant()
    def matches_the_model(self):
        m = self.model
        rs = self.store.recover()
        assert rs.last_executed == len(m.blocks) == self.store.height()
        last = m.blocks[-1].execute if m.blocks else None
        assert rs.last_block_hash == (last.block_hash if last else GENESIS_CHAIN_DIGEST)
        assert rs.last_time_ms == (last.time_ms if last else 0)
        assert (rs.view, rs.in_view_change) == (m.view, m.in_vc)
        assert sorted(map(_slot, rs.own_votes)) == sorted(m.votes)
        assert {_slot(v): v for v in rs.own_votes} == m.votes
        assert rs.stable_checkpoint == m.checkpoint
        assert rs.client_executed == m.client_executed()
        assert dict(self.store.state().iterate(b"")) == m.state
        assert dict(self.store.state().iterate(b"d/")) == {
            k: v for k, v in m.state.items() if k.startswith(b"d/")
        }


class LevelDBMachine(StoreMachine):
    kind = "leveldb"


SETTINGS = settings(max_examples=40, stateful_step_count=25, deadline=None)
TestMemoryStoreMatchesModel = StoreMachine.TestCase
TestMemoryStoreMatchesModel.settings = SETTINGS
TestLevelDBStoreMatchesModel = LevelDBMachine.TestCase
TestLevelDBStoreMatchesModel.settings = SETTINGS

