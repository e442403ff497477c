"""The Python client against a fake node over real HTTP: signed txs, verified commit
certificates, f+1 matching replies as the fallback, failover, safe retries, key and seq files."""

from __future__ import annotations

import dataclasses
import os
import socket
import stat

import pytest
import trio

from bftnode.app import ops
from bftnode.client import (
    AsyncClient,
    ChainInfo,
    Client,
    SeqAllocator,
    TxRejected,
    TxTimeout,
    VerificationError,
    load_or_create_key,
    verify_commit_certificate,
)
from bftnode.rpc.server import serve_rpc
from consensus import CommittedBlock


def dead_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


async def test_put_then_get_with_a_verified_commit_certificate(url, tmp_path):
    async with AsyncClient(url, tmp_path / "c.key") as c:
        res = await c.put("greeting", "hello")
        assert res["verified"] == "certificate" and res["code"] == 0
        got = await c.get("greeting")
        assert got["value"] == "hello" and got["revision"] == res["result"]["revision"]


async def test_key_file_is_created_private_and_reused(tmp_path):
    path = tmp_path / "home" / "client.key"
    k1 = load_or_create_key(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert load_or_create_key(path).public_key == k1.public_key


def test_request_seqs_increase_across_restarts_and_never_repeat(tmp_path):
    path = tmp_path / "c.key.seq"
    first = [SeqAllocator(path).next() for _ in range(3)]  # three "processes"
    a = SeqAllocator(path)
    more = [a.next() for _ in range(600)]
    seqs = first + more
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    assert SeqAllocator(path).next() > seqs[-1]


async def test_a_retried_tx_is_executed_once_and_returns_the_original_result(url, node, tmp_path):
    async with AsyncClient(url, tmp_path / "c.key") as c:
        req = await c.sign(ops.put(b"k", b"v"))
        first = await c.submit(req)
        again = await c.submit(req)
    assert again["replayed"] is True and again["result"] == first["result"]
    assert node.height() == 1


async def test_failover_to_the_next_node_when_one_is_down(url, tmp_path):
    async with AsyncClient([dead_url(), url], tmp_path / "c.key", retries=0) as c:
        assert (await c.put("k", "v"))["code"] == 0
        assert (await c.status())["height"] == 1


async def test_a_certificate_with_too_few_signatures_is_not_trusted_alone(
    url, node, nursery, tmp_path
):
    weaken(node)
    async with AsyncClient(url, tmp_path / "c.key") as c:
        with pytest.raises(VerificationError, match="matching replies"):
            await c.put("k", "v")
    # two nodes giving the same answer (f+1 = 2) are enough
    url2 = await nursery.start(serve_rpc, node, "127.0.0.1", 0)
    async with AsyncClient([url, url2], tmp_path / "c.key") as c:
        res = await c.put("k2", "v")
        assert res["verified"] == "2 matching replies"


def weaken(node) -> None:
    """Make the fake node's certificates carry only 2 of the 3 needed commits."""
    orig = node.commit_pending

    def commit_pending() -> int:
        h = orig()
        b = node.blocks[h]
        node.blocks[h] = dataclasses.replace(b, committed=CommittedBlock(
            b.committed.pre_prepare, b.committed.commits[:2]))
        return h

    node.commit_pending = commit_pending


async def test_rejected_tx_raises_with_the_reason(url, tmp_path):
    async with AsyncClient(url, tmp_path / "c.key") as c:
        with pytest.raises(TxRejected, match="bad op"):
            await c.submit(await c.sign(b"\xc1"))


async def test_the_sync_client_works_from_a_thread(url, tmp_path):
    def work() -> tuple[dict, dict]:
        with Client(url, tmp_path / "c.key") as c:
            return c.put("a", "1"), c.get("a")

    put, got = await trio.to_thread.run_sync(work)
    assert put["verified"] == "certificate" and got["value"] == "1"


async def test_batch_returns_results_in_order_and_errors_in_place(url, tmp_path):
    from bftnode.client import RPCCallError

    def work() -> list:
        with Client(url, tmp_path / "c.key") as c:
            c.put("b", "2")
            return c.batch([("status", {}), ("no_such_method", {}), ("kv_get", {"key": "b"})])

    status, missing, got = await trio.to_thread.run_sync(work)
    assert "height" in status
    assert isinstance(missing, RPCCallError) and missing.code == -32601
    assert got["value"] == "2"


async def test_certificate_checks_tx_membership_chain_and_signers(url, node, tmp_path):
    async with AsyncClient(url, tmp_path / "c.key") as c:
        res = await c.put("k", "v")
        chain = await c.chain_info()
    tx_hash = bytes.fromhex(res["hash"])
    assert verify_commit_certificate(tx_hash, res["commit"], chain) == res["height"]
    with pytest.raises(VerificationError, match="does not contain"):
        verify_commit_certificate(bytes(32), res["commit"], chain)
    other = ChainInfo("other", b"other", chain.validator_keys)
    with pytest.raises(VerificationError, match="valid signatures"):
        verify_commit_certificate(tx_hash, res["commit"], other)
    dup = dict(res["commit"], commits=[res["commit"]["commits"][0]] * 3)
    with pytest.raises(VerificationError, match="1 valid signatures"):
        verify_commit_certificate(tx_hash, dup, chain)


async def test_no_reachable_node_gives_a_timeout_not_a_hang(url, tmp_path):
    async with AsyncClient(url, tmp_path / "c.key") as c:
        chain = await c.chain_info()
    async with AsyncClient([dead_url(), dead_url()], tmp_path / "c.key", chain=chain,
                           timeout=0.5, retries=0) as c:
        with trio.fail_after(5), pytest.raises(TxTimeout, match="not confirmed"):
            await c.put("k", "v")


async def test_broadcast_and_batch_to_one_url_on_the_async_client_too(url, node, tmp_path):
    async with AsyncClient(url, tmp_path / "c.key") as c:
        ack = await c.broadcast(await c.sign(ops.put(b"bk", b"v")))
        assert ack["status"] in ("accepted", "committed")
        status, got = await c.batch([("status", {}), ("kv_get", {"key": "bk"})], url=url)
    assert status["height"] >= 1 and got["value"] == "v"


def test_one_parser_for_calls_and_batches():
    from bftnode.client import BadAnswer, TxRejected
    from bftnode.client.core import Reply, batch_request, batch_results, parse_reply

    assert parse_reply(Reply(200, b'{"jsonrpc":"2.0","id":1,"result":{"a":1}}')) == {"a": 1}
    with pytest.raises(TxRejected, match="pool full"):
        parse_reply(Reply(200, b'{"jsonrpc":"2.0","id":1,"error":{"code":-32001,'
                               b'"message":"pool full"}}'))
    with pytest.raises(BadAnswer, match="HTTP 502"):
        parse_reply(Reply(502, b"<html>bad gateway</html>"))
    payload = batch_request([("status", {}), ("tx", {"hash": "00"}), ("block", {})])
    out = batch_results(b'[{"id":1,"error":{"code":-32004,"message":"not found"}},'
                        b'{"id":0,"result":{"height":3}}]', payload)
    assert out[0] == {"height": 3} and out[1].code == -32004
    assert isinstance(out[2], BadAnswer) and isinstance(out[2], ValueError)
