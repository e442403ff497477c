"""Ed25519 key files for validators and embedded clients.

Owns the on-disk key format: a JSON object `{"type": "ed25519", "seed": hex, "public_key": hex}`
(written with mode 0600, never overwritten silently); raw 32-byte seeds and 64-hex-char text
files are accepted on load. Imports: stdlib, pynacl (via consensus.auth). Must not import trio,
storage or network.
"""

from __future__ import annotations

import json
import os
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path

from consensus import Ed25519Signer

SEED_BYTES = 32


class KeyFileError(Exception):
    """A key file is missing, unreadable or malformed (the message names the file and why)."""


@dataclass(frozen=True, slots=True)
class NodeKey:
    seed: bytes
    public_key: bytes

    @classmethod
    def from_seed(cls, seed: bytes) -> NodeKey:
        if len(seed) != SEED_BYTES:
            raise KeyFileError(f"an Ed25519 seed is {SEED_BYTES} bytes, got {len(seed)}")
        return cls(seed=seed, public_key=Ed25519Signer(seed).public_key)

    @classmethod
    def generate(cls) -> NodeKey:
        return cls.from_seed(secrets.token_bytes(SEED_BYTES))

    def signer(self) -> Ed25519Signer:
        return Ed25519Signer(self.seed)

    def to_json(self) -> str:
        return json.dumps(
            {"type": "ed25519", "seed": self.seed.hex(), "public_key": self.public_key.hex()},
            indent=2,
        )


def write_key_file(path: str | os.PathLike, key: NodeKey, overwrite: bool = False) -> Path:
    """Write `key` to `path` with mode 0600 (created that way: never briefly world-readable)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if overwrite else os.O_EXCL)
    try:
        fd = os.open(p, flags, 0o600)
    except FileExistsError:
        raise KeyFileError(f"{p}: key file already exists (refusing to overwrite)") from None
    except OSError as exc:
        raise KeyFileError(f"{p}: cannot create key file: {exc.strerror}") from exc
    with os.fdopen(fd, "w") as fh:
        os.fchmod(fh.fileno(), 0o600)  # O_TRUNC on an existing file keeps its old mode
        fh.write(key.to_json() + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    return p


def generate_key_file(path: str | os.PathLike, overwrite: bool = False) -> NodeKey:
    """Create a fresh key file; returns the key."""
    key = NodeKey.generate()
    write_key_file(path, key, overwrite=overwrite)
    return key


def load_key_file(path: str | os.PathLike) -> NodeKey:
    """Load a key file (JSON, raw 32 bytes, or 64 hex chars); raises KeyFileError."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise KeyFileError(f"{p}: key file not found") from None
    except OSError as exc:
        raise KeyFileError(f"{p}: cannot read key file: {exc.strerror}") from exc
    if len(data) == SEED_BYTES:
        return NodeKey.from_seed(data)
    text = data.decode("utf-8", errors="replace").strip()
    if text.startswith("{"):
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as exc:
            raise KeyFileError(f"{p}: not valid JSON: {exc}") from exc
        if not isinstance(obj, dict):
            raise KeyFileError(f"{p}: expected a JSON object")
        if obj.get("type", "ed25519") != "ed25519":
            raise KeyFileError(f"{p}: field 'type': only 'ed25519' is supported, got {obj['type']!r}")
        seed_hex = obj.get("seed")
        if not isinstance(seed_hex, str):
            raise KeyFileError(f"{p}: field 'seed' is missing or not a hex string")
        key = _from_hex(p, "seed", seed_hex)
        pub = obj.get("public_key")
        if pub is not None and pub != key.public_key.hex():
            raise KeyFileError(f"{p}: field 'public_key' does not match the seed")
        return key
    return _from_hex(p, "seed", text)


def _from_hex(p: Path, field: str, text: str) -> NodeKey:
    try:
        seed = bytes.fromhex(text)
    except ValueError:
        raise KeyFileError(f"{p}: field '{field}' is not valid hex") from None
    if len(seed) != SEED_BYTES:
        raise KeyFileError(f"{p}: field '{field}' must be {SEED_BYTES} bytes, got {len(seed)}")
    return NodeKey.from_seed(seed)


def is_private(path: str | os.PathLike) -> bool:
    """True when only the owner can read the file (mode & 0o077 == 0)."""
    return stat.S_IMODE(os.stat(path).st_mode) & 0o077 == 0
