"""testnet/netns.py's pure parts: names fit the kernel's 15-character interface limit, the
command builders say what the docs say, groups become directed cuts, link profiles map to
netem/tbf/htb; `up --netns` without root and a one-way cut without a --netns testnet exit
with 2; without --netns a link profile is in the nodes' transport rules."""

from __future__ import annotations

import argparse
import json

import pytest

from testnet import launcher, links, netns
from testnet.adversary.link_faults import LinkRules, read_rules


def test_names_and_addresses_of_a_plan():
    p = netns.make_plan("/some/dir", 4, used_octets=set())
    assert p.tid == netns.testnet_id("/some/dir") and len(p.tid) == 6
    assert p.ns(2) == f"bft-{p.tid}-2" and p.addr(2) == f"10.77.{p.octet}.3"
    assert p.host_addr == f"10.77.{p.octet}.254" and p.subnet == f"10.77.{p.octet}.0/24"
    big = netns.Plan(p.tid, p.octet, netns.MAX_NODES)
    assert max(len(big.bridge), len(big.veth(netns.MAX_NODES - 1))) <= 15  # IFNAMSIZ - 1
    assert netns.Plan.from_dict(json.loads(json.dumps(p.to_dict()))) == p


def test_a_plan_avoids_subnets_in_use_and_bounds_nodes():
    first = netns.make_plan("/x", 4, set())
    second = netns.make_plan("/x", 4, {first.octet})
    assert second.octet != first.octet
    with pytest.raises(netns.NetnsError, match="every 10.77.x.0/24 is in use"):
        netns.make_plan("/x", 4, set(range(250)))
    with pytest.raises(netns.NetnsError, match="1..253 nodes"):
        netns.make_plan("/x", 254, set())


def test_setup_puts_each_node_in_its_namespace_on_the_bridge():
    p = netns.Plan("abc123", 5, 2)
    cmds = [" ".join(c) for c in netns.setup_commands(p)]
    assert "ip link add bftabc123br type bridge" in cmds
    assert "ip addr add 10.77.5.254/24 dev bftabc123br" in cmds
    assert "ip link add bftabc123v1 type veth peer name eth0 netns bft-abc123-1" in cmds
    assert "ip -n bft-abc123-1 addr add 10.77.5.2/24 dev eth0" in cmds
    assert not any("default" in c for c in cmds)  # nothing routed beyond the bridge


def test_cuts_are_prohibit_routes_and_groups_become_directed_cuts():
    p = netns.Plan("abc123", 5, 4)
    assert netns.cut_commands(p, 1, 2) == [
        ["ip", "-n", "bft-abc123-1", "route", "replace", "prohibit", "10.77.5.3/32"]]
    assert netns.heal_commands(p)[3] == ["ip", "-n", "bft-abc123-3", "route", "flush", "type",
                                          "prohibit"]
    assert netns.cuts_for_groups(4, [[0, 1], [2, 3]]) == [
        (0, 2), (0, 3), (1, 2), (1, 3), (2, 0), (2, 1), (3, 0), (3, 1)]
    # a node in no group is cut from every node
    assert sorted(netns.cuts_for_groups(3, [[0, 1]])) == [(0, 2), (1, 2), (2, 0), (2, 1)]


def test_link_profiles_map_to_netem_tbf_and_per_pair_htb():
    p = netns.Plan("abc123", 5, 4)
    wan = [" ".join(c) for c in netns.link_commands(p, "wan", [0])]
    assert wan[-1] == ("tc -n bft-abc123-0 qdisc add dev eth0 root netem delay 50ms 10ms "
                       "distribution normal")
    slow = netns.link_commands(p, "slow", [1])
    assert "tbf" in slow[-1] and not any("netem" in c for c in slow)
    assert not netns.needs_netem("slow") and netns.needs_netem("geo")
    geo = [" ".join(c) for c in netns.link_commands(p, "geo", [0])]
    # node 0 (region 0) to node 1 (region 1): 30 ms; to node 3 (region 0): local 1 ms
    assert "tc -n bft-abc123-0 qdisc add dev eth0 parent 1:11 netem delay 30ms" in geo
    assert "tc -n bft-abc123-0 qdisc add dev eth0 parent 1:13 netem delay 1ms" in geo
    assert any("match ip dst 10.77.5.2/32 flowid 1:11" in c for c in geo)
    assert netns.link_commands(p, "clear", [2]) == [
        ["tc", "-n", "bft-abc123-2", "qdisc", "del", "dev", "eth0", "root"]]
    with pytest.raises(netns.NetnsError, match="unknown link profile 'moon'"):
        netns.link_commands(p, "moon", [0])


def test_check_hosts_refuses_a_directory_made_in_the_other_mode():
    p = netns.Plan("abc123", 5, 2)
    netns.check_hosts("/d", ["/ip4/10.77.5.1/tcp/1", "/ip4/10.77.5.2/tcp/3"], p)
    netns.check_hosts("/d", ["/ip4/127.0.0.1/tcp/1"], None)
    with pytest.raises(netns.NetnsError, match="created without --netns"):
        netns.check_hosts("/d", ["/ip4/127.0.0.1/tcp/1", "/ip4/127.0.0.1/tcp/3"], p)
    with pytest.raises(netns.NetnsError, match="created with --netns"):
        netns.check_hosts("/d", ["/ip4/10.77.5.1/tcp/1"], None)


def test_up_netns_without_root_says_so_and_exits_2(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(netns.os, "geteuid", lambda: 1000)
    p = argparse.ArgumentParser()
    launcher.add_up_arguments(p)
    args = p.parse_args(["--netns", "--dir", str(tmp_path / "tn"), "--detach"])
    assert launcher.run_up(args) == 2
    assert "--netns needs root" in capsys.readouterr().err
    assert not (tmp_path / "tn").exists()  # nothing was created


def test_link_profiles_without_netns_shape_the_transports_and_survive_a_heal(tmp_path, capsys):
    homes = [tmp_path / f"node{i}" for i in range(4)]
    for h in homes:
        h.mkdir()
    launcher.write_manifest(tmp_path, {"chain_id": "c", "dir": str(tmp_path), "nodes": [
        {"index": i, "home": str(h)} for i, h in enumerate(homes)]})

    def rules(i):
        return read_rules(homes[i] / launcher.LINK_FAULTS_FILE)

    p = argparse.ArgumentParser()
    links.add_link_arguments(p)
    assert links.run_link(p.parse_args(["--dir", str(tmp_path), "--profile", "wan"])) == 0
    assert rules(0).egress == {1: (50.0, 10.0, 0.0), 2: (50.0, 10.0, 0.0), 3: (50.0, 10.0, 0.0)}
    assert launcher.read_manifest(tmp_path)["links"]["3"] == "wan (transport)"
    # geo: node i in region i % 3; node 3 shares node 0's region
    assert links.run_link(p.parse_args(["--dir", str(tmp_path), "--profile", "geo"])) == 0
    assert rules(0).egress == {1: (30.0, 0.0, 0.0), 2: (70.0, 0.0, 0.0), 3: (1.0, 0.0, 0.0)}
    # per pair, on top of what is in place; a partition and a heal leave the profile alone
    assert links.run_link(p.parse_args(["--dir", str(tmp_path), "--profile", "lossy",
                                        "--node", "1", "--to", "2"])) == 0
    assert rules(1).egress == {0: (30.0, 0.0, 0.0), 2: (5.0, 0.0, 0.01), 3: (30.0, 0.0, 0.0)}
    links.partition(tmp_path, [[0, 1], [2, 3]])
    assert rules(1).blocked == {2, 3} and rules(1).egress[2] == (5.0, 0.0, 0.01)
    links.heal(tmp_path)
    assert not rules(1).blocked and rules(1).egress[2] == (5.0, 0.0, 0.01)
    assert links.run_link(p.parse_args(["--dir", str(tmp_path), "--profile", "slow"])) == 0
    assert rules(2).rate_kbit == 10_000 and not rules(2).egress
    assert links.run_link(p.parse_args(["--dir", str(tmp_path), "--profile", "clear"])) == 0
    assert all(rules(i) == LinkRules() for i in range(4))
    assert "links" not in launcher.read_manifest(tmp_path) or \
        not launcher.read_manifest(tmp_path)["links"]
    assert links.run_link(p.parse_args(["--dir", str(tmp_path), "--profile", "geo",
                                        "--to", "1"])) == 2
    assert "is for whole nodes" in capsys.readouterr().err


def test_one_way_cuts_need_a_netns_testnet(tmp_path, capsys):
    launcher.write_manifest(tmp_path, {"chain_id": "c", "dir": str(tmp_path), "nodes": [
        {"index": i, "home": str(tmp_path / f"node{i}")} for i in range(4)]})
    p = argparse.ArgumentParser()
    links.add_partition_arguments(p)
    args = p.parse_args(["--dir", str(tmp_path), "--from", "1", "--to", "2", "--one-way"])
    assert links.run_partition(args) == 2
    assert "--one-way needs a --netns testnet" in capsys.readouterr().err


def test_transport_cuts_without_netns_write_both_ends_rules(tmp_path, capsys):
    homes = [tmp_path / f"node{i}" for i in range(4)]
    for h in homes:
        h.mkdir()
    launcher.write_manifest(tmp_path, {"chain_id": "c", "dir": str(tmp_path), "nodes": [
        {"index": i, "home": str(h)} for i, h in enumerate(homes)]})
    p = argparse.ArgumentParser()
    links.add_partition_arguments(p)

    def blocked():
        return [json.loads((h / launcher.LINK_FAULTS_FILE).read_text())["blocked"]
                for h in homes]

    assert links.run_partition(p.parse_args(["--dir", str(tmp_path), "--from", "1",
                                             "--to", "2"])) == 0
    assert blocked() == [[], [2], [1], []]
    assert links.run_partition(p.parse_args(["--dir", str(tmp_path), "--isolate", "0"])) == 0
    assert blocked() == [[1, 2, 3], [0], [0], [0]]  # replaces the cuts in place
    assert "(in the transports)" in capsys.readouterr().out
    assert links.run_partition(p.parse_args(["--dir", str(tmp_path), "--isolate", "4"])) == 2
    assert "--isolate 4: nodes are 0..3" in capsys.readouterr().err
    links.heal(tmp_path)
    assert blocked() == [[], [], [], []]


def test_a_per_pair_profile_shapes_only_the_packets_to_those_peers():
    p = netns.Plan("abc123", 5, 4)
    cmds = [" ".join(c) for c in netns.link_commands(p, "slow", [0], to=[2])]
    assert cmds[1] == "tc -n bft-abc123-0 qdisc add dev eth0 root handle 1: htb"
    assert ("tc -n bft-abc123-0 qdisc add dev eth0 parent 1:12 tbf rate 10mbit burst 32kbit "
            "latency 400ms") in cmds
    assert cmds[-1].endswith("u32 match ip dst 10.77.5.3/32 flowid 1:12")
    assert sum("class add" in c for c in cmds) == 1  # only node 2: others pass unshaped
    wan = [" ".join(c) for c in netns.link_commands(p, "wan", [1], to=[0, 3])]
    assert sum("netem delay 50ms 10ms" in c for c in wan) == 2
    with pytest.raises(netns.NetnsError, match="for whole nodes"):
        netns.link_commands(p, "geo", [0], to=[1])
