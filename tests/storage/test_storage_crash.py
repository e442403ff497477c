"""Crash safety with real processes: a child writes votes and blocks to LevelDB and is SIGKILLed
at random points; after every kill the ledger must hold everything the child reported durable,
the hash chain and tx index must be intact, and no vote may conflict with one persisted before.

The kill point is measured in lines the child printed (one per durable step), never by sleeping.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import msgspec
import plyvel
import pytest
from ledger_helpers import AUTHS, CHAIN_ID, GENESIS_HASH, ChainBuilder

from consensus import (
    Commit,
    Config,
    NewView,
    OwnVote,
    Prepare,
    PrePrepare,
    Receive,
    Replica,
    Tick,
    ViewChange,
    request_digest,
)
from storage import LevelDBStore, keys, merkle_tree
from storage.leveldb import TREE_DIR
from storage.memory import _MemoryKV
from storage.merkle_proof import EMPTY_ROOT
from storage.merkle_tree import AuthTree
from testnet.checkers import find_equivocations

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
CHILD = Path(__file__).with_name("crash_child.py")
SEEDS = (11, 22, 33, 44)
NO_FSYNC_SEED = 44
AUTH_SEEDS = (22, 33)  # the state tree on (one seed fsyncs blocks, one does not)
KILLS_PER_SEED = 55  # 220 kills in total
LIFE_DEADLINE_S = 30.0
MAX_LINES_PER_LIFE = 30  # kill after 1..30 durable steps
_vote_decoder = msgspec.msgpack.Decoder(OwnVote)


@dataclass
class SeedRun:
    seed: int
    path: Path
    ignore_rule: bool = False
    blocks: dict[int, bytes] = field(default_factory=dict)  # reported durable: height -> hash
    votes: list = field(default_factory=list)  # every vote reported or recovered, all lives
    kills: int = 0
    in_flight_at_kill: int = 0  # kills that left a persisted vote for an unexecuted seq
    max_view: int = 0
    replica_probes: int = 0  # restored consensus.Replica shown a fresh PRE-PREPARE
    replica_refused: int = 0  # ... for a slot it had already prepared differently
    replica_prepared: int = 0  # ... and it sent a PREPARE
    checked: int = 0  # blocks whose tx index has been verified
    tree_roots: int = 0  # kills after which the state tree's root was checked

    def handle(self, line: bytes, life_votes: list) -> None:
        kind, _, rest = line.partition(b" ")
        if kind == b"B":
            h, hx = rest.split()
            self.blocks[int(h)] = bytes.fromhex(hx.decode())
        elif kind == b"V":
            life_votes.append(_vote_decoder.decode(bytes.fromhex(rest.decode())).message)

    def start_server(self) -> None:
        """The child script in fork-server mode: each life is a fresh forked process."""
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        if self.ignore_rule:
            env["CRASH_CHILD_IGNORE_RULE"] = "1"
        # half the seeds fsync block commits, half only write them (the node default)
        env["CRASH_CHILD_SYNC_BLOCKS"] = "1" if self.seed % 2 else "0"
        # and one seed fsyncs nothing at all (config `fsync = false`): a kill -9 still
        # loses nothing because every batch reaches the OS before the write returns
        env["CRASH_CHILD_FSYNC"] = "0" if self.seed == NO_FSYNC_SEED else "1"
        env["CRASH_CHILD_AUTH"] = "1" if self.seed in AUTH_SEEDS else "0"
        self.stderr = open(self.path.with_suffix(".stderr"), "wb")  # noqa: SIM115
        self.server = subprocess.Popen(
            [sys.executable, str(CHILD), "--serve"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr, env=env,
        )

    def stop_server(self) -> None:
        self.server.stdin.close()
        self.server.wait(timeout=LIFE_DEADLINE_S)
        self.server.stdout.close()
        self.stderr.close()

    def _errors(self) -> bytes:
        return self.path.with_suffix(".stderr").read_bytes()[-2000:]

    def life(self, n_lines: int) -> None:
        """Start a life, SIGKILL it after `n_lines` durable steps, collect what it reported."""
        srv = self.server
        srv.stdin.write(f"LIFE {self.path} {self.seed} {self.kills}\n".encode())
        srv.stdin.flush()
        watchdog = threading.Timer(LIFE_DEADLINE_S, srv.kill)  # the deadline
        watchdog.start()
        life_votes: list = []
        try:
            first = srv.stdout.readline()
            assert first.startswith(b"READY"), (first, self._errors())
            pid = int(first.split()[2])
            seen = 0
            line = b""
            while seen < n_lines:
                line = srv.stdout.readline()
                if line.startswith(b"EXIT") or not line:
                    break
                self.handle(line, life_votes)
                seen += 1
            if not line.startswith(b"EXIT"):
                os.kill(pid, signal.SIGKILL)
                # every line written before the kill landed is durable too
                while not (line := srv.stdout.readline()).startswith(b"EXIT"):
                    assert line, ("fork server died", self._errors())
                    self.handle(line, life_votes)
        finally:
            watchdog.cancel()
        rc = int(line.split()[1])
        assert rc == -signal.SIGKILL, (rc, self._errors())
        self.kills += 1
        self.check_after_reopen(life_votes)

    def check_after_reopen(self, life_votes: list) -> None:
        s = LevelDBStore(self.path, CHAIN_ID, GENESIS_HASH, create=False)
        try:
            rs = s.recover()  # raises CorruptionError on a torn block or broken chain
            top = max(self.blocks, default=0)
            assert rs.last_executed >= top, f"reported block {top} lost (have {rs.last_executed})"
            for h in range(self.checked + 1, rs.last_executed + 1):
                b = s.block(h)
                assert b is not None and b.height == h
                if h in self.blocks:
                    assert b.hash == self.blocks[h], f"block {h} differs from the reported one"
                for i, req in enumerate(b.txs):
                    th = request_digest(req)
                    t = s.tx(th)
                    assert t is not None and (t.height, t.index) == (h, i)
                    assert s.tx_by_client(req.client_id, req.request_seq).tx_hash == th
            self.checked = rs.last_executed
            if self.seed in AUTH_SEEDS:
                self.tree_roots += _check_tree_root(s, rs.last_executed)
            if rs.last_executed:
                assert rs.last_block_hash == s.block(rs.last_executed).hash
            # every reported vote that no Prune may have removed is still there
            recovered = set(rs.own_votes)
            stable = rs.stable_checkpoint.seq if rs.stable_checkpoint else 0
            for v in life_votes:
                if isinstance(v, ViewChange | NewView):
                    prunable = (v.new_view if isinstance(v, ViewChange) else v.view) < rs.view
                else:
                    prunable = v.seq <= stable
                assert prunable or v in recovered, f"persisted vote lost: {v}"
            if any(
                isinstance(v, PrePrepare | Prepare | Commit) and v.seq > rs.last_executed
                for v in rs.own_votes
            ):
                self.in_flight_at_kill += 1
            self.max_view = max(self.max_view, rs.view)
            self.votes.extend(life_votes)
            self.votes.extend(rs.own_votes)
            self.probe_restored_replica(s, rs)
        finally:
            s.close()

    def probe_restored_replica(self, s: LevelDBStore, rs) -> None:
        """Restore a real consensus.Replica (id 1, the child's id) from the RecoveredState and
        show it a different PRE-PREPARE for the next slot. Acting as the shell, persist its
        Output before counting what it sends; its votes join the equivocation check."""
        if rs.in_view_change or rs.view % 4 == 1:
            return  # probe the backup path only
        replica = Replica(Config(n=4), 1, AUTHS[1], rs)
        seq = rs.last_executed + 1
        pp = ChainBuilder(
            seed=self.seed * 1000 + self.kills, height=rs.last_executed,
            prev_hash=rs.last_block_hash, time_ms=rs.last_time_ms, view=rs.view,
        ).next_pre_prepare(2)
        had = [v for v in rs.own_votes
               if isinstance(v, Prepare) and (v.view, v.seq) == (rs.view, seq)]
        sent = []
        for ev in (Tick(pp.time_ms), Receive(rs.view % 4, pp)):
            out = replica.step(ev)
            s.persist(out.persist)  # the ordering rule: persist, then send
            self.votes.extend(r.message for r in out.persist if isinstance(r, OwnVote))
            sent.extend(x.message for x in out.send)
        self.votes.extend(sent)
        prepared = any(isinstance(m, Prepare) and m.seq == seq for m in sent)
        self.replica_probes += 1
        self.replica_prepared += prepared
        if had and had[0].digest != pp.digest:
            self.replica_refused += 1
            assert not any(isinstance(m, Prepare) and m.seq == seq and m.digest == pp.digest
                           for m in sent), "restored replica prepared a conflicting batch"

    def final_check(self) -> None:
        s = LevelDBStore(self.path, CHAIN_ID, GENESIS_HASH, create=False)
        try:
            assert s.verify_chain() == s.height()  # full hash-chain check from genesis
            model: dict[bytes, bytes] = {}
            for b in s.blocks(1):
                for r in b.txs:
                    _, k, v = r.op.split()
                    model[k] = v
            assert dict(s.state().iterate(b"")) == model
        finally:
            s.close()


def _check_tree_root(s: LevelDBStore, height: int) -> int:
    """The tree's root of the recovered height is on disk (written with its block, not rebuilt
    at open: this store is opened without the tree, its DB read here directly) and equals a
    rebuild from the state."""
    tree = plyvel.DB(os.path.join(s.path, TREE_DIR))
    try:
        raw = tree.get(merkle_tree.ROOT + keys.u64(height))
    finally:
        tree.close()
    assert raw is not None, f"block {height} landed without its state tree root"
    items = [kv for p in keys.AUTH_KEYSPACES for kv in s._kv.items(p, keys.prefix_end(p))]
    fresh = AuthTree(_MemoryKV())
    fresh.build(0, items)
    assert (raw[12:] or EMPTY_ROOT) == fresh.root_hash(0), f"tree root {height} != its state"
    return 1


def _run(seed: int, tmp: Path, kills: int, ignore_rule: bool = False) -> SeedRun:
    run = SeedRun(seed, tmp / f"seed{seed}", ignore_rule)
    rng = random.Random(seed)
    run.start_server()
    try:
        while run.kills < kills:
            run.life(rng.randint(1, MAX_LINES_PER_LIFE))
    finally:
        run.stop_server()
    return run


def test_sigkill_at_random_points_loses_nothing_and_never_equivocates(tmp_path):
    with ThreadPoolExecutor(max_workers=len(SEEDS)) as pool:  # overlaps fsync waits
        runs = list(pool.map(lambda s: _run(s, tmp_path, KILLS_PER_SEED), SEEDS))
    print(
        "crash test:",
        [(r.seed, r.kills, max(r.blocks, default=0), r.max_view, r.in_flight_at_kill,
          r.replica_probes, r.replica_prepared, r.replica_refused) for r in runs],
    )
    for r in runs:
        r.final_check()
        if r.seed in AUTH_SEEDS:
            assert r.tree_roots >= KILLS_PER_SEED - 1, (r.seed, r.tree_roots)
        assert find_equivocations(r.votes) == [], f"seed {r.seed} equivocated"
    assert sum(r.kills for r in runs) >= 200
    # the test is only meaningful if kills landed between a vote and its block, and views moved
    assert sum(r.in_flight_at_kill for r in runs) >= 20
    assert all(r.max_view > 0 for r in runs)
    # the restored Replica both prepared fresh slots and met slots it had prepared differently
    assert sum(r.replica_prepared for r in runs) > 0
    assert sum(r.replica_refused for r in runs) > 0


def test_negative_control_without_the_restart_rule_equivocation_is_caught(tmp_path):
    run = _run(5, tmp_path, kills=20, ignore_rule=True)
    assert find_equivocations(run.votes) != []
