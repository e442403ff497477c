"""Node configuration: one TOML file per node home directory, validated once.

Owns `NodeConfig` (home dir, node index, chain id, p2p listen multiaddr, RPC host/port, log
level, key/genesis/data paths, storage and RPC limits, RPC TLS files), `load_config` /
`write_config`. A bad field gives `ConfigError` naming the file and the field (the TLS files
themselves are checked at start-up: bftnode.node.rpc_security). A node config knows nothing of
Byzantine strategies or link faults: those are testnet-only, given to `python -m testnet node`.
Imports: stdlib, tomli_w. Must not import trio, consensus internals or network; from storage only the
constants of storage.interface (COMPRESSIONS).
"""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomli_w

from storage.interface import COMPRESSIONS

CONFIG_FILE = "config.toml"
LOG_LEVELS = ("debug", "info", "warning", "error")
# NodeConfig.authenticated_state (docs/operations.md). Off by default for now: with it on,
# throughput is ~37 % lower (docs/performance.md) and part of the slow suite fails
DEFAULT_AUTHENTICATED_STATE = False
_MULTIADDR = re.compile(r"^/ip[46]/[^/]+/tcp/\d{1,5}(/.*)?$")


class ConfigError(Exception):
    """The node configuration is invalid; the message names the file and the field."""


@dataclass(frozen=True, slots=True)
class NodeConfig:
    home: Path
    node_index: int
    chain_id: str
    p2p_listen: str = "/ip4/127.0.0.1/tcp/26656"
    rpc_host: str = "127.0.0.1"
    rpc_port: int = 26657  # 0 = no RPC server
    log_level: str = "info"
    log_format: str = "json"  # json | console
    key_file: str = "node_key.json"  # relative paths are relative to `home`
    genesis_file: str = "genesis.json"
    data_dir: str = "data"
    tick_ms: int = 50
    # fsync every block commit too (votes and view state are always fsynced; without it a
    # committed block survives kill -9 but not a power cut, and is then fetched from peers)
    sync_blocks: bool = False
    # false: nothing is fsynced, votes included. A kill -9 still loses nothing (every write
    # reaches the OS first); a power cut or OS crash can lose the last votes, after which the
    # rebooted node may equivocate (one of the f faults PBFT tolerates). For dev testnets,
    # CI and slow disks: p50 at low load about halves on a busy VM (docs/perf/history.md).
    fsync: bool = True
    # LevelDB table compression: "snappy" (default) or "none" (about 2.4x the disk for ~5 %
    # less CPU per tx at saturation; docs/performance.md). Either reads the other's tables.
    compression: str = "snappy"
    # LevelDB's table cache per DB (74..50,000): open tables keep their index blocks in memory,
    # so this caps the part of RSS that grows with the ledger (~65 MB at 1,000 for the main
    # DB, reached after ~9 million txs); lower trades that for slower reads of old data
    max_open_files: int = 1000
    # keep a Merkle tree over the application state and client records, updated in each
    # block's batch, with proofs for the last `state_versions` heights (docs/storage.md,
    # "State tree"); validators certify its root and every read answers with a proof, so a
    # client trusts no single node (off: faster, reads must be trusted)
    authenticated_state: bool = DEFAULT_AUTHENTICATED_STATE
    state_versions: int = 100
    # keep only the last `retain_blocks` blocks (0: all); older ones (headers, bodies with their
    # certificates, their tx records) are deleted in small steps
    # after commits, never at or above the snapshot height this node serves (docs/operations.md)
    retain_blocks: int = 0
    # index each committed tx under the event attributes its app names (kv.key, lock.key, ...)
    # for tx_search (docs/storage.md, keyspaces I and J); off: no index, ~4 % more tx/s
    tx_index: bool = True
    # RPC connection hygiene (docs/rpc.md, "Connections"): a request head must arrive within
    # rpc_header_timeout_s of connecting or of the previous answer (also the keep-alive idle
    # limit), its body within rpc_body_timeout_s; a WebSocket with no subscription and no
    # call in flight is closed after rpc_ws_idle_timeout_s of silence. Open connections are
    # capped in total and per client address (further ones get HTTP 503 and are closed).
    rpc_header_timeout_s: float = 10.0
    rpc_body_timeout_s: float = 10.0
    rpc_ws_idle_timeout_s: float = 60.0
    rpc_max_connections: int = 1024
    rpc_max_connections_per_address: int = 256
    # RPC bad input (docs/rpc.md, "Bad input"): a POST body or WebSocket message nesting
    # deeper, or holding more values (array items + object members), is refused before it is
    # decoded (HTTP 400, -32700 / -32600). A legal request nests 3 deep (batch, call, params);
    # a full batch of 1,000 calls with every param of the widest method holds 14,000 values.
    rpc_max_json_depth: int = 32
    rpc_max_json_elements: int = 50_000
    # Reads (docs/operations.md, "Reads and rate limits"): every read runs in one of
    # read_workers threads over a snapshot, never on the task that steps the replica. One
    # answer holds at most read_page_limit keys and about read_answer_bytes; one request (a
    # batch, or one WebSocket message) about read_batch_bytes of read answers; one connection
    # runs at most read_per_connection reads at once. Each client IP has a token bucket of
    # read_burst tokens refilled at read_rate per second; a read costs 1 token plus one per
    # 16 KiB of its answer; an empty bucket answers `rate limited` with retry_after.
    read_workers: int = 2
    read_page_limit: int = 1000
    read_answer_bytes: int = 1024 * 1024
    read_batch_bytes: int = 4 * 1024 * 1024
    read_per_connection: int = 4
    read_rate: float = 1000.0
    read_burst: int = 2000  # a full batch of 1,000 reads fits twice
    # `health` is not ok (HTTP 503) after health_view_change_s in a view change, after
    # health_stall_s without a commit while a peer is ahead, when more than
    # health_max_behind_blocks behind a peer, or with fewer than 2f+1 validators connected
    health_view_change_s: float = 10.0
    health_stall_s: float = 10.0
    health_max_behind_blocks: int = 50
    # RPC over TLS (docs/operations.md, "TLS"): PEM certificate chain and private key ("" =
    # plain HTTP). Plain HTTP binds only a loopback rpc_host unless insecure_rpc is set
    rpc_tls_cert: str = ""
    rpc_tls_key: str = ""
    insecure_rpc: bool = False

    def __post_init__(self) -> None:
        _validate(self)

    def path(self, name: str) -> Path:
        p = Path(name)
        return p if p.is_absolute() else self.home / p

    @property
    def key_path(self) -> Path:
        return self.path(self.key_file)

    @property
    def genesis_path(self) -> Path:
        return self.path(self.genesis_file)

    @property
    def data_path(self) -> Path:
        return self.path(self.data_dir)

    @property
    def rpc_tls(self) -> tuple[Path, Path] | None:
        """(certificate, key) paths when the RPC serves TLS, else None."""
        if not self.rpc_tls_cert:
            return None
        return self.path(self.rpc_tls_cert), self.path(self.rpc_tls_key)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d.pop("home")  # the file lives in home; do not pin an absolute path
        return d


_FIELDS = {f.name: f for f in dataclasses.fields(NodeConfig)}
# fields a node config no longer takes: testnet-only, given to `python -m testnet node`
MOVED_TO_TESTNET = ("byzantine", "link_faults_file")


def _check_type(name: str, value: Any, want: type) -> None:
    ok = isinstance(value, want) and not (want is int and isinstance(value, bool))
    if not ok:
        raise ConfigError(
            f"field '{name}': expected {want.__name__}, got {type(value).__name__} {value!r}"
        )


def _validate(c: NodeConfig) -> None:
    for name in ("node_index", "rpc_port", "tick_ms"):
        _check_type(name, getattr(c, name), int)
    for name in ("chain_id", "p2p_listen", "rpc_host", "log_level", "log_format", "key_file",
                 "genesis_file", "data_dir"):
        _check_type(name, getattr(c, name), str)
    if c.node_index < 0:
        raise ConfigError(f"field 'node_index': must be >= 0, got {c.node_index}")
    if not c.chain_id:
        raise ConfigError("field 'chain_id': must not be empty")
    if not _MULTIADDR.match(c.p2p_listen):
        raise ConfigError(
            f"field 'p2p_listen': expected a multiaddr like /ip4/127.0.0.1/tcp/26656, "
            f"got {c.p2p_listen!r}"
        )
    port = int(c.p2p_listen.split("/")[4])
    if not 0 <= port <= 65535:
        raise ConfigError(f"field 'p2p_listen': port {port} out of range 0..65535")
    if not 0 <= c.rpc_port <= 65535:
        raise ConfigError(f"field 'rpc_port': must be 0..65535, got {c.rpc_port}")
    if not c.rpc_host:
        raise ConfigError("field 'rpc_host': must not be empty")
    if c.log_level not in LOG_LEVELS:
        raise ConfigError(f"field 'log_level': must be one of {LOG_LEVELS}, got {c.log_level!r}")
    if c.log_format not in ("json", "console"):
        raise ConfigError(f"field 'log_format': must be 'json' or 'console', got {c.log_format!r}")
    if not 1 <= c.tick_ms <= 1000:
        raise ConfigError(f"field 'tick_ms': must be 1..1000, got {c.tick_ms}")
    _check_type("sync_blocks", c.sync_blocks, bool)
    _check_type("fsync", c.fsync, bool)
    if c.compression not in COMPRESSIONS:
        raise ConfigError(
            f"field 'compression': must be one of {COMPRESSIONS}, got {c.compression!r}")
    _check_type("max_open_files", c.max_open_files, int)
    _check_type("authenticated_state", c.authenticated_state, bool)
    _check_type("state_versions", c.state_versions, int)
    if not 1 <= c.state_versions <= 1_000_000:
        raise ConfigError(
            f"field 'state_versions': must be 1..1000000, got {c.state_versions}")
    _check_type("tx_index", c.tx_index, bool)
    _check_type("retain_blocks", c.retain_blocks, int)
    if not (c.retain_blocks == 0 or 16 <= c.retain_blocks <= 10**12):
        raise ConfigError(
            f"field 'retain_blocks': must be 0 (keep all) or at least 16, got {c.retain_blocks}")
    if not 74 <= c.max_open_files <= 50_000:
        raise ConfigError(
            f"field 'max_open_files': must be 74..50000, got {c.max_open_files}")
    _validate_rpc(c)


def _validate_rpc(c: NodeConfig) -> None:
    for name in ("rpc_header_timeout_s", "rpc_body_timeout_s", "rpc_ws_idle_timeout_s"):
        v = getattr(c, name)
        if isinstance(v, bool) or not isinstance(v, int | float) or not 0 < v <= 3600:
            raise ConfigError(f"field '{name}': must be a number of seconds in (0, 3600], "
                              f"got {v!r}")
    for name in ("rpc_max_connections", "rpc_max_connections_per_address"):
        _check_type(name, getattr(c, name), int)
        if not 1 <= getattr(c, name) <= 1_000_000:
            raise ConfigError(f"field '{name}': must be 1..1000000, got {getattr(c, name)}")
    for name in ("rpc_tls_cert", "rpc_tls_key"):
        _check_type(name, getattr(c, name), str)
    _check_type("insecure_rpc", c.insecure_rpc, bool)
    if bool(c.rpc_tls_cert) != bool(c.rpc_tls_key):
        given, missing = (("rpc_tls_cert", "rpc_tls_key") if c.rpc_tls_cert
                          else ("rpc_tls_key", "rpc_tls_cert"))
        raise ConfigError(f"field '{missing}': must be set too when '{given}' is (TLS needs "
                          "both the certificate and its private key)")
    _validate_reads(c)


_RANGED_INTS = {"rpc_max_json_depth": (3, 256), "rpc_max_json_elements": (100, 10_000_000),
              "read_workers": (1, 64), "read_page_limit": (1, 10_000),
              "read_answer_bytes": (1024, 1 << 30), "read_batch_bytes": (1024, 1 << 30),
              "read_per_connection": (1, 1024), "read_burst": (1, 1_000_000),
              "health_max_behind_blocks": (1, 1_000_000)}


def _validate_reads(c: NodeConfig) -> None:
    for name, (lo, hi) in _RANGED_INTS.items():
        _check_type(name, getattr(c, name), int)
        if not lo <= getattr(c, name) <= hi:
            raise ConfigError(f"field '{name}': must be {lo}..{hi}, got {getattr(c, name)}")
    for name in ("read_rate", "health_view_change_s", "health_stall_s"):
        v = getattr(c, name)
        if isinstance(v, bool) or not isinstance(v, int | float) or not 0 < v <= 1e6:
            raise ConfigError(f"field '{name}': must be a number in (0, 1000000], got {v!r}")


def config_from_dict(obj: dict[str, Any], home: str | os.PathLike, where: str = "config") -> NodeConfig:
    for name in MOVED_TO_TESTNET:
        if name in obj:
            raise ConfigError(
                f"{where}: field '{name}' moved to `python -m testnet node` (Byzantine "
                "strategies and link faults are testnet-only: `--byzantine`/`--link-faults`, "
                "or the home's adversary.json); remove it from the node config")
    unknown = set(obj) - set(_FIELDS) - {"home"}
    if unknown:
        raise ConfigError(f"{where}: unknown field(s) {sorted(unknown)}")
    for req in ("node_index", "chain_id"):
        if req not in obj:
            raise ConfigError(f"{where}: field '{req}' is missing")
    kw = {k: v for k, v in obj.items() if k != "home"}
    try:
        return NodeConfig(home=Path(home), **kw)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def load_config(home_or_file: str | os.PathLike) -> NodeConfig:
    """Load `<home>/config.toml` (or the given .toml file, whose directory is the home)."""
    p = Path(home_or_file)
    cfg_file = p if p.suffix == ".toml" else p / CONFIG_FILE
    try:
        raw = cfg_file.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{cfg_file}: config file not found (run `bftnode init`?)") from None
    except OSError as exc:
        raise ConfigError(f"{cfg_file}: cannot read: {exc.strerror}") from exc
    try:
        obj = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{cfg_file}: not valid TOML: {exc}") from exc
    return config_from_dict(obj, cfg_file.parent.resolve(), where=str(cfg_file))


def write_config(config: NodeConfig) -> Path:
    config.home.mkdir(parents=True, exist_ok=True)
    p = config.home / CONFIG_FILE
    tmp = p.with_suffix(".toml.tmp")
    tmp.write_text(tomli_w.dumps(config.to_dict()))
    os.replace(tmp, p)
    return p


def default_fields() -> dict[str, Any]:
    return {k: f.default for k, f in _FIELDS.items() if f.default is not dataclasses.MISSING}


__all__ = ["ConfigError", "NodeConfig", "load_config", "write_config", "config_from_dict"]
