"""The resume logic of client watches (bftnode.client.watch), sans-I/O: dedup by revision
across resubscriptions (a txn's events share a revision), gap detection, and the failover
policy that gives up with WatchGap only when every node has pruned the events."""

from __future__ import annotations

import json

import pytest

from bftnode.client import core as C
from bftnode.client.errors import RPCCallError
from bftnode.client.watch import Cursor, Failover, Session, WatchGap, _Resubscribe
from bftnode.rpc import errors as E

# the agreed history: (height, revision) per event; revision 7 is a txn with three puts
HISTORY = [(3, 5), (3, 6), (4, 7), (4, 7), (4, 7), (6, 8), (9, 9), (9, 10)]


def _ev(height: int, rev: int, i: int) -> dict:
    return {"kind": "put", "key": f"k{i}", "revision": rev, "height": height}


def _node_stream(params: dict) -> list[tuple[int, dict]]:
    """What a node sends for a subscription with these params (as bftnode.rpc.websocket)."""
    h0, r0 = params.get("from_height", 1), params.get("from_revision", 0)
    return [(h, _ev(h, r, i)) for i, (h, r) in enumerate(HISTORY) if h >= h0 and r >= r0]


def _run(session: Session, cut_after: int | None, out: list) -> None:
    """One subscription: the answer, then events, cut (a dropped connection) after some."""
    req = json.loads(session.request())["params"]
    session.on_message({"jsonrpc": "2.0", "id": 1, "result": {
        "subscription": "s1", "topic": "kv", "from_height": req.get("from_height", 1)}})
    for n, (h, ev) in enumerate(_node_stream(req)):
        if cut_after is not None and n >= cut_after:
            return
        got = session.on_message({"jsonrpc": "2.0", "method": "subscription", "params": {
            "subscription": "s1", "topic": "kv", "height": h, "result": ev}})
        if got is not None:
            out.append(got)


@pytest.mark.parametrize("cuts", [[1], [3], [4], [2, 1, 1], [0, 0, 5], [7]])
def test_resuming_after_any_cut_delivers_every_event_once_in_order(cuts):
    cursor = Cursor()
    session = Session("kv", "k", cursor)
    out: list = []
    for cut in cuts:
        _run(session, cut, out)
    _run(session, None, out)
    assert [(e["height"], e["revision"], e["key"]) for e in out] == [
        (h, r, f"k{i}") for i, (h, r) in enumerate(HISTORY)]
    assert cursor.state() == {"height": 9, "revision": 10, "seen": 1}


def test_a_resume_asks_for_the_last_height_and_revision_and_skips_what_it_delivered():
    cursor = Cursor()
    assert cursor.accept(4, 7) and cursor.accept(4, 7)
    assert cursor.params("kv") == {"from_height": 4, "from_revision": 7}
    assert not cursor.accept(4, 7) and not cursor.accept(4, 7)  # the two delivered
    assert cursor.accept(4, 7)  # the txn's third put is new
    assert not cursor.accept(3, 6)  # below the cursor: a duplicate
    assert cursor.params("blocks") == {"from_height": 4}  # blocks resume by height


def test_a_node_with_fewer_events_at_the_resumed_revision_is_a_gap():
    cursor = Cursor()
    for _ in range(3):
        cursor.accept(4, 7)
    cursor.params("kv")
    assert not cursor.accept(4, 7)
    with pytest.raises(WatchGap) as exc:
        cursor.accept(6, 8)  # two events of revision 7 never came again
    assert exc.value.data == {"height": 4, "revision": 7, "seen": 3}


def test_a_node_that_starts_elsewhere_than_asked_is_a_gap():
    session = Session("events", None, Cursor(height=10))
    session.request()
    with pytest.raises(WatchGap):
        session.on_message({"id": 1, "result": {"subscription": "s1", "from_height": 12}})


def _refused(code: int, data=None) -> dict:
    return {"jsonrpc": "2.0", "id": 1, "error": {"code": code, "message": "no", "data": data}}


def test_refusals_that_another_try_may_fix_resubscribe_and_bad_params_raise():
    s = Session("kv", "k", Cursor())
    s.request()
    with pytest.raises(_Resubscribe) as exc:
        s.on_message(_refused(E.PRUNED, {"base_height": 50}))
    assert exc.value.pruned
    for code, data in ((E.OVERLOADED, None), (E.INVALID_PARAMS, {"param": "from_height"})):
        with pytest.raises(_Resubscribe) as exc:
            s.on_message(_refused(code, data))
        assert not exc.value.pruned
    with pytest.raises(RPCCallError):
        s.on_message(_refused(E.INVALID_PARAMS, {"param": "prefix"}))
    s.on_message({"id": 1, "result": {"subscription": "s7", "from_height": 3}})
    with pytest.raises(_Resubscribe) as exc:  # a slow reader's notice: resume
        s.on_message({"method": "subscription_closed", "params": {
            "subscription": "s7", "code": E.OVERLOADED, "reason": "slow"}})
    assert not exc.value.pruned
    assert s.on_message({"method": "subscription", "params": {  # another subscription's
        "subscription": "s1", "height": 3, "result": _ev(3, 5, 0)}}) is None


def test_failover_gives_up_only_when_every_node_said_pruned():
    eps = C.Endpoints(["http://a", "http://b"])
    plan = Failover(eps, Cursor(height=5))
    urls = plan.urls()
    plan.failed(urls[0], _Resubscribe("gone", pruned=True))
    plan.failed(urls[1], OSError("refused"))
    assert plan.pause() > 0  # b may come back with the blocks
    for u in plan.urls():
        plan.failed(u, _Resubscribe("gone", pruned=True))
    with pytest.raises(WatchGap):
        plan.pause()
    plan.urls()
    plan.subscribed("http://b")  # took it, then closed it as pruned: no progress
    plan.failed("http://b", _Resubscribe("gone", pruned=True))
    with pytest.raises(WatchGap):
        plan.pause()
    plan.urls()
    plan.subscribed("http://b")
    plan.delivered()
    assert plan.pause() == 0 and eps.order()[0] == "http://b"


def test_a_watch_needs_an_ordered_topic_and_kv_a_prefix():
    with pytest.raises(ValueError):
        Session("txs", None, Cursor())
    with pytest.raises(ValueError):
        Session("kv", None, Cursor())
