"""JSON-RPC over HTTP against a fake node: every bad input gets a clear error, the server keeps
serving, and txs are client-signed and executed at most once."""

from __future__ import annotations

import base64
import json
import socket

import pytest
import trio

from bftnode.app import ops
from bftnode.rpc import errors as E
from bftnode.rpc.server import RPCStartupError, serve_rpc
from consensus import Request, encode, request_digest

from .conftest import TxFactory, b64, rpc
from .fake_node import FakeNode


async def test_status_and_validators_describe_the_chain(http, node):
    st = (await rpc(http, "status"))["result"]
    assert {"node_id", "view", "primary", "height", "last_block_hash"} <= st.keys()
    vals = (await rpc(http, "validators"))["result"]
    assert vals["total"] == 4 and vals["f"] == 1 and vals["quorum"] == 3
    assert vals["chain_id"] == node.chain_id


async def test_broadcast_tx_commit_returns_height_result_and_commit_certificate(http, txs):
    r = (await rpc(http, "broadcast_tx_commit", tx=txs.put("k", "v")))["result"]
    assert r["height"] == 1 and r["code"] == 0 and r["result"] == {"revision": 1}
    assert len(r["commit"]["commits"]) == 3 and r["commit"]["seq"] == 1
    block = (await rpc(http, "block", height=1))["result"]
    assert {"height", "hash", "prev_hash", "time", "txs", "commit"} <= block.keys()
    assert block["tx_hashes"] == [r["hash"]] and block["hash"] == r["block_hash"]


async def test_replayed_tx_gets_the_original_result_and_is_not_executed_twice(http, txs, node):
    tx = txs.put("k", "v")
    first = (await rpc(http, "broadcast_tx_commit", tx=tx))["result"]
    again = (await rpc(http, "broadcast_tx_commit", tx=tx))["result"]
    assert again["replayed"] is True and again["result"] == first["result"]
    assert again["height"] == first["height"] and node.height() == 1
    sync = (await rpc(http, "broadcast_tx_sync", tx=tx))["result"]
    assert sync["status"] == "committed" and sync["tx"]["hash"] == first["hash"]


async def test_tx_signed_with_a_wrong_key_or_for_another_chain_is_refused(http, txs, node):
    req = txs.request(ops.put(b"k", b"v"))
    forged = Request(req.client_id, req.request_seq, ops.put(b"k", b"evil"), 0, req.sig)
    r = await rpc(http, "broadcast_tx_commit", tx=b64(forged))
    assert r["error"]["code"] == E.BAD_SIGNATURE and "signature" in r["error"]["message"]
    from .conftest import TxFactory

    other = TxFactory(b"other-chain").put("k", "v")
    r = await rpc(http, "broadcast_tx_sync", tx=other)
    assert r["error"]["code"] == E.BAD_SIGNATURE and node.submitted == 0


async def test_tx_with_an_invalid_op_is_rejected_with_the_reason(http, txs):
    r = await rpc(http, "broadcast_tx_sync", tx=b64(txs.request(b"\xc1garbage")))
    assert r["error"]["code"] == E.TX_REJECTED and "bad op" in r["error"]["message"]
    assert r["error"]["data"]["hash"]


@pytest.mark.parametrize(
    "params, needle",
    [
        ({"tx": 5}, "must be a string"),
        ({"tx": "!!!not base64"}, "not valid base64"),
        ({"tx": base64.b64encode(b"\x01\x02").decode()}, "not an encoded consensus Request"),
        ({}, "missing required param 'tx'"),
    ],
)
async def test_malformed_tx_params_get_invalid_params(http, params, needle):
    r = await rpc(http, "broadcast_tx_commit", **params)
    assert r["error"]["code"] == E.INVALID_PARAMS and needle in r["error"]["message"]


async def test_wrong_param_types_and_unknown_methods(http):
    r = await rpc(http, "block", height="abc")
    assert r["error"]["code"] == E.INVALID_PARAMS and "'height'" in r["error"]["message"]
    r = await rpc(http, "block", height=0)
    assert r["error"]["code"] == E.INVALID_PARAMS
    r = await rpc(http, "tx", hash="zz")
    assert r["error"]["code"] == E.INVALID_PARAMS and "hex" in r["error"]["message"]
    r = await rpc(http, "no_such_method")
    assert r["error"]["code"] == E.METHOD_NOT_FOUND and "no_such_method" in r["error"]["message"]
    r = await rpc(http, "subscribe", topic="blocks")
    assert r["error"]["code"] == E.METHOD_NOT_FOUND and "websocket" in r["error"]["message"]
    r = await rpc(http, "block", height=99)
    assert r["error"]["code"] == E.NOT_FOUND


@pytest.mark.parametrize(
    "body, code",
    [
        (b"{not json", E.PARSE_ERROR),
        (b"", E.PARSE_ERROR),
        (b"42", E.INVALID_REQUEST),
        (b'{"jsonrpc": "1.0", "id": 1, "method": "status"}', E.INVALID_REQUEST),
        (b'{"jsonrpc": "2.0", "id": 1, "method": 7}', E.INVALID_REQUEST),
        (b'{"jsonrpc": "2.0", "id": {}, "method": "status"}', E.INVALID_REQUEST),
        (b'{"jsonrpc": "2.0", "id": 1, "method": "status", "params": 3}', E.INVALID_PARAMS),
        (b"[]", E.INVALID_REQUEST),
    ],
)
async def test_malformed_requests_get_the_matching_jsonrpc_error(http, body, code):
    r = await http.post("/", content=body, headers={"content-type": "application/json"})
    err = r.json()["error"]
    assert err["code"] == code and err["message"]
    assert (await rpc(http, "health"))["result"]["ok"] is True  # still serving


async def test_a_10_mb_body_gets_a_clear_error_and_the_server_keeps_serving(http, url):
    r = await http.post("/", content=b"[" + b" " * (10 * 1024 * 1024) + b"]")
    assert r.status_code == 413
    assert r.json()["error"]["code"] == E.TOO_LARGE and "limit" in r.json()["error"]["message"]
    assert (await rpc(http, "status"))["result"]["height"] == 0


async def test_batch_arrays_answer_each_call_by_id_and_skip_notifications(http, txs):
    batch = [
        {"jsonrpc": "2.0", "id": i, "method": "broadcast_tx_commit",
         "params": {"tx": txs.put(f"k{i}", str(i))}}
        for i in range(20)
    ]
    batch += [
        {"jsonrpc": "2.0", "id": "bad", "method": "nope"},
        {"jsonrpc": "2.0", "method": "status"},  # notification: no answer
        5,
    ]
    out = (await http.post("/", json=batch)).json()
    assert len(out) == 22
    by_id = {r["id"]: r for r in out}
    assert all(by_id[i]["result"]["code"] == 0 for i in range(20))
    assert len({by_id[i]["result"]["hash"] for i in range(20)}) == 20
    assert by_id["bad"]["error"]["code"] == E.METHOD_NOT_FOUND
    assert by_id[None]["error"]["code"] == E.INVALID_REQUEST


async def test_a_batch_of_only_notifications_gets_no_content(http):
    r = await http.post("/", json=[{"jsonrpc": "2.0", "method": "status"}])
    assert r.status_code == 204


async def test_tx_lookup_by_hash_and_by_client_seq(http, txs):
    req = txs.request(ops.put(b"a", b"1"))
    await rpc(http, "broadcast_tx_commit", tx=b64(req))
    h = request_digest(req).hex()
    got = (await rpc(http, "tx", hash=h, prove=True))["result"]
    assert got["hash"] == h and got["commit"]["seq"] == got["height"]
    st = (await rpc(http, "tx_status", client_id=req.client_id.hex(),
                    request_seq=req.request_seq))["result"]
    assert st["committed"] is True and st["tx"]["hash"] == h
    st = (await rpc(http, "tx_status", client_id=req.client_id.hex(), request_seq=999))["result"]
    assert st["committed"] is False


async def test_kv_reads_return_value_and_revision_and_map_app_errors(http, txs):
    await rpc(http, "broadcast_tx_commit", tx=txs.put("greeting", "héllo"))
    got = (await rpc(http, "kv_get", key="greeting"))["result"]
    assert got["value"] == "héllo" and got["revision"] == 1
    got = (await rpc(http, "kv_get", key=base64.b64encode(b"greeting").decode(),
                     encoding="base64"))["result"]
    assert got["value"] == base64.b64encode("héllo".encode()).decode()
    rng = (await rpc(http, "kv_range", key="gr"))["result"]
    assert rng["count"] == 1
    r = await rpc(http, "lease_ttl", id=7)
    assert r["error"]["code"] == E.APP_ERROR and r["error"]["data"]["name"] == "not_found"
    r = await rpc(http, "kv_get", key="greeting", consistency="linearizable")
    assert r["error"]["code"] == E.INVALID_PARAMS and "consensus" in r["error"]["message"]


async def test_a_failing_node_method_is_an_internal_error_not_a_crash(http, node):
    def broken() -> dict:
        raise RuntimeError("disk on fire")

    node.net_info = broken
    r = await rpc(http, "net_info")
    assert r["error"]["code"] == E.INTERNAL_ERROR and "disk on fire" in r["error"]["message"]
    assert (await rpc(http, "status"))["result"]["height"] == 0


async def test_broadcast_tx_commit_times_out_with_a_clear_error(http, txs, node):
    node.auto_commit = False
    r = await rpc(http, "broadcast_tx_commit", tx=txs.put("k", "v"), timeout=0.2)
    assert r["error"]["code"] == E.TIMEOUT and "retry with the SAME" in r["error"]["message"]


async def test_broadcast_tx_async_returns_before_the_commit(http, txs, node):
    node.auto_commit = False
    r = (await rpc(http, "broadcast_tx_async", tx=txs.put("k", "v")))["result"]
    assert len(r["hash"]) == 64
    with trio.fail_after(5):
        while not node.pending:
            await trio.sleep(0.01)


async def test_health_metrics_and_uri_endpoints(http, txs):
    assert (await http.get("/health")).json()["ok"] is True
    await rpc(http, "broadcast_tx_commit", tx=txs.put("k", "v"))
    await rpc(http, "nope")
    text = (await http.get("/metrics")).text
    assert "fake_height 1" in text
    assert 'bftnode_rpc_errors_total{code="-32601",method="?"} 1.0' in text
    r = await http.get("/block", params={"height": "1"})
    assert r.status_code == 200 and r.json()["result"]["height"] == 1
    assert (await http.get("/nope")).status_code == 404


async def test_a_busy_port_is_a_clear_startup_error(node, nursery):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        with pytest.raises(RPCStartupError, match="already in use"):
            await nursery.start(serve_rpc, node, "127.0.0.1", port)


async def test_a_tx_larger_than_the_body_limit_is_too_large(http, txs):
    big = base64.b64encode(encode(txs.request(ops.put(b"k", b"v" * 900_000)))).decode()
    r = await http.post("/", json={"jsonrpc": "2.0", "id": 1, "method": "broadcast_tx_sync",
                                   "params": {"tx": big}})
    assert r.status_code == 413 and r.json()["error"]["code"] == E.TOO_LARGE


async def test_reusing_a_request_seq_for_different_content_is_rejected(http, txs):
    first = (await rpc(http, "broadcast_tx_commit", tx=txs.put("k", "v", seq=5)))["result"]
    r = await rpc(http, "broadcast_tx_commit", tx=txs.put("k", "other", seq=5))
    assert r["error"]["code"] == E.CONFLICTING_REQUEST and "already used" in r["error"]["message"]
    assert r["error"]["data"]["committed_hash"] == first["hash"]


async def test_a_batch_of_sync_submits_goes_to_the_node_at_once_with_the_same_answers():
    # a batch array of only broadcast_tx_sync takes the node's submit_many (one hand-off);
    # every answer must equal what the call-by-call path gives, errors and notifications too
    from bftnode.rpc.methods import CallContext, handle_body

    class ManyNode(FakeNode):
        def __init__(self) -> None:
            super().__init__()
            self.many_calls = 0

        async def submit_many(self, requests):
            self.many_calls += 1
            return [await self.submit(r) for r in requests]

    def batch(domain: bytes) -> bytes:
        t = TxFactory(domain)
        other = TxFactory(b"another chain")
        calls = [
            {"jsonrpc": "2.0", "id": 1, "method": "broadcast_tx_sync", "params": {"tx": t.put("a", "1", 1)}},
            {"jsonrpc": "2.0", "id": 2, "method": "broadcast_tx_sync", "params": {"tx": "not base64!"}},
            {"jsonrpc": "2.0", "id": 3, "method": "broadcast_tx_sync", "params": {"tx": other.put("b", "2")}},
            {"jsonrpc": "2.0", "method": "broadcast_tx_sync", "params": {"tx": t.put("c", "3", 3)}},
            {"jsonrpc": "2.0", "id": 5, "method": "broadcast_tx_sync", "params": {"tx": t.put("a", "1", 1)}},
            {"jsonrpc": "2.0", "id": 6, "method": "broadcast_tx_sync", "params": {"tx": t.put("z", "9", 1)}},
            {"jsonrpc": "2.0", "id": 7, "method": "broadcast_tx_sync",
             "params": {"tx": b64(t.request(b"\xff garbage op", 7))}},
            {"jsonrpc": "1.0", "id": 8, "method": "broadcast_tx_sync", "params": {}},
        ]
        return json.dumps(calls).encode()

    def first(domain: bytes) -> bytes:  # commits (a, seq 1): ids 5 and 6 below then replay it
        return json.dumps([{"jsonrpc": "2.0", "id": 0, "method": "broadcast_tx_sync",
                            "params": {"tx": TxFactory(domain).put("a", "1", 1)}}]).encode()

    one_by_one, many = FakeNode(), ManyNode()
    for n in (one_by_one, many):
        assert (await handle_body(CallContext(n), first(n.domain)))[0]["result"]["status"]
    expected = await handle_body(CallContext(one_by_one), batch(one_by_one.domain))
    got = await handle_body(CallContext(many), batch(many.domain))
    assert many.many_calls == 2 and many.submitted == one_by_one.submitted == 6
    assert got == expected
    by_id = {r["id"]: r for r in got}
    assert len(got) == 7  # the notification gets no answer
    assert by_id[1]["result"]["status"] == by_id[5]["result"]["status"] == "committed"
    assert by_id[2]["error"]["code"] == E.INVALID_PARAMS
    assert by_id[3]["error"]["code"] == E.BAD_SIGNATURE
    assert by_id[6]["error"]["code"] == E.CONFLICTING_REQUEST and "already used" in by_id[6]["error"]["message"]
    assert by_id[7]["error"]["code"] == E.TX_REJECTED
    assert by_id[8]["error"]["code"] == E.INVALID_REQUEST
