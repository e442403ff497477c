"""Cheap read refusals (issue 27, item 1): a payload of reads from a client whose read bucket
is empty is answered whole, one `rate limited` error per call, without dispatch; refusals are
counted and logged at most once per client IP per second."""

from __future__ import annotations

import inspect
import re

from structlog.testing import capture_logs

from bftnode.rpc import comet, handlers
from bftnode.rpc import errors as E
from bftnode.rpc import read_guard as rg
from bftnode.rpc.limits import ReadLimits
from bftnode.rpc.methods import dispatch
from bftnode.rpc.registry import CallContext


class _Node:
    chain_id, node_id = "t", "n0"

    def __init__(self) -> None:
        self.read_limits = ReadLimits(rate=1.0, burst=1)
        self.queried = 0

    def height(self) -> int:
        return 5

    async def query(self, name, q):
        self.queried += 1
        raise AssertionError("a refused read must not reach the node")

    def status(self):
        return {"height": 5}


def _ctx(node: _Node, counted: list) -> CallContext:
    ctx = CallContext(node=node, peer="7.7.7.7:9", on_error=lambda m, c: counted.append((m, c)))
    ctx.extra["on_rate_limited"] = counted.append
    rg.gate(node).buckets["7.7.7.7"] = rg.TokenBucket(0, rg.gate(node).clock())  # spent
    return ctx


def _kv(i, **kw):
    return {"jsonrpc": "2.0", "id": i, "method": "kv_range", "params": {"key": "a/"}, **kw}


def test_read_methods_are_exactly_the_guarded_ones():
    src = inspect.getsource(handlers) + inspect.getsource(comet)
    guarded = set()
    for block in re.split(r"\n(?=@method\()", src)[1:]:
        name = re.match(r'@method\("([^"]+)"', block).group(1)
        body = block.split("\n\n\n")[0]
        if any(k in body for k in ("guarded(", "guarded_read(", "await _query(",
                                   "H.on_kv_get(")):  # abci_query reads through kv_get
            guarded.add(name)
    assert guarded == set(rg.READ_METHODS)


async def test_a_batch_of_reads_is_refused_whole_with_one_error_per_call():
    node, counted = _Node(), []
    ctx = _ctx(node, counted)
    batch = [_kv(i) for i in range(20)] + [{"jsonrpc": "2.0", "method": "kv_get",
                                           "params": {"key": "x"}}]  # a notification
    with capture_logs() as logs:
        out = await dispatch(ctx, batch)
        again = await dispatch(ctx, batch)
    assert [r["id"] for r in out] == list(range(20)) and len(again) == 20
    for r in out:
        assert r["error"]["code"] == E.RATE_LIMITED and r["error"]["data"]["retry_after"] > 0
    assert node.queried == 0 and ctx.extra["refused_retry_after"] > 0  # the HTTP answer waits it
    assert counted.count(("kv_range", E.RATE_LIMITED)) == 40 and 21 in counted
    lines = [e for e in logs if e["event"] == "rpc.rate_limited"]
    assert len(lines) == 1 and lines[0]["refused"] == 21 and lines[0]["peer"] == "7.7.7.7:9"
    assert not [e for e in logs if e["event"] == "rpc.error"]


async def test_one_read_call_is_refused_and_a_mixed_batch_is_dispatched():
    node, counted = _Node(), []
    ctx = _ctx(node, counted)
    out = await dispatch(ctx, _kv("a"))
    assert out["id"] == "a" and out["error"]["code"] == E.RATE_LIMITED
    with capture_logs() as logs:
        out = await dispatch(ctx, [_kv(1), {"jsonrpc": "2.0", "id": 2, "method": "status"}])
    assert out[0]["error"]["code"] == E.RATE_LIMITED and out[1]["id"] == 2
    assert node.queried == 0
    assert not [e for e in logs if e["event"] == "rpc.error" and e["code"] == E.RATE_LIMITED]


def test_refusal_log_lines_are_one_per_ip_per_second_with_a_count():
    now = [100.0]
    g = rg.ReadGate(ReadLimits(), clock=lambda: now[0])
    with capture_logs() as logs:
        for _ in range(9):
            g.note_refused("1.1.1.1", "1.1.1.1:5", 2)
            now[0] += 0.25
        g.note_refused("2.2.2.2", "2.2.2.2:5")
    counts = [(e["peer"], e["refused"]) for e in logs]
    assert counts == [("1.1.1.1:5", 2), ("1.1.1.1:5", 8), ("1.1.1.1:5", 8),
                      ("2.2.2.2:5", 1)], counts


async def test_blockchain_costs_a_token_per_block_it_reads():
    from .fake_node import FakeNode

    node = FakeNode()
    for _ in range(30):
        node.commit_pending()  # 30 empty blocks
    node.read_limits = ReadLimits(rate=0.001, burst=100)
    ctx = CallContext(node=node, peer="8.8.8.8:1")
    bucket = rg.gate(node).buckets

    async def call(lo, hi):
        return await dispatch(ctx, {"jsonrpc": "2.0", "id": 1, "method": "blockchain",
                                    "params": {"min_height": lo, "max_height": hi}})

    one = await call(5, 5)
    assert len(one["result"]["blocks"]) == 1
    left = bucket["8.8.8.8"].tokens
    assert 98.9 < left <= 99.0  # one header: one token, like any small read
    many = await call(1, 30)
    assert len(many["result"]["blocks"]) == 30
    assert 68.9 < bucket["8.8.8.8"].tokens <= left - 30 + 0.01  # a token per block read
