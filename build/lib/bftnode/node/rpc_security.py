"""The RPC server's security at start-up: TLS from the node config, or plain HTTP where allowed.

Owns `rpc_tls_context`: the config's `rpc_tls_cert`/`rpc_tls_key` loaded into the server's TLS
context (bftnode.rpc.tls), and the refusal to serve plain HTTP beyond loopback without
`insecure_rpc`; a `StartupError` naming the field and the fix. `build_node` calls it before
anything is written; the node calls it again when it starts the server.
Imports: stdlib, bftnode.config, bftnode.rpc.tls (hypercorn), bftnode.node.errors.
"""

from __future__ import annotations

import ssl

from ..config import NodeConfig
from .errors import StartupError


def rpc_tls_context(config: NodeConfig) -> ssl.SSLContext | None:
    """The TLS context the RPC serves with (None: plain HTTP, allowed on this rpc_host)."""
    from bftnode.rpc.tls import TLSSetupError, exposure_error, server_context

    paths = config.rpc_tls
    refusal = exposure_error(config.rpc_host, paths is not None, config.insecure_rpc)
    if refusal:
        raise StartupError(refusal)
    if paths is None:
        return None
    try:
        return server_context(*paths)
    except TLSSetupError as exc:
        raise StartupError(str(exc)) from None
