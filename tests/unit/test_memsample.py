"""`python -m testnet.memsample`: resident memory by kind from /proc/PID/smaps, gauges from a
node's /metrics over one kept-alive connection."""

from __future__ import annotations

import http.server
import json
import os
import subprocess
import sys
import threading

import pytest

from testnet.memsample import Gauges, main

pytestmark = pytest.mark.skipif(not os.path.exists("/proc/self/smaps"), reason="Linux /proc")

METRICS = b"""# HELP bftnode_height Last committed block height
bftnode_height 42.0
bftnode_queue_depth{queue="inbox"} 3.0
bftnode_queue_depth{queue="inbox_bytes"} 2048.0
bftnode_txs_committed_total 900.0
"""


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as a node's server
    connections: set[int] = set()

    def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
        _Handler.connections.add(id(self.connection))
        self.send_response(200)
        self.send_header("Content-Length", str(len(METRICS)))
        self.end_headers()
        self.wfile.write(METRICS)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def metrics_url():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _Handler.connections.clear()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


_ALLOCATE = """
import json, os
from bftnode.memory import smaps_mb
before = smaps_mb(os.getpid())
block = b"\\x01" * (64 * 2**20)  # 64 MiB written (a zeroed calloc may stay unmapped)
print(json.dumps([before, smaps_mb(os.getpid())]))
"""


def test_a_big_allocation_shows_as_anonymous_memory() -> None:
    # In a fresh interpreter: in this one, earlier tests may have left freed memory that
    # malloc hands back without the resident size changing.
    out = subprocess.run([sys.executable, "-c", _ALLOCATE], capture_output=True, text=True,
                         check=True, timeout=60)
    before, after = json.loads(out.stdout)
    assert after["anon"] - before["anon"] >= 60
    assert after["anon_largest"] >= 64
    assert all(after[k] >= 0 for k in ("heap", "ldb_tables", "files")) and after["files"] > 0


def test_gauges_are_read_over_one_connection_and_counters_left_out(metrics_url) -> None:
    g = Gauges(metrics_url)
    first, second = g.read(), g.read()
    assert first == second == {
        "bftnode_height": 42.0,
        'bftnode_queue_depth{queue="inbox"}': 3.0,
        'bftnode_queue_depth{queue="inbox_bytes"}': 2048.0,
    }
    assert len(_Handler.connections) == 1
    assert Gauges("http://127.0.0.1:9").read() == {}  # nothing listens: empty, no raise


def test_main_samples_every_node_of_a_manifest(tmp_path, metrics_url) -> None:
    (tmp_path / "testnet.json").write_text(json.dumps(
        {"nodes": [{"pid": os.getpid(), "rpc": metrics_url}]}))
    out = tmp_path / "samples.jsonl"
    main([str(tmp_path), str(out), "1.5"])
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert rows and rows[0]["0"]["anon"] > 0 and rows[0]["m0"]["bftnode_height"] == 42.0
