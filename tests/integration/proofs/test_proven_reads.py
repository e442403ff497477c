"""Every proven answer of an honest node verifies against the pinned validator set: kv_get,
kv_range, revision, lease_ttl, lock_status, election_leader, tx, tx_status and
broadcast_tx_commit, and `prove=false` answers bare."""

from __future__ import annotations

import httpx
import pytest
import trio

from bftnode.client import Client, ForgedAnswer, IncompleteAnswer, chain_from_genesis
from bftnode.client import core as C
from bftnode.client.verify import ProofVerifier

from .cluster import proven_cluster


def _rpc(url: str, method: str, **params):
    r = httpx.post(url, json={"jsonrpc": "2.0", "id": 1, "method": method, "params": params})
    body = r.json()
    assert "error" not in body, body
    return body["result"]


def _no_status_lie_with_a_genuine_absence_proof(urls, genesis, c, put):
    """A committed tx told as UNKNOWN, with the genuine proof given for another tx of the
    same client (its executed-seqs record, which shows this one executed), or by hash alone
    (nothing the client can tie to the tx), is refused."""
    v = ProofVerifier(chain_from_genesis(genesis))
    tx = c.tx(put["hash"])
    mine = (bytes.fromhex(tx["client_id"]), tx["request_seq"])
    other = _rpc(urls[0], "tx_status", **C.tx_status_params(c.sign(b"\x00")))
    assert other["committed"] is False and other["proof"]["state"]
    lie = dict(other, status="UNKNOWN", hash=put["hash"])
    want = bytes.fromhex(put["hash"])
    with pytest.raises(ForgedAnswer, match="IS committed"):
        v.tx_status(dict(lie), want, None, mine)
    with pytest.raises(IncompleteAnswer):  # by hash alone "not committed" is not provable
        v.tx_status(dict(lie), want, None, None)
    honest = _rpc(urls[0], "tx_status", hash=put["hash"])
    assert v.tx_status(honest, want, None, mine)["status"] == "COMMITTED"


def _session(urls, genesis, tmp_path):
    with Client(urls, tmp_path / "client.key", genesis=genesis) as c:
        assert c.verifying
        put = c.put("color", "blue")
        assert put["verified"] == "proof"
        got = c.get("color")
        assert (got["value"], got["verified"]) == ("blue", "proof")
        for u in urls:  # a session's min_revision holds for proven reads too, on every node
            seen = _rpc(u, "kv_get", key="color", min_revision=put["result"]["revision"])
            assert seen["value"] == "blue" and seen["proof"]["height"] >= put["height"], seen
        assert c.get("missing")["found"] is False
        for i in range(20):
            c.put(f"list/{i:02d}", str(i))
        rng = c.range("list/")
        assert [kv["key"] for kv in rng["kvs"]] == [f"list/{i:02d}" for i in range(20)]
        lease = c.lease_grant(30)
        ttl = c.lease_ttl(lease)
        assert ttl["verified"] == "proof" and ttl["ttl_ms"] > 0
        token = c.lock_acquire("L", lease)
        st = c.lock_status("L")
        assert st["holder"]["token"] == token and st["verified"] == "proof"
        c.campaign("E", lease, "me")
        assert c.leader("E")["leader"] == "me"
        tx = c.tx(put["hash"])
        assert tx["verified"] == "proof" and tx["code"] == 0
        status = c.tx_status(put["hash"])
        assert status["status"] == "COMMITTED" and status["verified"] == "proof"
        unsent = c.sign(b"\x00")  # signed, never submitted: its (client, seq) is absent
        absent = c.tx_status(unsent)
        assert absent["committed"] is False and absent["verified"] == "proof"
        _no_status_lie_with_a_genuine_absence_proof(urls, genesis, c, put)
        assert not c._core.rejected
        chain = chain_from_genesis(genesis)
        raw = _rpc(urls[0], "revision")
        assert ProofVerifier(chain).app_read("revision", {}, raw)["revision"] >= 1
        bare = _rpc(urls[0], "kv_get", key="color", prove=False)
        assert "proof" not in bare and bare["value"] == "blue"
        # a proof against another chain's validators fails
        other = ProofVerifier(chain_from_genesis(genesis).__class__(
            chain.chain_id, chain.domain, tuple(reversed(chain.validator_keys))))
        proven = _rpc(urls[1], "kv_get", key="color")
        try:
            other.app_read("kv_get", {"key": "color"}, proven)
            raise AssertionError("verified against the wrong validators")
        except ForgedAnswer:
            pass
        del proven["proof"]
        try:
            ProofVerifier(chain).app_read("kv_get", {"key": "color"}, proven)
            raise AssertionError("verified without a proof")
        except IncompleteAnswer:
            pass


async def test_every_proven_answer_verifies_against_the_pinned_validators(tmp_path, port_base):
    async with proven_cluster(tmp_path, port_base) as (nodes, genesis):
        urls = [nd.node.rpc_url for nd in nodes]
        with trio.fail_after(120):
            await trio.to_thread.run_sync(_session, urls, genesis, tmp_path)


async def test_the_async_client_verifies_too_and_fails_over_past_a_dead_node(
        tmp_path, port_base):
    from bftnode.client import AsyncClient

    async with proven_cluster(tmp_path, port_base) as (nodes, genesis):
        urls = [nd.node.rpc_url for nd in nodes]
        async with AsyncClient(["http://127.0.0.1:9", *urls], tmp_path / "a.key",
                               genesis=genesis) as c:
            with trio.fail_after(60):
                put = await c.put("async", "yes")
                got = await c.get("async")
        assert put["verified"] == got["verified"] == "proof" and got["value"] == "yes"
