"""Durable, resumable watches on a real 4-process testnet: a watch whose only node is killed
and restarted (the events it resumes from come from that node's LevelDB) and a watch whose
node is killed so it fails over to another each see every committed event exactly once, in
order: the puts the writer's committed answers name, and the same events a fresh watch from
height 1 on a third node reads."""

from __future__ import annotations

import threading
from functools import partial

import pytest
import trio

from bftnode.app import ops
from bftnode.client import AsyncClient, Client
from testnet import launcher
from testnet.ports import free_port_base

pytestmark = pytest.mark.integration  # ~6 s: kills and restarts two of four nodes
END = "w/zz-end"
DEADLINE_S = 120


def _expected_puts(results: list[tuple[list[str], dict]]) -> list[tuple[str, str, int]]:
    out = []
    for keys, res in results:
        rev = res["result"]["revision"]
        out += [(k, f"v-{k}", rev) for k in keys]
    return out


def _puts(events: list[dict]) -> list[tuple[str, str, int]]:
    return [(e["key"], e["value"], e["revision"]) for e in events]


def _sync_watch(urls: list[str], key_file, out: list[dict], done: threading.Event) -> None:
    with Client(urls, key_file) as c:
        for ev in c.watch("w/", from_revision=1):
            out.append(ev)
            if ev["key"] == END:
                break
    done.set()


async def _async_watch(urls: list[str], key_file, out: list[dict], **kw) -> None:
    async with AsyncClient(urls, key_file) as c, c.watch("w/", **kw) as events:
        async for ev in events:
            out.append(ev)
            if ev["key"] == END:
                return


async def test_watches_across_a_restart_and_a_failover_see_every_event_once(tmp_path):
    d = tmp_path / "tn"
    m = await trio.to_thread.run_sync(lambda: launcher.up(
        d, 4, open_chain=True, base_port=free_port_base(8), log_level="warning",
        consensus={"heartbeat_ms": 300}))
    urls = [n["rpc"] for n in m["nodes"]]
    key = tmp_path / "c.key"
    restarted: list[dict] = []  # its only node is killed and restarted
    failed_over: list[dict] = []  # its node is killed: it moves to the next
    done = threading.Event()
    results: list[tuple[list[str], dict]] = []
    try:
        async with AsyncClient(urls[2:], key) as writer, trio.open_nursery() as nursery:
            nursery.start_soon(partial(_async_watch, urls[:1], tmp_path / "a.key", restarted,
                                       from_revision=1))
            threading.Thread(target=_sync_watch, args=(urls[1:3], tmp_path / "b.key",
                                                       failed_over, done),
                             daemon=True).start()

            async def phase(p: int) -> None:
                for i in range(12):
                    ks = [f"w/{p}/{i}"] + ([f"w/{p}/{i}b"] if i % 4 == 3 else [])
                    if len(ks) == 1:
                        res = await writer.put(ks[0], f"v-{ks[0]}")
                    else:  # a txn: two events at one revision
                        res = await writer.txn(success=[ops.put_op(k.encode(),
                                                                   f"v-{k}".encode())
                                                        for k in ks])
                    results.append((ks, res))

            with trio.fail_after(DEADLINE_S * 3):
                await phase(0)
                await trio.to_thread.run_sync(lambda: launcher.kill(d, 0, hard=True))
                await phase(1)
                await trio.to_thread.run_sync(lambda: launcher.restart(d, 0))
                await phase(2)
                await trio.to_thread.run_sync(lambda: launcher.kill(d, 1, hard=True))
                await phase(3)
                await trio.to_thread.run_sync(lambda: launcher.restart(d, 1))
                await phase(4)
                results.append(([END], await writer.put(END, f"v-{END}")))
                while not (done.is_set() and restarted and restarted[-1]["key"] == END):
                    await trio.sleep(0.1)
        # the agreed log as a fresh watch from height 1 reads it on a node never restarted
        fresh: list[dict] = []
        with trio.fail_after(DEADLINE_S):
            await _async_watch(urls[3:], tmp_path / "f.key", fresh, from_height=1)
    finally:
        await trio.to_thread.run_sync(lambda: launcher.down(d))

    expected = _expected_puts(results)
    assert len(expected) == 5 * 15 + 1  # 45 puts and 15 txns of two, plus the end marker
    assert _puts(fresh) == expected
    for seen in (restarted, failed_over):
        assert _puts(seen) == expected  # every event, once, in order
        assert seen == fresh  # the same events, field for field
