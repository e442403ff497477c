"""Permissions on a real 4-process testnet started as `testnet up` does (DIR/admin.key named
admin in the genesis, checks on): a client without a role is refused a prefix delete, a
compact and a put with permission_denied (5) and nothing changes on any node; the admin grants
a prefix and the same delete and put succeed; the checks survive a node restart and every node
answers the same auth_status and the same data."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from bftnode.app import ops
from bftnode.client import Client, TxFailed
from testnet.ports import free_port_base

from .conftest import HEARTBEAT_MS, rpc, wait_until

pytestmark = pytest.mark.integration
PERMISSION = 5


@pytest.fixture(scope="module")
def auth_testnet(tmp_path_factory) -> Iterator[dict[str, Any]]:
    from testnet import launcher

    d = tmp_path_factory.mktemp("auth-testnet")
    m = launcher.up(d, 4, base_port=free_port_base(8), log_level="warning",
                    consensus={"heartbeat_ms": HEARTBEAT_MS})  # checks on: the default
    try:
        yield m
    finally:
        launcher.down(d)


def _view(url: str) -> dict[str, Any]:
    """What one node holds: the team/ keys, the revisions and the permission records."""
    got = rpc(url, "kv_range", key="team/")
    st = rpc(url, "auth_status")
    return {"kvs": [(kv["key"], kv["value"], kv["mod_revision"]) for kv in got["kvs"]],
            "revision": got["revision"], "compact_revision": got["compact_revision"],
            "auth": {k: st[k] for k in ("enabled", "admins", "roles", "bindings")}}


def _agreed(urls: list[str], revision: int) -> dict[str, Any]:
    """Every node's view once all have applied `revision`: they must be identical."""
    wait_until(lambda: all(rpc(u, "revision")["revision"] >= revision for u in urls), 30,
               f"every node at revision {revision}")
    views = [_view(u) for u in urls]
    assert all(v == views[0] for v in views), views
    return views[0]


def _refused(fn) -> None:
    with pytest.raises(TxFailed) as info:
        fn()
    assert info.value.code == PERMISSION, info.value
    assert "permission denied" in str(info.value), info.value


def test_refused_then_granted_and_the_checks_survive_a_restart(auth_testnet, tmp_path):
    from testnet import launcher

    m = auth_testnet
    urls = [n["rpc"] for n in m["nodes"]]
    assert m["auth_enabled"] and m["admin_key"].endswith("admin.key")
    with Client(urls, m["admin_key"]) as admin, Client(urls, tmp_path / "bob.key") as bob:
        for i in range(5):  # the admin's data under team/
            rev = admin.put(f"team/{i}", f"v{i}")["result"]["revision"]
        before = _agreed(urls, rev)
        assert len(before["kvs"]) == 5 and before["auth"]["enabled"] is True

        _refused(lambda: bob.delete("team/", prefix=True))
        _refused(lambda: bob.commit_op(ops.compact(rev)))
        _refused(lambda: bob.put("team/0", "mine"))
        assert _agreed(urls, rev) == before  # nothing changed, on any node

        for op in (ops.auth_role_add("team-rw"),
                   ops.auth_grant("team-rw", "readwrite", b"team/", prefix=True),
                   ops.auth_bind(bob.client_id, "team-rw")):
            admin.commit_op(op)
        rev = bob.put("team/0", "mine")["result"]["revision"]
        assert bob.delete("team/", prefix=True)["result"]["deleted"] == 5
        _refused(lambda: bob.put("other", "x"))  # outside the prefix
        _refused(lambda: bob.commit_op(ops.compact(rev)))  # compaction stays the admins'
        rev = bob.put("team/after", "grant")["result"]["revision"]
        granted = _agreed(urls, rev)
        assert [k for k, _, _ in granted["kvs"]] == ["team/after"]
        assert granted["auth"]["bindings"] == [{"client": bob.client_id.hex(),
                                                "roles": ["team-rw"]}]

        # restart one node: the records come back from its disk and it agrees with the rest
        launcher.restart(m["dir"], 1)
        assert _agreed(urls, rev) == granted
        with Client(urls[1], tmp_path / "eve.key") as eve:  # no role: the restarted node too
            _refused(lambda: eve.put("team/after", "eve"))
        assert bob.put("team/after", "again")["result"]["revision"] > rev
