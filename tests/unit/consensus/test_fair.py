"""FairQueue: the unproposed requests, oldest first for timers and round-robin over sources,
then clients, for batching (issue 36, fair shares)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from consensus.fair import FairQueue, SourceRates


def _drain(q: FairQueue) -> list:
    out = []
    while (key := q.pick()) is not None:
        q.take(key)
        out.append(key)
    return out


def test_a_deep_source_gets_one_turn_per_round():
    q = FairQueue()
    for i in range(100):  # a relay (source 3) queues 100 requests of 100 clients first
        q.add((b"r%d" % i, 1), 3, 10)
    q.add((b"honest", 1), 0, 10)
    q.add((b"other", 1), 1, 10)
    order = _drain(q)
    assert order[:4] == [(b"r0", 1), (b"honest", 1), (b"other", 1), (b"r1", 1)]
    assert len(order) == 102 and not q


def test_within_a_source_clients_take_turns_and_each_client_keeps_its_order():
    q = FairQueue()
    for seq in range(1, 6):
        q.add((b"greedy", seq), 0, 10)
    q.add((b"polite", 1), 0, 10)
    q.add((b"polite", 2), 0, 10)
    assert _drain(q) == [(b"greedy", 1), (b"polite", 1), (b"greedy", 2), (b"polite", 2),
                         (b"greedy", 3), (b"greedy", 4), (b"greedy", 5)]


def test_oldest_is_arrival_order_whatever_the_rotation():
    q = FairQueue([((b"a", 1), 2, 10), ((b"b", 1), 0, 10)])
    q.add((b"c", 1), 1, 10)
    assert q.oldest() == (b"a", 1)
    q.take(q.pick())
    assert q.oldest() == (b"b", 1) and (b"a", 1) not in q


OPS = st.lists(st.one_of(
    st.tuples(st.just("add"), st.integers(0, 5), st.integers(0, 3), st.integers(0, 30)),
    st.tuples(st.just("discard"), st.integers(0, 5), st.integers(0, 3), st.integers(0, 30)),
    st.tuples(st.just("take"), st.just(0), st.just(0), st.just(0)),
), max_size=300)


@settings(max_examples=300, deadline=None)
@given(OPS)
def test_the_queue_holds_exactly_what_was_added_and_not_removed(ops):
    q, model = FairQueue(), {}
    for op, client, source, seq in ops:
        key = (b"c%d" % client, seq)
        if op == "add":
            q.add(key, source, seq + 1)
            model.setdefault(key, seq + 1)
        elif op == "discard":
            q.discard(key)
            model.pop(key, None)
        else:
            key = q.pick()
            assert (key is None) == (not model)
            if key is not None:
                q.take(key)
                del model[key]
        assert len(q) == len(model) and all(k in q for k in model)
        assert q.nbytes == sum(model.values())
        if model:
            assert q.oldest() == next(iter(model))
    assert sorted(_drain(q)) == sorted(model)


def _fill(rates, source: int, now: int, count: int, size: int = 100) -> int:
    return sum(rates.take(source, now, size) for _ in range(count))


def _window(rates, now: int, sources, count: int = 10_000) -> list[int]:
    """Every source in `sources` sends `count` at `now`; the chain executes what was admitted."""
    got = [_fill(rates, s, now, count) for s in sources]
    rates.executed(now, sum(got), 100 * sum(got))
    return got


def test_a_source_alone_gets_the_floor_and_busy_sources_ramp_up_to_each_other():
    # a 1-s bucket, rates measured over 250-ms windows
    rates = SourceRates(per_s=100, bytes_per_s=0, burst_ms=1_000, n=4)
    # alone at link speed: the full bucket, then 25 per 250-ms window, window after window
    assert [_window(rates, t, [3]) for t in range(0, 2_500, 250)] == [[100]] + [[25]] * 9
    assert rates.limits(3) == (100, 0)
    # every source busy: each may go to twice the others' mean, so all ramp up together
    spread = SourceRates(per_s=100, bytes_per_s=0, burst_ms=1_000, n=4)
    got = [_window(spread, t, range(4)) for t in range(0, 2_500, 250)]
    assert got[0] == [100] * 4 and min(got[-1]) > 8 * 25, got


def test_f_colluding_sources_cannot_lift_each_other_past_the_floor():
    rates = SourceRates(per_s=100, bytes_per_s=0, burst_ms=1_000, n=7)  # f = 2
    for t in range(0, 20_000, 250):
        _window(rates, t, [5, 6])
    assert rates.limits(5) == (100, 0) and rates.limits(6) == (100, 0)


def test_the_byte_rate_binds_large_requests_and_an_idle_window_resets_the_ramp():
    rates = SourceRates(per_s=1_000, bytes_per_s=10_000, burst_ms=1_000, n=4)
    assert _fill(rates, 1, 0, 100, size=2_000) == 5  # 10 KB/s of 2 KB requests
    assert rates.take(1, 200, 2_000) is True and rates.take(1, 200, 2_000) is False
    rates.give(1, 2_000)  # not admitted after all: its tokens come back
    assert rates.take(1, 200, 2_000) is True
    rates.executed(500, 10_000, 10**7)  # a busy chain lifts everyone's rate ...
    rates.take(1, 800, 1)
    assert rates.limits(1)[1] > 10_000
    rates.take(1, 5_000, 1)  # ... and an idle window between brings the floor back
    assert rates.limits(1) == (1_000, 10_000)
    assert SourceRates(0, 0, 1_000, 4).take(1, 0, 10**9) is True  # 0 = no limit
