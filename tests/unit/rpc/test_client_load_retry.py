"""A tx refused for load (the pool's rate, its fullness, the client's pending quota: errors with
`data.retry_after`) is sent again by the client - the SAME signed tx, after that wait - until
it is admitted or the call's timeout; refused for load until then, it raises the refusal (it
was never admitted), not TxTimeout. Other refusals still raise at once."""

from __future__ import annotations

import pytest
import trio

from bftnode.client import AsyncClient, TxRejected
from bftnode.client.errors import ClientQuotaExceeded
from bftnode.rpc.node_api import SubmitResult
from bftnode.rpc.server import serve_rpc
from consensus import request_digest

from .fake_node import FakeNode


class BusyNode(FakeNode):
    """Refuses the first `busy` submits for `reason`, then behaves as FakeNode."""

    def __init__(self, busy: int, reason: str) -> None:
        super().__init__()
        self.busy, self.reason, self.refused = busy, reason, 0
        self.seen: set[bytes] = set()

    async def submit(self, request):
        self.seen.add(request_digest(request))
        if self.refused < self.busy:
            self.refused += 1
            return SubmitResult("rejected", request_digest(request), reason=self.reason)
        return await super().submit(request)


async def _serve(nursery, node) -> str:
    return await nursery.start(serve_rpc, node, "127.0.0.1", 0)


async def test_a_tx_refused_for_load_is_sent_again_and_commits(nursery, tmp_path):
    for reason in ("rate limited", "pool full",
                   "client quota: this client already has 2 requests pending (max_pending)"):
        node = BusyNode(2, reason)
        url = await _serve(nursery, node)
        async with AsyncClient(url, tmp_path / "c.key") as c:
            t0 = trio.current_time()
            res = await c.put("k", "v")
            took = trio.current_time() - t0
        assert res["code"] == 0 and node.refused == 2, reason
        assert len(node.seen) == 1  # the same signed tx each time
        assert took >= 0.5  # two waits of retry_after (0.25 s), not a tight loop


async def test_refused_for_load_until_the_timeout_raises_the_refusal(nursery, tmp_path):
    node = BusyNode(10_000, "client quota: this client already has 2 requests pending")
    url = await _serve(nursery, node)
    async with AsyncClient(url, tmp_path / "c.key", timeout=1.2) as c:
        with pytest.raises(ClientQuotaExceeded):
            await c.put("k", "v")
    assert 2 <= node.refused <= 6  # about timeout / (hold + retry_after), not hundreds


async def test_other_refusals_still_raise_at_once(nursery, tmp_path):
    node = BusyNode(10_000, "request_seq too old")
    url = await _serve(nursery, node)
    async with AsyncClient(url, tmp_path / "c.key") as c:
        with pytest.raises(TxRejected, match="too old"):
            await c.put("k", "v")
    assert node.refused == 1


def test_load_refused_picks_the_answers_to_send_again_and_the_longest_wait():
    # one batch's answers: the load harnesses (bench, attack, client-attack) resend these
    from bftnode.client.core import load_refused
    from bftnode.client.errors import BadAnswer, RPCCallError
    from bftnode.rpc import errors as E

    answers = [
        {"status": "accepted"},
        RPCCallError("tx rejected: pool full", E.TX_REJECTED, {"retry_after": 0.25}),
        RPCCallError("tx rejected: bad op", E.TX_REJECTED, {}),  # not for load: not again
        RPCCallError("client quota", E.CLIENT_QUOTA, {"retry_after": 0.5}),
        BadAnswer("no answer"),
        RPCCallError("tx rejected: rate limited", E.TX_REJECTED, {"retry_after": 600}),  # bogus
    ]
    assert load_refused(answers) == ([1, 3], 0.5)
    assert load_refused([{"status": "accepted"}]) == ([], 0.0)
