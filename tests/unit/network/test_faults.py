"""Link faults: a blocked link carries nothing either way, rules change live from a file."""

import json

import pytest
import trio

from network import MemoryNetwork
from testnet.adversary.link_faults import FaultyTransport, LinkRules, write_rules


async def _recv_within(t, seconds: float):
    with trio.move_on_after(seconds):
        return await t.incoming.receive()
    return None


async def test_blocked_link_drops_both_directions_and_others_flow(tmp_path):
    net = MemoryNetwork(3, seed=1)
    rules_file = tmp_path / "rules.json"
    write_rules(rules_file, LinkRules(blocked=frozenset({1})))
    a = FaultyTransport(net.transport(0), rules_file=rules_file, poll_interval_s=0.01)
    b, c = net.transport(1), net.transport(2)
    async with trio.open_nursery() as nursery:
        for t in (a, b, c):
            await nursery.start(t.run)
        await a.send(1, b"to-b")
        await a.send(2, b"to-c")
        assert await _recv_within(c, 2) == (0, b"to-c")
        assert await _recv_within(b, 0.2) is None
        await b.send(0, b"from-b")
        await c.send(0, b"from-c")
        assert await _recv_within(a, 2) == (2, b"from-c")
        with trio.fail_after(5):
            while a.dropped.get("blocked_in", 0) < 1:
                await trio.sleep(0.01)
        assert a.dropped == {"blocked_out": 1, "blocked_in": 1}
        # heal by deleting the file: traffic resumes without a restart
        rules_file.unlink()
        with trio.fail_after(5):
            while a.rules.blocked:
                await trio.sleep(0.01)
        await a.send(1, b"again")
        assert await _recv_within(b, 2) == (0, b"again")
        nursery.cancel_scope.cancel()


def test_bad_rules_are_refused_with_a_reason():
    with pytest.raises(ValueError, match="drop probability"):
        LinkRules.from_json({"drop": {"1": 2.0}})


class _Opaque:
    """A transport whose delivery channel FaultyTransport cannot see (it must pump)."""

    def __init__(self, inner) -> None:
        self._t = inner
        self.index, self.peer_indices = inner.index, inner.peer_indices
        self.max_frame_size, self.incoming = inner.max_frame_size, inner.incoming
        self.send, self.run = inner.send, inner.run


@pytest.mark.parametrize(
    "inbound, opaque", [(False, False), (True, False), (True, True)],
    ids=["outbound", "inbound-filtered", "inbound-pumped"],
)
async def test_delay_postpones_and_drop_probability_one_drops_everything(inbound, opaque):
    """Rules on peer 1 as seen by the faulty node 0, for frames it sends or receives."""
    net = MemoryNetwork(2, seed=1)
    inner = _Opaque(net.transport(0)) if opaque else net.transport(0)
    a = FaultyTransport(inner, rules=LinkRules(delay_ms={1: 150}))
    assert a._pumped is opaque
    b = net.transport(1)
    src, dst, src_i, direction = (b, a, 1, "in") if inbound else (a, b, 0, "out")
    async with trio.open_nursery() as nursery:
        await nursery.start(a.run)
        await nursery.start(b.run)
        t0 = trio.current_time()
        await src.send(1 - src_i, b"late")
        assert await _recv_within(dst, 2) == (src_i, b"late")
        assert trio.current_time() - t0 >= 0.15
        a.set_rules(LinkRules(drop={1: 1.0}))
        await src.send(1 - src_i, b"lost")
        assert await _recv_within(dst, 0.2) is None
        assert a.dropped == {f"dropped_{direction}": 1}
        await a.send(0, b"self")  # our own frames pass whatever the rules
        assert await _recv_within(a, 2) == (0, b"self")
        nursery.cancel_scope.cancel()


async def test_egress_shape_delays_in_order_loses_and_caps_the_rate():
    """A link profile in the transport: every frame to peer 1 waits its delay (with jitter)
    and they arrive in the order sent; loss 1.0 loses them all; a rate spaces them out."""
    net = MemoryNetwork(2, seed=1)
    a = FaultyTransport(net.transport(0), rules=LinkRules(egress={1: (40.0, 20.0, 0.0)}),
                        seed=7)
    b = net.transport(1)
    async with trio.open_nursery() as nursery:
        await nursery.start(a.run)
        await nursery.start(b.run)
        t0 = trio.current_time()
        for i in range(30):
            await a.send(1, b"%d" % i)
        got = [await _recv_within(b, 2) for _ in range(30)]
        assert [g[1] for g in got if g] == [b"%d" % i for i in range(30)]
        took = trio.current_time() - t0
        assert 0.02 <= took < 1.0  # the jitter varies it; normal around 40 ms, clipped at 0
        a.set_rules(LinkRules(egress={1: (0.0, 0.0, 1.0)}))
        await a.send(1, b"lost")
        assert await _recv_within(b, 0.2) is None
        assert a.dropped == {"lost_out": 1}
        # 8 frames of 1,250 bytes at 100 kbit/s: 10,000 bits each, 0.1 s apiece
        a.set_rules(LinkRules(rate_kbit=100))
        t0 = trio.current_time()
        for _ in range(8):
            await a.send(1, b"x" * 1250)
        for _ in range(8):
            assert await _recv_within(b, 3) is not None
        assert trio.current_time() - t0 >= 0.75
        nursery.cancel_scope.cancel()


def test_rules_round_trip_and_refuse_bad_shapes():
    r = LinkRules(blocked=frozenset({2}), egress={1: (50.0, 10.0, 0.01)}, rate_kbit=10_000)
    assert LinkRules.from_json(json.loads(json.dumps(r.to_json()))) == r
    assert r.with_shaping({}, 0) == LinkRules(blocked=frozenset({2}))
    with pytest.raises(ValueError, match="egress shape"):
        LinkRules.from_json({"egress": {"1": [50, 10, 2.0]}})
    with pytest.raises(ValueError, match="rate_kbit"):
        LinkRules.from_json({"rate_kbit": -1})
