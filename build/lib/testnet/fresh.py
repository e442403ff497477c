"""A throwaway 4-node local testnet for one measuring command (`client-flood`, `read-flood`):
started in a temporary directory, always taken down, and the command's figures printed as one
JSON object or as lines. Imports: stdlib, testnet.launcher, testnet.ports.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


@contextmanager
def fresh_testnet(prefix: str, before_up: Any = None, **up: Any) -> Iterator[tuple[Path, list[str]]]:
    """(the temporary directory, the nodes' RPC URLs) of a fresh open 4-node testnet in it,
    on free ports; `before_up(net_dir, base_port)` may create the chain first (a genesis of
    its own). Down on exit, whatever happened."""
    from testnet import launcher
    from testnet.ports import free_port_base

    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        d = Path(tmp) / "net"
        base = free_port_base(8)
        if before_up is not None:
            before_up(d, base)
        m = launcher.up(d, 4, base_port=base, log_level="warning", open_chain=True, **up)
        try:
            yield Path(tmp), [n["rpc"] for n in m["nodes"]]
        finally:
            launcher.down(d)


def print_figures(fig: dict[str, Any], as_json: bool) -> int:
    """Print `fig`; the exit code: 1 when it lists `failures`."""
    print(json.dumps(fig) if as_json else "\n".join(f"{k}: {v}" for k, v in fig.items()))
    return 1 if fig["failures"] else 0
