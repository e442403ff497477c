"""`python -m testnet up --tls`, real node processes: every RPC serves TLS with the testnet's
own CA (DIR/tls/ca.pem), the launcher itself checks them through it, a client with the CA
file puts and reads verified over https, and a restart keeps TLS."""

from __future__ import annotations

import pytest

from bftnode.client import Client, RPCCallError
from testnet import launcher
from testnet.ports import free_port_base

pytestmark = pytest.mark.integration


def test_up_tls_serves_https_with_the_testnet_ca_and_a_restart_keeps_it(tmp_path):
    d = tmp_path / "tn"
    m = launcher.up(d, 4, base_port=free_port_base(8), fsync=False, authenticated_state=True,
                    tls=True)
    try:
        ca = d / "tls" / "ca.pem"
        assert all(n["rpc"].startswith("https://127.0.0.1:") and n["ca_file"] == str(ca)
                   for n in m["nodes"])
        urls = [n["rpc"] for n in m["nodes"]]
        admin = m["admin_key"]  # permission checks are on: the testnet's admin writes
        with Client(urls, admin, genesis=d / "genesis.json", ca_file=ca) as c:
            assert c.put("k", "v")["verified"] == "proof"
            assert c.get("k")["value"] == "v"
        with Client(urls[0].replace("https://", "http://"), tmp_path / "p.key",
                    trust_node=True, retries=0) as c, pytest.raises(RPCCallError,
                                                                   match="use https://"):
            c.status()
        launcher.down(d)
        m = launcher.up(d, 4, fsync=False)  # a restart without --tls keeps the configs
        assert all(n["rpc"].startswith("https://") for n in m["nodes"])
        with Client(m["nodes"][2]["rpc"], admin, genesis=d / "genesis.json",
                    ca_file=ca) as c:
            assert c.get("k")["value"] == "v"
    finally:
        launcher.down(d)
