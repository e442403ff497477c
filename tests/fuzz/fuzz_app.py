"""Coverage-guided fuzzer (atheris/libFuzzer) of tx execution: op bytes through check_tx and
KVApplication.execute_block on two independently built populated states (issue 35: no op
bytes may make execution raise, differ between replicas, or reach the INTERNAL guard).

    .venv/bin/python tests/fuzz/fuzz_app.py [libFuzzer flags] CORPUS_DIR...
    .venv/bin/python tests/fuzz/fuzz_app.py -max_total_time=600 /tmp/corpus_app
    .venv/bin/python tests/fuzz/fuzz_app.py --make-corpus /tmp/corpus_app
    .venv/bin/python tests/fuzz/fuzz_app.py --plain-loop 60     # no atheris needed

Options (before the libFuzzer flags):
  --make-corpus DIR   write seed inputs: one valid op of every type
  --plain-loop SECS   no libFuzzer: mutate the seeds with the same structural mutator and
                      random bytes for SECS seconds, print how many inputs ran
  --plain             libFuzzer's byte mutations only (default: half are structural, on
                      the decoded msgpack tree: integer edges, wrong types, deep nesting)

Input layout: byte 0 picks the signing client (low 2 bits: A, B, C or X without a lease) and
how far block time moves (bits 2-4), the rest is one or more ops separated by b"\\xc1\\xc1"
(0xc1 never occurs in msgpack). Needs only bftnode.app and consensus.Request (install the
`fuzz` extra for atheris: pip install -e '.[fuzz]').
"""

from __future__ import annotations

import os
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import msgspec  # noqa: E402

try:
    import atheris
except ImportError:  # the plain loop still works
    atheris = None

if atheris is not None and "--plain-loop" not in sys.argv:
    with atheris.instrument_imports(include=["bftnode.app"]):
        from bftnode.app import KVApplication, MemoryState, budgets, ops
        from bftnode.app.errors import BAD_OP, INTERNAL
else:
    from bftnode.app import KVApplication, MemoryState, budgets, ops
    from bftnode.app.errors import BAD_OP, INTERNAL
from corpus import make_corpus  # noqa: E402

from consensus import Request  # noqa: E402

CLIENTS = (b"A", b"B", b"C", b"X")
DELTAS = (0, 1, 100, 999, 60_001, 10**6, 10**9, 2**40)
SEP = b"\xc1\xc1"
MAX_TXS = 4


# ---------------------------------------------------------------- the populated states


class _Replica:
    """One replica: its own application and its own state, built by executing blocks."""

    def __init__(self) -> None:
        self.app = KVApplication(validators=[b"A"])
        self.state = MemoryState()
        self.height, self.time_ms, self.seq = 0, 1_000, 0

    def block(self, *txs: tuple[bytes, bytes]) -> None:
        self.height += 1
        self.time_ms += 100
        reqs = []
        for client, op in txs:
            self.seq += 1
            reqs.append(Request(client, self.seq, op))
        eff = self.app.execute_block(self.state, self.height, self.time_ms, reqs)
        self.state.apply(eff.writes)


def populated() -> _Replica:
    """Leases 1-3 of A, B, C; a held and a queued lock and an election; 300 keys with 8
    versions, tombstones, and a finished compaction (a compact op in an input starts a pass,
    walked in that same block)."""
    r = _Replica()
    r.block(*[(c, ops.lease_grant(ttl_ms=60_000)) for c in CLIENTS[:3]])
    r.block((b"A", ops.lock_acquire(b"lock", 1)), (b"B", ops.lock_acquire(b"lock", 2)),
            (b"C", ops.campaign(b"lock", 3, b"c")), (b"A", ops.campaign(b"lock", 1)))
    names = [b"a", b"b", b"k/1", b"\x00", b"\xff"] + [b"key/%06d" % i for i in range(300)]
    for version in range(8):
        r.block(*[(b"A", ops.put(k, b"v%d" % version, lease=1 if i % 7 == 0 else 0))
                  for i, k in enumerate(names)])
    r.block((b"A", ops.delete(b"key/0001", prefix=True)), (b"A", ops.compact(900)))
    while r.state.get(b"m/compact_pass") is not None:  # every input would walk it again
        r.block()
    return r


REPLICAS: tuple[_Replica, _Replica] | None = None


def seeds() -> list[bytes]:
    """One valid op of every type (the corpus; also the plain loop's starting points)."""
    t = ops.txn([ops.compare(b"a", "version", ">", 1), ops.compare(b"b", "value", "=", b"v")],
                [ops.put_op(b"a", b"x"), ops.range_op(b"key/", prefix=True, limit=3)],
                [ops.delete_op(b"k/", prefix=True)])
    ev = msgspec.msgpack.encode({"op": "evidence", "accused": 1, "kind": "equivocation",
                                 "proof": b"p"})
    op_list = [
        ops.put(b"a", b"1", lease=1, prev_kv=True), ops.delete(b"key/00", prefix=True),
        ops.range_(b"key/", prefix=True, limit=5, revision=700), ops.range_(b"a", range_end=b"c"),
        t, ops.compact(1_500), ops.lease_grant(ttl_ms=500), ops.lease_keepalive(1),
        ops.lease_revoke(2), ops.lock_acquire(b"lock", 1), ops.lock_try_acquire(b"m", 1),
        ops.lock_release(b"lock", 4), ops.lock_cancel(b"lock", 2),
        ops.campaign(b"e", 1, b"v"), ops.proclaim(b"lock", 6, b"w"), ops.resign(b"lock", 6), ev,
        ops.auth_grant("r", "read", b"k/", prefix=True), ops.auth_bind(b"B" * 32, "r"),
    ]
    return [bytes([i % 32]) + op for i, op in enumerate(op_list)]


# ---------------------------------------------------------------- one input


def run(data: bytes) -> None:
    global REPLICAS
    if REPLICAS is None:
        REPLICAS = (populated(), populated())
    if not data:
        return
    client = CLIENTS[data[0] & 3]
    dt = DELTAS[(data[0] >> 2) & 7]
    op_list = data[1:].split(SEP)[:MAX_TXS]
    reqs = [Request(client, i, op) for i, op in enumerate(op_list)]
    one, two = (r.app.execute_block(r.state, r.height + 1, r.time_ms + dt, reqs)
                for r in REPLICAS)
    if one != two:
        raise AssertionError("the two replicas disagree")
    for req, (code, raw) in zip(reqs, one.results, strict=True):
        if code == INTERNAL:
            raise AssertionError(f"op content reached the guard: {ops.decode_result(raw)}")
        if len(raw) > budgets.TX_RESULT_BYTES:
            raise AssertionError(f"result of {len(raw)} bytes")
        reason = REPLICAS[0].app.check_tx(req.op)
        if (reason is None) != (code != BAD_OP):
            raise AssertionError(f"check_tx says {reason!r}, execution code {code}")


# ---------------------------------------------------------------- structural mutation

_EDGES = [0, 1, -1, 2**63 - 1, 2**63, 2**64 - 1, -(2**63), 10**6, 4096, 4097]
_any = msgspec.msgpack.Decoder()
_enc = msgspec.msgpack.Encoder()


def _nodes(tree, out: list) -> list:
    """(container, key) for every value in the tree."""
    if isinstance(tree, dict):
        for k, v in tree.items():
            out.append((tree, k))
            _nodes(v, out)
    elif isinstance(tree, list):
        for i, v in enumerate(tree):
            out.append((tree, i))
            _nodes(v, out)
    return out


def _replacement(rng: random.Random, old):
    pick = rng.randrange(9)
    if pick == 0:
        return rng.choice(_EDGES)
    if pick == 1:
        return rng.choice([None, True, "", b"", [], {}, 1.5, "x" * 70])
    if pick == 2:
        nested = None
        for _ in range(rng.choice([8, 9, 50])):
            nested = [nested] if rng.random() < 0.5 else {"x": nested}
        return nested
    if pick == 3:
        return [old] * rng.choice([2, 129, 1000])
    if pick == 4 and isinstance(old, bytes | str):
        return old * rng.choice([0, 2, 1000])
    if pick == 5 and isinstance(old, int):
        return old + rng.choice([-1, 1, 2**32])
    if pick == 6:
        return rng.choice(["put", "txn", "range", "compact", "lock_release", "evidence"])
    return b"\x00\xff" if isinstance(old, bytes) else rng.choice(_EDGES)


def mutate_tree(data: bytes, rng: random.Random) -> bytes | None:
    """Decode the ops, replace one value or add or drop a field, re-encode (deep values are
    spliced as raw msgpack, beyond what msgspec would encode)."""
    head, *parts = data[:1], *data[1:].split(SEP)
    i = rng.randrange(len(parts)) if parts else 0
    try:
        tree = _any.decode(parts[i])
        nodes = _nodes(tree, [])
    except (msgspec.DecodeError, IndexError, ValueError, RecursionError):
        return None
    if not nodes:
        return None
    parent, key = rng.choice(nodes)
    roll = rng.random()
    if roll < 0.15 and isinstance(parent, dict):
        parent[rng.choice(["zzz", "op", "key", "lease"])] = _replacement(rng, None)
    elif roll < 0.25 and isinstance(parent, dict):
        parent.pop(key, None)
    else:
        parent[key] = _replacement(rng, parent[key])
    try:
        parts[i] = _enc.encode(tree)
    except (OverflowError, TypeError):
        return None
    if rng.random() < 0.05:  # nesting beyond any bound: spliced raw
        parts[i] = b"\x82\xa3zzz" + b"\x91" * rng.choice([9, 10_000]) + b"\xc0" + parts[i][1:]
    return head + SEP.join(parts)


def plain_loop(seconds: float) -> int:
    rng = random.Random(int.from_bytes(os.urandom(8), "big"))
    pool = seeds()
    n, end = 0, time.monotonic() + seconds
    while time.monotonic() < end:
        base = rng.choice(pool)
        roll = rng.random()
        if roll < 0.1:
            data = bytes([rng.randrange(256)]) + os.urandom(rng.randrange(0, 64))
        elif roll < 0.3:
            b = bytearray(base)
            for _ in range(rng.randrange(1, 4)):
                b[rng.randrange(len(b))] = rng.randrange(256)
            data = bytes(b)
        else:
            data = mutate_tree(base, rng) or base
            if rng.random() < 0.3:
                data += SEP + rng.choice(pool)[1:]
        run(data)
        n += 1
        if len(pool) < 5_000 and rng.random() < 0.05:
            pool.append(data)
    return n


def main(argv: list[str]) -> None:
    if make_corpus(argv, seeds):
        return
    if "--plain-loop" in argv:
        seconds = float(argv[argv.index("--plain-loop") + 1])
        t = time.monotonic()
        n = plain_loop(seconds)
        print(f"fuzz_app plain loop: {n} inputs in {time.monotonic() - t:.1f} s, no failure")
        return
    if atheris is None:
        sys.exit("atheris is not installed (pip install -e '.[fuzz]'); use --plain-loop SECS")
    plain = "--plain" in argv
    argv = [a for a in argv if a != "--plain"]

    def custom_mutator(data: bytes, max_size: int, seed: int) -> bytes:
        rng = random.Random(seed)
        if not plain and rng.random() < 0.5:
            out = mutate_tree(data, rng)
            if out is not None and len(out) <= max_size:
                return out
        return atheris.Mutate(data, max_size)

    atheris.Setup(argv, run, custom_mutator=custom_mutator)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
