"""`bftnode` completes in the shell (argcomplete): subcommands and options, asked the way bash's
completion hook asks (environment variables, answer on a file)."""

from __future__ import annotations

import os
import subprocess
import sys


def _complete(line: str, tmp_path) -> list[str]:
    out = tmp_path / "completions"
    env = dict(os.environ, _ARGCOMPLETE="1", _ARGCOMPLETE_IFS="\n", COMP_LINE=line,
               COMP_POINT=str(len(line)), _ARGCOMPLETE_STDOUT_FILENAME=str(out))
    r = subprocess.run([sys.executable, "-m", "bftnode"], env=env, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return [w.strip() for w in out.read_text().split("\n")]


def test_subcommands_and_options_complete(tmp_path):
    assert "testnet-files" in _complete("bftnode testnet-f", tmp_path)
    assert set(_complete("bftnode sta", tmp_path)) == {"start", "status"}
    assert "--rpc-public" in _complete("bftnode testnet-files --rpc-p", tmp_path)
    assert "put" in _complete("bftnode client p", tmp_path)
