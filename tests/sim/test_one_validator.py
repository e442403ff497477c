"""One Byzantine validator must never crash, halt or bloat the honest ones (issue 25).

Each attack class found with a hand-built validator, as a strategy run in the simulator on
n = 4 and n = 7: out-of-range integers in signed messages (`poison-ints`), a deeply nested
extra element (`deep-nest`), far-future checkpoint votes (`checkpoint-flood`), max-size
future-window pre-prepares (`bloat`) and FORWARDs of forged requests (`forward-junk`).
Safety and liveness must hold, no honest replica may raise (an exception from its step, or
from decoding a message to it), and no honest replica may hold more than the simulator's
memory bound (`SimOptions.memory_bound_mb`). Seeded; the seed is in every failure message.
"""

from __future__ import annotations

import pytest

from consensus import Receive
from testnet.sim import SimOptions, run_sim
from testnet.sim.cluster import default_replica_factory

SEED = 25

# (name, byzantine replica for n, strategies, options): the replica is the view-0 primary
# where the attack needs one (pre-prepares), the view-1 primary for bloat (its future-view
# pre-prepares come from the right primary), the last replica otherwise
ATTACKS = [
    ("poison-ints", lambda n: 0, ["poison-ints"], {}),
    ("poison-ints-backup", lambda n: n - 1, ["poison-ints"], {}),
    ("deep-nest", lambda n: n - 1, ["deep-nest"], {}),
    ("checkpoint-flood", lambda n: n - 1, ["checkpoint-flood"], {"requests": 200}),
    ("silent-checkpoint-flood", lambda n: n - 1, ["silent", "checkpoint-flood"],
     {"requests": 200}),
    ("bloat", lambda n: 1, ["bloat:2048:100"], {}),
    ("forward-junk", lambda n: n - 1, ["forward-junk:500"], {}),
]


def _verdict(res) -> str:
    f = res.figures
    return (f"seed {res.seed}: safety={res.safety} liveness={res.liveness} "
            f"honest_raised={f['honest_raised']} {f['honest_exceptions'][:2]} "
            f"honest_memory={f['honest_memory']} peak MiB {f['honest_memory_peak_mb']} "
            f"(bound {f['honest_memory_bound_mb']}) view_changes={f['view_changes']} "
            f"committed={res.committed}\n" + "\n".join(res.trace[-15:]))


@pytest.mark.parametrize("n", [4, 7])
@pytest.mark.parametrize("name,who,strategies,extra", ATTACKS, ids=[a[0] for a in ATTACKS])
def test_one_byzantine_validator_cannot_crash_halt_or_bloat_the_honest(name, who, strategies,
                                                                       extra, n):
    rid = who(n)
    opts = SimOptions(n=n, byzantine={rid: list(strategies)}, **extra)
    res = run_sim(opts, SEED)
    print(_verdict(res))
    assert res.figures["honest_raised"] == "ok", _verdict(res)
    assert res.safety == "ok", _verdict(res)
    assert res.liveness == "ok", _verdict(res)
    assert res.figures["honest_memory"] == "ok", _verdict(res)
    if name in ("poison-ints", "poison-ints-backup", "deep-nest"):
        assert res.figures["undecodable"] > 0, "refused at decode: " + _verdict(res)
    if name == "checkpoint-flood":
        # the honest replicas' own checkpoints make them stable: no view change needed
        assert res.figures["view_changes"] == 0, _verdict(res)


# ---------------------------------------------------------------- the checkers themselves


class _RaisesOnReceive:
    """An honest replica with a bug: its step raises on the first message it receives."""

    def __init__(self, inner):
        self.inner = inner

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def step(self, event):
        if isinstance(event, Receive):
            raise OverflowError("int too big to convert")
        return self.inner.step(event)


def test_an_honest_replica_raising_is_a_failed_check_not_a_simulator_crash():
    def factory(config, rid, auth, restored):
        inner = default_replica_factory(config, rid, auth, restored)
        return _RaisesOnReceive(inner) if rid == 2 else inner

    res = run_sim(SimOptions(n=4, requests=5), SEED, replica_factory=factory)
    assert res.figures["honest_raised"] == "raised"
    (exc,) = res.figures["honest_exceptions"]
    assert exc["replica"] == 2 and exc["error"] == "OverflowError"
    assert res.safety == "violated" and not res.checks_ok
    assert "honest_raised=raised" in res.failure_text()


def test_decoding_that_raises_stops_the_honest_receivers_and_is_reported(monkeypatch):
    import testnet.sim.cluster as cluster

    real = cluster.decode

    def decode(data):
        if data[:1] == b"\x01" and data.endswith(b"\x91" * 64 + b"\xc0"):
            raise RecursionError("maximum recursion depth exceeded while deserializing")
        return real(data)

    monkeypatch.setattr(cluster, "decode", decode)
    res = run_sim(SimOptions(n=4, requests=5, byzantine={3: ["deep-nest:64"]}), SEED)
    raised = res.figures["honest_exceptions"]
    assert {e["replica"] for e in raised} == {0, 1, 2}
    assert all(e["error"] == "RecursionError" for e in raised)
    assert res.figures["honest_raised"] == "raised" and res.safety == "violated"


def test_honest_memory_over_the_bound_is_reported():
    res = run_sim(SimOptions(n=4, requests=20, memory_bound_mb=0.001), SEED)
    assert res.ok, "safety and liveness are not the memory checker's business"
    assert res.figures["honest_memory"] == "exceeded" and not res.checks_ok
    peaks = res.figures["honest_memory_peak_mb"]
    assert set(peaks) == {"0", "1", "2", "3"} and all(p > 0.001 for p in peaks.values())


def test_memory_is_not_sampled_when_switched_off():
    res = run_sim(SimOptions(n=4, requests=5, memory_sample_ms=0), SEED)
    assert res.figures["honest_memory"] == "unchecked" and res.checks_ok


def test_the_checkers_are_keys_of_the_json_output(capsys):
    import json

    from testnet.sim.cli import main

    assert main(["--seed", str(SEED), "--requests", "5", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["honest_raised"] == "ok" and out["honest_exceptions"] == []
    assert out["honest_memory"] == "ok" and out["honest_memory_bound_mb"] == 32.0
    assert set(out["honest_memory_peak_mb"]) == {"0", "1", "2", "3"}
    assert main(["--seed", str(SEED), "--requests", "5", "--json",
                 "--memory-bound-mb", "0.001"]) == 1
    out = json.loads(capsys.readouterr().out)
    assert out["honest_memory"] == "exceeded" and "--memory-bound-mb" in out["replay"]
