"""Bad input at the RPC edge (issue 27, item 5), against the real server (hypercorn on trio):
JSON nested 10,000 deep or holding 100,000 values is refused on its raw bytes before it is
decoded (HTTP 400 with -32700 / -32600 over POST, an error reply over WebSocket); a bad
WebSocket message of any kind gets an error reply and the connection and its subscriptions
stay; the largest legal requests still pass; every metric label stays in a closed set however
many distinct names a client sends."""

from __future__ import annotations

import json
import random
import string
from functools import partial
from urllib.parse import quote

import httpx
import pytest
import trio
from httpx_ws import aconnect_ws

from bftnode.app import ops
from bftnode.config import ConfigError, NodeConfig
from bftnode.rpc import errors as E
from bftnode.rpc.bounds import REASONS, BadPayload, check_json_bounds
from bftnode.rpc.limits import RPCLimits
from bftnode.rpc.metrics import RPCMetrics
from bftnode.rpc.registry import METHODS, WS_ONLY
from bftnode.rpc.server import serve_rpc

from .conftest import rpc
from .fake_node import FakeNode

DEEP_ARRAY = b"[" * 10_000 + b"]" * 10_000
DEEP_OBJECT = b'{"a":' * 10_000 + b"1" + b"}" * 10_000
BIG_ARRAY = b"[" + b",".join([b"1"] * 100_000) + b"]"
BIG_PARAMS = (b'{"jsonrpc":"2.0","id":1,"method":"status","params":{"x":['
              + b",".join([b"0"] * 100_000) + b"]}}")


def ws_url(url: str) -> str:
    return "ws" + url[4:] + "/websocket"


def call(method: str, id_: object = 1, **params) -> dict:
    return {"jsonrpc": "2.0", "id": id_, "method": method, "params": params}


async def recv(ws, timeout: float = 5.0) -> dict:
    with trio.fail_after(timeout):
        return json.loads(await ws.receive_text())


# ---------------------------------------------------------------- POST


@pytest.mark.parametrize(
    "body, code, words",
    [
        (DEEP_ARRAY, E.PARSE_ERROR, "nested deeper than 32 levels"),
        (DEEP_OBJECT, E.PARSE_ERROR, "nested deeper than 32 levels"),
        (b"[" * 10_000, E.PARSE_ERROR, "not valid JSON"),
        (BIG_ARRAY, E.INVALID_REQUEST, "over the limit of 50000"),
        (BIG_PARAMS, E.INVALID_REQUEST, "over the limit of 50000"),
        (b"{nope", E.PARSE_ERROR, "not valid JSON"),
        (b'{"jsonrpc": "2.0", "id": 1, "method": "status"', E.PARSE_ERROR, "not valid JSON"),
    ],
    ids=["10k_arrays", "10k_objects", "10k_unclosed", "100k_array", "100k_in_params",
         "malformed", "truncated"],
)
async def test_a_body_over_the_json_bounds_or_not_json_is_http_400_and_the_server_serves(
    http, body, code, words
):
    r = await http.post("/", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 400
    answer = r.json()
    assert answer["id"] is None and answer["error"]["code"] == code
    assert words in answer["error"]["message"]
    assert (await rpc(http, "status"))["result"]["height"] == 0


async def test_a_bad_call_in_a_good_body_is_still_http_200(http):
    r = await http.post("/", json=call("no_such_method"))
    assert r.status_code == 200 and r.json()["error"]["code"] == E.METHOD_NOT_FOUND


async def test_the_largest_legal_requests_pass_the_bounds(http, txs):
    widest = call("kv_range", key="k", prefix=True, limit=10, revision=None, min_revision=0,
                  keys_only=False, count_only=False, consistency="serializable",
                  encoding="utf8")
    batch = [dict(widest, id=i) for i in range(1000)]  # MAX_BATCH calls, every param set
    r = await http.post("/", json=batch)
    assert r.status_code == 200
    assert len(r.json()) == 1000 and all("result" in a for a in r.json())
    # brackets, braces, commas and quotes inside strings are text, not structure
    key = "[{," * 30_000 + '\\"'
    r = await http.post("/", json=call("kv_get", key=key))
    assert r.status_code == 200 and r.json()["result"]["value"] is None
    big = txs.put("k", "v" * 600_000)  # a tx of 600 kB: one call, no bracket in base64
    r = await http.post("/", json=call("broadcast_tx_commit", tx=big))
    assert r.status_code == 200 and r.json()["result"]["code"] == 0


async def test_the_json_bounds_come_from_the_limits(nursery, node):
    limits = RPCLimits(max_json_depth=3, max_json_elements=100)
    url = await nursery.start(partial(serve_rpc, node, "127.0.0.1", 0, limits=limits))
    async with httpx.AsyncClient(base_url=url, timeout=10) as c:
        ok = await c.post("/", json=[call("status")])  # batch, call, params: 3 levels
        assert ok.status_code == 200 and ok.json()[0]["result"]["height"] == 0
        deep = await c.post("/", json=[call("status", x=[1])])  # 4 levels
        assert deep.status_code == 400 and "deeper than 3 levels" in deep.json()["error"]["message"]
        many = await c.post("/", json=[call("status", id_=i) for i in range(30)])
        assert many.status_code == 400 and many.json()["error"]["code"] == E.INVALID_REQUEST


def test_node_config_fields_set_the_json_bounds_and_are_checked(tmp_path):
    base = {"home": tmp_path, "node_index": 0, "chain_id": "c"}
    cfg = NodeConfig(**base, rpc_max_json_depth=8, rpc_max_json_elements=20_000)
    limits = RPCLimits.from_config(cfg)
    assert (limits.max_json_depth, limits.max_json_elements) == (8, 20_000)
    default = RPCLimits.from_config(NodeConfig(**base))
    assert (default.max_json_depth, default.max_json_elements) == (32, 50_000)
    for bad in ({"rpc_max_json_depth": 2}, {"rpc_max_json_depth": 10_000},
                {"rpc_max_json_elements": 10}, {"rpc_max_json_depth": True}):
        with pytest.raises(ConfigError, match=next(iter(bad))):
            NodeConfig(**base, **bad)


def test_the_scan_counts_structure_not_string_contents():
    check_json_bounds(json.dumps({"k": "[" * 100_000 + "," * 100_000}).encode(), 3, 10)
    check_json_bounds(b'["\\"[[[[[", [[1]]]', 3, 10)
    with pytest.raises(BadPayload) as exc:
        check_json_bounds(b'["\\\\", [[[1]]]]', 3, 10)  # an escaped backslash ends the string
    assert exc.value.reason == "too_deep"
    with pytest.raises(BadPayload) as exc:
        check_json_bounds(b"]" * 40 + b"[" * 40, 32, 1000)
    assert exc.value.code == E.PARSE_ERROR and exc.value.reason == "malformed"


# ---------------------------------------------------------------- WebSocket

BAD_FRAMES = [
    ("10k_arrays", DEEP_ARRAY.decode(), E.PARSE_ERROR),
    ("10k_objects", DEEP_OBJECT.decode(), E.PARSE_ERROR),
    ("100k_array", BIG_ARRAY.decode(), E.INVALID_REQUEST),
    ("100k_in_params", BIG_PARAMS.decode(), E.INVALID_REQUEST),
    ("malformed", "{nope", E.PARSE_ERROR),
    ("unknown_method", json.dumps(call("no_such_method", id_=9)), E.METHOD_NOT_FOUND),
    ("wrong_params", json.dumps(call("block", id_=9, height="x")), E.INVALID_PARAMS),
    ("bad_subscribe", json.dumps(call("subscribe", id_=9, topic="weather")), E.INVALID_PARAMS),
    ("binary_frame", json.dumps(call("status", id_=9)).encode(), E.INVALID_REQUEST),
]


@pytest.mark.parametrize("frame, code", [f[1:] for f in BAD_FRAMES], ids=[f[0] for f in BAD_FRAMES])
async def test_a_bad_websocket_message_gets_an_error_and_the_subscription_survives(
    url, node, txs, frame, code
):
    async with httpx.AsyncClient() as c, aconnect_ws(ws_url(url), c) as ws:
        await ws.send_text(json.dumps(call("subscribe", id_="sub", topic="blocks")))
        sid = (await recv(ws))["result"]["subscription"]
        if isinstance(frame, bytes):
            await ws.send_bytes(frame)
        else:
            await ws.send_text(frame)
        err = await recv(ws)
        assert err["error"]["code"] == code and err["error"]["message"]
        await node.submit(txs.request(ops.put(b"after", b"bad")))  # the next block
        note = await recv(ws)
        assert note["method"] == "subscription" and note["params"]["subscription"] == sid
        assert note["params"]["height"] == 1
        await ws.send_text(json.dumps(call("status", id_="ok")))
        assert (await recv(ws))["result"]["height"] == 1


async def test_a_websocket_survives_every_bad_frame_in_a_row(url, node, txs):
    async with httpx.AsyncClient() as c, aconnect_ws(ws_url(url), c) as ws:
        await ws.send_text(json.dumps(call("subscribe", id_="sub", topic="blocks")))
        sid = (await recv(ws))["result"]["subscription"]
        for _, frame, _ in BAD_FRAMES:
            await (ws.send_bytes(frame) if isinstance(frame, bytes) else ws.send_text(frame))
        codes = sorted([(await recv(ws))["error"]["code"] for _ in BAD_FRAMES])
        assert codes == sorted(code for _, _, code in BAD_FRAMES)
        await node.submit(txs.request(ops.put(b"after", b"all")))
        note = await recv(ws)
        assert note["params"]["subscription"] == sid and note["params"]["height"] == 1


# ---------------------------------------------------------------- metrics


def _hostile_names(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    alphabet = string.printable + "\u00e9\u4e2d\U0001f600"
    return [f"{i}-" + "".join(rng.choices(alphabet, k=rng.randint(1, 40))) for i in range(n)]


def _label_values(metrics: RPCMetrics, family: str, label: str) -> set[str]:
    return {s.labels[label] for m in metrics.registry.collect() if m.name == family
            for s in m.samples if label in s.labels}


async def test_metric_labels_stay_in_a_closed_set_whatever_clients_send(nursery, node):
    metrics = RPCMetrics()
    url = await nursery.start(partial(serve_rpc, node, "127.0.0.1", 0, metrics=metrics))
    names = _hostile_names(1000, seed=27)
    async with httpx.AsyncClient(base_url=url, timeout=30) as c:
        answers = (await c.post("/", json=[call(n, id_=i) for i, n in enumerate(names)])).json()
        assert len(answers) == 1000
        assert all(a["error"]["code"] == E.METHOD_NOT_FOUND for a in answers)
        for name in names[:50]:  # GET /<method> with hostile names too
            assert (await c.get("/" + quote(name, safe=""))).status_code < 500
        for body in (DEEP_ARRAY, BIG_ARRAY, b"{nope"):
            assert (await c.post("/", content=body)).status_code == 400
    async with httpx.AsyncClient() as c, aconnect_ws(ws_url(url), c) as ws:
        for i, name in enumerate(names[:200]):
            await ws.send_text(json.dumps(call(name, id_=i)))
        await ws.send_text(json.dumps(call("subscribe", id_="s", topic=names[0])))
        await ws.send_bytes(b"\x00\xff")
        for _ in range(202):
            assert "error" in await recv(ws)
    # direct hostile values for every label the counters take from a caller
    for name in names:
        metrics.on_error(name, hash(name) % 100_000)
        metrics.on_bad_input(name, name)
    methods = _label_values(metrics, "bftnode_rpc_errors", "method")
    assert methods <= set(METHODS) | set(WS_ONLY) | {"?"}
    assert methods and len(methods) <= 4
    codes = _label_values(metrics, "bftnode_rpc_errors", "code")
    assert codes <= {str(code) for code in E.CODE_NAMES} | {"other"}
    assert _label_values(metrics, "bftnode_rpc_bad_input", "reason") <= set(REASONS)
    assert _label_values(metrics, "bftnode_rpc_bad_input", "transport") <= {
        "http", "websocket", "other"}
    sizes = {m.name: len(m.samples) for m in metrics.registry.collect()}
    assert max(sizes.values()) < 60, sizes
    assert metrics.value("bftnode_rpc_bad_input_total",
                         {"transport": "http", "reason": "too_deep"}) == 1
    assert metrics.value("bftnode_rpc_bad_input_total",
                         {"transport": "websocket", "reason": "binary_frame"}) == 1


async def test_a_flood_of_bad_calls_logs_a_few_lines_per_second_and_counts_the_rest():
    from structlog.testing import capture_logs

    from bftnode.rpc import registry
    from bftnode.rpc.methods import CallContext, handle_body

    ctx = CallContext(FakeNode(), peer="6.6.6.6:1")
    bad = json.dumps([{"jsonrpc": "2.0", "id": i, "method": "nope"} for i in range(1000)])
    with capture_logs() as logs:
        out = await handle_body(ctx, bad)
        assert len(out) == 1000 and {r["error"]["code"] for r in out} == {E.METHOD_NOT_FOUND}
        registry._error_lines["6.6.6.6"][0] -= 1.0  # a second later
        await handle_body(ctx, "{nope")  # bad input counts toward the same lines
    lines = [e for e in logs if e["event"] in ("rpc.error", "rpc.bad_input")]
    assert len(lines) == registry.ERROR_LOG_PER_S + 1
    assert lines[-1]["event"] == "rpc.bad_input"
    assert lines[-1]["unlogged"] == 1000 - registry.ERROR_LOG_PER_S
