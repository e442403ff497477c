"""bftnode's JSON-RPC 2.0 layer: the method table over `NodeAPI` and its HTTP/WebSocket server.

Public names are re-exported lazily so importing `bftnode.rpc.node_api` (bftnode.node does) does
not pull in starlette/hypercorn. Imports: consensus, storage (types), bftnode.app (ops).
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "NodeAPI": "bftnode.rpc.node_api",
    "SubmitResult": "bftnode.rpc.node_api",
    "RPCError": "bftnode.rpc.errors",
    "METHODS": "bftnode.rpc.methods",
    "dispatch": "bftnode.rpc.methods",
    "serve_rpc": "bftnode.rpc.server",
    "create_app": "bftnode.rpc.server",
    "RPCStartupError": "bftnode.rpc.server",
    "RPCMetrics": "bftnode.rpc.metrics",
    "RPCLimits": "bftnode.rpc.limits",
    "SCHEMAS": "bftnode.rpc.methods",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    mod = _EXPORTS.get(name)
    if mod is None:
        raise AttributeError(f"module 'bftnode.rpc' has no attribute {name!r}")
    return getattr(importlib.import_module(mod), name)
