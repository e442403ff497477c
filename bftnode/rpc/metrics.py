"""The RPC server's Prometheus counters and gauges (calls, errors by method and code,
connections, WebSockets, subscriptions, deadlines), in a registry of its own.
Imports: prometheus_client only.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge


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
        self.timeouts = Counter("bftnode_rpc_timeouts",
                                "Connections cut at a deadline (body, ws_idle)", ["phase"],
                                registry=r)

    def on_error(self, method: str, code: int) -> None:
        self.errors.labels(method=method, code=str(code)).inc()

    def value(self, name: str, labels: dict[str, str] | None = None) -> float:
        v = self.registry.get_sample_value(name, labels or {})
        return 0.0 if v is None else v
