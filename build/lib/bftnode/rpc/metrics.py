"""The RPC server's Prometheus counters and gauges (calls, errors by method and code,
payloads refused whole by reason, read calls rate limited, connections, WebSockets, subscriptions, deadlines), in a
registry of its own. Every label value is from a closed set, never client text: a method label
is a registered method name or "?", a code one of ours or "other", a reason one of
`bftnode.rpc.bounds.REASONS`. Imports: prometheus_client, bftnode.rpc.{bounds,errors,registry}.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

from .bounds import REASONS
from .errors import CODE_NAMES
from .registry import METHODS, WS_ONLY

TRANSPORTS = ("http", "websocket")


class RPCMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.calls = Counter("bftnode_rpc_requests", "HTTP/WS JSON-RPC payloads", ["transport"],
                             registry=r)
        self.errors = Counter("bftnode_rpc_errors", "JSON-RPC errors answered", ["method", "code"],
                              registry=r)
        self.ws_connections = Gauge("bftnode_rpc_ws_connections", "Open WebSockets", registry=r)
        self.subscriptions = Gauge("bftnode_rpc_subscriptions", "Active subscriptions", registry=r)
        self.sub_overflows = Counter("bftnode_rpc_subscription_overflows",
                                     "Subscriptions closed because the reader was too slow",
                                     registry=r)
        self.connections = Gauge("bftnode_rpc_connections", "Open RPC connections (TCP)",
                                 registry=r)
        self.connections_refused = Counter(
            "bftnode_rpc_connections_refused", "Connections refused by a cap (503)", ["reason"],
            registry=r)
        self.bad_input = Counter(
            "bftnode_rpc_bad_input", "Payloads refused whole before any call ran (not JSON, "
            "over the JSON bounds, a binary WebSocket frame)", ["transport", "reason"],
            registry=r)
        self.rate_limited = Counter(
            "bftnode_rpc_rate_limited", "Read calls refused `rate limited` (the client IP's "
            "read bucket was empty)", ["transport"], registry=r)
        self.timeouts = Counter("bftnode_rpc_timeouts",
                                "Connections cut at a deadline (body, ws_idle)", ["phase"],
                                registry=r)

    def on_error(self, method: str, code: int) -> None:
        method = method if method in METHODS or method in WS_ONLY else "?"
        self.errors.labels(method=method, code=str(code) if code in CODE_NAMES else "other").inc()

    def on_bad_input(self, transport: str, reason: str) -> None:
        self.bad_input.labels(transport=transport if transport in TRANSPORTS else "other",
                              reason=reason if reason in REASONS else "other").inc()

    def on_rate_limited(self, transport: str, n: int) -> None:
        self.rate_limited.labels(transport=transport if transport in TRANSPORTS else "other"
                                 ).inc(n)

    def value(self, name: str, labels: dict[str, str] | None = None) -> float:
        v = self.registry.get_sample_value(name, labels or {})
        return 0.0 if v is None else v
