"""TLS for the RPC server: who may serve plain HTTP, the server's TLS context, and a clear
answer to a plain-HTTP client on the TLS port.

Owns the exposure rule (`exposure_error`: plain HTTP only on a loopback address, unless the
operator says insecure), loading the certificate chain and key into hypercorn's TLS context
(`server_context`: hypercorn's `Config.certfile`/`keyfile`, HTTP/1.1 only) with an error that
names the field and the file, and the per-connection wrapping (`wrap_connection`): TLS via
`trio.SSLStream`, or a fixed HTTP 400 answer when the first bytes are a plain HTTP request.
Imports: stdlib, trio, hypercorn. Must not import bftnode.node or bftnode.config.
"""

from __future__ import annotations

import ipaddress
import json
import ssl
from pathlib import Path

import trio
from hypercorn.config import Config as HypercornConfig

from .errors import INVALID_REQUEST

LOOPBACK_NAMES = ("localhost",)
TLS_HANDSHAKE_RECORD = 0x16  # the first byte of every TLS connection (a handshake record)
PLAIN_ANSWER_GRACE_S = 0.5  # a plain-HTTP client gets this long to read our 400 before the close


class TLSSetupError(Exception):
    """The RPC cannot serve as configured (bad TLS files, or plain HTTP beyond loopback); the
    message names the config field and the fix."""


def is_loopback(host: str) -> bool:
    """Is `host` a loopback address (127.0.0.0/8, ::1) or `localhost`?"""
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def exposure_error(host: str, tls: bool, insecure: bool) -> str | None:
    """Why the RPC must not bind `host` as configured, or None. Plain HTTP is allowed on a
    loopback address only, unless `insecure` (the operator's explicit choice)."""
    if tls or insecure or is_loopback(host):
        return None
    return (f"refusing to serve the RPC in plain HTTP on {host} (beyond loopback): set "
            "rpc_tls_cert and rpc_tls_key in the node config to serve TLS, bind rpc_host to "
            "127.0.0.1, or accept plain HTTP with insecure_rpc = true (or `bftnode start "
            "--insecure-rpc`)")


def _read_pem(field: str, path: Path, marker: str) -> None:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise TLSSetupError(f"field '{field}': {path}: no such file") from None
    except IsADirectoryError:
        raise TLSSetupError(f"field '{field}': {path}: is a directory, not a PEM file") from None
    except OSError as exc:
        raise TLSSetupError(f"field '{field}': {path}: cannot read: {exc.strerror}") from None
    if b"-----BEGIN " not in data or marker.encode() not in data:
        raise TLSSetupError(f"field '{field}': {path}: not a PEM file with a {marker}")


def server_context(cert: Path, key: Path,
                   hypercorn: HypercornConfig | None = None) -> ssl.SSLContext:
    """The server's TLS context from PEM files `cert` (the certificate chain, leaf first) and
    `key`, built by hypercorn (TLS 1.2+, its ciphers) and offering HTTP/1.1 only (ALPN).
    Raises TLSSetupError naming the field: missing, unreadable, not PEM, or a key that does
    not match the certificate."""
    _read_pem("rpc_tls_cert", cert, "CERTIFICATE")
    _read_pem("rpc_tls_key", key, "PRIVATE KEY")
    config = hypercorn or HypercornConfig()
    config.certfile, config.keyfile = str(cert), str(key)
    config.alpn_protocols = ["http/1.1"]  # the RPC's limits are HTTP/1.1's (h11)
    try:
        context = config.create_ssl_context()
    except ssl.SSLError as exc:
        if "KEY_VALUES_MISMATCH" in str(exc) or "key values mismatch" in str(exc):
            raise TLSSetupError(f"field 'rpc_tls_key': {key} is not the private key of the "
                                f"certificate in {cert}") from None
        raise TLSSetupError(f"fields 'rpc_tls_cert'/'rpc_tls_key': cannot load {cert} with "
                            f"{key}: {exc}") from None
    except OSError as exc:
        raise TLSSetupError(f"fields 'rpc_tls_cert'/'rpc_tls_key': {exc}") from None
    assert context is not None
    return context


def plain_http_answer() -> bytes:
    """The whole HTTP 400 answer to a plain-HTTP request on the TLS port."""
    msg = "this RPC port serves TLS: use https:// (and wss:// for WebSockets)"
    body = json.dumps({"jsonrpc": "2.0", "id": None,
                       "error": {"code": INVALID_REQUEST, "message": msg}}).encode()
    head = (b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\n"
            b"content-length: %d\r\nconnection: close\r\n\r\n" % len(body))
    return head + body


class Replay(trio.abc.Stream):
    """`inner` with `first` (bytes already read from it) given back by the first receive."""

    def __init__(self, inner: trio.abc.HalfCloseableStream, first: bytes) -> None:
        self.inner = inner
        self.first = first
        self.socket = inner.socket  # type: ignore[attr-defined]  # hypercorn reads addresses

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if self.first:
            data, self.first = self.first, b""
            return data
        return await self.inner.receive_some(max_bytes)

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self.inner.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.inner.wait_send_all_might_not_block()

    async def aclose(self) -> None:
        await self.inner.aclose()


async def wrap_connection(stream: trio.abc.HalfCloseableStream, context: ssl.SSLContext,
                          timeout: float) -> trio.SSLStream | None:
    """The TLS side of an accepted connection (handshake left to hypercorn), or None when the
    client sent a plain HTTP request (answered 400 here: use https://) or nothing within
    `timeout` seconds."""
    with trio.move_on_after(timeout):
        try:
            first = await stream.receive_some(65536)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            return None
        if not first:
            return None
        if first[0] != TLS_HANDSHAKE_RECORD:
            if first[:1].isalpha():  # a request line: say what is wrong, in plain HTTP
                try:
                    await stream.send_all(plain_http_answer())
                    await stream.send_eof()
                    with trio.move_on_after(PLAIN_ANSWER_GRACE_S):  # let the client read it
                        while await stream.receive_some(65536):
                            pass
                except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                    pass
            return None
        return trio.SSLStream(Replay(stream, first), context, server_side=True,
                              https_compatible=True)
    return None
