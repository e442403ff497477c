"""A lease expires on an IDLE cluster (no client writes at all) within one heartbeat of its
deadline: the primary's heartbeat blocks move agreed time, and the first block whose agreed
time passes the deadline expires the lease (its keys deleted, its lock released)."""

from __future__ import annotations

import os

import pytest
import trio

from bftnode.client import AsyncClient
from testnet.bench_locks import EventRecorder

from .conftest import HEARTBEAT_MS, rpc

pytestmark = pytest.mark.integration

TTL_MS = 1000
# the heartbeat fires HEARTBEAT_MS after the last proposal, on a 10 ms tick; proposing a
# block then takes a little more of the primary's clock before it stamps the time
SLACK_MS = 150


async def test_idle_lease_expires_within_one_heartbeat_after_its_deadline(urls, tmp_path):
    tag = f"idle{os.getpid()}"
    start = rpc(urls[1], "status")["height"] + 1
    rec = EventRecorder(urls[1], start)
    async with trio.open_nursery() as nursery:
        await nursery.start(rec.run)
        async with AsyncClient(urls, tmp_path / "c.key") as c:
            lease = await c.lease_grant(TTL_MS / 1000)
            await c.put(f"{tag}/k", "v", lease=lease)
            token = await c.lock_acquire(f"{tag}-lock", lease)
            renew = await c.lease_keepalive(lease)  # the last write: from here on, idle
        deadline = renew["result"]["deadline_ms"]
        assert deadline == renew["block_time"] + TTL_MS

        expired = await rec.wait_for(
            lambda e: e["kind"] == "lease_expired" and e["lease"] == lease, 30.0)
        assert expired is not None, f"lease {lease} never expired: {rec.error}"
        nursery.cancel_scope.cancel()

    h, t = expired["height"], expired["time_ms"]
    # the expiry block is the FIRST block whose agreed time passed the deadline ...
    assert rpc(urls[1], "block", height=h)["time"] == t
    assert rpc(urls[1], "block", height=h - 1)["time"] <= deadline < t
    # ... and it came within one heartbeat (+ small slack) of the deadline, with no txs at all
    assert t <= deadline + HEARTBEAT_MS + SLACK_MS, (t - deadline, HEARTBEAT_MS)
    for hh in range(renew["height"] + 1, h + 1):
        assert rpc(urls[1], "block", height=hh)["num_txs"] == 0, "the cluster was not idle"
    # the expiry transition took the key and the lock with it, on every node
    same = [e for e in rec.events if e["height"] == h]
    kinds = {e["kind"] for e in same}
    assert {"lease_expired", "delete", "lock_lost"} <= kinds, kinds
    lost = next(e for e in same if e["kind"] == "lock_lost")
    assert lost["token"] == token and lost["tx_index"] == -1
    for u in urls:
        got = rpc(u, "kv_get", key=f"{tag}/k", min_revision=expired["revision"])
        assert got["found"] is False
        st = rpc(u, "lock_status", name=f"{tag}-lock", token=token)
        assert st["held"] is False
    print(f"lease deadline {deadline}, expired at agreed time {t} (+{t - deadline} ms), "
          f"height {h}, heartbeat {HEARTBEAT_MS} ms")
