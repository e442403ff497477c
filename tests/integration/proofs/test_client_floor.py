"""A client's old seqs leave its executed-seqs record (its window moves past them): a status
asked by (client, seq) at or below the client's floor is refused with -32010 and the floor, not
told "not committed", and a verifying client refuses a not-committed answer there even with a
genuine proof of the record (it no longer tells), as it does one for a seq the record shows
executed."""

from __future__ import annotations

from functools import partial

import httpx
import pytest
import trio

from bftnode.client import Client, ForgedAnswer, IncompleteAnswer, chain_from_genesis
from bftnode.client.verify import ProofVerifier
from bftnode.rpc import proofs as pf
from storage import keys

from .cluster import proven_cluster

WINDOW = 4


def _status_by_client(url: str, cid: bytes, seq: int) -> dict:
    r = httpx.post(url, json={"jsonrpc": "2.0", "id": 1, "method": "tx_status",
                              "params": {"client_id": cid.hex(), "request_seq": seq}})
    return r.json()


async def test_a_status_below_the_client_floor_is_refused_and_a_lie_there_is_caught(
        tmp_path, port_base):
    async with proven_cluster(tmp_path, port_base,
                              consensus={"dedup_window": WINDOW}) as (nodes, genesis):
        urls = [nd.node.rpc_url for nd in nodes]

        def puts() -> tuple[bytes, list[int], dict]:
            with Client(urls, tmp_path / "a.key", genesis=genesis) as c:
                done = [c.put(f"k{i}", "v") for i in range(WINDOW + 3)]
                seqs = [c.tx(d["hash"])["request_seq"] for d in done]
                unsent = c.tx_status(c.sign(b"\x00"))  # a seq above the top, proven absent
                return bytes(c.client_id), seqs, unsent

        with trio.fail_after(120):
            cid, seqs, unsent = await trio.to_thread.run_sync(puts)
        assert unsent["committed"] is False and unsent["verified"] == "proof"
        top, first = max(seqs), min(seqs)
        node = nodes[0].node
        with trio.fail_after(30):
            while node.client_floor(cid) < top - WINDOW:  # every put waited for its commit
                await trio.sleep(0.05)
        assert node.client_floor(cid) == top - WINDOW
        assert first <= top - WINDOW  # the client's seqs are far apart (time-based)
        assert node.tx_by_client(cid, first) is None
        assert node.tx_by_client(cid, top) is not None
        old = await trio.to_thread.run_sync(_status_by_client, urls[0], cid, first)
        assert old["error"]["code"] == -32010
        assert old["error"]["data"]["client_floor"] == top - WINDOW
        recent = await trio.to_thread.run_sync(_status_by_client, urls[0], cid, top)
        assert recent["result"]["status"] == "COMMITTED"

        # a lying node: "the first put was never committed", with a genuine proof of the
        # client's executed-seqs record (which no longer tells, below its window), or none
        cert = await pf.certified(node)
        verifier = ProofVerifier(chain_from_genesis(genesis))
        for tree_keys, seq, error in (((keys.client_seqs(cid),), first, ForgedAnswer),
                                      ((keys.client_seqs(cid),), top, ForgedAnswer),
                                      ((), first, IncompleteAnswer)):
            proof = await node.read(partial(pf.keys_json, cert=cert, tree_keys=tree_keys))
            lie = {"status": "UNKNOWN", "committed": False, "height": cert.seq, "proof": proof}
            with pytest.raises(error):
                verifier.tx_status(lie, None, None, (cid, seq))
        # above the top, the same kind of proof proves "not committed"
        proof = await node.read(partial(pf.keys_json, cert=cert,
                                        tree_keys=(keys.client_seqs(cid),)))
        fine = {"status": "UNKNOWN", "committed": False, "height": cert.seq, "proof": proof}
        assert verifier.tx_status(fine, None, None, (cid, top + 1))["verified"] == "proof"
