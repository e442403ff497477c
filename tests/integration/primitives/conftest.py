"""Fixtures for the lock/lease/consistency acceptance tests: ONE real 4-process testnet
(libp2p + LevelDB on 127.0.0.1) for the whole directory, with a short heartbeat so an idle
cluster still produces blocks (agreed time moves) every HEARTBEAT_MS."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from testnet.ports import free_port_base

HEARTBEAT_MS = 300


@pytest.fixture(scope="session")
def primitives_testnet(tmp_path_factory) -> Iterator[dict[str, Any]]:
    from testnet import launcher

    d = tmp_path_factory.mktemp("primitives-testnet")
    m = launcher.up(d, 4, open_chain=True, base_port=free_port_base(8), log_level="warning",
                    consensus={"heartbeat_ms": HEARTBEAT_MS})
    m["dir"] = str(d)
    try:
        yield m
    finally:
        launcher.down(d)


@pytest.fixture
def urls(primitives_testnet) -> list[str]:
    return [n["rpc"] for n in primitives_testnet["nodes"]]


_http: Any = None


def rpc(url: str, method: str, **params: Any) -> Any:
    """One JSON-RPC call (one shared httpx client: a new one per call costs ~0.2 s of TLS
    setup) through the client core, which waits out a `rate limited` answer; a JSON-RPC
    error raises RPCCallError."""
    global _http
    import httpx

    from bftnode.client.sync import rpc_call

    if _http is None:
        _http = httpx.Client(timeout=5.0)
    return rpc_call(_http, url + "/", method, params, 5.0)


def wait_until(cond: Callable[[], Any], timeout: float, what: str, every: float = 0.05) -> Any:
    """Poll `cond` until it returns something truthy; fail with `what` at the deadline."""
    deadline = time.monotonic() + timeout
    last_exc: Exception | None = None
    while time.monotonic() < deadline:
        try:
            got = cond()
            if got:
                return got
        except Exception as exc:  # a node restarting: keep polling until the deadline
            last_exc = exc
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last error: "
                         f"{last_exc})")
