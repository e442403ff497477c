"""RPC over TLS, unit level: the exposure rule (no plain HTTP beyond loopback unless told),
the TLS files' errors, the node config's TLS fields, the client's CA file, and the real server
(hypercorn on 127.0.0.1) serving a FakeNode over TLS: https with the CA works, plain HTTP gets
a clear 400, a client without the CA fails the handshake, and a connection over the cap is
refused in TLS too."""

from __future__ import annotations

import dataclasses
import ssl
from pathlib import Path

import httpx
import pytest
import trio

from bftnode.client.tls import http_verify
from bftnode.config import ConfigError, NodeConfig
from bftnode.node.errors import StartupError
from bftnode.node.rpc_security import rpc_tls_context
from bftnode.rpc.limits import RPCLimits
from bftnode.rpc.server import RPCStartupError, serve_rpc
from bftnode.rpc.tls import TLSSetupError, exposure_error, is_loopback, server_context
from testnet.tls_certs import make_ca, make_server_cert

from .fake_node import FakeNode


@pytest.fixture(scope="module")
def certs(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("tls")
    ca = make_ca(d)
    cert, key = make_server_cert(ca, d, "node0", ["127.0.0.1"])
    other_cert, other_key = make_server_cert(ca, d, "node1", ["127.0.0.1"])
    return {"ca": ca.path, "cert": cert, "key": key, "other_key": other_key}


# ---------------------------------------------------------------- the exposure rule


@pytest.mark.parametrize("host,loop", [
    ("127.0.0.1", True), ("127.0.0.2", True), ("::1", True), ("[::1]", True),
    ("localhost", True), ("LOCALHOST", True), ("0.0.0.0", False), ("::", False),
    ("10.1.2.3", False), ("example.org", False), ("192.168.0.1", False)])
def test_loopback_hosts(host, loop):
    assert is_loopback(host) is loop


def test_plain_http_beyond_loopback_is_refused_unless_tls_or_insecure():
    msg = exposure_error("0.0.0.0", tls=False, insecure=False)
    assert msg and "rpc_tls_cert" in msg and "insecure_rpc" in msg and "--insecure-rpc" in msg
    assert exposure_error("0.0.0.0", tls=True, insecure=False) is None
    assert exposure_error("0.0.0.0", tls=False, insecure=True) is None
    assert exposure_error("127.0.0.1", tls=False, insecure=False) is None


async def test_serve_rpc_refuses_a_public_bind_without_tls_and_serves_it_when_insecure(
        nursery):
    with pytest.raises(RPCStartupError, match="insecure_rpc"):
        await serve_rpc(FakeNode(), "0.0.0.0", 0)
    url = await nursery.start(lambda task_status: serve_rpc(
        FakeNode(), "0.0.0.0", 0, insecure=True, task_status=task_status))
    assert url.startswith("http://0.0.0.0:")


# ---------------------------------------------------------------- the TLS files


def test_tls_files_errors_name_the_field_and_the_file(certs, tmp_path):
    assert isinstance(server_context(certs["cert"], certs["key"]), ssl.SSLContext)
    with pytest.raises(TLSSetupError, match=r"'rpc_tls_cert': .*nope.pem: no such file"):
        server_context(tmp_path / "nope.pem", certs["key"])
    with pytest.raises(TLSSetupError, match="'rpc_tls_key': .*is a directory"):
        server_context(certs["cert"], tmp_path)
    junk = tmp_path / "junk.pem"
    junk.write_text("hello")
    with pytest.raises(TLSSetupError, match="'rpc_tls_cert': .*not a PEM file"):
        server_context(junk, certs["key"])
    with pytest.raises(TLSSetupError, match="'rpc_tls_key': .*not a PEM file with a PRIVATE"):
        server_context(certs["cert"], certs["cert"])
    with pytest.raises(TLSSetupError, match="'rpc_tls_key': .* is not the private key of"):
        server_context(certs["cert"], certs["other_key"])


def test_an_unreadable_key_file_is_named(certs):
    # a path through a regular file: unreadable even for root (who reads any mode-0 file)
    with pytest.raises(TLSSetupError, match="'rpc_tls_key': .*cannot read: Not a directory"):
        server_context(certs["cert"], certs["key"] / "k.pem")


# ---------------------------------------------------------------- the node config


def _config(tmp_path: Path, **kw) -> NodeConfig:
    return NodeConfig(home=tmp_path, node_index=0, chain_id="c", **kw)


def test_config_needs_both_tls_files_and_resolves_them_from_home(tmp_path):
    with pytest.raises(ConfigError, match="'rpc_tls_key': must be set too"):
        _config(tmp_path, rpc_tls_cert="rpc.pem")
    with pytest.raises(ConfigError, match="'rpc_tls_cert': must be set too"):
        _config(tmp_path, rpc_tls_key="rpc.key")
    with pytest.raises(ConfigError, match="'insecure_rpc': expected bool"):
        _config(tmp_path, insecure_rpc="yes")
    c = _config(tmp_path, rpc_tls_cert="rpc.pem", rpc_tls_key="/abs/rpc.key")
    assert c.rpc_tls == (tmp_path / "rpc.pem", Path("/abs/rpc.key"))
    assert _config(tmp_path).rpc_tls is None


def test_node_start_checks_tls_files_and_the_plain_http_rule(certs, tmp_path):
    public = _config(tmp_path, rpc_host="0.0.0.0")
    with pytest.raises(StartupError, match="refusing to serve the RPC in plain HTTP on 0.0.0.0"):
        rpc_tls_context(public)
    assert rpc_tls_context(dataclasses.replace(public, insecure_rpc=True)) is None
    assert rpc_tls_context(_config(tmp_path)) is None  # loopback: plain HTTP is fine
    tls = dataclasses.replace(public, rpc_tls_cert=str(certs["cert"]),
                              rpc_tls_key=str(certs["key"]))
    assert isinstance(rpc_tls_context(tls), ssl.SSLContext)
    with pytest.raises(StartupError, match="'rpc_tls_cert': .*no such file"):
        rpc_tls_context(dataclasses.replace(tls, rpc_tls_cert="missing.pem"))


def test_cli_start_has_insecure_rpc():
    from bftnode.cli import build_parser

    args = build_parser().parse_args(["start", "--home", "h", "--insecure-rpc"])
    assert args.insecure_rpc is True


# ---------------------------------------------------------------- the client's CA file


def test_client_ca_file_errors(certs, tmp_path):
    assert http_verify(None) is True
    assert isinstance(http_verify(certs["ca"]), ssl.SSLContext)
    with pytest.raises(ValueError, match="no such file"):
        http_verify(tmp_path / "none.pem")
    with pytest.raises(ValueError, match="no PEM certificate"):
        http_verify(certs["key"])


# ---------------------------------------------------------------- the server over TLS


def _causes(exc: BaseException | None) -> list[BaseException]:
    out = []
    while exc is not None:
        out.append(exc)
        exc = exc.__cause__ or exc.__context__
    return out


async def _serve_tls(nursery, certs, limits=None) -> str:
    ctx = server_context(certs["cert"], certs["key"])
    return await nursery.start(lambda task_status: serve_rpc(
        FakeNode(), "127.0.0.1", 0, tls=ctx, limits=limits, task_status=task_status))


async def test_the_server_speaks_tls_and_answers_plain_http_clearly(nursery, certs):
    url = await _serve_tls(nursery, certs)
    assert url.startswith("https://127.0.0.1:")
    with trio.fail_after(10):
        async with httpx.AsyncClient(verify=http_verify(certs["ca"])) as c:
            r = await c.get(url + "/status")
            assert r.status_code == 200 and r.json()["result"]["chain_id"]
        async with httpx.AsyncClient() as c:
            r = await c.get("http://" + url.removeprefix("https://") + "/status")
            assert r.status_code == 400 and "use https://" in r.json()["error"]["message"]
            with pytest.raises(httpx.ConnectError) as err:
                await c.get(url + "/status")
            assert "CERTIFICATE_VERIFY_FAILED" in repr(_causes(err.value))


async def test_a_connection_over_the_cap_is_refused_in_tls(nursery, certs):
    url = await _serve_tls(nursery, certs, RPCLimits(max_connections_per_address=1))
    with trio.fail_after(10):
        async with httpx.AsyncClient(verify=http_verify(certs["ca"])) as held, \
                httpx.AsyncClient(verify=http_verify(certs["ca"])) as other:
            assert (await held.get(url + "/status")).status_code == 200  # kept alive
            r = await other.get(url + "/status")
            assert r.status_code == 503 and "per address" in r.json()["error"]["message"]


def test_bftnode_start_refuses_a_public_plain_rpc_naming_the_fix(tmp_path):
    import subprocess
    import sys

    from testnet.ports import free_port_base

    root = Path(__file__).resolve().parents[3]

    def bftnode(*args: object) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "bftnode", *map(str, args)], cwd=root,
                              capture_output=True, text=True, timeout=60)

    r = bftnode("init", "--home", tmp_path, "--base-port", free_port_base(8))
    assert r.returncode == 0, r.stderr
    cfg = tmp_path / "node0" / "config.toml"
    cfg.write_text(cfg.read_text().replace('rpc_host = "127.0.0.1"', 'rpc_host = "0.0.0.0"'))
    before = {str(p) for p in (tmp_path / "node0").rglob("*")}
    r = bftnode("start", "--home", tmp_path / "node0")
    assert r.returncode == 2
    assert "plain HTTP on 0.0.0.0" in r.stderr and "--insecure-rpc" in r.stderr
    assert {str(p) for p in (tmp_path / "node0").rglob("*")} == before  # nothing written
