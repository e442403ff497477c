"""The wheel works on its own: built from this tree, installed into a fresh virtualenv outside
the repository (dependencies from the package index), and run from a directory with no
source tree in reach: `bftnode --version`, `testnet up`, a verified put and get, `attack
kill-primary` (a shipped scenario, package data) and `down`. Test tools are not installed.
Marked `manual` (`pytest -m manual tests/integration/node/test_wheel_install.py`): 30 s with a
warm pip cache, minutes with a cold one (every dependency from the index), past what the
suites' 20-minute budget has left.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import httpx
import pytest

from testnet.ports import free_port_base

pytestmark = [pytest.mark.integration, pytest.mark.manual]
REPO = Path(__file__).resolve().parents[3]


def _run(args: list, cwd: Path, env: dict, timeout: float = 600) -> str:
    r = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True,
                       text=True, timeout=timeout)
    assert r.returncode == 0, f"{args}: exit {r.returncode}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r.stdout


def test_the_wheel_installs_and_runs_a_testnet_from_a_fresh_virtualenv(tmp_path):
    work = tmp_path / "outside"  # pytest's tmp dir: not under the repository
    work.mkdir()
    assert REPO not in work.resolve().parents
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.pop("BFTNODE_RPC", None)
    env.pop("BFTNODE_HOME", None)

    # built from a copy: setuptools writes build/ and *.egg-info into the tree it builds
    src = tmp_path / "src"
    shutil.copytree(REPO, src, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".hypothesis",
        "testnet-data", "tn"))
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", tmp_path / "dist",
          src], work, env)
    (wheel,) = (tmp_path / "dist").glob("bftnode-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "testnet/scenarios/kill-primary.toml" in names
    assert any(n.endswith("licenses/LICENSE") for n in names)
    assert not [n for n in names if n.startswith(("tests/", "testnet-data/"))]
    meta = zipfile.ZipFile(wheel).read(
        next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    runtime = [ln for ln in meta.splitlines()
               if ln.startswith("Requires-Dist:") and "extra ==" not in ln]
    assert not [ln for ln in runtime if "pytest" in ln or "hypothesis" in ln], runtime

    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", venv], work, env)
    py, bft = venv / "bin" / "python", venv / "bin" / "bftnode"
    _run([py, "-m", "pip", "install", "-q", wheel], work, env, timeout=900)
    assert "0.1.0" in _run([bft, "--version"], work, env)
    # the source tree is out of reach: the installed package answers, not the repository
    where = _run([py, "-c", "import testnet, bftnode; print(testnet.__file__, "
                  "bftnode.__file__)"], work, env)
    assert str(REPO) not in where and str(venv) in where, where
    assert _run([py, "-c", "import importlib.util as u; print(u.find_spec('pytest'))"],
                work, env).strip() == "None"

    net = work / "net"
    base = free_port_base(8)
    _run([py, "-m", "testnet", "up", "--dir", net, "--detach", "--open", "--authenticated-state",
          "--base-port", base],
         work, env, timeout=180)
    try:
        manifest = json.loads((net / "testnet.json").read_text())
        rpc = [n["rpc"] for n in manifest["nodes"]]
        cenv = dict(env, BFTNODE_RPC=",".join(rpc), BFTNODE_GENESIS=str(net / "genesis.json"),
                    BFTNODE_HOME=str(work / "client"))
        _run([bft, "client", "put", "wheel", "works"], work, cenv, timeout=120)
        got = json.loads(_run([bft, "client", "get", "wheel", "--json"], work, cenv,
                              timeout=120))
        assert "works" in json.dumps(got), got
        status = json.loads(_run([bft, "status", "--json"], work, cenv, timeout=60))
        assert status["height"] >= 1, status
        ui = httpx.get(rpc[0] + "/ui/explorer.js", timeout=10)  # package data of the wheel
        assert ui.status_code == 200 and "commitCertificate" in ui.text
    finally:
        _run([py, "-m", "testnet", "down", "--dir", net], work, env, timeout=120)
    report = json.loads(_run([py, "-m", "testnet", "attack", "kill-primary", "--json",
                              "--base-port", free_port_base(8)], work, env, timeout=600))
    assert report["ok"], report
