"""CometBFT's routes (bftnode.rpc.comet) and positional params against the fake node, over the
real HTTP server: POST with named or positional params, and GET with query strings."""

from __future__ import annotations

import base64

from bftnode.rpc import errors as E

from .conftest import rpc


async def _call(http, method: str, params) -> dict:
    r = await http.post("/", json={"jsonrpc": "2.0", "id": 1, "method": method,
                                   "params": params})
    return r.json()


async def test_header_commit_and_block_results_describe_a_block(http, txs):
    put = (await rpc(http, "broadcast_tx_commit", tx=txs.put("k", "v")))["result"]
    header = (await _call(http, "header", [1]))["result"]
    assert header["height"] == 1 and header["hash"] == put["block_hash"]
    assert "txs" not in header and "commit" not in header
    commit = (await rpc(http, "commit", height=1))["result"]
    assert commit["header"]["hash"] == put["block_hash"] and commit["canonical"] is True
    assert len(commit["commit"]["commits"]) == 3
    results = (await rpc(http, "block_results"))["result"]  # latest
    assert results["height"] == 1 and results["num_txs"] == 1
    assert [r["hash"] for r in results["txs_results"]] == [put["hash"]]
    assert results["txs_results"][0]["code"] == 0
    r = await rpc(http, "header", height=9)
    assert r["error"]["code"] == E.NOT_FOUND
    by_hash = (await _call(http, "block_by_hash", [put["block_hash"]]))["result"]
    assert by_hash["height"] == 1 and by_hash["tx_hashes"] == [put["hash"]]
    r = await rpc(http, "block_by_hash", hash="00" * 32)
    assert r["error"]["code"] == E.NOT_FOUND and "no stored block" in r["error"]["message"]


async def test_genesis_and_abci_info(http, txs, node):
    g = (await rpc(http, "genesis"))["result"]["genesis"]
    assert g["chain_id"] == node.chain_id and len(g["validators"]) == 4
    await rpc(http, "broadcast_tx_commit", tx=txs.put("k", "v"))
    info = (await rpc(http, "abci_info"))["result"]["response"]
    assert info["data"] == "bftnode" and info["last_block_height"] == 1
    assert len(info["last_block_app_hash"]) == 64


async def test_abci_query_reads_a_key_given_in_hex(http, txs):
    await rpc(http, "broadcast_tx_commit", tx=txs.put("k", "v"))
    got = (await _call(http, "abci_query", ["/key", "6b"]))["result"]["response"]
    assert got["code"] == 0 and base64.b64decode(got["key"]) == b"k"
    assert base64.b64decode(got["value"]) == b"v"  # base64, as CometBFT answers
    missing = (await rpc(http, "abci_query", path="", data="0x6e6f"))["result"]["response"]
    assert missing["code"] == 1 and missing["value"] is None
    for params, needle in (({"path": "/p2p/peers", "data": "6b"}, "'path'"),
                           ({"data": "zz"}, "'data'"), ({"data": ""}, "empty key")):
        r = await rpc(http, "abci_query", **params)
        assert r["error"]["code"] == E.INVALID_PARAMS and needle in r["error"]["message"], r


async def test_check_tx_checks_without_submitting(http, txs, node):
    ok = (await _call(http, "check_tx", [txs.put("k", "v")]))["result"]
    assert ok["code"] == 0 and len(ok["hash"]) == 64 and node.submitted == 0
    from .conftest import TxFactory

    other = TxFactory(b"other-chain").put("k", "v")
    r = await rpc(http, "check_tx", tx=other)
    assert r["error"]["code"] == E.BAD_SIGNATURE and node.submitted == 0


async def test_unconfirmed_txs_list_what_waits(node, http, txs):
    node.auto_commit = False
    for i in range(3):
        await rpc(http, "broadcast_tx_async", tx=txs.put(f"k{i}", "v"))
    assert (await rpc(http, "num_unconfirmed_txs"))["result"] == {"n_txs": 3, "total": 3}
    two = (await _call(http, "unconfirmed_txs", [2]))["result"]
    assert two["n_txs"] == 2 and two["total"] == 3 and len(two["txs"]) == 2
    r = await rpc(http, "unconfirmed_txs", limit=101)
    assert r["error"]["code"] == E.INVALID_PARAMS


async def test_consensus_state_and_its_dump(http):
    st = (await rpc(http, "consensus_state"))["result"]["round_state"]
    assert {"height", "view", "primary", "step"} <= st.keys() and st["step"] == "normal"
    dump = (await rpc(http, "dump_consensus_state"))["result"]
    assert dump["round_state"] == st and dump["health"]["ok"] is True and len(dump["peers"]) == 3


async def test_positional_params_follow_cometbfts_order_and_are_refused_elsewhere(http, txs):
    await rpc(http, "broadcast_tx_commit", tx=txs.put("k", "v"))
    assert (await _call(http, "block", [1]))["result"]["height"] == 1
    assert (await _call(http, "blockchain", [1, 1]))["result"]["blocks"][0]["height"] == 1
    r = await _call(http, "block", [1, 2])
    assert r["error"]["code"] == E.INVALID_PARAMS and "at most 1 positional" in r["error"]["message"]
    r = await _call(http, "kv_range", ["k"])
    assert r["error"]["code"] == E.INVALID_PARAMS and "named params only" in r["error"]["message"]


async def test_get_routes_take_cometbft_quoted_strings(http, txs):
    await rpc(http, "broadcast_tx_commit", tx=txs.put("k", "v"))
    r = await http.get("/header", params={"height": "1"})
    assert r.status_code == 200 and r.json()["result"]["height"] == 1
    r = await http.get("/abci_query", params={"path": '"/key"', "data": "0x6b"})
    assert r.status_code == 200 and r.json()["result"]["response"]["value"] == "dg=="  # b"v"
    assert (await http.get("/commit?height=1")).json()["result"]["header"]["height"] == 1


async def test_tx_search_by_height_range_hash_and_code(http, txs):
    puts = [(await rpc(http, "broadcast_tx_commit", tx=txs.put(f"k{i}", "v")))["result"]
            for i in range(5)]  # the fake node: one block per tx, heights 1..5
    r = (await rpc(http, "tx_search", query="tx.height>=2 AND tx.height<5"))["result"]
    assert [t["height"] for t in r["txs"]] == [2, 3, 4] and r["total_count"] == 3
    r = (await _call(http, "tx_search", ["tx.height>1", None, 2, 2, "desc"]))["result"]
    assert [t["height"] for t in r["txs"]] == [3, 2] and r["total_count"] == 4  # page 2 of 2
    one = (await rpc(http, "tx_search", query=f"tx.hash='{puts[3]['hash']}'"))["result"]
    assert [t["hash"] for t in one["txs"]] == [puts[3]["hash"]]
    q = f"tx.hash='{puts[3]['hash']}' AND tx.height<1"  # its height (4) is outside the range
    assert (await rpc(http, "tx_search", query=q))["result"]["total_count"] == 0
    q = "tx.hash='" + "00" * 32 + "'"  # no such tx
    assert (await rpc(http, "tx_search", query=q))["result"]["total_count"] == 0
    assert (await rpc(http, "tx_search", query="tx.code=9"))["result"]["total_count"] == 0
    r = await rpc(http, "tx_search", query="message.sender='k1'")
    assert r["error"]["code"] == E.INVALID_PARAMS and "not indexed" in r["error"]["message"]
    r = (await rpc(http, "tx_search", query="kv.key='k1'"))["result"]  # no index behind it
    assert r["total_count"] == 0 and r["indexed_height"] == 0
