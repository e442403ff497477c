"""Raw-socket clients that misbehave slowly, for the RPC connection tests and the slowloris
measurement (`python -m tests.unit.rpc.slowloris`): they send a request head or body one byte
at a time and report when the server closed the connection. For tests only."""

from __future__ import annotations

import trio

BODY_HEAD = (b"POST / HTTP/1.1\r\nHost: rpc\r\nContent-Type: application/json\r\n"
             b"Content-Length: 4096\r\n\r\n")
SLOW_HEAD = (b"GET /status HTTP/1.1\r\nHost: rpc\r\nUser-Agent: slow\r\nAccept: */*\r\n"
             + b"X-Pad: " + b"p" * 4000 + b"\r\n\r\n")
WS_HEAD = (b"GET /websocket HTTP/1.1\r\nHost: rpc\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
           + b"X-Pad: " + b"p" * 4000 + b"\r\n\r\n")


async def connect(port: int, source: str = "127.0.0.1") -> trio.SocketStream:
    """A TCP connection to 127.0.0.1:port from `source` (any 127.x.y.z address on Linux)."""
    sock = trio.socket.socket()
    await sock.bind((source, 0))
    await sock.connect(("127.0.0.1", port))
    return trio.SocketStream(sock)


class Outcome:
    """What one slow client saw: seconds until the server closed (None: still open at the
    limit) and the bytes it answered."""

    def __init__(self) -> None:
        self.closed_after: float | None = None
        self.received = bytearray()

    @property
    def status(self) -> int | None:
        if self.received[:9] in (b"HTTP/1.1 ", b"HTTP/1.0 "):
            return int(self.received[9:12])
        return None


async def trickle(stream: trio.SocketStream, data: bytes, interval: float, limit: float,
                  prefix: bytes = b"") -> Outcome:
    """Send `prefix` at once, then `data` one byte every `interval` seconds, until the server
    closes the connection or `limit` seconds pass; the connection is closed afterwards."""
    out = Outcome()
    start = trio.current_time()
    closed = trio.Event()

    async def read() -> None:
        try:
            while chunk := await stream.receive_some(65536):
                out.received += chunk
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        out.closed_after = trio.current_time() - start
        closed.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(read)
        with trio.move_on_after(limit):
            try:
                if prefix:
                    await stream.send_all(prefix)
                for i in range(len(data)):
                    await stream.send_all(data[i:i + 1])
                    with trio.move_on_after(interval):
                        await closed.wait()
                    if closed.is_set():
                        break
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass
            await closed.wait()
        nursery.cancel_scope.cancel()
    await stream.aclose()
    return out


async def wait_until(predicate, timeout: float, poll: float = 0.01) -> None:
    """Wait (bounded) until `predicate()` is true; trio.TooSlowError if it never is."""
    with trio.fail_after(timeout):
        while not predicate():
            await trio.sleep(poll)
