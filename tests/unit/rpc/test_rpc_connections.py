"""Connection hygiene (issue 35): a client cannot hold a connection by sending slowly, by
opening many, or by going quiet; a client that drops mid-request is an info line, not a
traceback. A real server on 127.0.0.1 and raw sockets, with short deadlines configured."""

from __future__ import annotations

import json
import logging
import socket
from functools import partial

import httpx
import pytest
import structlog
import trio
import wsproto
import wsproto.events
from httpx_ws import WebSocketDisconnect, aconnect_ws

from bftnode.rpc.server import RPCMetrics, serve_rpc

from .fake_node import FakeNode
from .slow_clients import BODY_HEAD, SLOW_HEAD, WS_HEAD, connect, trickle, wait_until

DEADLINE = 0.5  # every deadline in these tests
SLACK = 1.0  # scheduling slack on a busy CI machine
BYTE_EVERY = 0.05  # the slow clients' pace: far too slow to finish within DEADLINE


def _limits(**kw):
    from bftnode.rpc.limits import RPCLimits

    base = dict(header_timeout_s=DEADLINE, body_timeout_s=DEADLINE,
                ws_idle_timeout_s=DEADLINE, max_connections=16, max_connections_per_address=4)
    return RPCLimits(**{**base, **kw})


@pytest.fixture
def metrics() -> RPCMetrics:
    return RPCMetrics()


@pytest.fixture
async def port(nursery, node, metrics) -> int:
    url = await nursery.start(partial(serve_rpc, node, "127.0.0.1", 0, limits=_limits(),
                                      metrics=metrics))
    return int(url.rsplit(":", 1)[1])


@pytest.fixture
async def capped_port(nursery, node, metrics) -> int:
    """Long head deadline: connections that send nothing stay open (and counted)."""
    url = await nursery.start(partial(serve_rpc, node, "127.0.0.1", 0,
                                      limits=_limits(header_timeout_s=30), metrics=metrics))
    return int(url.rsplit(":", 1)[1])


async def status_call(port: int, source: str = "127.0.0.1") -> dict:
    transport = httpx.AsyncHTTPTransport(local_address=source)
    async with httpx.AsyncClient(transport=transport, timeout=5) as c:
        r = await c.post(f"http://127.0.0.1:{port}/",
                         json={"jsonrpc": "2.0", "id": 1, "method": "status"})
        return r.json()


# ---------------------------------------------------------------- deadlines


async def test_a_request_head_sent_one_byte_at_a_time_is_closed_at_the_header_deadline(port):
    out = await trickle(await connect(port), SLOW_HEAD, BYTE_EVERY, limit=10)
    assert out.closed_after is not None and out.closed_after < DEADLINE + SLACK


async def test_a_body_sent_one_byte_at_a_time_is_closed_at_the_body_deadline_with_408(port):
    out = await trickle(await connect(port), b"[" * 4096, BYTE_EVERY, limit=10,
                        prefix=BODY_HEAD)
    assert out.closed_after is not None and out.closed_after < DEADLINE + SLACK
    assert out.status == 408
    body = json.loads(bytes(out.received).split(b"\r\n\r\n", 1)[1])
    assert "body" in body["error"]["message"]


async def test_a_websocket_handshake_sent_one_byte_at_a_time_is_closed_at_the_deadline(port):
    out = await trickle(await connect(port), WS_HEAD, BYTE_EVERY, limit=10)
    assert out.closed_after is not None and out.closed_after < DEADLINE + SLACK


async def test_an_idle_websocket_is_closed_and_a_subscribed_one_is_kept(port, node):
    url = f"ws://127.0.0.1:{port}/websocket"
    async with httpx.AsyncClient() as c:
        async with aconnect_ws(url, c) as idle:
            with trio.fail_after(DEADLINE + SLACK), pytest.raises(WebSocketDisconnect):
                await idle.receive_text()
        async with aconnect_ws(url, c) as sub:
            await sub.send_text(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "subscribe",
                                            "params": {"topic": "blocks"}}))
            with trio.fail_after(5):
                assert "result" in json.loads(await sub.receive_text())
            # quiet for several idle deadlines: a subscriber only listens
            with trio.move_on_after(3 * DEADLINE):
                await sub.receive_text()
            node.commit_pending()
            with trio.fail_after(5):
                assert json.loads(await sub.receive_text())["params"]["height"] == 1


async def test_keep_alive_connections_stay_usable_between_requests_within_the_deadline(port):
    async with httpx.AsyncClient(timeout=5) as c:
        for _ in range(3):
            r = await c.post(f"http://127.0.0.1:{port}/",
                             json={"jsonrpc": "2.0", "id": 1, "method": "status"})
            assert r.json()["result"]["height"] == 0


# ---------------------------------------------------------------- caps


async def test_connections_per_address_are_capped_and_other_addresses_are_served(
    capped_port, metrics
):
    port = capped_port
    held = [await connect(port, "127.0.0.2") for _ in range(4)]
    await wait_until(lambda: metrics.value("bftnode_rpc_connections") == 4, 5)
    out = await trickle(await connect(port, "127.0.0.2"), b"", BYTE_EVERY, limit=5)
    assert out.status == 503 and b"per address" in out.received
    assert (await status_call(port, "127.0.0.3"))["result"]["height"] == 0
    await held.pop().aclose()  # one slot frees up for 127.0.0.2, soon after the EOF
    await wait_until(lambda: metrics.value("bftnode_rpc_connections") == 3, 5)
    assert (await status_call(port, "127.0.0.2"))["result"]["height"] == 0
    assert metrics.value("bftnode_rpc_connections_refused_total", {"reason": "per_address"}) == 1
    for s in held:
        await s.aclose()


async def test_connections_in_total_are_capped(capped_port, metrics):
    port = capped_port
    held = [await connect(port, f"127.0.0.{10 + i // 4}") for i in range(16)]
    await wait_until(lambda: metrics.value("bftnode_rpc_connections") == 16, 5)
    out = await trickle(await connect(port, "127.0.0.99"), b"", BYTE_EVERY, limit=5)
    assert out.status == 503 and b"connections" in out.received
    assert metrics.value("bftnode_rpc_connections_refused_total", {"reason": "total"}) == 1
    for s in held:
        await s.aclose()
    await wait_until(lambda: metrics.value("bftnode_rpc_connections") == 0, 5)
    assert (await status_call(port))["result"]["height"] == 0


async def test_a_normal_client_is_answered_while_slow_clients_hold_connections(port, metrics):
    results: list[float] = []
    async with trio.open_nursery() as nursery:
        for i in range(12):
            conn = await connect(port, f"127.0.1.{i // 4 + 1}")
            head = SLOW_HEAD if i % 2 else b""
            nursery.start_soon(partial(trickle, conn, head or b"[" * 4096, BYTE_EVERY,
                                       limit=10, prefix=b"" if head else BODY_HEAD))
        for _ in range(5):
            # our previous call's connection is released once the server sees its EOF
            await wait_until(lambda: metrics.value("bftnode_rpc_connections") <= 12, 5)
            t0 = trio.current_time()
            assert (await status_call(port))["result"]["height"] == 0
            results.append(trio.current_time() - t0)
    assert max(results) < 1.0


# ---------------------------------------------------------------- dropped clients


async def test_a_client_dropping_mid_body_is_an_info_line_not_a_traceback(url, caplog):
    port = int(url.rsplit(":", 1)[1])
    caplog.set_level(logging.INFO)
    with structlog.testing.capture_logs() as logs:
        conn = await connect(port)
        await conn.send_all(BODY_HEAD + b'{"jsonrpc": "2.0"')
        await conn.aclose()
        await wait_until(lambda: any(e["event"] == "rpc.client_gone" for e in logs), 5)
        assert (await status_call(port))["result"]["height"] == 0
    gone = next(e for e in logs if e["event"] == "rpc.client_gone")
    assert gone["log_level"] == "info"
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING or r.exc_info]
    assert not [e for e in logs if e["log_level"] in ("error", "exception", "critical")]


# ---------------------------------------------------------------- clients that never read


class BigStatusNode(FakeNode):
    def status(self) -> dict:
        return {**super().status(), "pad": "x" * 4_000_000}  # more than socket buffers hold


async def unread_client(port: int) -> trio.SocketStream:
    sock = trio.socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    await sock.connect(("127.0.0.1", port))
    return trio.SocketStream(sock)


@pytest.fixture
async def big_port(nursery, metrics) -> int:
    url = await nursery.start(partial(serve_rpc, BigStatusNode(), "127.0.0.1", 0,
                                      limits=_limits(send_stall_s=DEADLINE), metrics=metrics))
    return int(url.rsplit(":", 1)[1])


async def test_an_http_client_that_never_reads_its_answer_is_closed_at_the_send_deadline(
        big_port, metrics):
    stream = await unread_client(big_port)
    await stream.send_all(b"GET /status HTTP/1.1\r\nHost: rpc\r\n\r\n")
    await wait_until(lambda: metrics.value("bftnode_rpc_connections") == 1, SLACK)
    await wait_until(lambda: metrics.value("bftnode_rpc_connections") == 0, DEADLINE + 3 * SLACK)
    assert metrics.value("bftnode_rpc_timeouts_total", {"phase": "send"}) == 1
    await stream.aclose()
    assert (await status_call(big_port))["result"]["height"] == 0  # others are served


async def test_a_websocket_client_that_never_reads_is_closed_at_the_send_deadline(
        big_port, metrics):
    stream = await unread_client(big_port)
    ws = wsproto.WSConnection(wsproto.ConnectionType.CLIENT)
    await stream.send_all(ws.send(wsproto.events.Request(host="rpc", target="/websocket")))
    ws.receive_data(await stream.receive_some(4096))
    assert isinstance(next(ws.events()), wsproto.events.AcceptConnection)
    call = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "status"})
    with trio.move_on_after(DEADLINE + 3 * SLACK):
        try:
            for _ in range(20):  # 80 MB of answers, none read
                await stream.send_all(ws.send(wsproto.events.TextMessage(call)))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
    await wait_until(lambda: metrics.value("bftnode_rpc_ws_connections") == 0
                     and metrics.value("bftnode_rpc_connections") == 0, DEADLINE + 3 * SLACK)
    assert metrics.value("bftnode_rpc_timeouts_total", {"phase": "send"}) == 1
    await stream.aclose()
