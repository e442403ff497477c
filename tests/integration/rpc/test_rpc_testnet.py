"""The RPC server, Python client, CLI and benchmark against a real 4-process testnet (libp2p,
LevelDB, the real replica): commits carry verifiable certificates, locks hand out increasing
fencing tokens, leases stay alive while kept alive, watches see committed puts, and the
benchmark loses nothing."""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import trio

from bftnode.client import AsyncClient, Client
from testnet.ports import free_port_base

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def testnet(tmp_path_factory):
    from testnet import launcher

    d = tmp_path_factory.mktemp("rpc-testnet")
    m = launcher.up(d, 4, open_chain=True, base_port=free_port_base(8), log_level="warning")
    try:
        yield m
    finally:
        launcher.down(d)


@pytest.fixture
def urls(testnet) -> list[str]:
    return [n["rpc"] for n in testnet["nodes"]]


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request) -> str:
    """The async client's tests (marked anyio) run on both event loops."""
    return request.param


def test_put_is_committed_with_a_verified_certificate_and_readable_everywhere(urls, tmp_path):
    with Client(urls, tmp_path / "c.key") as c:
        res = c.put("it/hello", "world")
        assert res["verified"] == "certificate" and res["code"] == 0
        rev = res["result"]["revision"]
    for u in urls:  # read-your-writes on every node via min_revision
        with Client(u, tmp_path / "c.key") as c:
            got = c.get("it/hello", min_revision=rev)
            assert got["value"] == "world" and got["mod_revision"] == rev


def test_linearizable_read_goes_through_consensus(urls, tmp_path):
    with Client(urls, tmp_path / "c.key") as c:
        c.put("it/lin", "1")
        got = c.get("it/lin", consistency="linearizable")
    assert got["value"] == "1" and got["consistency"] == "linearizable"


def test_failover_skips_a_dead_url(urls, tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    with Client([dead, *urls], tmp_path / "c.key", retries=0) as c:
        assert c.put("it/failover", "ok")["code"] == 0


def test_locks_give_increasing_fencing_tokens_and_leases_stay_alive(urls, tmp_path):
    with Client(urls, tmp_path / "c.key") as c:
        with c.lock("it/lock", ttl=5) as t1:
            assert c.lock_status("it/lock", token=t1)["held"] is True
        with c.lock("it/lock", ttl=5) as t2:
            pass
        assert t2 > t1
        assert c.lock_status("it/lock")["locked"] is False
        with c.lease(1.5) as lease_id:
            first_deadline = c.lease_ttl(lease_id)["deadline_ms"]
            give_up = time.monotonic() + 20
            # wait until the AGREED block time is past the lease's first deadline
            while c.lease_ttl(lease_id)["time_ms"] <= first_deadline + 500:
                assert time.monotonic() < give_up, "block time did not advance"
                time.sleep(0.1)
            ttl = c.lease_ttl(lease_id)  # still there: the keepalives moved the deadline
            assert ttl["id"] == lease_id and ttl["deadline_ms"] > first_deadline


@pytest.mark.anyio
async def test_watch_sees_a_committed_put(urls, tmp_path, anyio_backend):
    import anyio

    async with AsyncClient(urls, tmp_path / "c.key") as c:
        seen = []

        async def watch(task_status=anyio.TASK_STATUS_IGNORED):
            task_status.started()
            async with c.watch("it/watch/") as events:
                async for ev in events:
                    seen.append(ev)
                    return

        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                await tg.start(watch)
                while not seen:  # re-put until the (asynchronously registered) watch sees one
                    await c.put("it/watch/a", "1")
                    await anyio.sleep(0.5)
    assert seen[0]["key"] == "it/watch/a" and seen[0]["kind"] == "put"


def test_cli_prints_exactly_one_json_object(urls, tmp_path):
    env = dict(os.environ, BFTNODE_HOME=str(tmp_path))
    out = subprocess.run(
        [sys.executable, "-m", "bftnode", "client", "put", "it/cli", "v", "--json",
         *[a for u in urls for a in ("--rpc", u)]],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )
    assert out.returncode == 0, out.stderr
    obj = json.loads(out.stdout)  # the whole stdout is one JSON object
    assert obj["code"] == 0 and obj["verified"] == "certificate"
    assert (tmp_path / "client.key").exists()


def test_bench_against_the_running_testnet_loses_nothing(urls):
    from testnet import bench

    args = argparse.Namespace(
        txs=200, clients=4, ws=False, batch=10, window=32, value_bytes=16, timeout=60.0,
        url=urls, json=True,
    )
    result = trio.run(bench.Bench(urls, args).run)
    assert result["acked"] == 200 and result["lost"] == 0 and result["duplicates"] == 0
    assert result["divergent_blocks"] == 0 and result["tx_per_s"] > 0
    args.ws = True
    result = trio.run(bench.Bench(urls, args).run)
    assert result["acked"] == 200 and result["lost"] == 0 and result["p99_ms"] is not None


def test_closed_loop_bench_sends_presigned_then_lazily_signed_txs(urls):
    """--inflight with --presign below --txs: each client sends its pre-signed txs, then
    signs the rest as it goes (request_seq continues; nothing lost or doubled)."""
    from testnet import bench

    args = argparse.Namespace(
        txs=160, clients=4, ws=False, batch=10, window=32, value_bytes=16, timeout=60.0,
        url=urls, json=True, inflight=20, presign=60, duration=0.0,
    )
    b = bench.Bench(urls, args)
    result = trio.run(b.run)
    assert [len(txs) for _, txs in b.presigned] == [0, 0, 0, 0]  # all 15 per client sent
    assert result["acked"] == 160 and result["lost"] == 0 and result["duplicates"] == 0
    seqs: dict[bytes, list[int]] = {}
    for req in b.requests.values():
        seqs.setdefault(req.client_id, []).append(req.request_seq)
    assert sorted(len(v) for v in seqs.values()) == [40, 40, 40, 40]
    assert all(sorted(v) == list(range(1, 41)) for v in seqs.values())


def test_election_campaign_leader_and_resign(urls, tmp_path):
    with Client(urls, tmp_path / "c.key") as c, c.lease(5) as lease_id:
        token = c.campaign("it/election", lease_id, "me")
        leader = c.leader("it/election")
        assert leader["has_leader"] and leader["leader"] == "me" and leader["token"] == token
        c.resign("it/election", token)
        assert c.leader("it/election")["has_leader"] is False


def test_sync_watch_yields_events_from_a_past_height(urls, tmp_path):
    with Client(urls, tmp_path / "c.key") as c:
        res = c.put("it/syncwatch/a", "1")
        events = c.watch("it/syncwatch/", from_height=res["height"])
        ev = next(events)
        events.close()
    assert ev["key"] == "it/syncwatch/a" and ev["value"] == "1" and ev["height"] == res["height"]


def _cli(urls: list[str], home: Path, *argv: str) -> dict:
    env = dict(os.environ, BFTNODE_HOME=str(home))
    out = subprocess.run(
        [sys.executable, "-m", "bftnode", "client", *argv, "--json", "--trust-node",
         *[a for u in urls for a in ("--rpc", u)]],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )
    obj = json.loads(out.stdout)
    assert (out.returncode == 0) == ("error" not in obj), (out.returncode, out.stdout, out.stderr)
    return obj


def test_cli_lock_acquire_release_and_txn(urls, tmp_path):
    got = _cli(urls, tmp_path, "lock", "acquire", "it/clilock", "--ttl", "30")
    assert got["token"] > 0
    busy = _cli(urls, tmp_path, "lock", "acquire", "it/clilock", "--ttl", "30", "--no-wait")
    assert "held" in busy["error"]["message"]
    _cli(urls, tmp_path, "lock", "release", "it/clilock", "--token", str(got["token"]))
    _cli(urls, tmp_path, "put", "it/txn", "a")
    ok = _cli(urls, tmp_path, "txn", "--if", "it/txn value = a", "--then", "put it/txn b")
    assert ok["result"]["succeeded"] is True
    no = _cli(urls, tmp_path, "txn", "--if", "it/txn value = a", "--then", "put it/txn c",
              "--else", "get it/txn")
    assert no["result"]["succeeded"] is False
    assert _cli(urls, tmp_path, "get", "it/txn")["value"] == "b"
    rng = _cli(urls, tmp_path, "range", "it/tx")
    assert rng["count"] == 1 and rng["kvs"][0]["value"] == "b"
    assert _cli(urls, tmp_path, "range")["count"] >= 1  # the whole keyspace


def test_health_and_metrics_endpoints_of_a_real_node(urls):
    import httpx

    assert httpx.get(urls[0] + "/health", timeout=5).json()["ok"] is True
    text = httpx.get(urls[0] + "/metrics", timeout=5).text
    assert "bftnode_height" in text and "bftnode_rpc_requests_total" in text


def test_bench_command_starts_a_fresh_testnet_and_prints_one_json_object():
    out = subprocess.run(
        [sys.executable, "-m", "testnet", "bench", "--nodes", "4", "--txs", "120",
         "--clients", "3", "--json", "--base-port", str(free_port_base(8))],
        cwd=ROOT, capture_output=True, text=True, timeout=240,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout)
    assert {"tx_per_s", "p50_ms", "p99_ms", "lost"} <= result.keys()
    assert result["lost"] == 0 and result["acked"] == 120 and result["tx_per_s"] > 0
    speed = result["ed25519_verify_us"]  # the machine's speed, before and after the run
    assert 5 < speed["before"] < 5_000 and 5 < speed["after"] < 5_000


@pytest.mark.anyio
async def test_async_client_commits_locks_and_keeps_leases_alive_on_asyncio_and_trio(
    urls, tmp_path, anyio_backend
):
    import anyio
    import sniffio

    assert sniffio.current_async_library() == anyio_backend  # run by anyio, not pytest-trio
    name = f"it/aio/{anyio_backend}"
    async with AsyncClient(urls, tmp_path / "c.key") as c:
        res = await c.put(name, anyio_backend)
        assert res["verified"] == "certificate" and res["code"] == 0
        got = await c.get(name, min_revision=res["result"]["revision"])
        assert got["value"] == anyio_backend
        status, missing = await c.batch([("status", {}), ("no_such_method", {})], url=urls[1])
        assert "height" in status and missing.code == -32601
        async with c.lock(name + "-lock", ttl=5) as t1:
            assert (await c.lock_status(name + "-lock", token=t1))["held"] is True
        async with c.lock(name + "-lock", ttl=5) as t2:
            pass
        assert t2 > t1 and (await c.lock_status(name + "-lock"))["locked"] is False
        async with c.lease(1.5) as lease_id:
            first_deadline = (await c.lease_ttl(lease_id))["deadline_ms"]
            with anyio.fail_after(20):  # the AGREED block time passes the first deadline
                while (await c.lease_ttl(lease_id))["time_ms"] <= first_deadline + 500:
                    await anyio.sleep(0.1)
            ttl = await c.lease_ttl(lease_id)  # still there: the keepalive task moved it
            assert ttl["id"] == lease_id and ttl["deadline_ms"] > first_deadline


async def test_bad_input_to_a_real_node_is_refused_and_its_websocket_subscription_lives(
    urls, tmp_path
):
    import httpx
    from httpx_ws import aconnect_ws

    deep = b"[" * 10_000 + b"]" * 10_000
    big = b"[" + b",".join([b"1"] * 100_000) + b"]"
    async with httpx.AsyncClient(base_url=urls[0], timeout=10) as http:
        for body, code in ((deep, -32700), (big, -32600), (b"{nope", -32700)):
            r = await http.post("/", content=body)
            assert r.status_code == 400 and r.json()["error"]["code"] == code, r.text
        async with aconnect_ws("ws" + urls[0][4:] + "/websocket", http) as ws:

            async def recv() -> dict:
                with trio.fail_after(30):
                    return json.loads(await ws.receive_text())

            await ws.send_text(json.dumps({"jsonrpc": "2.0", "id": "s", "method": "subscribe",
                                           "params": {"topic": "kv", "prefix": "it/bad/"}}))
            sid = (await recv())["result"]["subscription"]
            for frame in (deep.decode(), big.decode(), "{nope", b"\x00binary"):
                await (ws.send_bytes(frame) if isinstance(frame, bytes) else ws.send_text(frame))
                assert (await recv())["error"]["code"] in (-32700, -32600)
            async with AsyncClient(urls, tmp_path / "c.key") as c:
                await c.put("it/bad/after", "1")
            note = await recv()
            assert note["params"]["subscription"] == sid
            assert note["params"]["result"]["key"] == "it/bad/after"
        text = (await http.get("/metrics")).text
    assert 'bftnode_rpc_bad_input_total{reason="too_deep",transport="http"} 1.0' in text
    assert 'reason="binary_frame",transport="websocket"' in text
