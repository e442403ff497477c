"""The RPC server's connection limits: deadlines and caps, with the node config's defaults.

Owns `RPCLimits` (docs/rpc.md, "Connections"; the node config fields `rpc_*` in
docs/operations.md): how long a client may take to send a request head and a body, how long a
WebSocket may stay silent, and how many connections may be open in total and per client
address; and how deep a JSON payload may nest and how many values it may hold (checked on its
raw bytes before decoding, `bftnode.rpc.bounds`). Imports: stdlib, bftnode.config. Must not import trio, starlette or hypercorn.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from ..config import NodeConfig, default_fields

_D = default_fields()


@dataclass(frozen=True, slots=True)
class RPCLimits:
    # a request head must be complete this long after connecting or after the previous
    # answer on the connection (hypercorn's keep-alive timeout: also the idle keep-alive limit)
    header_timeout_s: float = _D["rpc_header_timeout_s"]
    body_timeout_s: float = _D["rpc_body_timeout_s"]  # the whole body, once the head is in
    # a WebSocket with no subscription and no call in flight that sends nothing this long
    ws_idle_timeout_s: float = _D["rpc_ws_idle_timeout_s"]
    max_connections: int = _D["rpc_max_connections"]  # open at once, all clients together
    max_connections_per_address: int = _D["rpc_max_connections_per_address"]
    # a POST body or WebSocket message: nesting of arrays/objects, and values (array items
    # and object members) in the whole payload; checked before it is decoded
    max_json_depth: int = _D["rpc_max_json_depth"]
    max_json_elements: int = _D["rpc_max_json_elements"]

    def __post_init__(self) -> None:
        for f in ("header_timeout_s", "body_timeout_s", "ws_idle_timeout_s"):
            assert getattr(self, f) > 0, f"{f} must be > 0"
        assert self.max_connections >= 1 and self.max_connections_per_address >= 1
        assert self.max_json_depth >= 1 and self.max_json_elements >= 1

    @classmethod
    def from_config(cls, config: NodeConfig) -> RPCLimits:
        return cls(
            header_timeout_s=config.rpc_header_timeout_s,
            body_timeout_s=config.rpc_body_timeout_s,
            ws_idle_timeout_s=config.rpc_ws_idle_timeout_s,
            max_connections=config.rpc_max_connections,
            max_connections_per_address=config.rpc_max_connections_per_address,
            max_json_depth=config.rpc_max_json_depth,
            max_json_elements=config.rpc_max_json_elements,
        )

    def replace(self, **changes: Any) -> RPCLimits:
        return dataclasses.replace(self, **changes)
