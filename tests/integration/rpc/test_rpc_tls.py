"""The RPC over TLS, end to end: a 4-validator chain in one trio run (MemoryTransport, real
LevelDB) whose nodes serve their RPC over TLS on 127.0.0.1 with certificates made by
`cryptography` (testnet.tls_certs). The async client (https + wss with the CA file), the sync
client and the CLI put, read verified, and watch; a plain-HTTP client and a client without
the CA fail with clear errors."""

from __future__ import annotations

import dataclasses
import json
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio

from bftnode.client import AsyncClient, Client, NoNodeAvailable, RPCCallError
from bftnode.config import NodeConfig
from testnet.ports import free_port_base
from testnet.tls_certs import write_testnet_tls
from tests.integration.proofs.cluster import proven_cluster

pytestmark = pytest.mark.integration


@asynccontextmanager
async def tls_cluster(tmp_path: Path):
    made: dict[str, Path] = {}

    def with_tls(cfgs: list[NodeConfig]) -> list[NodeConfig]:
        made["ca"], pairs = write_testnet_tls(tmp_path, [c.rpc_host for c in cfgs])
        return [dataclasses.replace(c, rpc_tls_cert=str(cert), rpc_tls_key=str(key))
                for c, (cert, key) in zip(cfgs, pairs, strict=True)]

    async with proven_cluster(tmp_path, free_port_base(16), configure=with_tls) as (
            nodes, genesis):
        yield [nd.node.rpc_url for nd in nodes], made["ca"], genesis


def _sync_session(urls: list[str], ca: Path, genesis: Path, tmp_path: Path) -> dict:
    out: dict[str, Any] = {}
    with Client(urls, tmp_path / "s.key", genesis=genesis, ca_file=ca) as c:
        out["put"] = c.put("sync", "yes")
        out["get"] = c.get("sync")
    plain = "http://" + urls[0].removeprefix("https://")
    with Client(plain, tmp_path / "p.key", trust_node=True, retries=0) as c:
        try:
            c.status()
        except RPCCallError as exc:
            out["plain"] = str(exc)
    with Client(urls[0], tmp_path / "n.key", trust_node=True, retries=0) as c:
        try:
            c.status()  # the system's CAs do not know the testnet's
        except NoNodeAvailable as exc:
            out["no_ca"] = str(exc)
    return out


def _cli(argv: list[str]) -> tuple[int, str]:
    import contextlib
    import io

    from bftnode.cli import main

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = main(argv)
    return code, buf.getvalue()


async def test_clients_and_cli_speak_https_and_wss_with_the_ca_file(tmp_path):
    async with tls_cluster(tmp_path) as (urls, ca, genesis):
        assert all(u.startswith("https://127.0.0.1:") for u in urls)
        with trio.fail_after(60):
            async with AsyncClient(urls, tmp_path / "a.key", genesis=genesis,
                                   ca_file=ca) as c:
                put = await c.put("jobs/1", "one")
                got = await c.get("jobs/1")
                assert put["verified"] == got["verified"] == "proof"
                assert got["value"] == "one"
                async with c.watch("jobs/", from_revision=put["result"]["revision"]) as events:
                    ev = await events.__anext__()  # over wss://, replayed from the revision
                assert ev["key"] == "jobs/1" and ev["value"] == "one", ev
            async with AsyncClient(urls[0], tmp_path / "b.key", trust_node=True,
                                   retries=0) as c:
                with pytest.raises(NoNodeAvailable, match="CERTIFICATE_VERIFY_FAILED"):
                    await c.status()
            out = await trio.to_thread.run_sync(_sync_session, urls, ca, genesis, tmp_path)
            code, text = await trio.to_thread.run_sync(_cli, [
                "client", "--rpc", urls[1], "--ca-file", str(ca), "--genesis", str(genesis),
                "--key", str(tmp_path / "cli.key"), "--json", "get", "sync"])
        assert out["get"]["value"] == "yes" and out["get"]["verified"] == "proof"
        assert "use https://" in out["plain"]
        assert "CERTIFICATE_VERIFY_FAILED" in out["no_ca"]
        assert code == 0 and json.loads(text)["value"] == "yes"
