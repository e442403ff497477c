"""docs/rpc.md shows every route with an example: for each JSON-RPC method the node serves
(bftnode.rpc METHODS and the WebSocket-only ones), a request in its "Every route, one example"
section names it (a curl GET `/<method>?…`, a POST body `"method":"<method>"`, or a WebSocket
message). A new method without one fails here."""

import pathlib
import re

import bftnode.rpc.server  # noqa: F401  (registers every method)
from bftnode.rpc import methods as m

DOC = pathlib.Path(__file__).resolve().parent.parent / "docs" / "rpc.md"


def test_every_route_has_an_example():
    text = DOC.read_text()
    section = text.split("## Every route, one example", 1)
    assert len(section) == 2, "docs/rpc.md has no 'Every route, one example' section"
    body = section[1].split("\n## ", 1)[0]
    missing = [name for name in sorted({*m.METHODS, *m.WS_ONLY})
               if not re.search(rf"(/{name}[?'])|(\"method\":\s*\"{name}\")", body)]
    assert missing == []
