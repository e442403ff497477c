"""`health`'s four conditions (bftnode.node.health), the read bounds of the RPC (token bucket,
byte budgets, kv_range pages and cursors: bftnode.rpc.read_guard / read_views) and the read
params (min_height, max_lag_ms), each on its own."""

from __future__ import annotations

import time

import pytest
import trio

from bftnode.node.health import (
    BEHIND,
    NO_QUORUM,
    NOT_RUNNING,
    STALLED,
    VIEW_CHANGE,
    HealthBounds,
    HealthInputs,
    HealthMixin,
    assess,
    catching_up,
    following_view_change,
)
from bftnode.rpc import errors as E
from bftnode.rpc import read_views as rv
from bftnode.rpc.errors import RPCError
from bftnode.rpc.limits import ReadLimits
from bftnode.rpc.read_guard import ReadGate, client_ip, fresh_enough, guarded, start_batch
from bftnode.rpc.registry import CallContext

BOUNDS = HealthBounds(view_change_s=5.0, stall_s=5.0, max_behind=10)
OK = HealthInputs(running=True, height=100, peer_height=101, connected=4, validators=4,
                  quorum=3, view_change_s=None, since_commit_s=0.5)


def _codes(**changes) -> list[str]:
    fields = {f: getattr(OK, f) for f in OK.__dataclass_fields__}
    return [code for code, _ in assess(HealthInputs(**{**fields, **changes}), BOUNDS)]


def test_a_healthy_node_is_ok():
    assert _codes() == []
    assert _codes(view_change_s=4.9, since_commit_s=60, peer_height=100, connected=3) == []


def test_each_condition_is_its_own_reason():
    assert _codes(running=False) == [NOT_RUNNING]
    assert _codes(view_change_s=5.1, since_commit_s=5.1, peer_height=100) == [VIEW_CHANGE]
    assert _codes(since_commit_s=6.0) == [STALLED]  # a peer (101) is ahead and no commit
    assert _codes(peer_height=111) == [BEHIND]
    assert _codes(connected=2) == [NO_QUORUM]
    assert _codes(since_commit_s=6.0, peer_height=200, connected=1) == [STALLED, BEHIND,
                                                                         NO_QUORUM]


def test_a_long_view_change_while_the_node_commits_is_a_note_not_a_failure():
    # alone in a higher view, following the others' blocks by block sync
    following = {f: getattr(OK, f) for f in OK.__dataclass_fields__} | {
        "view_change_s": 60.0, "since_commit_s": 0.8}
    assert _codes(**following) == []
    note = following_view_change(HealthInputs(**following), BOUNDS)
    assert note is not None and "block sync" in note
    # the same view change with no commit within the bound is unfit, and carries no note
    stuck = following | {"since_commit_s": 5.5, "peer_height": 100}
    assert _codes(**stuck) == [VIEW_CHANGE]
    assert following_view_change(HealthInputs(**stuck), BOUNDS) is None
    assert following_view_change(OK, BOUNDS) is None


def test_an_idle_chain_is_not_a_stall():
    assert _codes(since_commit_s=600, peer_height=100) == []
    assert _codes(since_commit_s=600, peer_height=0) == []  # no peer height known yet


def test_catching_up_is_more_than_max_behind():
    assert not catching_up(100, 110, BOUNDS)
    assert catching_up(100, 111, BOUNDS)
    assert not catching_up(100, 0, BOUNDS)


class _Replica:
    def __init__(self) -> None:
        self.in_view_change = False
        self.peers = {1: 5, 2: 7}

    def health(self) -> dict:
        return {"peers_executed": dict(self.peers), "mode": "normal"}


class _Node(HealthMixin):
    def __init__(self) -> None:
        self.replica = _Replica()
        self._height = 5
        self.last_block_time_ms = time.time_ns() // 1_000_000
        self.started, self.stopped = trio.Event(), trio.Event()
        self.started.set()
        self.health_bounds = HealthBounds(view_change_s=0.05, stall_s=0.05, max_behind=1)
        self.connected = 3

        class _Cfg:
            n, quorum = 4, 3

        self.consensus_config = _Cfg()

    def _connected_peers(self) -> int:
        return self.connected


def test_health_is_fed_from_the_replica_and_the_node():
    node = _Node()
    node._note_progress(False)
    h = node.health()
    assert h["peer_height"] == 7 and h["peers"] == 3
    assert h["catching_up"] and h["reasons"] == [BEHIND] and not h["ok"]  # 7 - 5 > 1
    node.health_bounds = HealthBounds(view_change_s=0.05, stall_s=0.05, max_behind=10)
    node.replica.in_view_change = True
    node._note_progress(True)
    time.sleep(0.08)
    node.connected = 1
    h = node.health()
    assert not h["ok"] and h["reasons"] == [VIEW_CHANGE, STALLED, NO_QUORUM], h
    assert h["in_view_change_s"] >= 0.05 and all(isinstance(w, str) for w in h["why"])
    node.replica.in_view_change = False
    node._height = 7
    node._note_progress(False)
    node.connected = 3
    h = node.health()
    assert h["ok"], h
    info = node.read_info()
    assert info["height"] == 7 and info["catching_up"] is False and 0 <= info["lag_ms"] < 5000


def test_the_token_bucket_refills_and_says_when_to_retry():
    now = [0.0]
    g = ReadGate(ReadLimits(rate=10.0, burst=3), clock=lambda: now[0])
    for _ in range(3):
        g.admit("1.2.3.4")
        g.charge("1.2.3.4", 0)
    with pytest.raises(RPCError) as e:
        g.admit("1.2.3.4")
    assert e.value.code == E.RATE_LIMITED and "rate limited" in e.value.message
    assert e.value.data == {"retry_after": 0.1}
    g.admit("5.6.7.8")  # another address has its own bucket
    now[0] = 0.1
    g.admit("1.2.3.4")
    g.charge("1.2.3.4", 10 * 16 * 1024)  # a large answer puts the bucket in debt
    with pytest.raises(RPCError) as e:
        g.admit("1.2.3.4")
    assert e.value.data["retry_after"] == pytest.approx(1.1)


def test_client_ip_drops_the_port():
    assert client_ip("127.0.0.1:5555") == "127.0.0.1"
    assert client_ip("[::1]:80") == "::1"
    assert client_ip("?") == "?"


def test_cursors_round_trip_and_bad_ones_are_invalid_params():
    c = rv.encode_cursor(b"a\x00", b"b", 7)
    assert rv.decode_cursor(c) == (b"a\x00", b"b", 7)
    for bad in ("", "!!", "AAAA"):
        with pytest.raises(RPCError) as e:
            rv.decode_cursor(bad)
        assert e.value.code == E.INVALID_PARAMS
    assert rv.range_end(b"ab", True) == b"ac"
    assert rv.range_end(b"a\xff", True) == b"b"
    assert rv.range_end(b"", True) == b"\x00"
    assert rv.range_end(b"a", False) is None


def _range_result(n: int, value: bytes = b"v" * 100) -> dict:
    kvs = [{"key": b"k%04d" % i, "value": value, "create_revision": i + 1,
            "mod_revision": i + 1, "version": 1, "lease": 0} for i in range(n)]
    return {"kvs": kvs, "count": n, "more": False, "revision": n, "height": 9}


def test_a_kv_range_answer_is_cut_to_its_byte_budget_with_a_cursor():
    out, size, height = rv.kv_page("utf8", 4096, b"l", _range_result(100))
    assert size <= 4096 and height == 9 and out["more"] is True
    assert 0 < len(out["kvs"]) < 100
    last = out["kvs"][-1]["key"]
    start, end, rev = rv.decode_cursor(out["cursor"])
    assert start == last.encode() + b"\x00" and end == b"l" and rev == 100
    whole, _, _ = rv.kv_page("utf8", 1 << 20, b"l", _range_result(100))
    assert len(whole["kvs"]) == 100 and whole["more"] is False and "cursor" not in whole


def test_one_answer_over_budget_is_too_large():
    with pytest.raises(RPCError) as e:
        rv.sized({"x": "y" * 5000}, 1000, 1)
    assert e.value.code == E.TOO_LARGE and e.value.data == {"bytes": 5008, "budget": 1000}


class _FreshNode:
    def __init__(self, height: int, lag_ms: int | None, catching: bool = False) -> None:
        self.h, self.lag, self.catching = height, lag_ms, catching
        self.read_limits = ReadLimits(burst=1000)

    def height(self) -> int:
        return self.h

    def read_info(self) -> dict:
        return {"height": self.h, "catching_up": self.catching, "lag_ms": self.lag}

    async def wait_height(self, height: int, timeout: float) -> int:
        return self.h


async def test_min_height_and_max_lag_ms_fail_clearly():
    ctx = CallContext(node=_FreshNode(10, 300))
    await fresh_enough(ctx, 10, 300)
    with pytest.raises(RPCError) as e:
        await fresh_enough(ctx, 12, None)
    assert e.value.code == E.STALE_READ and e.value.data["min_height"] == 12
    assert "height 10, below min_height 12" in e.value.message
    with pytest.raises(RPCError) as e:
        await fresh_enough(ctx, None, 299)
    assert e.value.code == E.STALE_READ and e.value.data["lag_ms"] == 300
    ctx = CallContext(node=_FreshNode(10, 5, catching=True))
    with pytest.raises(RPCError) as e:
        await fresh_enough(ctx, None, 1000)
    assert "catching up" in e.value.message


async def test_every_read_answer_carries_its_height_and_catching_up():
    ctx = CallContext(node=_FreshNode(10, 5), peer="9.9.9.9:1")

    async def run(budget: int):
        return {"value": 1}, 10, 8

    out = await guarded(ctx, None, run)
    assert out == {"value": 1, "read_height": 8, "catching_up": False}


async def test_a_batch_of_concurrent_reads_answers_within_its_byte_budget():
    # a batch's calls start at once and wait for a read slot: each must be given what is
    # left when it runs, not what was left when it started (else all answer in full)
    node = _FreshNode(10, 5)
    node.read_limits = ReadLimits(burst=1000, answer_bytes=100_000, batch_bytes=250_000,
                                  per_connection=2)
    ctx = CallContext(node=node, peer="9.9.9.9:1")
    answered: list[int] = []
    refused: list[int] = []

    async def run(budget: int):
        await trio.sleep(0.001)  # a read worker: the other calls run meanwhile
        return rv.sized({"x": "y" * 60_000}, budget, 8)  # too_large over its budget

    async def one() -> None:
        try:
            await guarded(ctx, None, run)
            answered.append(1)
        except RPCError as e:
            refused.append(e.code)

    start_batch(ctx)
    async with trio.open_nursery() as nursery:
        for _ in range(20):
            nursery.start_soon(one)
    assert len(answered) == 4  # 4 x 60 KB fit in 250 KB, a fifth does not
    assert refused == [E.TOO_LARGE] * 16


async def test_a_refused_read_frees_what_it_built_without_waiting_for_the_gc():
    # an error raised in a read worker comes back with a traceback in a reference cycle, whose
    # frames hold the answer being built; only the cyclic GC freed it (an over-budget batch of
    # proven tx lookups kept ~140 answers of 175 KB alive)
    import gc
    import weakref

    class Answer(dict):
        pass

    built: list[weakref.ref] = []

    def read(budget: int):
        out = Answer(x="y" * 5000)
        built.append(weakref.ref(out))
        return rv.sized(out, budget, 8)

    async def run(budget: int):
        return await trio.to_thread.run_sync(read, 1000)

    ctx = CallContext(node=_FreshNode(10, 5), peer="9.9.9.9:1")
    gc.disable()
    try:
        with pytest.raises(RPCError) as e:
            await guarded(ctx, None, run)
        assert e.value.code == E.TOO_LARGE
        del e
        assert built and built[0]() is None
    finally:
        gc.enable()
