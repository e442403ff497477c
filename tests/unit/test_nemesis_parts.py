"""The nemesis run's pure parts: the seeded fault schedule, the protected resource and its
check, and the chain checks (agreement, exactly-once)."""

from __future__ import annotations

import pytest
import trio

from testnet import nemesis_faults as NF
from testnet import protected
from testnet.nemesis import check_chain


def test_the_schedule_is_a_function_of_the_seed():
    a = NF.schedule(7, 120, 4)
    assert a == NF.schedule(7, 120, 4)
    assert a != NF.schedule(8, 120, 4)


def test_faults_do_not_overlap_and_stay_inside_the_run():
    faults = NF.schedule(3, 300, 4)
    assert faults[0].start_s >= NF.WARMUP_S
    for f, g in zip(faults, faults[1:], strict=False):
        assert f.start_s + f.duration_s + NF.MIN_GAP_S <= g.start_s + 1e-6
    last = faults[-1]
    assert last.start_s + last.duration_s <= 300 - NF.TAIL_S + 1e-6


def test_a_short_run_sees_every_kind():
    kinds = {f.kind for f in NF.schedule(1, 120, 4)}
    assert kinds == set(NF.KINDS)


def test_partitions_cut_what_their_kind_says():
    rng_faults = [f for s in range(30) for f in NF.schedule(s, 60, 4)]
    for f in rng_faults:
        if f.kind == "partition-minority":
            (i,) = f.nodes
            assert {a for a, b in f.cuts} | {b for a, b in f.cuts} == {0, 1, 2, 3}
            assert all(i in c for c in f.cuts) and len(f.cuts) == 6
        elif f.kind == "partition-one-way":
            (i,) = f.nodes
            assert sorted(f.cuts) == [(i, j) for j in range(4) if j != i]
        elif f.kind == "partition-bridge":
            (bridge,) = f.nodes
            assert all(bridge not in c for c in f.cuts) and len(f.cuts) == 4
        elif f.kind == "partition-majority":
            assert len(f.cuts) == 8  # 2 x 2 nodes, both ways
        elif f.kind == "clock-skew":
            assert 250 <= abs(int(f.arg)) <= 1500
        elif f.kind == "byzantine":
            assert f.arg in NF.BYZANTINE and len(f.nodes) == 1


def test_unknown_kinds_are_refused():
    with pytest.raises(ValueError, match="unknown fault kind"):
        NF.schedule(1, 60, 4, ["partition-everything"])


def test_the_resource_refuses_a_lower_token():
    r = protected.Resource()
    assert r.write("L", 5, "a", "begin", 1.0)["ok"]
    assert r.write("L", 5, "a", "end", 2.0)["ok"]
    assert not r.write("L", 4, "b", "begin", 3.0)["ok"]
    assert r.write("L", 6, "b", "begin", 4.0)["ok"]
    grants = [{"lock": "L", "token": 5, "client": "a"}, {"lock": "L", "token": 6, "client": "b"}]
    v = protected.check_resource(r, grants)
    assert v["result"] == "ok" and v["refused"] == 1


def test_a_record_with_an_overlapping_token_fails_the_check():
    r = protected.Resource()
    r.accepted = [{"resource": "L", "token": 5, "client": "a"},
                  {"resource": "L", "token": 6, "client": "b"},
                  {"resource": "L", "token": 5, "client": "a"}]
    assert protected.check_resource(r, None)["result"] == "violation"


def test_an_accepted_token_the_chain_never_granted_fails_the_check():
    r = protected.Resource()
    r.write("L", 9, "a", "begin", 1.0)
    v = protected.check_resource(r, [{"lock": "L", "token": 8, "client": "a"}])
    assert v["result"] == "violation" and v["ungranted"] == 1


async def test_the_resource_serves_fenced_writes_over_its_socket():
    with protected.ProtectedServer() as server:
        assert await protected.write(server.address, "L", 3, "a", "x")
        assert not await protected.write(server.address, "L", 2, "b", "y")
        with pytest.raises(OSError, match="bad request"):
            await protected.write(server.address, "L", -1, "b", "y")
    assert [a["token"] for a in server.state.accepted] == [3]
    await trio.sleep(0)


def test_chain_checks_find_forks_and_duplicates():
    def hdr(h, hsh, txs):
        return {"height": h, "hash": hsh, "tx_hashes": txs}

    a = {1: hdr(1, "h1", ["t1"]), 2: hdr(2, "h2", ["t2"])}
    agree, once = check_chain([a, dict(a)], ["t1", "t2"])
    assert agree["result"] == once["result"] == "ok"
    fork = {1: a[1], 2: hdr(2, "hX", ["t2"])}
    assert check_chain([a, fork], ["t1"])[0]["forks"] == [2]
    dup = {1: a[1], 2: hdr(2, "h2", ["t1"])}
    assert check_chain([dup], ["t1"])[1]["twice"] == ["t1"]
    assert check_chain([a], ["t9"])[1]["acknowledged_missing"] == ["t9"]


def test_without_root_the_run_exits_2_with_the_reason(monkeypatch, capsys, tmp_path):
    import argparse

    from testnet import nemesis
    from testnet import netns as ns

    monkeypatch.setattr(ns.os, "geteuid", lambda: 1000)
    p = argparse.ArgumentParser()
    nemesis.add_arguments(p)
    args = p.parse_args(["--duration", "5", "--out", str(tmp_path / "out")])
    assert nemesis.run(args) == 2
    assert "needs root" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
