"""`lock_list` / `lease_list`: pages over the lock, election and lease records, each item the
same as the single-record read (`lock_status`, `lease_ttl`) answers, and paging by `next`."""

from __future__ import annotations

from bftnode.app import ops

A, B, C = b"alice", b"bob", b"carol"
INFO = ("height", "time_ms", "revision", "compact_revision")


def _strip(d: dict) -> dict:
    return {k: v for k, v in d.items() if k not in INFO}


def test_lock_and_lease_pages_match_the_single_reads_and_page_by_next(chain):
    leases = [chain.block((c, ops.lease_grant(ttl_ms=5_000))).ok()["id"] for c in (A, B, C)]
    chain.block((A, ops.lock_acquire(b"l1", leases[0])), (B, ops.lock_acquire(b"l1", leases[1])),
                (B, ops.lock_acquire(b"l2", leases[1])), (C, ops.lock_acquire(b"l3", leases[2])),
                (C, ops.campaign(b"e1", leases[2], b"me")))
    first = chain.query("lock_list", limit=2)
    assert [i["name"] for i in first["items"]] == [b"l1", b"l2"] and first["next"] == b"l2"
    rest = chain.query("lock_list", after=first["next"], limit=2)
    assert [i["name"] for i in rest["items"]] == [b"l3"] and rest["next"] is None
    for item in first["items"] + rest["items"]:
        assert item == _strip(chain.query("lock_status", name=item["name"]))
    l1 = first["items"][0]
    assert l1["holder"]["lease"] == leases[0] and [w["lease"] for w in l1["waiters"]] == [leases[1]]
    (e1,) = chain.query("lock_list", kind="election")["items"]
    assert e1["name"] == b"e1" and e1["holder"]["lease"] == leases[2]
    page = chain.query("lease_list", limit=2)
    assert [i["id"] for i in page["items"]] == leases[:2] and page["next"] == leases[1]
    tail = chain.query("lease_list", after=page["next"])
    assert [i["id"] for i in tail["items"]] == leases[2:] and tail["next"] is None
    for item in page["items"] + tail["items"]:
        assert item == _strip(chain.query("lease_ttl", id=item["id"]))
