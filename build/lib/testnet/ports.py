"""Free port ranges on 127.0.0.1 for testnets started by tests, benchmarks and the attack runner.

Ranges are drawn BELOW the kernel's ephemeral range (net.ipv4.ip_local_port_range): a port
picked by binding to port 0 is ephemeral, so an outgoing connection of another test could take
it between the check and the node's own bind ("address already in use")."""

from __future__ import annotations

import random
import socket
from pathlib import Path

LOW = 20_000


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32_768


def _all_free(base: int, count: int) -> bool:
    for p in range(base, base + count):
        with socket.socket() as t:
            t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                t.bind(("127.0.0.1", p))
            except OSError:
                return False
    return True


def free_port_base(count: int) -> int:
    """A base port such that [base, base+count) looked free a moment ago (127.0.0.1), outside
    the ephemeral range."""
    high = max(LOW + count + 1, _ephemeral_low() - count)
    rng = random.Random()
    for _ in range(500):
        base = rng.randrange(LOW, high)
        if _all_free(base, count):
            return base
    raise RuntimeError("no free port range on 127.0.0.1 below the ephemeral range")
