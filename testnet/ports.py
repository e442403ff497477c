"""Free port ranges on 127.0.0.1 for testnets started by tests, benchmarks and the attack runner."""

from __future__ import annotations

import socket


def free_port_base(count: int) -> int:
    """A base port such that [base, base+count) looked free a moment ago (127.0.0.1)."""
    for _ in range(200):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            base = s.getsockname()[1]
        if base + count >= 65000:
            continue
        try:
            for p in range(base, base + count):
                with socket.socket() as t:
                    t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    t.bind(("127.0.0.1", p))
        except OSError:
            continue
        return base
    raise RuntimeError("no free port range on 127.0.0.1")
