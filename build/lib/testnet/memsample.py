"""Where a testnet's memory is, second by second: for every node of a running testnet (its
`testnet.json`), the resident memory by kind (`bftnode.memory.smaps_mb`: `[heap]`, other
anonymous memory and its largest mapping, mapped LevelDB tables, other files, in MB) plus a
few gauges from its `/metrics` (height, queue depths, view, client table), one JSON line per
second.

    python -m testnet.memsample DIR OUT.jsonl SECONDS      # DIR: bench --dir / up --dir

Reads /proc (Linux). One kept-alive HTTP connection per node: a new connection per poll leaves
closed connections for the cyclic collector and itself moves RSS. Imports: stdlib,
bftnode.memory.
"""

from __future__ import annotations

import argparse
import http.client
import json
import pathlib
import time
import urllib.parse
from typing import Any

from bftnode.memory import smaps_mb

GAUGES = ("bftnode_height", "bftnode_queue_depth", "bftnode_view", "bftnode_client_table")


class Gauges:
    """The GAUGES lines of one node's /metrics over one kept-alive connection."""

    def __init__(self, rpc_url: str) -> None:
        self._url = urllib.parse.urlparse(rpc_url)
        self._conn: http.client.HTTPConnection | None = None

    def read(self) -> dict[str, float]:
        try:
            if self._conn is None:
                self._conn = http.client.HTTPConnection(self._url.hostname, self._url.port,
                                                        timeout=2)
            self._conn.request("GET", "/metrics")
            text = self._conn.getresponse().read().decode()
        except (OSError, http.client.HTTPException):
            self._conn = None  # reconnect at the next poll
            return {}
        got = {}
        for line in text.splitlines():
            if line.startswith(GAUGES):
                key, value = line.rsplit(" ", 1)
                got[key] = float(value)
        return got


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m testnet.memsample", description=__doc__.split(
        "\n\n")[0])
    p.add_argument("dir", type=pathlib.Path, help="the testnet's directory (testnet.json)")
    p.add_argument("out", type=pathlib.Path, help="JSON lines written here")
    p.add_argument("seconds", type=float, help="how long to sample")
    args = p.parse_args(argv)
    t0 = time.monotonic()
    manifest = args.dir / "testnet.json"
    while not manifest.exists():  # started along with the bench: wait for its testnet
        if time.monotonic() - t0 > 120:
            raise SystemExit(f"no {manifest} after 120 s")
        time.sleep(0.5)
    time.sleep(1)  # the manifest is written once every node answers
    nodes = json.loads(manifest.read_text())["nodes"]
    gauges = [Gauges(n["rpc"]) for n in nodes]
    with open(args.out, "w") as fo:
        while time.monotonic() - t0 < args.seconds:
            row: dict[str, Any] = {"t": round(time.monotonic() - t0, 1)}
            for i, n in enumerate(nodes):
                try:
                    row[str(i)] = {k: round(v, 1) for k, v in smaps_mb(n["pid"]).items()}
                except OSError:  # the node is gone
                    row[str(i)] = None
                row[f"m{i}"] = gauges[i].read()
            fo.write(json.dumps(row) + "\n")
            fo.flush()
            time.sleep(1.0)


if __name__ == "__main__":
    main()
