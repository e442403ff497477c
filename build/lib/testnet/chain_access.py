"""Who may reach and write to a local testnet: the RPC's TLS certificates (`up --tls`) and the
admin client key a new testnet's genesis names (permission checks on unless `--open`).
Imports: stdlib, bftnode (config, keys), testnet.tls_certs."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from bftnode.config import write_config
from bftnode.keys import generate_key_file, load_key_file

ADMIN_KEY = "admin.key"  # DIR/admin.key: the client key the genesis names admin (app.admins)
TLS_CA = "tls/ca.pem"  # of a `--tls` testnet, under DIR (testnet.tls_certs)


def with_tls(d: Path, cfgs: list[Any]) -> list[Any]:
    """The configs serving TLS with DIR/tls's certificates (made on the first `--tls`)."""
    from testnet.tls_certs import CA_FILE, write_testnet_tls

    tls_dir = d / "tls"
    assert d / TLS_CA == tls_dir / CA_FILE
    if not (tls_dir / CA_FILE).exists():
        write_testnet_tls(d, [c.rpc_host for c in cfgs])
    out = []
    for i, c in enumerate(cfgs):
        cert, key = str(tls_dir / f"node{i}.pem"), str(tls_dir / f"node{i}.key")
        if (c.rpc_tls_cert, c.rpc_tls_key) != (cert, key):
            c = dataclasses.replace(c, rpc_tls_cert=cert, rpc_tls_key=key)
            write_config(c)
        out.append(c)
    return out


def admin_app(d: Path) -> dict[str, Any]:
    """The genesis `app` of a new testnet: DIR/admin.key (kept if there) is the admin and
    permission checks are on."""
    p = d / ADMIN_KEY
    key = load_key_file(p) if p.exists() else generate_key_file(p)
    return {"admins": [key.public_key.hex()], "auth_enabled": True}


def auth_note(m: dict[str, Any]) -> str:
    if m.get("admin_key"):
        return (f"admin key: {m['admin_key']} (permission checks "
                f"{'on' if m.get('auth_enabled') else 'off'}: other client keys need a role; "
                f"bftnode client --key {m['admin_key']} auth ...)")
    return "permission checks off: any client key may write anything (dev only)"
