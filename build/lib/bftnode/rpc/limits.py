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
    # a client that takes no 64 KiB piece of an answer this long is not reading: closed
    send_stall_s: float = 30.0

    def __post_init__(self) -> None:
        for f in ("header_timeout_s", "body_timeout_s", "ws_idle_timeout_s", "send_stall_s"):
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


@dataclass(frozen=True, slots=True)
class ReadLimits:
    """The bounds on reads (the node config's `read_*` fields; docs/operations.md, "Reads and
    rate limits"). A node offers its own as `node.read_limits`; without one, these defaults."""

    page_limit: int = _D["read_page_limit"]  # keys in one kv_range answer
    answer_bytes: int = _D["read_answer_bytes"]  # about this many bytes in one read answer
    batch_bytes: int = _D["read_batch_bytes"]  # ... and in the read answers of one request
    per_connection: int = _D["read_per_connection"]  # reads running at once per connection
    rate: float = _D["read_rate"]  # tokens per second per client IP
    burst: int = _D["read_burst"]  # bucket size per client IP

    @classmethod
    def from_config(cls, config: NodeConfig) -> ReadLimits:
        return cls(page_limit=config.read_page_limit, answer_bytes=config.read_answer_bytes,
                   batch_bytes=config.read_batch_bytes,
                   per_connection=config.read_per_connection, rate=config.read_rate,
                   burst=config.read_burst)
