"""Homes for a chain whose validators run on separate hosts (`bftnode testnet-files`, like
`cometbft testnet`): one genesis naming each validator at `/ip4|ip6/<host>/tcp/<p2p port>`
(or `/dns/<name>/tcp/<p2p port>` for a host given by name, resolved by its peers at each dial),
and one home per host (config, key, genesis) that listens there. Every node uses the same
ports on its own address. The RPC stays on 127.0.0.1 unless `rpc_public`: then it listens on
the host's address, which the node accepts only over TLS or with `insecure_rpc`
(docs/operations.md, "TLS"). A new chain's genesis names OUT/admin.key its admin with
permission checks on, unless `open_chain`.

Homes hold relative paths only: copy OUT/node<i> to host i and run `bftnode start --home`.
Imports: stdlib, bftnode.{config, genesis, home, keys}.
"""

from __future__ import annotations

import ipaddress
import secrets
from pathlib import Path
from typing import Any

from .config import CONFIG_FILE
from .genesis import load_genesis
from .home import HomeError, create_local_chain, host_address, multiaddr
from .keys import generate_key_file

ADMIN_KEY = "admin.key"
MIN_VALIDATORS = 4


def write_host_homes(out: str | Path, hosts: list[str], *, p2p_port: int = 26656,
                     rpc_port: int = 26657, rpc_public: bool = False,
                     insecure_rpc: bool = False, chain_id: str | None = None,
                     open_chain: bool = False, log_level: str = "info") -> dict[str, Any]:
    """Write OUT/node0..N-1 for validators on `hosts` (in index order); returns a manifest
    {chain_id, genesis, admin_key, nodes: [{index, host, home, p2p, rpc}]}."""
    if len(hosts) < MIN_VALIDATORS:
        raise ValueError(f"PBFT needs at least {MIN_VALIDATORS} validators (3f+1); "
                         f"{len(hosts)} hosts given")
    addrs = [multiaddr(h, p2p_port) for h in hosts]
    if len(set(addrs)) != len(addrs):
        raise ValueError("hosts repeat: every validator needs its own address (same ports)")
    for port in (p2p_port, rpc_port):
        if not 1 <= port <= 65535:
            raise ValueError(f"port {port} is out of range")
    root = Path(out).resolve()
    homes = [root / f"node{i}" for i in range(len(hosts))]
    if any((h / CONFIG_FILE).exists() for h in homes) or (root / ADMIN_KEY).exists():
        raise HomeError(f"{root} already holds homes; remove it or use another --out")
    root.mkdir(parents=True, exist_ok=True)
    app: dict[str, Any] = {}
    if not open_chain:
        admin = generate_key_file(root / ADMIN_KEY)
        app = {"admins": [admin.public_key.hex()], "auth_enabled": True}
    ips = [host_address(h) for h in hosts]
    cfgs = create_local_chain(
        root, len(hosts), hosts=ips, ports=lambda i: (p2p_port, rpc_port),
        rpc_hosts=[_bindable(h) for h in ips] if rpc_public else ["127.0.0.1"] * len(hosts),
        chain_id=chain_id or f"bftnode-{secrets.token_hex(3)}", app=app, log_level=log_level,
        overrides={"insecure_rpc": True} if insecure_rpc else None)
    genesis = load_genesis(cfgs[0].genesis_path)
    genesis.write(root / "genesis.json")
    nodes: list[dict[str, Any]] = []
    for i, cfg in enumerate(cfgs):
        where = ips[i] if rpc_public else cfg.rpc_host
        rpc_host = f"[{where}]" if ":" in where else where
        nodes.append({"index": i, "host": ips[i], "home": str(homes[i]), "p2p": cfg.p2p_listen,
                      "rpc": f"http://{rpc_host}:{cfg.rpc_port}"})
    return {"chain_id": genesis.chain_id, "genesis": str(root / "genesis.json"),
            "admin_key": None if open_chain else str(root / ADMIN_KEY), "nodes": nodes}


def _bindable(host: str) -> str:
    """The RPC's bind address on `host`: its IP, or every IPv4 address for a DNS name."""
    try:
        return ipaddress.ip_address(host).compressed
    except ValueError:
        return "0.0.0.0"

