"""bftnode: the composition root (the node, embedding API, config, CLI) and its
sub-packages `app` (the replicated application) and `rpc` (JSON-RPC server).

Public names are re-exported lazily so `import bftnode.app` stays light and free of cycles.
Imports (lazily): consensus, storage, network and bftnode's own modules.
"""

from __future__ import annotations

import importlib
from typing import Any


def installed_version() -> str:
    """The installed distribution's version ("unknown" from a never-installed source tree)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("bftnode")
    except PackageNotFoundError:
        return "unknown"


_EXPORTS = {
    "NodeConfig": "bftnode.config",
    "ConfigError": "bftnode.config",
    "load_config": "bftnode.config",
    "write_config": "bftnode.config",
    "Genesis": "bftnode.genesis",
    "GenesisError": "bftnode.genesis",
    "load_genesis": "bftnode.genesis",
    "NodeKey": "bftnode.keys",
    "KeyFileError": "bftnode.keys",
    "load_key_file": "bftnode.keys",
    "generate_key_file": "bftnode.keys",
    "Node": "bftnode.node.node",
    "StartupError": "bftnode.node.errors",
    "TxRejected": "bftnode.node.errors",
    "open_node": "bftnode.api",
    "EmbeddedNode": "bftnode.api",
    "AsyncioNode": "bftnode.api",
    "SyncNode": "bftnode.api",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    mod = _EXPORTS.get(name)
    if mod is None:
        raise AttributeError(f"module 'bftnode' has no attribute {name!r}")
    return getattr(importlib.import_module(mod), name)
