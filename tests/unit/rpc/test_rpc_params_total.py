"""The RPC edge is total (issue 35): every parameter of every method is parsed into a typed
value or an invalid_params (-32602) error that names it, over POST, WebSocket and GET alike.
-32603 means a bug in the node, never a bad input; one bad call in a batch array never changes
the answers of the others."""

from __future__ import annotations

import json

import httpx
import pytest
import trio
from httpx_ws import aconnect_ws

from bftnode.app import ops
from bftnode.rpc import errors as E
from bftnode.rpc.methods import CallContext, dispatch, handle_body

from .app_node import AppNode, in_process_client
from .conftest import TxFactory, b64
from .fake_node import FakeNode

CLIENT = "ab" * 32  # a well-formed client_id (64 hex characters)


@pytest.fixture
def app_node() -> AppNode:
    return AppNode()


@pytest.fixture
async def client(app_node):
    async with in_process_client(app_node) as c:
        yield c


def call(method: str, id_: object = 1, **params) -> dict:
    return {"jsonrpc": "2.0", "id": id_, "method": method, "params": params}


async def post(client: httpx.AsyncClient, method: str, **params) -> dict:
    return (await client.post("/", json=call(method, **params))).json()


def assert_invalid_param(answer: dict, name: str) -> None:
    err = answer.get("error")
    assert err is not None, f"expected invalid_params for {name!r}, got {answer}"
    assert err["code"] == E.INVALID_PARAMS, err
    assert f"'{name}'" in err["message"], err


# ---------------------------------------------------------------- integers


async def test_a_decimal_string_integer_of_5000_digits_is_invalid_params(client):
    huge = "9" * 5000  # past Python's 4,300-digit int() limit
    assert_invalid_param(await post(client, "block", height=huge), "height")
    r = await client.get("/block", params={"height": huge})
    assert r.status_code == 400
    assert_invalid_param(r.json(), "height")


@pytest.mark.parametrize(
    "method, params, name",
    [
        ("lease_ttl", {"id": 2**64}, "id"),
        ("lease_ttl", {"id": 2**63}, "id"),
        ("tx_status", {"client_id": CLIENT, "request_seq": 2**70}, "request_seq"),
        ("tx_status", {"client_id": CLIENT, "request_seq": "1" * 30}, "request_seq"),
        ("block", {"height": 2**64}, "height"),
        ("blockchain", {"max_height": 10**40}, "max_height"),
        ("lock_status", {"name": "l", "token": 2**64}, "token"),
        ("kv_get", {"key": "k", "revision": 2**64}, "revision"),
        ("kv_range", {"limit": 2**64}, "limit"),
        ("tx_status", {"hash": "00" * 32, "valid_until": 2**64}, "valid_until"),
    ],
)
async def test_integers_beyond_63_bits_are_invalid_params_naming_the_param(
    client, method, params, name
):
    assert_invalid_param(await post(client, method, **params), name)


@pytest.mark.parametrize(
    "method, params, name",
    [
        ("block", {"height": True}, "height"),
        ("lease_ttl", {"id": False}, "id"),
        ("block", {"height": "²"}, "height"),  # a Unicode digit, not a decimal number
        ("block", {"height": "١٢"}, "height"),
        ("block", {"height": 1.5}, "height"),
        ("block", {"height": [1]}, "height"),
        ("block", {"height": {"n": 1}}, "height"),
        ("tx", {"hash": "00" * 32, "prove": 1}, "prove"),
        ("broadcast_tx_commit", {"tx": TxFactory(AppNode.domain).put("k", "v"), "timeout": "soon"},
         "timeout"),
    ],
)
async def test_values_of_the_wrong_type_are_invalid_params_naming_the_param(
    client, method, params, name
):
    assert_invalid_param(await post(client, method, **params), name)


# ---------------------------------------------------------------- strings


@pytest.mark.parametrize(
    "method, params, name",
    [
        ("kv_get", {"key": "\ud800"}, "key"),  # a lone surrogate is not UTF-8
        ("lock_status", {"name": "a\udfffb"}, "name"),
        ("tx", {"hash": "\ud800" * 64}, "hash"),
        ("tx_status", {"client_id": "\x00" * 64, "request_seq": 1}, "client_id"),
        ("kv_get", {"key": "k", "consistency": "serial\x00izable"}, "consistency"),
        ("kv_get", {"key": "k", "encoding": "utf8\x00"}, "encoding"),
    ],
)
async def test_strings_with_lone_surrogates_or_nul_where_text_is_expected_are_invalid_params(
    app_node, method, params, name
):
    # in process: JSON bodies cannot carry lone surrogates (they are parse errors there)
    assert_invalid_param(await dispatch(CallContext(app_node), call(method, **params)), name)


async def test_get_query_values_are_typed_by_the_method_not_guessed(client):
    # "true" is a key here (kv_get.key is a string), and "1" is a height
    r = await client.get("/kv_get", params={"key": "true"})
    assert r.status_code == 200, r.text
    assert r.json()["result"]["key"] == "true"
    r = await client.get("/tx", params={"hash": "00" * 32, "prove": "true"})
    assert r.json()["error"]["code"] == E.NOT_FOUND
    r = await client.get("/block", params={"height": "1e3"})
    assert_invalid_param(r.json(), "height")


# ---------------------------------------------------------------- one layer for every transport


def ws_url(url: str) -> str:
    return "ws" + url[4:] + "/websocket"


async def test_post_websocket_and_get_give_the_same_invalid_params_answer(url, http):
    huge = "7" * 4400
    by_post = (await http.post("/", json=call("block", height=huge))).json()
    by_get = (await http.get("/block", params={"height": huge})).json()
    async with httpx.AsyncClient() as c, aconnect_ws(ws_url(url), c) as ws:
        await ws.send_text(json.dumps(call("block", height=huge)))
        with trio.fail_after(5):
            by_ws = json.loads(await ws.receive_text())
    for answer in (by_post, by_get, by_ws):
        assert_invalid_param(answer, "height")
    assert by_post["error"] == by_ws["error"] == by_get["error"]


# ---------------------------------------------------------------- nesting and batches


async def test_a_json_body_nested_10000_deep_is_a_parse_error_not_a_crash(client):
    body = b"[" * 10_000 + b"]" * 10_000
    r = await client.post("/", content=body)
    assert r.status_code == 400  # refused before decoding (issue 27): the body itself is bad
    assert r.json()["error"]["code"] == E.PARSE_ERROR
    assert (await post(client, "status"))["result"]["height"] == 0


async def test_a_json_message_nested_10000_deep_over_websocket_is_a_parse_error(url):
    async with httpx.AsyncClient() as c, aconnect_ws(ws_url(url), c) as ws:
        await ws.send_text("[" * 10_000 + "]" * 10_000)
        with trio.fail_after(5):
            assert json.loads(await ws.receive_text())["error"]["code"] == E.PARSE_ERROR
            await ws.send_text(json.dumps(call("status", id_=2)))
            assert json.loads(await ws.receive_text())["result"]["height"] == 0


class BuggyNode(FakeNode):
    """A node with a bug on one op (it raises instead of answering), with or without the
    batch hand-off `submit_many` (which then raises for the whole batch)."""

    POISON = ops.put(b"poison", b"!")

    def __init__(self, many: bool) -> None:
        super().__init__()
        if many:
            self.submit_many = self._submit_many

    async def submit(self, request):
        if request.op == self.POISON:
            raise RecursionError("maximum recursion depth exceeded while deserializing")
        return await super().submit(request)

    async def _submit_many(self, requests):
        if any(r.op == self.POISON for r in requests):
            raise RecursionError("maximum recursion depth exceeded while deserializing")
        return [await FakeNode.submit(self, r) for r in requests]


def _sync_batch(domain: bytes, poison: bool) -> list[dict]:
    t = TxFactory(domain)
    calls = [call("broadcast_tx_sync", id_=i, tx=t.put(f"k{i}", "v", seq=i + 1))
             for i in range(5)]
    if poison:
        calls.insert(2, call("broadcast_tx_sync", id_="poison",
                             tx=b64(t.request(BuggyNode.POISON, seq=99))))
    return calls


@pytest.mark.parametrize("many", [False, True], ids=["one_by_one", "submit_many"])
async def test_a_node_failure_on_one_tx_of_a_batch_does_not_change_the_other_answers(many):
    clean, poisoned = BuggyNode(many), BuggyNode(many)
    expected = await handle_body(CallContext(clean),
                                 json.dumps(_sync_batch(clean.domain, False)))
    got = await handle_body(CallContext(poisoned),
                            json.dumps(_sync_batch(poisoned.domain, True)))
    by_id = {r["id"]: r for r in got}
    assert by_id.pop("poison")["error"]["code"] == E.INTERNAL_ERROR  # a bug in the node
    assert sorted(by_id.values(), key=lambda r: r["id"]) == expected
    assert poisoned.height() == clean.height() == 5


def _deep_op() -> bytes:
    # msgpack: an unknown field nested 10,000 maps deep before the "op" tag
    return b"\x82\xa3zzz" + b"\x81\xa1x" * 10_000 + b"\xc0" + b"\xa2op\xa3put"


async def test_deeply_nested_op_bytes_are_tx_rejected_and_the_rest_of_the_batch_commits(
    client, app_node
):
    t = TxFactory(app_node.domain)
    batch = [call("broadcast_tx_commit", id_=i, tx=t.put(f"k{i}", "v")) for i in range(3)]
    batch.append(call("broadcast_tx_commit", id_="deep", tx=b64(t.request(_deep_op()))))
    out = (await client.post("/", json=batch)).json()
    by_id = {r["id"]: r for r in out}
    assert by_id["deep"]["error"]["code"] == E.TX_REJECTED
    assert all(by_id[i]["result"]["code"] == 0 for i in range(3))
