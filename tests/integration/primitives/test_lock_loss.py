"""A lock whose lease is lost says so (docs/consistency.md "Losing a lock"), on a real 4-node
testnet: the holder's keepalive is stalled, so no keepalive is confirmed after the grant. The
sync holder's next client call raises LockLost, and its `on_lost` callback runs, no earlier
than the client's deadline (grant SENT + TTL) and within LOSS_BOUND_S after it; the async
holder's body is cancelled within the same bound and its block's exit raises LockLost. Then
the chain gives the lock to another client with a larger token, and the protected resource (a
fenced txn on a fence key) refuses the stale holder's token."""

from __future__ import annotations

import os
import time

import pytest
import trio

from bftnode.app import ops
from bftnode.client import AsyncClient, Client, LockLost
from testnet.bench_locks import data_key, fence_key, token_bytes

from .conftest import wait_until

pytestmark = pytest.mark.integration

TTL_S = 2.0
STALLED = 3600.0  # keepalive_every: no keepalive is ever sent inside the test
LOSS_BOUND_S = 0.5  # the sync body polls every 50 ms; async: the watchdog wakes at the deadline


def fenced_write(c: Client, name: str, token: int, value: str) -> bool:
    """The protected write: if fence < token then fence = token, data = value."""
    tb = token_bytes(token)
    op = ops.txn([ops.compare(fence_key(name), "value", "<", tb)],
                 [ops.put_op(fence_key(name), tb), ops.put_op(data_key(name).encode(),
                                                                value.encode())])
    return bool(c.commit_op(op)["result"]["succeeded"])


def next_holder_fences_out(c: Client, name: str, stale: int) -> int:
    """Another client takes the lock (granted once the chain expired the stale lease), writes
    with its token, and the stale token's write is then refused."""
    lease = c.lease_grant(10.0)
    fresh = c.lock_acquire(name, lease, timeout=20.0)
    assert fresh > stale
    assert fenced_write(c, name, fresh, "fresh")
    assert not fenced_write(c, name, stale, "stale"), "the stale token was not fenced out"
    assert c.get(data_key(name))["value"] == "fresh"
    c.lease_revoke(lease)
    return fresh


def test_sync_holder_with_a_stalled_keepalive_raises_on_its_next_call(urls, tmp_path):
    name = f"loss-sync-{os.getpid()}"
    with Client(urls, tmp_path / "a.key") as a, Client(urls, tmp_path / "b.key") as b:
        a.put(fence_key(name), token_bytes(0))
        called: list[LockLost] = []
        calls_while_held = 0
        last_ok = raised_at = 0.0  # when the last call that worked, and the one that raised, began
        with pytest.raises(LockLost) as info:
            with a.lock(name, ttl=TTL_S, keepalive_every=STALLED,
                        on_lost=called.append) as token:
                deadline = token.lease.hold.deadline
                assert token.held() and fenced_write(a, name, token, "held")
                while True:  # the body keeps using the client until a call refuses
                    raised_at = time.monotonic()
                    a.get(data_key(name))
                    last_ok = raised_at
                    calls_while_held += 1
                    time.sleep(0.05)
        print(f"sync: the call begun {raised_at - deadline:.3f}s after the client deadline "
              f"raised LockLost; the last that worked began {deadline - last_ok:.3f}s before it")
        # every call begun before the deadline worked, and the first begun after it raised (a
        # call's own duration is the server's, so the bound is on when the calls began)
        assert last_ok < deadline <= raised_at <= last_ok + LOSS_BOUND_S
        assert calls_while_held > 0 and not token.held()
        assert called == [info.value] or (called and called[0] is info.value)
        assert info.value.data["token"] == token and info.value.data["lease"] == token.lease
        assert a.get(data_key(name))["value"] == "held"  # outside the block: calls work
        next_holder_fences_out(b, name, token)


def test_async_holder_with_a_stalled_keepalive_has_its_body_cancelled(urls, tmp_path):
    name = f"loss-async-{os.getpid()}"
    with Client(urls, tmp_path / "b.key") as b:
        b.put(fence_key(name), token_bytes(0))

    async def hold() -> tuple[int, float, float, bool]:
        finished = False
        async with AsyncClient(urls, tmp_path / "a.key") as a:
            with pytest.raises(LockLost):
                async with a.lock(name, ttl=TTL_S, keepalive_every=STALLED) as token:
                    deadline = token.lease.hold.deadline
                    try:
                        await trio.sleep(10 * TTL_S)  # the body: cancelled, not finished
                        finished = True
                    finally:
                        cancelled_at = time.monotonic()
            return token, deadline, cancelled_at, finished

    token, deadline, cancelled_at, finished = trio.run(hold)
    assert not finished
    print(f"async: body cancelled {cancelled_at - deadline:.3f}s after the client deadline")
    assert deadline <= cancelled_at <= deadline + LOSS_BOUND_S, cancelled_at - deadline
    with Client(urls, tmp_path / "b.key") as b:
        next_holder_fences_out(b, name, token)


def test_async_holder_watching_events_is_cancelled_when_the_chain_ends_its_lease(urls,
                                                                                 tmp_path):
    # the TTL is long and keepalives run: only the chain's event can say the lease is gone
    name = f"loss-event-{os.getpid()}"
    with Client(urls, tmp_path / "b.key") as b:
        b.put(fence_key(name), token_bytes(0))

    def revoke(lease: int) -> float:  # the same client key elsewhere (it owns the lease)
        with Client(urls, tmp_path / "a.key") as twin:
            twin.lease_revoke(lease)
        return time.monotonic()

    async def hold() -> tuple[int, float, float]:
        async with AsyncClient(urls, tmp_path / "a.key") as a:
            with pytest.raises(LockLost, match="lease_revoked|lock_lost"):
                async with a.lock(name, ttl=30.0, watch_events=True) as token:
                    revoked_at = await trio.to_thread.run_sync(revoke, int(token.lease))
                    try:
                        await trio.sleep(30.0)
                    finally:
                        cancelled_at = time.monotonic()
            return token, revoked_at, cancelled_at

    token, revoked_at, cancelled_at = trio.run(hold)
    print(f"event: body cancelled {cancelled_at - revoked_at:.3f}s after the revoke committed")
    assert cancelled_at - revoked_at <= 2.0, cancelled_at - revoked_at
    with Client(urls, tmp_path / "b.key") as b:
        next_holder_fences_out(b, name, token)


def test_sync_holder_watching_events_fails_its_next_call_once_the_chain_ends_its_lease(
        urls, tmp_path):
    name = f"loss-event-sync-{os.getpid()}"
    with Client(urls, tmp_path / "a.key") as a, Client(urls, tmp_path / "b.key") as b:
        b.put(fence_key(name), token_bytes(0))
        called: list[LockLost] = []
        with pytest.raises(LockLost, match="lease_revoked|lock_lost"):
            with a.lock(name, ttl=30.0, watch_events=True, on_lost=called.append) as token:
                # at once: a revoke committed before the subscription is up is replayed
                # (the watch starts at the grant's block), so it cannot be missed
                with Client(urls, tmp_path / "a.key") as twin:  # same key: owns the lease
                    twin.lease_revoke(int(token.lease))
                revoked_at = time.monotonic()
                # well inside the first keepalive (TTL/3) and the TTL: the event told it
                wait_until(lambda: called, 5.0, "the on_lost callback")
                print(f"sync event: on_lost {time.monotonic() - revoked_at:.3f}s after the "
                      "revoke committed")
                assert not token.held()
                a.get(data_key(name))  # raises: the lease is gone
        next_holder_fences_out(b, name, token)
