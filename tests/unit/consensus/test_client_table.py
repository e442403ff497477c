"""The client dedup table: bounded in clients (LRU eviction, loaded back from storage through
LoadClients / ClientsLoaded) and equal, decision for decision, to an unbounded history."""

from __future__ import annotations

import sys

from hypothesis import given, settings
from hypothesis import strategies as st

from consensus import ClientsLoaded
from consensus.normal import ClientTable

W = 8

ops = st.lists(
    st.tuples(st.integers(0, 5), st.integers(0, 40), st.booleans()), min_size=1, max_size=200
)


class History:
    """Reference: every executed seq per client, forever (what storage's index holds)."""

    def __init__(self) -> None:
        self.seqs: dict[bytes, set[int]] = {}

    def status(self, c: bytes, s: int) -> str | None:
        seqs = self.seqs.get(c)
        if not seqs:
            return None
        if s <= max(seqs) - W:
            return "request_seq too old"
        return "duplicate" if s in seqs else None

    def window(self, c: bytes) -> tuple[int, ...]:
        seqs = self.seqs.get(c)
        if not seqs:
            return ()
        top = max(seqs)
        return tuple(sorted(s for s in seqs if s > top - W))


def _cid(i: int) -> bytes:
    return bytes([i]) * 32


@settings(max_examples=300, deadline=None)
@given(ops, st.integers(1, 4))
def test_bounded_table_decides_exactly_like_the_full_history(script, capacity):
    """Execute/ask in any order with a capacity below the number of clients: every decision
    equals the reference once missing clients are loaded, as the replica does."""
    ref = History()
    table = ClientTable(W, capacity=capacity)
    for step, (i, s, execute) in enumerate(script):
        c = _cid(i)
        for m in table.missing([c]):
            table.load(m, ref.window(m))
        assert table.status(c, s) == ref.status(c, s), (step, i, s)
        if execute and ref.status(c, s) is None:
            table.record(c, s)
            ref.seqs.setdefault(c, set()).add(s)
        table.evict(step)  # the replica evicts after every executed batch
        assert len(table) <= capacity + 1


@given(ops)
def test_unbounded_table_never_needs_a_load_and_snapshots_its_window(script):
    ref = History()
    table = ClientTable(W)
    for i, s, execute in script:
        c = _cid(i)
        assert table.missing([c]) == []
        assert table.status(c, s) == ref.status(c, s)
        if execute and ref.status(c, s) is None:
            table.record(c, s)
            ref.seqs.setdefault(c, set()).add(s)
    assert table.snapshot() == {c: ref.window(c) for c in ref.seqs}
    restored = ClientTable(W, table.snapshot())
    for i in range(6):
        for s in range(45):
            assert restored.status(_cid(i), s) == ref.status(_cid(i), s)


def test_the_seq_a_full_window_below_the_top_is_too_old():
    """Storage restores seqs in (top - window, top]: the table refuses top - window rather
    than let a restarted replica execute it twice."""
    t = ClientTable(W)
    for s in range(1, 21):
        t.record(_cid(0), s)
    assert t.status(_cid(0), 20 - W + 1) == "duplicate"
    assert t.status(_cid(0), 20 - W) == "request_seq too old"
    assert t.snapshot()[_cid(0)] == tuple(range(20 - W + 1, 21))


def test_eviction_marks_the_table_incomplete_and_loads_known_empty_clients():
    t = ClientTable(W, capacity=2)
    for i in range(3):
        t.record(_cid(i), 1)
    assert t.complete and t.missing([_cid(3)]) == []
    assert t.evict(7) == 1 and len(t) == 2
    assert not t.complete and t.evicted_through == 7 and t.evictions == 1
    assert t.missing([_cid(0), _cid(3), _cid(1), _cid(0)]) == [_cid(0), _cid(3)]  # LRU: 0 out
    t.load(_cid(3), ())  # never executed anything: known, not asked again
    t.load(_cid(0), (1,))
    assert t.missing([_cid(0), _cid(3)]) == []
    assert t.status(_cid(0), 1) == "duplicate" and t.status(_cid(3), 1) is None
    t.record(_cid(3), 5)
    assert t.status(_cid(3), 5) == "duplicate"


def test_a_load_never_overwrites_what_the_table_already_knows():
    t = ClientTable(W, capacity=1, complete=False)
    t.record(_cid(0), 9)
    t.load(_cid(0), ())  # a stale read: the table wins
    assert t.status(_cid(0), 9) == "duplicate"


def test_memory_per_client_is_a_bitmap_not_a_set():
    t = ClientTable(4096)
    for s in range(1, 10_000):
        t.record(_cid(0), s)
    top, bits = t._entries[_cid(0)]
    assert top == 9_999 and bits.bit_length() == 4096
    assert sys.getsizeof(bits) < 600


# ------------------------------------------------------------------ replicas


def _run_all(c, reqs, to=0):
    for r in reqs:
        c.submit(r, to=to)
    assert c.run_until(lambda: c.all_executed(reqs), timeout_ms=120_000)


def _assert_exactly_once(c):
    for i in c.up():
        keys = c.executed_keys(i)
        assert len(keys) == len(set(keys)), f"replica {i} executed a request twice"
    c.assert_agreement()


def test_replicas_with_a_tiny_client_table_refuse_every_replay(cluster_cls):
    """max_clients=2 with 6 clients: evictions all along; every replay of an executed
    request, through any replica, is skipped - from the table or after a load."""
    c = cluster_cls(max_clients=2, batch_max=4)
    first = [c.request(k, s) for s in (1, 2) for k in range(6)]
    _run_all(c, first)
    assert all(len(r.client_table) <= 2 + 4 for r in c.replicas)
    assert all(r.client_table.evictions > 0 for r in c.replicas)
    height = max(c.executed[0])
    fresh = [c.request(k, 3) for k in range(6)]
    for i, r in enumerate(first + fresh):  # replays mixed into new requests
        c.submit(r, to=i % 4)
    assert c.run_until(lambda: c.all_executed(fresh), timeout_ms=120_000)
    assert c.run_until(lambda: all(max(c.executed[i]) >= height + 1 for i in c.up()))
    _assert_exactly_once(c)
    assert sum(c.loads.values()) > 0
    skipped = [reason for ex in c.executed[0].values() for _, reason in ex.skipped]
    assert skipped and set(skipped) <= {"duplicate"}


def test_a_replica_restarted_with_part_of_its_clients_loads_the_rest(cluster_cls):
    c = cluster_cls(max_clients=4)
    reqs = [c.request(k, 1) for k in range(5)]
    _run_all(c, reqs)
    c.crash(3)
    c.restart(3, max_clients=1)
    assert not c.replicas[3].client_table.complete
    assert len(c.replicas[3].client_table) == 1
    for r in reqs:  # replays, every one through the restarted replica
        c.submit(r, to=3)
    new = c.request(4, 2)  # client 4 was not restored: replica 3 must load it to execute
    c.submit(new, to=3)
    assert c.run_until(lambda: c.all_executed([new]))
    _assert_exactly_once(c)
    assert c.loads[3] > 0


def test_execution_waits_for_the_load_and_distrusts_a_stale_answer(cluster_cls):
    """A batch with a client the table lacks executes only once the shell answers; an answer
    older than the last eviction is not installed, and the client is asked for again."""
    c = cluster_cls(max_clients=1)
    r0, r1 = c.request(0, 1), c.request(1, 1)
    _run_all(c, [r0, r1])
    table = c.replicas[3].client_table
    assert not table.complete and r0.client_id not in table
    height = max(c.executed[3])
    c.hold_loads.add(3)
    again, new = r0, c.request(0, 2)
    c.submit(again)
    c.submit(new)
    assert c.run_until(lambda: c.all_executed([new], replicas=[0, 1, 2]))
    assert max(c.executed[3]) == height  # stalled on the load
    [lc] = c.held_loads[3]
    assert lc.client_ids == (r0.client_id,) and lc.through == height
    c.held_loads[3].clear()
    c.step(3, ClientsLoaded(0, ((r0.client_id, ()),)))  # as of height 0: stale
    assert max(c.executed[3]) == height and r0.client_id not in table
    [lc] = c.held_loads[3]  # asked again
    c.hold_loads.clear()
    c.step(3, ClientsLoaded(height, ((r0.client_id, c.window_of(3, r0.client_id)),)))
    assert c.run_until(lambda: c.all_executed([new]))
    _assert_exactly_once(c)
