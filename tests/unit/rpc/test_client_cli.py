"""`bftnode client …` against a fake node: human output, one JSON object with --json, clear
errors with a non-zero exit code."""

from __future__ import annotations

import json

import trio

from bftnode.cli import main as bftnode_main
from bftnode.client_cli import main


async def cli(capsys, *argv: str) -> tuple[int, str, str]:
    """The CLI against the fake node, which serves no proofs: --trust-node."""
    code = await trio.to_thread.run_sync(main, [*argv, "--trust-node"])
    out, err = capsys.readouterr()
    return code, cli_lines(out), err


def cli_lines(out: str) -> str:
    """The CLI's own output: drop the in-process test server's structlog lines (stdout by
    default when logging is not configured)."""
    return "\n".join(ln for ln in out.splitlines() if "rpc.listening" not in ln
                     and "rpc.error" not in ln) + "\n"


async def test_put_then_get_as_json(url, tmp_path, capsys):
    key = str(tmp_path / "c.key")
    code, out, _ = await cli(capsys, "put", "color", "blue", "--rpc", url, "--key", key, "--json")
    put = json.loads(out)
    assert code == 0 and put["height"] == 1 and put["verified"] == "certificate"
    code, out, _ = await cli(capsys, "--rpc", url, "--key", key, "--json", "get", "color")
    got = json.loads(out)
    assert code == 0 and got["value"] == "blue" and got["revision"] == put["revision"]


async def test_human_output_for_get_tx_and_block(url, tmp_path, capsys):
    key = str(tmp_path / "c.key")
    await cli(capsys, "put", "k", "v", "--rpc", url, "--key", key)
    code, out, _ = await cli(capsys, "get", "k", "--rpc", url, "--key", key)
    assert code == 0 and out.splitlines()[0] == "v" and "revision=1" in out
    code, out, _ = await cli(capsys, "block", "1", "--rpc", url, "--key", key, "--json")
    block = json.loads(out)
    code, out, _ = await cli(capsys, "tx", block["tx_hashes"][0], "--rpc", url, "--key", key)
    assert code == 0 and "height=1" in out
    code, out, _ = await cli(capsys, "get", "missing", "--rpc", url, "--key", key)
    assert code == 0 and "(not found)" in out


async def test_errors_are_clear_and_exit_non_zero(url, tmp_path, capsys):
    key = str(tmp_path / "c.key")
    code, out, _ = await cli(capsys, "block", "99", "--rpc", url, "--key", key, "--json")
    err = json.loads(out)["error"]
    assert code == 1 and "not found" in err["message"] and err["code"] == -32005
    code, _, err = await cli(capsys, "status", "--rpc", "http://127.0.0.1:9", "--key", key)
    assert code == 1 and "NoNodeAvailable" in err
    code, _, err = await cli(capsys, "txn", "--if", "k weird = 1", "--rpc", url, "--key", key)
    assert code == 2 and "bad --if" in err


async def test_bftnode_console_script_delegates_to_the_client(url, tmp_path, capsys):
    code = await trio.to_thread.run_sync(
        bftnode_main, ["client", "--rpc", url, "--key", str(tmp_path / "c.key"), "--json",
                       "status"])
    assert code == 0 and json.loads(cli_lines(capsys.readouterr().out))["height"] == 0


async def test_reads_are_refused_unverified_without_a_pinned_validator_set(url, tmp_path,
                                                                          capsys, monkeypatch):
    monkeypatch.delenv("BFTNODE_GENESIS", raising=False)
    monkeypatch.setenv("BFTNODE_HOME", str(tmp_path))  # a client home without genesis.json
    key = str(tmp_path / "c.key")
    code = await trio.to_thread.run_sync(main, ["get", "k", "--rpc", url, "--key", key])
    err = capsys.readouterr().err
    assert code == 2 and "refusing to read unverified" in err and "--trust-node" in err
