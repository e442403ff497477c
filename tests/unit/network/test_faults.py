"""Link faults: a blocked link carries nothing either way, rules change live from a file."""

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
