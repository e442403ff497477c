"""Fixtures for node integration tests: local chains in tmp dirs and free port ranges."""

from __future__ import annotations

import socket

import pytest


def free_port_base(count: int) -> int:
    """A base port such that [base, base+count) looked free a moment ago (127.0.0.1)."""
    for _ in range(200):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            base = s.getsockname()[1]
        if base + count >= 65535:
            continue
        ok = True
        for p in range(base, base + count):
            with socket.socket() as t:
                t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    t.bind(("127.0.0.1", p))
                except OSError:
                    ok = False
                    break
        if ok:
            return base
    raise RuntimeError("no free port range")


@pytest.fixture
def port_base():
    return free_port_base(16)
