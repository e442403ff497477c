"""Crash-test child: one life of a replica writing votes and blocks to LevelDB until SIGKILLed.

Usage: python crash_child.py DB_DIR SEED LIFE     (one life)
       python crash_child.py --serve              (fork server: one life per stdin line
                                                   "LIFE DB_DIR SEED LIFE"; saves the ~0.5 s
                                                   interpreter start per life; after each life
                                                   it prints "EXIT <returncode>")

Emulates the replica's restart rule: load RecoveredState, and before signing a vote look up the
slot among the recovered own votes — re-use a persisted vote, never sign a different one (when a
backup cannot reproduce the batch it prepared, it moves to the next view instead).
Prints one line after each durable step (the parent trusts only printed lines):
  READY <height> <pid>      after recover()
  V <hex OwnVote>           after persist() returned, one line per vote in the batch
  B <height> <hash hex>     after commit_block() returned
"""

from __future__ import annotations

import os
import random
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from ledger_helpers import (  # noqa: E402
    AUTHS,
    CHAIN_ID,
    CLIENTS,
    GENESIS_HASH,
    N,
    make_block,
    make_pre_prepare,
)

from consensus import (  # noqa: E402
    Commit,
    NewView,
    OwnVote,
    Prepare,
    Prune,
    Request,
    StableCheckpoint,
    ViewChange,
    ViewState,
    sign_request,
)
from consensus.codec import encode_raw  # noqa: E402
from storage import open_store  # noqa: E402

ME = 1  # this replica's id
# negative control for the parent test: sign without the restart rule (and let the store accept)
IGNORE_RULE = os.environ.get("CRASH_CHILD_IGNORE_RULE") == "1"
# the node's default: block commits written but not fsynced (kill -9 must still lose nothing)
SYNC_BLOCKS = os.environ.get("CRASH_CHILD_SYNC_BLOCKS") == "1"
# config `fsync = false`: nothing fsynced, votes included (kill -9 must still lose nothing)
FSYNC = os.environ.get("CRASH_CHILD_FSYNC", "1") == "1"
# the authenticated state tree on: it must land with its block (the parent checks its root)
AUTH = os.environ.get("CRASH_CHILD_AUTH") == "1"


def emit(line: str) -> None:
    """One write(2) per line, at most PIPE_BUF bytes: a kill never leaves half a line."""
    data = (line + "\n").encode()
    assert len(data) <= 4096, len(data)
    os.write(1, data)


def slot(msg) -> tuple:
    if isinstance(msg, ViewChange):
        return ("vc", msg.new_view)
    if isinstance(msg, NewView):
        return ("nv", msg.view)
    return (type(msg).__name__, msg.view, msg.seq)


class Life:
    def __init__(self, path: str, seed: int, life: int) -> None:
        self.store = open_store(path, CHAIN_ID, GENESIS_HASH, create=True,
                                sync_blocks=SYNC_BLOCKS, fsync=FSYNC, authenticated_state=AUTH)
        assert self.store.fsync == FSYNC
        self.store.strict_votes = not IGNORE_RULE
        rs = self.store.recover()
        self.rng = random.Random(seed * 100_003 + life)
        self.own = {slot(v): v for v in rs.own_votes}
        self.view, self.in_vc = rs.view, rs.in_view_change
        self.height, self.prev, self.time = rs.last_executed, rs.last_block_hash, rs.last_time_ms
        self.stable = rs.stable_checkpoint
        self.next_seq = {c.public_key: max(rs.client_executed.get(c.public_key, (0,))) + 1
                         for c in CLIENTS}
        emit(f"READY {self.height} {os.getpid()}")

    def sign(self, msg):
        """The restart rule: a persisted vote in this slot wins; a different one is refused."""
        old = None if IGNORE_RULE else self.own.get(slot(msg))
        if old is not None:
            same = (old.digest == msg.digest) if hasattr(msg, "digest") else True
            return old if same else None
        return msg if msg.sig else AUTHS[ME].sign(msg)

    def persist(self, records) -> None:
        self.store.persist(records)
        for r in records:
            if isinstance(r, OwnVote):
                self.own[slot(r.message)] = r.message
                emit("V " + encode_raw(r).hex())

    def view_change(self) -> None:
        new = self.view + 1
        stable_seq = self.stable.seq if self.stable else 0
        stable_digest = self.stable.digest if self.stable else bytes(32)
        vc = self.sign(ViewChange(new, stable_seq, stable_digest, (), (), ME))
        self.persist([ViewState(new, True), OwnVote(vc)])
        self.view, self.in_vc = new, True
        self.finish_view_change()

    def finish_view_change(self) -> None:
        if self.view % N == ME:
            self.persist([OwnVote(self.sign(NewView(self.view, (), (), ME)))])
        self.persist([ViewState(self.view, False)])
        self.in_vc = False

    def requests(self) -> tuple[Request, ...]:
        out = []
        for _ in range(self.rng.randint(0, 4)):
            c = self.rng.choice(CLIENTS)
            seq = self.next_seq[c.public_key]
            self.next_seq[c.public_key] = seq + 1
            op = b"put k%d %d" % (self.rng.randrange(20), self.rng.randrange(1 << 20))
            out.append(sign_request(CHAIN_ID, c, Request(b"", seq, op)))
        return tuple(out)

    def step(self) -> None:
        if self.in_vc:
            return self.finish_view_change()
        if self.rng.random() < 0.06:
            return self.view_change()
        seq = self.height + 1
        stored_pp = self.own.get(("PrePrepare", self.view, seq))
        if stored_pp is not None:
            pp = stored_pp  # our own proposal from a previous life: re-propose exactly it
            for r in pp.requests:
                self.next_seq[r.client_id] = max(self.next_seq[r.client_id], r.request_seq + 1)
        else:
            t = max(self.time + 1, self.time + self.rng.randint(1, 30))
            pp = make_pre_prepare(self.view, seq, t, self.requests())
        if self.view % N == ME:
            vote = self.sign(pp)
        else:
            vote = self.sign(Prepare(self.view, seq, pp.digest, ME))
        if vote is None:  # prepared another batch in a previous life: cannot reproduce it
            return self.view_change()
        commit = self.sign(Commit(self.view, seq, pp.digest, ME))
        if commit is None:
            return self.view_change()
        self.persist([OwnVote(vote)])
        self.persist([OwnVote(commit)])
        writes = tuple((r.op.split()[1], r.op.split()[2]) for r in pp.requests)
        block = make_block(pp, self.prev, writes)
        self.store.commit_block(block)
        self.height, self.prev, self.time = seq, block.execute.block_hash, pp.time_ms
        emit(f"B {seq} {self.prev.hex()}")
        if seq % 8 == 0:
            self.stable = StableCheckpoint(seq, self.prev, ())
            self.persist([self.stable, Prune(seq)])
            self.own = {k: v for k, v in self.own.items()
                        if not (len(k) == 3 and k[2] <= seq)
                        and not (k[0] in ("vc", "nv") and k[1] < self.view)}


def one_life(path: str, seed: int, life: int) -> None:
    lf = Life(path, seed, life)
    for _ in range(int(os.environ.get("CRASH_CHILD_STEPS", "100000"))):
        lf.step()
    emit("DONE")


def serve() -> None:
    for line in sys.stdin:
        _, path, seed, life = line.split()
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                one_life(path, int(seed), int(life))
            except BaseException:
                import traceback

                traceback.print_exc()
                code = 1
            os._exit(code)
        _, status = os.waitpid(pid, 0)
        emit(f"EXIT {os.waitstatus_to_exitcode(status)}")


def main() -> None:
    if sys.argv[1:] == ["--serve"]:
        serve()
    else:
        one_life(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))


if __name__ == "__main__":
    main()
