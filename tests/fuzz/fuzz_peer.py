"""Coverage-guided fuzzer (atheris/libFuzzer) of the peer input path: codec.decode, then
Replica.step on a replica in one of the modes of tests/unit/consensus/wire_strategies.py
(issue 25: no exception from peer bytes may leave step or the node's pump).

    .venv/bin/python tests/fuzz/fuzz_peer.py [options] [libFuzzer flags] CORPUS_DIR...
    .venv/bin/python tests/fuzz/fuzz_peer.py -runs=100000 /tmp/corpus tests/fuzz/corpus_peer
    .venv/bin/python tests/fuzz/fuzz_peer.py --decode-only -runs=10000000 /tmp/corpus
    .venv/bin/python tests/fuzz/fuzz_peer.py --make-corpus tests/fuzz/corpus_peer

Options (before the libFuzzer flags):
  --decode-only   only decode (and re-encode: decode(encode(m)) == m), no replica
  --coalition     re-sign nested messages as every replica they name (beyond f; an
                  InvariantViolation then counts as the designed stop, not a crash)
  --ed25519       scenarios signed with Ed25519, as nodes are (slower)
  --crashes DIR   where new crash classes are written (default /tmp/fuzz_peer_crashes);
                  the run goes on after a crash, one file per (exception, place)
  --stop          stop at the first crash (libFuzzer's usual behaviour)
  --plain         libFuzzer's byte mutations only (default: half of the mutations are
                  structural, on the decoded msgpack tree: see `mutate`)
  --make-corpus DIR   write the seed corpus: real traffic and one of each message type

Input layout (see wire_strategies.replay, which regression tests use to replay an input):
byte 0 picks the scenario, byte 1 the sender (low bits) and flags (0x10: keep the signatures
as they are; 0x20: let time pass afterwards), the rest is the frame off the wire. Unless 0x10 is set, the decoded message is re-signed by its sender (valid signatures
over whatever content the fuzzer made), so the signature check is no wall. Give a corpus
written by --make-corpus; in --decode-only mode the first two bytes are skipped too, so the
same corpus serves.
"""

from __future__ import annotations

import hashlib
import os
import random
import re
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import atheris  # noqa: E402
import msgspec  # noqa: E402

with atheris.instrument_imports(include=["consensus"]):
    import consensus  # noqa: F401
    from consensus import DecodeError, InvariantViolation, decode, encode

from tests.unit.consensus.wire_strategies import (  # noqa: E402
    MESSAGE_TYPES,
    SCENARIO_BUILDERS,
    THEN_TICK,
    bound_violations,
    replay,
    to_tree,
    wire,
    worlds,
)

SCENARIOS = sorted(SCENARIO_BUILDERS)


class Options:
    decode_only = False
    coalition = False
    ed25519 = False
    stop = False
    plain = False  # libFuzzer's byte mutations only (no structural mutator)
    runs = -1  # libFuzzer's -runs, to report the totals on the last input
    crashes = Path("/tmp/fuzz_peer_crashes")


OPT = Options()
STATS = {"inputs": 0, "decoded": 0, "stepped": 0, "crash_classes": 0, "invariant_stops": 0}
REPORT_EVERY_S = 60
_seen: set[str] = set()
_t0 = time.monotonic()
_next_report = [_t0 + REPORT_EVERY_S]


def _place(exc: BaseException) -> str:
    """Where an exception was raised: the innermost frame in our code."""
    frames = traceback.extract_tb(exc.__traceback__)
    ours = [f for f in frames if "/consensus/" in f.filename or "/tests/" in f.filename]
    f = (ours or frames)[-1]
    return f"{type(exc).__name__}@{Path(f.filename).name}:{f.lineno}"


def _record(data: bytes, exc: BaseException) -> None:
    key = _place(exc)
    if key in _seen:
        return
    _seen.add(key)
    STATS["crash_classes"] += 1
    OPT.crashes.mkdir(parents=True, exist_ok=True)
    name = f"{key.replace('@', '-').replace(':', '-')}-{hashlib.sha1(data).hexdigest()[:12]}"
    (OPT.crashes / name).write_bytes(data)
    print(f"\n=== NEW CRASH CLASS {key} -> {OPT.crashes / name}\ninput: {data.hex()}",
          file=sys.stderr)
    traceback.print_exception(exc, file=sys.stderr)
    if OPT.stop:
        raise exc


_features: dict[str, object] = {}
MAX_FEATURES = 2_000  # atheris dies (SIGSEGV) past ~4,000 functions instrumented at run time


def feature(key: str) -> None:
    """Coverage for an outcome: decoding runs in msgspec's C code, which libFuzzer cannot see,
    so each distinct outcome (error kind and depth, decoded shape) calls a function of its
    own, instrumented: new outcome = new coverage, and the input joins the corpus."""
    f = _features.get(key)
    if f is None:
        if len(_features) >= MAX_FEATURES:
            return
        ns: dict = {}
        exec(compile("def f():\n    return 1\n", f"<outcome {key[:60]}>", "exec"), ns)
        f = _features[key] = atheris.instrument_func(ns["f"])
    f()


def _shape(x, depth: int = 0) -> str:
    """A decoded message's shape: types, list lengths (bucketed), empty or odd-sized bytes."""
    if depth > 6:
        return "."
    if isinstance(x, tuple):
        n = len(x)
        size = str(n) if n < 4 else ("many" if n < 64 else "huge")
        return f"({size}:{_shape(x[0], depth + 1) if x else ''})"
    if isinstance(x, bytes):
        return "b" if len(x) in (32, 64) else f"b{min(len(x), 9)}"
    if isinstance(x, bool):
        return "t"
    if isinstance(x, int):
        return "0" if x == 0 else ("i" if x < 2**32 else "I")
    fields = getattr(x, "__struct_fields__", ())
    return type(x).__name__[:3] + "[" + ",".join(
        _shape(getattr(x, f), depth + 1) for f in fields) + "]"


def run_decode(frame: bytes) -> None:
    try:
        msg = decode(frame)
    except DecodeError as exc:
        feature("err:" + re.sub(r"\d+", "N", str(exc))[:100])
        return
    STATS["decoded"] += 1
    feature("ok:" + _shape(msg)[:160])
    assert isinstance(msg, MESSAGE_TYPES), type(msg)
    again = decode(encode(msg))
    assert again == msg, (msg, again)


def run_step(data: bytes) -> None:
    msg, out, r = replay(data, fast=not OPT.ed25519, coalition=OPT.coalition)
    if msg is None:
        return
    STATS["decoded"] += 1
    if out is not None:
        STATS["stepped"] += 1
    bad = bound_violations(r)
    assert not bad, bad


EDGE_INTS = (0, 1, 2, 3, 4, 8, 16, 32, 64, 2**31, 2**32, 2**63 - 1, 2**63, 2**64 - 1, -1,
             -(2**63))


def _tree_paths(tree, prefix=()):
    out = [prefix]
    if isinstance(tree, list):
        for i, x in enumerate(tree):
            out.extend(_tree_paths(x, prefix + (i,)))
    return out


def _new_value(rng: random.Random, old):
    """Something to put where `old` was: a neighbour of the same type mostly, else a part of
    real traffic, else anything odd."""
    pool = worlds(fast=not OPT.ed25519)["committed"]
    roll = rng.random()
    if roll < 0.15:  # splice a part of a real message
        donor = to_tree(rng.choice(pool.pool))
        return _at_path(donor, rng.choice(_tree_paths(donor)))
    if isinstance(old, bool) or roll < 0.2:
        return rng.choice([True, False, None, 0, 1, b"", [], 1.5, "x"])
    if isinstance(old, int):
        return rng.choice([rng.choice(EDGE_INTS), old + 1, old - 1, old * 2, old + 4,
                           rng.randrange(100), rng.randrange(2**64)])
    if isinstance(old, bytes):
        return rng.choice([bytes(rng.randrange(256) for _ in range(32)),
                           rng.choice(pool.digests), old[:-1], old + b"\0", b"", bytes(64)])
    if isinstance(old, list):
        return rng.choice([[], old + old, old[::-1], old[:1] * rng.choice([2, 65, 1025])])
    return rng.choice([0, b"", []])


def _at_path(tree, path):
    for i in path:
        tree = tree[i]
    return tree


def mutate(data: bytes, max_size: int, seed: int) -> bytes:
    """Half the time libFuzzer's byte mutations, else one structural mutation of the msgpack
    tree (a field replaced by a neighbour, an edge value or a part of real traffic; a list
    element dropped, repeated or swapped; the header bytes changed)."""
    rng = random.Random(seed)
    if rng.random() < 0.5 or len(data) < 3 or data[2] != 1:
        return atheris.Mutate(data, max_size)
    try:
        return _mutate_tree(data, max_size, rng)
    except Exception:  # noqa: BLE001 - an exception here would end the whole run
        return atheris.Mutate(data, max_size)


def _depth(tree) -> int:
    """Nesting depth, without recursion."""
    deepest, stack = 0, [(tree, 1)]
    while stack:
        node, d = stack.pop()
        deepest = max(deepest, d)
        if isinstance(node, list | dict):
            stack.extend((x, d + 1) for x in (node.values() if isinstance(node, dict) else node))
    return deepest


def _mutate_tree(data: bytes, max_size: int, rng: random.Random) -> bytes:
    try:
        tree = msgspec.msgpack.decode(data[3:])
    except (msgspec.DecodeError, RecursionError, ValueError, TypeError):
        return atheris.Mutate(data, max_size)
    if _depth(tree) > 32:  # the tree walks below recurse
        return atheris.Mutate(data, max_size)
    head = bytearray(data[:2])
    for _ in range(rng.choice([1, 1, 1, 2, 3])):
        paths = _tree_paths(tree)
        path = rng.choice(paths)
        op = rng.random()
        if op < 0.1:
            head[rng.randrange(2)] = rng.randrange(256)
        elif op < 0.75 and path:
            parent = _at_path(tree, path[:-1])
            parent[path[-1]] = _new_value(rng, parent[path[-1]])
        else:
            node = _at_path(tree, path)
            if not isinstance(node, list):
                node = _at_path(tree, path[:-1]) if path else tree
            if not isinstance(node, list) or not node:
                continue
            i, j = rng.randrange(len(node)), rng.randrange(len(node))
            choice = rng.random()
            if choice < 0.3:
                del node[i]
            elif choice < 0.6:
                node.insert(i, node[j])
            else:
                node[i], node[j] = node[j], node[i]
    try:
        out = bytes(head) + wire(tree)
    except (OverflowError, TypeError, ValueError):
        return atheris.Mutate(data, max_size)
    return out[:max_size]


def one_input(data: bytes) -> None:
    STATS["inputs"] += 1
    if STATS["inputs"] == OPT.runs or time.monotonic() >= _next_report[0]:
        _next_report[0] = time.monotonic() + REPORT_EVERY_S
        _report()  # libFuzzer leaves through exit(): no atexit hook runs
    try:
        if OPT.decode_only:
            run_decode(data[2:])
        elif len(data) >= 2:
            run_step(data)
    except InvariantViolation as exc:
        if not OPT.coalition:
            _record(data, exc)
        STATS["invariant_stops"] += 1
    except Exception as exc:
        _record(data, exc)


def _report() -> None:
    dt = time.monotonic() - _t0
    print(f"#stats inputs={STATS['inputs']} decoded={STATS['decoded']} "
          f"stepped={STATS['stepped']} crash_classes={STATS['crash_classes']} "
          f"invariant_stops={STATS['invariant_stops']} seconds={dt:.0f} "
          f"inputs_per_s={STATS['inputs'] / max(dt, 1e-9):.0f}", file=sys.stderr, flush=True)


def make_corpus(out: Path) -> None:
    """Seeds: real traffic, up to three messages of each type, and the types real traffic
    lacks, built by hand; two header bytes each (see the module docstring)."""
    from consensus import Conflict, Request

    out.mkdir(parents=True, exist_ok=True)
    ws = worlds()
    per_type: dict[str, list] = {}
    for msg in next(iter(ws.values())).pool:
        per_type.setdefault(type(msg).__name__, []).append(msg)
    w = ws["committed"]
    pp = next(m for m in w.pool if type(m).__name__ == "PrePrepare")
    per_type["Conflict"] = [w.cluster.auth(2).sign(Conflict(pp, 2))]
    per_type["Request"] = [w.cluster.request(0, 7, b"op")]
    n = 0
    for kind, msgs in sorted(per_type.items()):
        for j, msg in enumerate(msgs[:: max(1, len(msgs) // 3)][:3]):
            k = n % len(SCENARIOS)  # the fuzzer varies the scenario byte itself
            flags = THEN_TICK if n % 3 == 0 else 0
            data = bytes([k, flags | (j % 3)]) + encode(msg)
            (out / f"{kind}-{j}-{SCENARIOS[k]}").write_bytes(data)
            n += 1
    assert {cls.__name__ for cls in MESSAGE_TYPES} <= set(per_type) | {Request.__name__}
    print(f"wrote {n} seeds to {out}")


def main() -> None:
    argv = [sys.argv[0]]
    args = iter(sys.argv[1:])
    for a in args:
        if a == "--decode-only":
            OPT.decode_only = True
        elif a == "--coalition":
            OPT.coalition = True
        elif a == "--ed25519":
            OPT.ed25519 = True
        elif a == "--plain":
            OPT.plain = True
        elif a == "--stop":
            OPT.stop = True
        elif a == "--crashes":
            OPT.crashes = Path(next(args))
        elif a == "--make-corpus":
            make_corpus(Path(next(args)))
            return
        else:
            if a.startswith("-runs="):
                OPT.runs = int(a.split("=", 1)[1])
            argv.append(a)
    if not OPT.decode_only:
        worlds(fast=not OPT.ed25519)  # built before fuzzing starts (not per input)
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 1000))
    atheris.Setup(argv, one_input, custom_mutator=None if OPT.plain else mutate)
    atheris.Fuzz()


if __name__ == "__main__":
    if os.environ.get("FUZZ_PEER_PROFILE"):
        import cProfile

        cProfile.run("main()", sort="cumtime")
    else:
        main()
