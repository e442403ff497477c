"""Start-up: every check before anything is written (key, genesis, config, ports, database),
then the real parts (LevelDB store, libp2p transport, KV application, consensus.Replica)
composed into a `Node`. Every failure is a `StartupError` with the reason.
Imports: stdlib, consensus, storage, network (lazily), bftnode.
"""

from __future__ import annotations

import socket
from collections.abc import Callable

from storage.interface import StorageError

from ..config import NodeConfig
from ..genesis import Genesis, GenesisError, load_genesis
from ..keys import KeyFileError, NodeKey, load_key_file
from ..logging import get_logger
from .errors import StartupError
from .node import Node, _resolve_replica_class, wall_ms
from .ports import Application, ReplicaFactory, Store, Transport
from .rpc_security import rpc_tls_context


def check_port_free(host: str, port: int, what: str) -> None:
    if port == 0:
        return
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            raise StartupError(f"{what} port {host}:{port} is not available: {exc.strerror}") from None


def _multiaddr_host_port(addr: str) -> tuple[str, int]:
    parts = addr.split("/")
    return parts[2], int(parts[4])


def load_startup_files(config: NodeConfig) -> tuple[NodeKey, Genesis]:
    """Key + genesis, cross-checked against the config; StartupError with the reason."""
    try:
        key = load_key_file(config.key_path)
        genesis = load_genesis(config.genesis_path)
    except (KeyFileError, GenesisError) as exc:
        raise StartupError(str(exc)) from exc
    if genesis.chain_id != config.chain_id:
        raise StartupError(
            f"wrong genesis: {config.genesis_path} is for chain {genesis.chain_id!r} but the "
            f"config's chain_id is {config.chain_id!r}"
        )
    n = len(genesis.validators)
    if config.node_index >= n:
        raise StartupError(f"field 'node_index': {config.node_index} but genesis has {n} validators")
    want = genesis.validators[config.node_index].public_key
    if key.public_key.hex() != want.lower():
        raise StartupError(
            f"key {config.key_path} (public key {key.public_key.hex()[:16]}...) is not validator "
            f"{config.node_index} of the genesis ({want[:16]}...)"
        )
    return key, genesis


def build_node(config: NodeConfig, *, app: Application | None = None,
               transport: Transport | None = None, store: Store | None = None,
               replica_factory: ReplicaFactory | None = None,
               wrap_transport: Callable[[Transport], Transport] | None = None,
               client_key: NodeKey | None = None,
               clock_ms: Callable[[], int] | None = None) -> Node:
    """Every start-up check, then the real parts (LevelDB store, libp2p transport, KV app).
    `wrap_transport` wraps the default transport once it is built (a given `transport` is
    used as is). Raises StartupError with a clear message; nothing is written unless all
    checks pass. `clock_ms`: the node's wall clock (default: the system's; a seam for the
    testnet's clock-skew faults)."""
    key, genesis = load_startup_files(config)
    if transport is None:
        host, port = _multiaddr_host_port(config.p2p_listen)
        check_port_free(host, port, "p2p")
    if config.rpc_port:
        check_port_free(config.rpc_host, config.rpc_port, "RPC")
        rpc_tls_context(config)  # TLS files and the plain-HTTP rule: fail before any write
    if app is None:
        try:
            from bftnode.app import KVApplication
        except ImportError as exc:
            raise StartupError(f"bftnode.app.KVApplication is not available: {exc}") from exc
        app = KVApplication(validators=genesis.replica_keys(), params=genesis.app)
    if transport is None:
        try:
            from network import Libp2pTransport, PeerSpec
        except ImportError as exc:
            raise StartupError(f"network.Libp2pTransport is not available: {exc}") from exc
        peers = [PeerSpec(v.index, v.public_key_bytes, v.p2p_multiaddr) for v in genesis.validators]
        transport = Libp2pTransport(config.node_index, key.seed, peers, config.p2p_listen)
        if wrap_transport is not None:
            transport = wrap_transport(transport)
    if replica_factory is None:  # resolve before anything is written
        replica_factory = _resolve_replica_class()
    opened_here = store is None
    if store is None:
        store = _open_store(config, genesis)
    try:
        return Node(index=config.node_index, genesis=genesis, key=key, store=store,
                    transport=transport, app=app, config=config, client_key=client_key,
                    replica_factory=replica_factory, tick_ms=config.tick_ms,
                    clock_ms=clock_ms or wall_ms)
    except StorageError as exc:
        if opened_here:
            store.close()
        raise StartupError(f"cannot recover from {config.data_path}: {exc}") from exc
    except BaseException:
        if opened_here:
            store.close()
        raise


def _open_store(config: NodeConfig, genesis: Genesis) -> Store:
    try:
        from storage import open_store
        from storage.leveldb import staggered_memtable_bytes
    except ImportError as exc:
        raise StartupError(f"storage.open_store is not available: {exc}") from exc
    try:
        store = open_store(str(config.data_path), genesis.chain_id.encode(), genesis.hash(),
                           True, dedup_window=genesis.config().dedup_window,
                           sync_blocks=config.sync_blocks,
                           compression=config.compression, fsync=config.fsync,
                           max_open_files=config.max_open_files,
                           memtable_bytes=staggered_memtable_bytes(config.node_index),
                           authenticated_state=config.authenticated_state,
                           state_versions=config.state_versions)
    except StorageError as exc:
        raise StartupError(f"cannot open the database {config.data_path}: {exc}") from exc
    if not config.fsync:
        get_logger(node=config.node_index).warning(
            "fsync disabled", reason="config fsync = false: a kill -9 loses nothing, a "
            "power cut can lose the last votes (the node may then equivocate)")
    return store
