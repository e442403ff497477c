"""TLS trust for the client: which certificate authorities an https:// / wss:// node is
checked against.

Owns `http_verify`: with no CA file, the system's trust store (httpx's default); with a CA
file (`ca_file=` / `--ca-file`), exactly the certificates in it, e.g. a testnet's own CA.
A missing, unreadable or non-PEM file is a ValueError naming it. Imports: stdlib.
"""

from __future__ import annotations

import os
import ssl
from pathlib import Path


def http_verify(ca_file: str | os.PathLike | None) -> ssl.SSLContext | bool:
    """What to give httpx's `verify=`: True (system CAs) or a context trusting `ca_file`."""
    if ca_file is None:
        return True
    path = Path(ca_file)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ValueError(f"CA file {path}: no such file") from None
    except OSError as exc:
        raise ValueError(f"CA file {path}: cannot read: {exc.strerror}") from None
    if b"-----BEGIN CERTIFICATE-----" not in data:
        raise ValueError(f"CA file {path}: no PEM certificate in it")
    try:
        return ssl.create_default_context(cafile=str(path))
    except ssl.SSLError as exc:
        raise ValueError(f"CA file {path}: not a valid certificate: {exc}") from None
