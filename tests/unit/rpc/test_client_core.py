"""The client's decisions without any I/O: a `flows.Core` generator is driven by hand with
made-up replies (no server, no clock), as `Client` and `AsyncClient` drive it with httpx."""

from __future__ import annotations

import json

import pytest

from bftnode.client import NoNodeAvailable, TxRejected, TxTimeout
from bftnode.client.core import Done, Reply, Sleep, TransportFailure, step
from bftnode.client.flows import Core
from bftnode.keys import NodeKey
from consensus import Request


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def core(urls: list[str], **kw) -> tuple[Core, Clock]:
    clock = Clock()
    c = Core(urls, NodeKey.generate(), timeout=kw.pop("timeout", 5.0), verify="none",
             seq_file=False, chain=None, retries=kw.pop("retries", 1), clock=clock)
    return c, clock


def ok(result) -> Reply:
    return Reply(200, json.dumps({"jsonrpc": "2.0", "id": 1, "result": result}).encode())


def err(code: int, message: str) -> Reply:
    return Reply(200, json.dumps({"jsonrpc": "2.0", "id": 1,
                                  "error": {"code": code, "message": message}}).encode())


def drive(flow, answer):
    """Run `flow`, answering each effect with answer(effect) (a Reply, TransportFailure or
    None for a Sleep); returns the effects seen and the result."""
    seen, outcome = [], None
    while not isinstance(effect := step(flow, outcome), Done):
        seen.append(effect)
        outcome = answer(effect)
    return seen, effect.value


def test_a_call_fails_over_to_the_next_url_and_remembers_it():
    c, _ = core(["http://a", "http://b"])

    def answer(e):
        return TransportFailure(OSError("refused")) if e.url.startswith("http://a") else ok(7)

    seen, res = drive(c.call("status"), answer)
    assert res == 7 and [e.url for e in seen] == ["http://a/", "http://b/"]
    seen, _ = drive(c.call("status"), answer)
    assert [e.url for e in seen] == ["http://b/"]  # the one that worked comes first now


def test_no_answer_anywhere_pauses_between_rounds_then_gives_up():
    c, _ = core(["http://a", "http://b"], retries=2)
    flow = c.call("status")
    with pytest.raises(NoNodeAvailable, match="refused"):
        drive(flow, lambda e: None if isinstance(e, Sleep) else TransportFailure(OSError("refused")))
    c, _ = core(["http://a"], retries=2)
    seen: list = []

    def answer(e):
        seen.append(e)
        return None if isinstance(e, Sleep) else Reply(502, b"bad gateway")

    with pytest.raises(NoNodeAvailable, match="HTTP 502"):
        drive(c.call("status"), answer)
    assert [e.seconds for e in seen if isinstance(e, Sleep)] == [0.1, 0.2]


def test_submit_resends_the_same_tx_after_a_timeout_and_stops_at_a_refusal():
    c, clock = core(["http://a", "http://b"])
    req = Request(c.client_id, 1, b"op")
    bodies = []

    def answer(e):
        if isinstance(e, Sleep):
            clock.t += e.seconds
            return None
        bodies.append(json.loads(e.body)["params"]["tx"])
        if len(bodies) == 1:
            return err(-32002, "not committed within 5s")
        return ok({"hash": "00", "height": 3, "code": 0})

    _, res = drive(c.submit(req), answer)
    assert res["height"] == 3 and len(bodies) == 2 and bodies[0] == bodies[1]
    with pytest.raises(TxRejected, match="stale"):
        drive(c.submit(req), lambda e: err(-32001, "stale request_seq"))


def test_submit_gives_up_at_its_deadline():
    c, clock = core(["http://a"], timeout=1.0)

    def answer(e):
        clock.t += e.seconds if isinstance(e, Sleep) else 0.3
        return None if isinstance(e, Sleep) else TransportFailure(OSError("refused"))

    with pytest.raises(TxTimeout, match="not confirmed within 1s"):
        drive(c.submit(Request(c.client_id, 1, b"op")), answer)
    assert clock.t >= 1.0


def test_read_refusals_become_their_own_exceptions():
    from bftnode.client import RateLimited, StaleRead
    from bftnode.client.errors import rpc_error
    from bftnode.rpc import errors as E

    limited = rpc_error({"code": E.RATE_LIMITED, "message": "rate limited",
                         "data": {"retry_after": 2.5}})
    assert isinstance(limited, RateLimited) and limited.retry_after == 2.5
    assert rpc_error({"code": E.RATE_LIMITED, "message": "x", "data": "junk"}).retry_after == 1.0
    stale = rpc_error({"code": E.STALE_READ, "message": "stale", "data": {"height": 3}})
    assert isinstance(stale, StaleRead) and stale.data == {"height": 3}


def test_the_one_shot_callers_wait_out_a_rate_limit_then_answer():
    import httpx

    from bftnode.client import RateLimited
    from bftnode.client.sync import rpc_batch, rpc_call
    from bftnode.rpc import errors as E

    sent = []

    def node(request):
        body = json.loads(request.content)
        sent.append(body)
        limited = len(sent) == 1
        def one(c):
            if limited:
                return {"jsonrpc": "2.0", "id": c["id"], "error": {
                    "code": E.RATE_LIMITED, "message": "rate limited",
                    "data": {"retry_after": 0.01}}}
            return {"jsonrpc": "2.0", "id": c["id"], "result": c["method"]}
        return httpx.Response(200, json=[one(c) for c in body] if isinstance(body, list)
                              else one(body))

    with httpx.Client(transport=httpx.MockTransport(node)) as http:
        assert rpc_call(http, "http://n", "status") == "status" and len(sent) == 2
        sent.clear()
        assert rpc_batch(http, "http://n", [("tx", {}), ("block", {})]) == ["tx", "block"]
        assert len(sent) == 2 and len(sent[1]) == 2
        sent.clear()
        try:
            rpc_call(http, "http://n", "status", rate_wait_s=0)
        except RateLimited as exc:
            assert exc.retry_after == 0.01
        else:
            raise AssertionError("a rate limit past rate_wait_s must raise")
