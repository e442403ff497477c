"""The deployment examples in docs/deploy/ agree with what `bftnode testnet-files` writes:
the Kubernetes manifest passes the Kubernetes schema (kubernetes-validate, strict), its pods'
DNS names are the hosts its header passes to testnet-files, and the files its init container
copies are the ones a home holds; the Compose file's addresses are its header's hosts."""

from __future__ import annotations

import json
import re
from pathlib import Path

import kubernetes_validate
import yaml

from bftnode.config import load_config
from bftnode.deploy import write_host_homes

DEPLOY = Path(__file__).resolve().parents[3] / "docs" / "deploy"


def _hosts(text: str) -> list[str]:
    m = re.search(r"testnet-files --hosts (\S+)", text)
    assert m, "the header shows the testnet-files command"
    return m.group(1).split(",")


def test_the_kubernetes_example_is_valid_and_matches_its_homes(tmp_path):
    text = (DEPLOY / "kubernetes.yaml").read_text()
    docs = [d for d in yaml.safe_load_all(text) if d]
    for d in docs:  # raises ValidationError naming the field
        kubernetes_validate.validate(d, kubernetes_validate.latest_version(), strict=True)
    by_kind = {d["kind"]: d for d in docs}
    sts = by_kind["StatefulSet"]
    hosts = _hosts(text)
    svc = sts["spec"]["serviceName"]
    assert hosts == [f"{sts['metadata']['name']}-{i}.{svc}" for i in range(
        sts["spec"]["replicas"])]
    headless = next(d for d in docs if d["kind"] == "Service" and d["metadata"]["name"] == svc)
    assert headless["spec"]["clusterIP"] == "None" and headless["spec"]["publishNotReadyAddresses"]

    m = write_host_homes(tmp_path / "chain", hosts, rpc_public=True, insecure_rpc=True)
    genesis = json.loads(Path(m["genesis"]).read_text())
    assert [v["p2p_multiaddr"] for v in genesis["validators"]] == [
        f"/dns/{h}/tcp/26656" for h in hosts]
    cfg = load_config(m["nodes"][0]["home"])
    init = sts["spec"]["template"]["spec"]["initContainers"][0]["args"][0]
    assert f"/home/bftnode/{cfg.key_file}" in init and f"/home/bftnode/{cfg.genesis_file}" in init
    ports = {p["name"]: p["containerPort"]
             for p in sts["spec"]["template"]["spec"]["containers"][0]["ports"]}
    assert ports == {"p2p": 26656, "rpc": cfg.rpc_port}
    assert cfg.p2p_listen == "/ip4/0.0.0.0/tcp/26656" and cfg.rpc_host == "0.0.0.0"


def test_the_compose_example_uses_its_headers_addresses():
    text = (DEPLOY / "compose.yaml").read_text()
    services = yaml.safe_load(text)["services"]
    addrs = [services[f"node{i}"]["networks"]["bft"]["ipv4_address"] for i in range(4)]
    assert addrs == _hosts(text)
