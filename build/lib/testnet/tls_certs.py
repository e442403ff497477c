"""Certificates for a TLS testnet: one self-signed CA and, per node, a server certificate it
signs (generated with `cryptography`, never by shelling out).

Owns `make_ca` and `make_server_cert` (PEM files, keys mode 0600) and `write_testnet_tls`, which
writes `DIR/tls/ca.pem` plus `DIR/tls/nodeI.{pem,key}` for each node and returns their paths.
Clients trust the testnet with `--ca-file DIR/tls/ca.pem` / `ca_file=`. Certificates name
the node's host plus localhost, 127.0.0.1 and ::1. Dev and tests only: the CA key sits on
disk next to the nodes. Imports: stdlib, cryptography.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALID_DAYS = 365
CA_FILE = "ca.pem"


@dataclass(frozen=True)
class CA:
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey
    path: Path  # the CA certificate (PEM), what clients trust


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _validity(builder: x509.CertificateBuilder) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return builder.not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(
        now + datetime.timedelta(days=VALID_DAYS))


def make_ca(d: str | os.PathLike, common_name: str = "bftnode testnet CA") -> CA:
    """A self-signed CA in `d` (ca.pem, ca.key)."""
    d = Path(d)
    d.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    builder = _validity(x509.CertificateBuilder().subject_name(_name(common_name))
                        .issuer_name(_name(common_name)).public_key(key.public_key())
                        .serial_number(x509.random_serial_number()))
    cert = (builder
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True,
                                         crl_sign=True, content_commitment=False,
                                         key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False,
                                         decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                           critical=False)
            .sign(key, hashes.SHA256()))
    path = d / CA_FILE
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_key(d / "ca.key", key)
    return CA(cert, key, path)


def _san(hosts: list[str]) -> x509.SubjectAlternativeName:
    names: list[x509.GeneralName] = []
    for h in dict.fromkeys([*hosts, "localhost", "127.0.0.1", "::1"]):
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(h)))
        except ValueError:
            names.append(x509.DNSName(h))
    return x509.SubjectAlternativeName(names)


def make_server_cert(ca: CA, d: str | os.PathLike, name: str, hosts: list[str]
                     ) -> tuple[Path, Path]:
    """A server certificate for `hosts` signed by `ca`: (d/NAME.pem, d/NAME.key)."""
    d = Path(d)
    key = ec.generate_private_key(ec.SECP256R1())
    builder = _validity(x509.CertificateBuilder().subject_name(_name(name))
                        .issuer_name(ca.cert.subject).public_key(key.public_key())
                        .serial_number(x509.random_serial_number()))
    ski = ca.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    cert = (builder
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_san(hosts), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski),
                           critical=False)
            .sign(ca.key, hashes.SHA256()))
    cert_path, key_path = d / f"{name}.pem", d / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_key(key_path, key)
    return cert_path, key_path


def write_testnet_tls(d: str | os.PathLike, hosts: list[str]) -> tuple[Path, list[tuple[Path, Path]]]:
    """`DIR/tls/`: a CA and one server certificate per node (node i serves on hosts[i]).
    Returns (the CA file, [(cert, key) of node i])."""
    tls_dir = Path(d) / "tls"
    ca = make_ca(tls_dir)
    return ca.path, [make_server_cert(ca, tls_dir, f"node{i}", [h]) for i, h in enumerate(hosts)]
