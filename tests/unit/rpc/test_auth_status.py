"""The `auth_status` read over the real application (no proof), and the `bftnode client auth`
command line (parsing only: the fake node does not run auth ops; tests/integration covers it)."""

from __future__ import annotations

import argparse

import pytest

from bftnode.app import KVApplication, ops
from bftnode.client_cli import add_client_arguments
from bftnode.rpc.methods import CallContext, dispatch
from consensus import Request

from .app_node import AppNode

ADMIN = b"\x01" * 32


async def _call(node: AppNode, **params) -> dict:
    return await dispatch(CallContext(node), {"jsonrpc": "2.0", "id": 1,
                                              "method": "auth_status", "params": params})


async def test_auth_status_answers_roles_bindings_and_the_checks_flag():
    node = AppNode()
    node.app = KVApplication(params={"admins": [ADMIN.hex()], "auth_enabled": True})
    txs = [Request(ADMIN, i + 1, op) for i, op in enumerate(
        [ops.auth_role_add("r"), ops.auth_grant("r", "read", b"p/", prefix=True),
         ops.auth_bind(b"\x02" * 32, "r")])]
    node.state.apply(node.app.execute_block(node.state, 1, 1_000, txs).writes)
    res = (await _call(node))["result"]
    assert res["enabled"] is True and res["admins"] == [ADMIN.hex()]
    assert res["roles"] == [{"role": "r", "permissions": [
        {"perm": "read", "key": "p/", "range_end": "p0"}]}]
    assert res["bindings"] == [{"client": "02" * 32, "roles": ["r"]}]
    assert "proof" not in res


async def test_auth_status_of_an_open_chain_and_no_proofs():
    res = (await _call(AppNode()))["result"]
    assert res["enabled"] is False and res["admins"] == [] and res["roles"] == []
    err = (await _call(AppNode(), prove=True))["error"]
    assert err["code"] == -32602 and "without a proof" in err["message"]


@pytest.mark.parametrize("argv", [
    ["auth", "role", "add", "r"],
    ["auth", "role", "grant", "r", "readwrite", "app/", "--prefix"],
    ["auth", "role", "revoke", "r", "write", "a", "--range-end", "b"],
    ["auth", "user", "bind", "ab" * 32, "r"],
    ["auth", "enable"], ["auth", "status", "--json"], ["auth", "whoami"],
])
def test_auth_commands_parse(argv):
    parser = argparse.ArgumentParser(prog="bftnode")
    add_client_arguments(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["client", *argv])
    assert args.client_func.__module__ == "bftnode.client_cli_auth"
