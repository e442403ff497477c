"""Property (issue 35): whatever a caller sends as the params of any method, over POST, GET or
in process, every answer is a result or a documented error code, never -32603 (which means a
bug in the node); and a call's answer in a batch array is the answer it gets alone.

Params start from a valid call of the method and are mutated: integers at and past the edges
of 63 and 64 bits, decimal strings past Python's 4,300-digit int() limit, Unicode digits,
floats with NaN and infinities, wrong types, nesting thousands deep, empty and huge
collections, strings with NUL or lone surrogates, invalid UTF-8 in the body."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from bftnode.rpc import errors as E
from bftnode.rpc.methods import SCHEMAS, WS_ONLY, CallContext, dispatch, encode_answer
from bftnode.rpc.params import SubscribeParams, UnsubscribeParams, parse

from .app_node import AppNode, in_process_client
from .conftest import TxFactory

DOCUMENTED = {E.PARSE_ERROR, E.INVALID_REQUEST, E.METHOD_NOT_FOUND, E.INVALID_PARAMS,
              E.TX_REJECTED, E.TIMEOUT, E.BAD_SIGNATURE, E.APP_ERROR, E.NOT_FOUND,
              E.TOO_LARGE, E.OVERLOADED, E.RATE_LIMITED, E.STALE_READ}
TX = TxFactory(AppNode.domain, seed=7)
CLIENT = TX.signer.public_key.hex()
BASE: dict[str, dict[str, Any]] = {
    "block": {"height": 1},
    "blockchain": {"min_height": 1, "max_height": 3},
    "tx": {"hash": "ab" * 32, "prove": True},
    "tx_status": {"client_id": CLIENT, "request_seq": 1},
    "broadcast_tx_async": {"tx": TX.put("k", "v", seq=1)},
    "broadcast_tx_sync": {"tx": TX.put("k", "v", seq=2)},
    "broadcast_tx_commit": {"tx": TX.put("k", "v", seq=3), "timeout": 0.05},
    "kv_get": {"key": "k", "revision": 0},
    "kv_range": {"key": "", "limit": 5, "keys_only": True},
    "lease_ttl": {"id": 1, "keys": True},
    "lock_status": {"name": "l", "token": 1},
    "election_leader": {"name": "e"},
    "block_by_hash": {"hash": "ab" * 32},
    "tx_search": {"query": "tx.height>=1 AND tx.height<3", "per_page": 5},
    "header": {"height": 1},
    "commit": {"height": 1},
    "block_results": {"height": 1},
    "abci_query": {"path": "/key", "data": "6b", "prove": False},
    "check_tx": {"tx": TX.put("k", "v", seq=4)},
    "unconfirmed_txs": {"limit": 5},
    "subscribe": {"topic": "kv", "prefix": "app/", "from_height": 1},
    "unsubscribe": {"subscription": "s1"},
}
ALL_SCHEMAS = {**SCHEMAS, "subscribe": SubscribeParams, "unsubscribe": UnsubscribeParams}
METHODS = sorted(SCHEMAS) + list(WS_ONLY) + ["no_such_method"]
READS = [m for m in sorted(SCHEMAS)
         if not m.startswith("broadcast")
         and m not in ("consensus_health", "dump_consensus_state")]  # wall-clock age


class Deep:
    """A value nested `depth` arrays deep (built iteratively: json.dumps would recurse)."""

    def __init__(self, depth: int) -> None:
        self.depth = depth

    def python(self) -> list:
        v: list = []
        for _ in range(self.depth):
            v = [v]
        return v

    def marker(self) -> str:
        return f"\x01deep{self.depth}\x01"


EDGE_INTS = [-(2**64), -(2**63) - 1, -(2**63), -1, 0, 1, 2**31 - 1, 2**32, 2**53 + 1,
             2**63 - 1, 2**63, 2**64 - 1, 2**64, 10**30]
ints = st.one_of(st.sampled_from(EDGE_INTS), st.integers())
int_texts = st.one_of(
    st.sampled_from([str(i) for i in EDGE_INTS]),
    st.integers(4_290, 6_000).map(lambda n: "9" * n),
    st.sampled_from(["²", "١٢", " 12 ", "+5", "-0", "1e3", "0x10", "1_000", "NaN", "inf",
                     "", " ", "1.0", "true", "null", "0" * 30 + "1"]),
)
surrogates = st.text(st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF),
                     min_size=1, max_size=3)
texts = st.one_of(
    st.text(max_size=40),
    surrogates,
    st.text(max_size=8).map(lambda s: s + "\x00" + s),
    st.sampled_from(["00" * 32, "0x" + "ab" * 32, CLIENT, "AA==", "=", "utf8", "base64",
                     "linearizable", "sequential", "blocks", "kv", TX.put("a", "b", seq=9),
                     TX.put("a", "b", seq=2**63 - 1)]),
)
collections = st.one_of(
    st.just([]), st.just({}),
    st.integers(0, 20_000).map(lambda n: [0] * n),
    st.integers(0, 3_000).map(lambda n: {str(i): i for i in range(n)}),
    st.lists(ints, max_size=4),
    st.dictionaries(st.text(max_size=4), ints, max_size=4),
)
values = st.one_of(ints, int_texts, st.floats(), st.booleans(), st.none(), texts,
                   st.integers(1, 3_000).map(Deep), collections)
ids = st.one_of(st.integers(-(2**70), 2**70), st.text(max_size=5), st.none(), st.floats(),
                st.booleans(), st.just([1]))


@st.composite
def calls(draw: st.DrawFn, methods: list[str] = METHODS) -> dict[str, Any]:
    method = draw(st.sampled_from(methods))
    params: Any = dict(BASE.get(method, {}))
    schema = ALL_SCHEMAS.get(method)
    names = list(schema.__struct_fields__ if schema else ()) + ["encoding", "zzz"]
    for name in draw(st.lists(st.sampled_from(names), max_size=3, unique=True)):
        if name in params and draw(st.integers(0, 4)) == 0:
            del params[name]
        else:
            params[name] = draw(values)
    shape = draw(st.sampled_from(["object"] * 12 + ["array", "empty", "scalar", "null"]))
    call: dict[str, Any] = {"jsonrpc": "2.0", "id": draw(ids), "method": method}
    if shape == "object":
        call["params"] = params
    elif shape == "array":
        call["params"] = list(params.values())
    elif shape == "empty":
        call["params"] = []
    elif shape == "scalar":
        call["params"] = draw(values)
    else:
        call["params"] = None
    return call


def _walk(obj: Any, leaf: Any) -> Any:
    """`obj` with every Deep value replaced by leaf(deep)."""
    if isinstance(obj, Deep):
        return leaf(obj)
    if isinstance(obj, dict):
        return {k: _walk(v, leaf) for k, v in obj.items()}
    if isinstance(obj, list) and obj and any(isinstance(v, Deep | dict) for v in obj):
        return [_walk(v, leaf) for v in obj]
    return obj


def python(obj: Any) -> Any:
    """The call as plain Python objects (Deep values built)."""
    return _walk(obj, Deep.python)


def json_body(obj: Any) -> bytes:
    """JSON text of the call(s); lone surrogates go out as \\u escapes, NaN as NaN (both then
    not JSON to our parser: a parse error is a documented answer)."""
    deep: list[Deep] = []

    def mark(d: Deep) -> str:
        deep.append(d)
        return d.marker()

    text = json.dumps(_walk(obj, mark))
    for d in deep:
        text = text.replace(json.dumps(d.marker()), "[" * d.depth + "]" * d.depth, 1)
    return text.encode()


def assert_documented(answer: dict[str, Any]) -> None:
    assert ("result" in answer) != ("error" in answer), answer
    if "error" in answer:
        err = answer["error"]
        assert err["code"] in DOCUMENTED, err
        assert isinstance(err["message"], str) and err["message"]


def answers(out: Any) -> list[dict[str, Any]]:
    return out if isinstance(out, list) else [] if out is None else [out]


PROPERTY = settings(max_examples=200, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@PROPERTY
@given(batch=st.lists(calls(), min_size=1, max_size=6), single=st.booleans(),
       corrupt=st.one_of(st.none(), st.tuples(st.sampled_from([b"\xff", b"\xed\xa0\x80",
                                                               b"\xc0\x80", b"\x00"]),
                                              st.integers(0, 10_000))))
async def test_post_answers_every_call_with_a_result_or_a_documented_error(batch, single,
                                                                           corrupt):
    body = json_body(batch[0] if single else batch)
    if corrupt is not None:  # invalid UTF-8 (or a NUL byte) somewhere in the body
        bad, at = corrupt
        at %= len(body)
        body = body[:at] + bad + body[at:]
    async with in_process_client(AppNode()) as client:
        r = await client.post("/", content=body)
    # 400: the body itself is not JSON or is over the JSON bounds (issue 27), refused whole
    assert r.status_code in (200, 204, 400, 413), r.text
    if r.status_code != 204:
        for answer in answers(r.json()):
            assert_documented(answer)


@PROPERTY
@given(call=calls())
async def test_in_process_calls_with_any_python_values_get_documented_answers(call):
    # values JSON cannot carry reach the method table too (lone surrogates, NaN, bytes)
    out = await dispatch(CallContext(AppNode()), python(call))
    for answer in answers(out):
        assert_documented(answer)
    json.loads(encode_answer(out) if out is not None else b"null")


@PROPERTY
@given(call=calls(), extra=st.dictionaries(st.sampled_from(["height", "key", "id", "hash"]),
                                           values, max_size=2))
async def test_get_query_params_get_the_same_documented_answers(call, extra):
    assume(call["method"] != "health")  # GET /health is the health check, not the method
    params = call["params"] if isinstance(call["params"], dict) else {}
    query = {k: v if isinstance(v, str) else json.dumps(python(v))
             for k, v in {**params, **extra}.items() if not isinstance(v, Deep)}
    assume(all(not any(0xD800 <= ord(c) <= 0xDFFF for c in v) for v in query.values()))
    assume(sum(len(v) for v in query.values()) < 16_000)  # a head past 64 KiB is refused first
    async with in_process_client(AppNode()) as client:
        r = await client.get(f"/{call['method']}", params=query)
    assert r.status_code in (200, 400, 404), r.text
    assert_documented(r.json())


@settings(max_examples=100, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(batch=st.lists(calls(READS), min_size=2, max_size=6))
async def test_a_call_in_a_batch_gets_the_answer_it_gets_alone(batch):
    batch = [{**c, "id": i} for i, c in enumerate(batch)]  # ids tell the answers apart
    together = await dispatch(CallContext(AppNode()), python(batch))
    alone = [await dispatch(CallContext(AppNode()), python(c)) for c in batch]
    assert together == [a for a in alone if a is not None]


@PROPERTY
@given(call=calls(["subscribe", "unsubscribe"]))
def test_subscribe_and_unsubscribe_params_parse_or_are_invalid_params(call):
    # WebSocket-only methods: their params go through the same layer (bftnode.rpc.websocket)
    params = python(call["params"]) if isinstance(call["params"], dict) else {}
    try:
        parse(ALL_SCHEMAS[call["method"]], params)
    except E.RPCError as err:
        assert err.code == E.INVALID_PARAMS, err
        assert err.message.startswith(("param '", "missing required param '")), err


@pytest.mark.parametrize("method", sorted(SCHEMAS))
async def test_every_method_answers_its_base_call(method):
    """The mutations start from calls that work (else they would test little)."""
    call = {"jsonrpc": "2.0", "id": 1, "method": method, "params": BASE.get(method, {})}
    answer = await dispatch(CallContext(AppNode()), call)
    assert answer is not None
    assert "result" in answer or answer["error"]["code"] in (E.NOT_FOUND, E.APP_ERROR), answer
