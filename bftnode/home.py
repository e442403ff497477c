"""Node home directories: `init` for one node and local multi-validator chains.

Owns the layout of a home dir (config.toml, node_key.json (0600), genesis.json, data/) and
`create_local_chain`, which writes N homes sharing one genesis (used by `python -m testnet up`,
the embedding docs and tests). Imports: stdlib, bftnode.config/genesis/keys. Must not import
trio, storage or network.
"""

from __future__ import annotations

import ipaddress
import os
import re
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .config import CONFIG_FILE, NodeConfig, load_config, write_config
from .genesis import Genesis, load_genesis, make_genesis
from .keys import NodeKey, generate_key_file, load_key_file

DEFAULT_BASE_PORT = 26600


class HomeError(Exception):
    """A home directory cannot be initialised (the message says why)."""


_NAME = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}"
                   r"[a-z0-9])?)*$")


def host_address(host: str) -> str:
    """An IP literal in its compressed form, or a DNS name lowercased; ValueError otherwise."""
    try:
        return ipaddress.ip_address(host).compressed
    except ValueError:
        pass
    name = host.lower().rstrip(".")
    if not _NAME.match(name) or name.replace(".", "").isdigit():
        raise ValueError(f"host {host!r} is neither an IP address nor a DNS name")
    return name


def multiaddr(host: str, port: int) -> str:
    """`/ip4/H/tcp/P` or `/ip6/H/tcp/P` for an IP literal, `/dns/NAME/tcp/P` for a DNS name
    (peers resolve it at each dial: network.libp2p_host.resolve); ValueError otherwise."""
    h = host_address(host)
    try:
        ip = ipaddress.ip_address(h)
    except ValueError:
        return f"/dns/{h}/tcp/{port}"
    return f"/ip{ip.version}/{ip.compressed}/tcp/{port}"


def listen_address(host: str, port: int) -> str:
    """Where a node on `host` listens: the IP itself, or every IPv4 address when it is named
    by DNS (a name is how peers find it, not an address to bind)."""
    h = host_address(host)
    try:
        ipaddress.ip_address(h)
    except ValueError:
        return f"/ip4/0.0.0.0/tcp/{port}"
    return multiaddr(h, port)


def ports_for(index: int, base_port: int) -> tuple[int, int]:
    """(p2p port, rpc port) of validator `index` on a local chain."""
    return base_port + 2 * index, base_port + 2 * index + 1


def init_home(
    home: str | os.PathLike,
    *,
    genesis: Genesis,
    node_index: int,
    key: NodeKey | None = None,
    p2p_port: int | None = None,
    rpc_port: int | None = None,
    rpc_host: str = "127.0.0.1",
    p2p_host: str = "127.0.0.1",
    log_level: str = "info",
    overrides: dict[str, Any] | None = None,
) -> NodeConfig:
    """Write config + key + genesis into `home` (refuses to clobber an existing config)."""
    h = Path(home).resolve()
    if (h / CONFIG_FILE).exists():
        raise HomeError(f"{h / CONFIG_FILE} already exists (refusing to overwrite)")
    h.mkdir(parents=True, exist_ok=True)
    if key is None:
        key_path = h / "node_key.json"
        key = load_key_file(key_path) if key_path.exists() else generate_key_file(key_path)
    else:
        from .keys import write_key_file

        if not (h / "node_key.json").exists():
            write_key_file(h / "node_key.json", key)
    if p2p_port is None:
        p2p_port = int(genesis.validators[node_index].p2p_multiaddr.split("/")[4]) if (
            node_index < len(genesis.validators)) else 26656
    cfg = NodeConfig(
        home=h, node_index=node_index, chain_id=genesis.chain_id,
        p2p_listen=listen_address(p2p_host, p2p_port),
        rpc_host=rpc_host, rpc_port=26657 if rpc_port is None else rpc_port,
        log_level=log_level, **(overrides or {}),
    )
    genesis.write(h / "genesis.json")
    write_config(cfg)
    return cfg


def create_local_chain(
    root: str | os.PathLike,
    n: int = 4,
    *,
    base_port: int = DEFAULT_BASE_PORT,
    chain_id: str | None = None,
    consensus: dict[str, Any] | None = None,
    log_level: str = "info",
    hosts: list[str] | None = None,
    app: dict[str, Any] | None = None,
    ports: Callable[[int], tuple[int, int]] | None = None,
    rpc_hosts: list[str] | None = None,
    overrides: dict[str, Any] | None = None,
) -> list[NodeConfig]:
    """Create `root/node0..node{n-1}` homes for one new chain, node i listening (p2p and RPC)
    on `hosts[i]` (default 127.0.0.1; RPC on `rpc_hosts[i]`, default the same) at
    `ports(i)` (default `ports_for(i, base_port)`), its genesis carrying `app` (application
    parameters), each config with `overrides`.
    If the homes already exist for the same n, their configs are returned unchanged (same
    chain: a restart)."""
    r = Path(root).resolve()
    homes = [r / f"node{i}" for i in range(n)]
    if all((h / CONFIG_FILE).exists() for h in homes):
        cfgs = [load_config(h) for h in homes]
        g = load_genesis(cfgs[0].genesis_path)
        if len(g.validators) != n:
            raise HomeError(f"{r} holds a chain of {len(g.validators)} validators, not {n}")
        return cfgs
    if any((h / CONFIG_FILE).exists() for h in homes) or (r / "node0").exists() and not (
        homes[0] / CONFIG_FILE
    ).exists():
        raise HomeError(f"{r} holds a partial or different testnet; remove it or use another dir")
    if hosts is not None and len(hosts) != n:
        raise HomeError(f"{len(hosts)} hosts for {n} nodes")
    hosts = hosts or ["127.0.0.1"] * n
    rpc_hosts = rpc_hosts or hosts
    ports = ports or (lambda i: ports_for(i, base_port))
    keys = [NodeKey.generate() for _ in range(n)]
    genesis = make_genesis(
        chain_id or f"bftnode-local-{secrets.token_hex(3)}",
        [(k.public_key, multiaddr(hosts[i], ports(i)[0])) for i, k in enumerate(keys)],
        genesis_time_ms=time.time_ns() // 1_000_000,
        consensus=consensus,
        app=app,
    )
    cfgs = []
    for i, (h, k) in enumerate(zip(homes, keys, strict=True)):
        p2p, rpc = ports(i)
        cfgs.append(init_home(h, genesis=genesis, node_index=i, key=k, p2p_port=p2p,
                              rpc_port=rpc, rpc_host=rpc_hosts[i], p2p_host=hosts[i],
                              log_level=log_level, overrides=overrides))
    return cfgs
