"""The attack runner's bounds for issue 25 (one Byzantine validator must never crash, halt or
bloat the honest ones), without a testnet: the resource expectations parse, the per-node usage
sampler reads /proc, the memory and log checks flag what exceeds their bounds, a node dying
during start-up is a verdict rather than a runner error, and the shipped library has a
scenario per attack class (7-node variants for the poison and checkpoint ones).
"""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import pytest

from testnet import launcher
from testnet.adversary import parse_strategy
from testnet.attack import (
    INFO,
    OK,
    VIOLATED,
    Expect,
    Scenario,
    Usage,
    _start_failure,
    load_scenario,
    parse_scenario,
    print_report,
    usage_checks,
)

ATTACK_CLASSES = {"poison-ints", "deep-nest", "checkpoint-flood", "bloat", "forward-junk"}


def test_every_attack_class_has_a_scenario_with_the_resource_bounds():
    found: dict[str, set[int]] = {}
    for name in ("poison-ints", "poison-ints-7", "deep-nest", "checkpoint-flood",
                 "checkpoint-flood-7", "bloat", "forward-junk"):
        sc = load_scenario(name)
        for specs in sc.byzantine.values():
            for spec in specs:
                parse_strategy(spec)
                found.setdefault(spec.split(":")[0], set()).add(sc.nodes)
        assert sc.expect.max_rss_growth_mb == 64 and sc.expect.max_log_bytes == 1024 * 1024
        assert sc.expect.min_acked >= sc.load.txs // 2, "a halted chain must fail the run"
    assert ATTACK_CLASSES <= set(found)
    assert {4, 7} <= found["poison-ints"] and {4, 7} <= found["checkpoint-flood"]


def test_resource_bounds_default_on_and_parse_from_the_manifest():
    assert Expect().max_rss_growth_mb == 64.0 and Expect().max_log_bytes == 1024 * 1024
    sc = parse_scenario('[expect]\nmax_rss_growth_mb = 10\nmax_log_bytes = 0\n', "x.toml")
    assert sc.expect.max_rss_growth_mb == 10.0 and sc.expect.max_log_bytes == 0
    with pytest.raises(ValueError, match="max_log_bytes"):
        parse_scenario('[expect]\nmax_log_bytes = "1M"\n', "x.toml")


def test_usage_samples_this_process_and_restarts_count_per_incarnation():
    u = Usage()
    u.sample(os.getpid())
    assert u.rss_start_mb and u.rss_max_mb >= u.rss_start_mb and u.cpu_s > 0
    u.rss_start_mb, u.rss_max_mb = 1.0, 1.0  # pretend it has grown since its first sample
    u.sample(os.getpid())
    grown = u.rss_growth_mb
    assert grown > 0
    cpu = u.cpu_s
    u.sample(os.getppid())  # a new pid: a restarted node starts a new baseline
    assert u.rss_growth_mb == grown and u.cpu_s >= cpu
    assert set(u.report()) == {"rss_start_mb", "rss_max_mb", "rss_growth_mb", "log_bytes",
                               "cpu_s"}


def _run(usages: dict[int, Usage], byzantine=(3,), **expect):
    sc = Scenario(name="t", nodes=4, byzantine={b: ["bloat"] for b in byzantine},
                  expect=Expect(**expect))
    return SimpleNamespace(sc=sc, usage=usages,
                           honest=[i for i in range(4) if i not in byzantine])


def test_memory_and_log_checks_judge_honest_nodes_only():
    usages = {i: Usage(rss_growth_mb=5.0, log_bytes=1000) for i in range(4)}
    usages[3] = Usage(rss_growth_mb=900.0, log_bytes=10**9)  # the byzantine node: not judged
    checks = {c.name: c for c in usage_checks(_run(usages))}
    assert checks["honest memory growth"].result == OK
    assert checks["honest log volume"].result == OK
    assert checks["cpu seconds"].result == INFO
    usages[1] = Usage(rss_growth_mb=200.0, log_bytes=95 * 10**6)
    checks = {c.name: c for c in usage_checks(_run(usages))}
    assert checks["honest memory growth"].result == VIOLATED
    assert "node1" in checks["honest memory growth"].detail
    assert checks["honest log volume"].result == VIOLATED
    off = {c.name: c for c in usage_checks(_run(usages, max_rss_growth_mb=0, max_log_bytes=0))}
    assert off["honest memory growth"].result == INFO == off["honest log volume"].result


def test_a_node_dying_during_start_up_is_a_failed_verdict(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(launcher, "down", lambda d: None)
    sc = Scenario(name="t", nodes=4, byzantine={0: ["poison-ints"]})
    exc = launcher.LauncherError("node 2 exited during start-up:\nOverflowError")
    rep = _start_failure({"scenario": "t", "description": "", "dir": str(tmp_path)}, sc,
                         tmp_path, False, exc, 0.0)
    assert rep["ok"] is False
    (check,) = rep["checks"]
    assert check["name"] == "honest nodes running" and check["result"] == VIOLATED
    assert "node 2" in check["detail"] and "OverflowError" in check["detail"]
    print_report(rep)  # the human report copes with a run that never started
