"""The genesis document: chain id, genesis time, validator set and consensus parameters.

Owns `Genesis` (JSON on disk, validated once with messages naming the bad field), its hash
(BLAKE2b-256 of the canonical JSON) and the signature domain derived from the chain id.
Imports: stdlib, consensus; bftnode.app's param validators only for a genesis with `app`.
Must not import trio, storage or network otherwise.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from consensus import Config, digest

_CHAIN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_CONFIG_FIELDS = {f.name: f.type for f in dataclasses.fields(Config)}
# consensus.sparse_backlog when the genesis does not set it: busy clients wait while clients
# with one request at a time are served and the pool holds this many (consensus.fair.SparseFirst)
SPARSE_BACKLOG = 16


class GenesisError(Exception):
    """The genesis document is invalid; the message names the file and field."""


@dataclass(frozen=True, slots=True)
class Validator:
    index: int
    public_key: str  # Ed25519, 64 hex chars
    p2p_multiaddr: str  # e.g. /ip4/127.0.0.1/tcp/26656
    rpc_url: str = ""  # informational (testnet), may be empty
    name: str = ""

    @property
    def public_key_bytes(self) -> bytes:
        return bytes.fromhex(self.public_key)


@dataclass(frozen=True, slots=True)
class Genesis:
    chain_id: str
    genesis_time_ms: int
    validators: tuple[Validator, ...]
    consensus: dict[str, Any] = field(default_factory=dict)  # overrides of consensus.Config
    # application parameters (bftnode.app): admins, permission checks, quotas; {} = defaults
    app: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _validate(self)

    # -- derived values
    def config(self) -> Config:
        from bftnode.app.quotas import Limits  # lazily, as in _validate

        # the pool's per-client bound is an application quota (app.quotas.max_pending)
        pending = (self.app.get("quotas") or {}).get("max_pending", Limits().max_pending)
        params = {"sparse_backlog": SPARSE_BACKLOG, **self.consensus}
        return Config(n=len(self.validators), max_pending_per_client=pending, **params)

    def canonical_bytes(self) -> bytes:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":")).encode()

    def hash(self) -> bytes:
        return digest(self.canonical_bytes())

    @property
    def domain(self) -> bytes:
        """Signature domain (consensus.Authenticator): the chain id's UTF-8 bytes."""
        return chain_domain(self.chain_id)

    def replica_keys(self) -> tuple[bytes, ...]:
        return tuple(v.public_key_bytes for v in self.validators)

    # -- (de)serialisation
    def to_dict(self) -> dict[str, Any]:
        return {
            "chain_id": self.chain_id,
            "genesis_time_ms": self.genesis_time_ms,
            "validators": [dataclasses.asdict(v) for v in self.validators],
            "consensus": dict(self.consensus),
            # omitted when empty, so a genesis without app parameters keeps its hash
            **({"app": dict(self.app)} if self.app else {}),
        }

    @classmethod
    def from_dict(cls, obj: Any, where: str = "genesis") -> Genesis:
        if not isinstance(obj, dict):
            raise GenesisError(f"{where}: expected a JSON object")
        unknown = set(obj) - {"chain_id", "genesis_time_ms", "validators", "consensus", "app"}
        if unknown:
            raise GenesisError(f"{where}: unknown field(s) {sorted(unknown)}")
        vals = obj.get("validators")
        if not isinstance(vals, list) or not vals:
            raise GenesisError(f"{where}: field 'validators' must be a non-empty list")
        validators = []
        for i, v in enumerate(vals):
            if not isinstance(v, dict):
                raise GenesisError(f"{where}: field 'validators[{i}]' must be an object")
            names = {f.name for f in dataclasses.fields(Validator)}
            bad = set(v) - names
            if bad:
                raise GenesisError(f"{where}: field 'validators[{i}]': unknown {sorted(bad)}")
            for req in ("index", "public_key", "p2p_multiaddr"):
                if req not in v:
                    raise GenesisError(f"{where}: field 'validators[{i}].{req}' is missing")
            validators.append(Validator(**v))
        try:
            return cls(
                chain_id=obj.get("chain_id"),
                genesis_time_ms=obj.get("genesis_time_ms", 0),
                validators=tuple(validators),
                consensus=obj.get("consensus") or {},
                app=obj.get("app") or {},
            )
        except GenesisError as exc:
            raise GenesisError(f"{where}: {exc}") from None

    def write(self, path: str | os.PathLike) -> Path:
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_suffix(p.suffix + ".tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")
        os.replace(tmp, p)
        return p


def chain_domain(chain_id: str) -> bytes:
    return chain_id.encode("utf-8")


def load_genesis(path: str | os.PathLike) -> Genesis:
    p = Path(path)
    try:
        text = p.read_text()
    except FileNotFoundError:
        raise GenesisError(f"{p}: genesis file not found") from None
    except OSError as exc:
        raise GenesisError(f"{p}: cannot read genesis file: {exc.strerror}") from exc
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise GenesisError(f"{p}: not valid JSON: {exc}") from exc
    return Genesis.from_dict(obj, where=str(p))


def _validate(g: Genesis) -> None:
    if not isinstance(g.chain_id, str) or not _CHAIN_ID.match(g.chain_id):
        raise GenesisError(
            f"field 'chain_id': must be 1-64 chars of [A-Za-z0-9._-], got {g.chain_id!r}"
        )
    if not isinstance(g.genesis_time_ms, int) or isinstance(g.genesis_time_ms, bool) or (
        g.genesis_time_ms < 0
    ):
        raise GenesisError(f"field 'genesis_time_ms': must be an integer >= 0, got {g.genesis_time_ms!r}")
    seen_keys: set[str] = set()
    for i, v in enumerate(g.validators):
        where = f"validators[{i}]"
        if not isinstance(v.index, int) or isinstance(v.index, bool) or v.index != i:
            raise GenesisError(f"field '{where}.index': must be {i} (validators sorted by index)")
        if not isinstance(v.public_key, str):
            raise GenesisError(f"field '{where}.public_key': must be a hex string")
        try:
            raw = bytes.fromhex(v.public_key)
        except ValueError:
            raise GenesisError(f"field '{where}.public_key': not valid hex") from None
        if len(raw) != 32:
            raise GenesisError(f"field '{where}.public_key': must be 32 bytes, got {len(raw)}")
        if v.public_key.lower() in seen_keys:
            raise GenesisError(f"field '{where}.public_key': duplicate validator key")
        seen_keys.add(v.public_key.lower())
        if not isinstance(v.p2p_multiaddr, str) or not v.p2p_multiaddr.startswith("/"):
            raise GenesisError(
                f"field '{where}.p2p_multiaddr': must be a multiaddr like /ip4/127.0.0.1/tcp/26656"
            )
    if not isinstance(g.consensus, dict):
        raise GenesisError("field 'consensus': must be an object")
    for k, val in g.consensus.items():
        if k == "n":
            raise GenesisError("field 'consensus.n': n is the number of validators; remove it")
        if k == "max_pending_per_client":
            raise GenesisError("field 'consensus.max_pending_per_client': set it as "
                               "'app.quotas.max_pending'")
        if k not in _CONFIG_FIELDS:
            raise GenesisError(f"field 'consensus.{k}': unknown consensus parameter")
        if not isinstance(val, int) or isinstance(val, bool):
            raise GenesisError(f"field 'consensus.{k}': must be an integer, got {val!r}")
    if not isinstance(g.app, dict):
        raise GenesisError("field 'app': must be an object")
    if g.app:  # lazily: the app's modules are needed only by a genesis with app params
        from bftnode.app import auth, quotas

        try:
            auth.check_params(g.app)
            quotas.validate(g.app.get("quotas"))
        except ValueError as exc:
            raise GenesisError(str(exc)) from None
    try:
        g.config()
    except ValueError as exc:
        raise GenesisError(f"field 'consensus' / 'validators': {exc}") from None


def make_genesis(
    chain_id: str,
    validators: list[tuple[bytes, str]],
    genesis_time_ms: int = 0,
    consensus: dict[str, Any] | None = None,
    app: dict[str, Any] | None = None,
) -> Genesis:
    """Build a genesis from (public_key, multiaddr) pairs in index order; `app`: application
    parameters (admins, permission checks, quotas)."""
    return Genesis(
        chain_id=chain_id,
        genesis_time_ms=genesis_time_ms,
        validators=tuple(
            Validator(index=i, public_key=pk.hex(), p2p_multiaddr=addr)
            for i, (pk, addr) in enumerate(validators)
        ),
        consensus=dict(consensus or {}),
        app=dict(app or {}),
    )
