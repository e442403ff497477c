"""Coverage-guided fuzzer (atheris/libFuzzer) of the JSON-RPC edge: request bytes through the
RPC app's body handling (`methods.handle_body`: JSON parse, batch, call shape, the params
layer of every method, the handler) against an in-process node whose reads run the real
application (tests/unit/rpc/app_node.py). Issue 35: every answer is a result or a documented
error code, never -32603, and every answer encodes to JSON.

    .venv/bin/python tests/fuzz/fuzz_rpc.py [libFuzzer flags] CORPUS_DIR...
    .venv/bin/python tests/fuzz/fuzz_rpc.py -max_total_time=600 /tmp/corpus_rpc
    .venv/bin/python tests/fuzz/fuzz_rpc.py --make-corpus /tmp/corpus_rpc

Input layout: byte 0 bit 0 picks the form. 0: the rest is a POST body. 1: the rest is a GET
`method?query` (every value a string, as `GET /block?height=5` gives them). Half of the
mutations are structural (on the decoded JSON: integer edges and past 64 bits, huge decimal
strings, wrong types, deep nesting, NUL and lone surrogates), half are libFuzzer's bytes.
"""

from __future__ import annotations

import json
import random
import sys
import threading
from pathlib import Path
from urllib.parse import parse_qsl, urlencode

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "unit")]

import structlog  # noqa: E402
import trio  # noqa: E402

try:
    import atheris
except ImportError:
    atheris = None

if atheris is not None:
    with atheris.instrument_imports(include=["bftnode.rpc"]):
        from bftnode.rpc import errors as E
        from bftnode.rpc import methods as m
else:
    from bftnode.rpc import errors as E
    from bftnode.rpc import methods as m
from corpus import make_corpus  # noqa: E402
from rpc.app_node import AppNode  # noqa: E402
from rpc.test_rpc_params_property import BASE, DOCUMENTED  # noqa: E402

structlog.configure(logger_factory=structlog.ReturnLoggerFactory())  # no log I/O per input
NODE_INPUTS = 20_000  # a fresh node after this many inputs (accepted txs pile up in it)
CALL_DEADLINE_S = 2.0  # broadcast_tx_commit may wait for a commit; the fake commits at once

_node: AppNode | None = None
_TOKEN: trio.lowlevel.TrioToken | None = None  # one trio run in a thread serves every input
_inputs = 0
_slow = 0


def seeds() -> list[bytes]:
    """Every method's base call, as a POST body and as a GET, plus one batch."""
    out = []
    for i, (name, params) in enumerate(sorted(BASE.items())):
        call = {"jsonrpc": "2.0", "id": i, "method": name, "params": params}
        out.append(b"\x00" + json.dumps(call).encode())
        query = urlencode({k: json.dumps(v) if isinstance(v, bool) else v
                           for k, v in params.items()})
        out.append(b"\x01" + f"{name}?{query}".encode())
    batch = [{"jsonrpc": "2.0", "id": i, "method": n, "params": p}
             for i, (n, p) in enumerate(sorted(BASE.items())[:4])]
    out.append(b"\x00" + json.dumps(batch).encode())
    return out


def _answers(out) -> list[dict]:
    if out is None:
        return []
    return out if isinstance(out, list) else [out]


async def _one(node: AppNode, data: bytes):
    ctx = m.CallContext(node, peer="fuzz")
    if data[0] & 1:
        text = data[1:].decode("utf-8", "surrogateescape")
        name, _, query = text.partition("?")
        params = dict(parse_qsl(query, keep_blank_values=True))
        return await m.call_one(ctx, {"jsonrpc": "2.0", "id": -1, "method": name,
                                      "params": params})
    return await m.handle_body(ctx, data[1:])


def run(data: bytes) -> None:
    global _node, _inputs, _slow
    if not data:
        return
    _inputs += 1
    if _node is None or _inputs % NODE_INPUTS == 0:
        _node = AppNode()

    async def main():
        with trio.move_on_after(CALL_DEADLINE_S) as scope:
            return await _one(_node, data)
        return scope

    # inside one trio run for the whole session (see main): a trio.run per input was ~40 %
    # of the time per input
    out = trio.from_thread.run(main, trio_token=_TOKEN) if _TOKEN else trio.run(main)
    if isinstance(out, trio.CancelScope):
        _slow += 1  # a commit wait on the fake node: not a finding, counted
        return
    for answer in _answers(out):
        if not isinstance(answer, dict) or ("result" in answer) == ("error" in answer):
            raise AssertionError(f"not a JSON-RPC response: {answer!r:.300}")
        code = answer.get("error", {}).get("code")
        if code == E.INTERNAL_ERROR:
            raise AssertionError(f"-32603: {answer['error']!r:.500}")
        if code is not None and code not in DOCUMENTED:
            raise AssertionError(f"undocumented code {code}: {answer['error']!r:.300}")
    if b'"code":-32603' in m.encode_answer(out):
        raise AssertionError("the answer does not encode")


# ---------------------------------------------------------------- structural mutation

EDGE_INTS = [0, -1, 1, 2**31, 2**53 + 1, 2**63 - 1, 2**63, 2**64, -(2**63) - 1, 10**30]


def _replacement(rng: random.Random, old):
    pick = rng.randrange(12)
    if pick == 0:
        return rng.choice(EDGE_INTS)
    if pick == 1:
        return "9" * rng.choice([19, 20, 4_301, 5_000])
    if pick == 2:
        return rng.choice([None, True, False, 1.5, float("inf"), "", [], {}])
    if pick == 3:
        v: object = old
        for _ in range(rng.choice([50, 1_000, 5_000])):
            v = [v]
        return v
    if pick == 4:
        return rng.choice(["a\x00b", "\ud800", "\udfff x", "٣", "0x" + "ab" * 32, "-5"])
    if pick == 5:
        return [old] * rng.choice([0, 2, 10_000])
    if pick == 6:
        return {str(i): old for i in range(rng.choice([0, 3, 2_000]))}
    if pick == 7 and isinstance(old, str):
        return old * rng.choice([2, 1_000])
    if pick == 8 and isinstance(old, int) and not isinstance(old, bool):
        return str(old)
    if pick == 9:
        return "x" * rng.choice([1, 64, 70_000])
    return old


def mutate_tree(data: bytes, rng: random.Random) -> bytes | None:
    """Replace one value of the JSON (POST) or one query value (GET) with an edge case."""
    if not data:
        return None
    try:
        if data[0] & 1:
            name, _, query = data[1:].decode().partition("?")
            params = parse_qsl(query, keep_blank_values=True)
            if not params:
                return None
            i = rng.randrange(len(params))
            new = _replacement(rng, params[i][1])
            params[i] = (params[i][0], new if isinstance(new, str) else json.dumps(new))
            return data[:1] + f"{name}?{urlencode(params)}".encode("utf-8", "surrogatepass")
        tree = json.loads(data[1:])
    except (ValueError, RecursionError):
        return None
    nodes: list = []
    stack = [tree]
    while stack and len(nodes) < 200:
        cur = stack.pop()
        if isinstance(cur, dict):
            nodes += [(cur, k) for k in cur]
            stack += list(cur.values())
        elif isinstance(cur, list):
            nodes += [(cur, i) for i in range(len(cur))]
            stack += cur
    if not nodes:
        return None
    parent, key = rng.choice(nodes)
    parent[key] = _replacement(rng, parent[key])
    try:
        body = json.dumps(tree, allow_nan=True)
    except (ValueError, RecursionError):
        return None
    return data[:1] + body.encode("utf-8", "surrogatepass")


def main(argv: list[str]) -> None:
    if make_corpus(argv, seeds):
        return
    if atheris is None:
        sys.exit("atheris is not installed (pip install -e '.[fuzz]')")

    def custom_mutator(data: bytes, max_size: int, seed: int) -> bytes:
        rng = random.Random(seed)
        if rng.random() < 0.5:
            new = mutate_tree(data, rng)
            if new is not None and len(new) <= max_size:
                return new
        return atheris.Mutate(data, max_size)

    def report() -> None:
        print(f"fuzz_rpc: {_inputs} inputs, {_slow} stopped at the {CALL_DEADLINE_S:g} s "
              "deadline", file=sys.stderr)

    import atexit
    atexit.register(report)
    atheris.Setup(argv, run, custom_mutator=custom_mutator)

    global _TOKEN
    ready = threading.Event()

    async def serve() -> None:  # libFuzzer wants the main thread (signals); trio gets this one
        global _TOKEN
        _TOKEN = trio.lowlevel.current_trio_token()
        ready.set()
        await trio.sleep_forever()

    threading.Thread(target=trio.run, args=(serve,), daemon=True).start()
    ready.wait()
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
