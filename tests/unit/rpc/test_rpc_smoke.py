from .conftest import rpc


async def test_smoke(http, txs):
    r = await rpc(http, "broadcast_tx_commit", tx=txs.put("a", "1"))
    print(r)
    assert r["result"]["height"] == 1
    r = await rpc(http, "kv_get", key="a")
    print(r)
    assert r["result"]["value"] == "1"
    r = await rpc(http, "block", height=1)
    print(r)
