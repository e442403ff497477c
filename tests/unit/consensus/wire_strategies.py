"""Raw peer bytes and the replicas they are fed to: the search for counter-examples on the peer
input path (issue 25).

Shared by tests/unit/consensus/test_peer_input_total.py (Hypothesis) and tests/fuzz/fuzz_peer.py
(atheris). It owns:
- `World` and `SCENARIOS`: small clusters (conftest's `Cluster`, fast signatures) run into the
  replica modes a peer's bytes may meet - fresh, committed with pending requests, primary with
  unproposed requests, in view change (after a request timeout, after receiving VIEW-CHANGEs),
  after a view change, catching up - plus the pool of real traffic those runs sent;
- message trees: a wire message as a msgpack tree `[tag, field1, ...]` (lists, ints, bytes,
  `msgspec.Raw` for bytes no Python value encodes to: non-canonical ints, unencodable ints,
  deep nesting, huge lists), `resign` (every nested signed message re-signed bottom-up with the
  real key of the replica or client it names, so bad content carries VALID signatures and
  reaches the handlers), and `wire` (version byte + encoding);
- Hypothesis strategies: a builder per message type (`MESSAGE_BUILDERS`), point mutations
  (integer extremes and signs, wrong types, digests of wrong length, huge and empty lists,
  deep nesting, dropped/duplicated/trailing elements), mutated real traffic, byte-level damage;
- `feed` (the node's pump: decode, drop bare requests, step, then what the shell does with the
  output that could still raise), `snapshot` (the state a rejected message must not change)
  and `bound_violations` (the documented memory bounds of the replica's tables).
"""

from __future__ import annotations

import pickle
import struct
import typing
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import msgspec
from hypothesis import strategies as st

from consensus import (
    BlocksPruned,
    BlockSync,
    Checkpoint,
    ClientRequest,
    ClientsLoaded,
    Commit,
    CommittedBlock,
    Conflict,
    DecodeError,
    FetchBlocks,
    FetchedBlocks,
    FetchSnapshot,
    Forward,
    Message,
    NewView,
    Prepare,
    PreparedProof,
    PrePrepare,
    Receive,
    Replica,
    Request,
    SnapshotChunk,
    StateVote,
    Status,
    Tick,
    ViewChange,
    batch_digest,
    build_new_view,
    decode,
    encode,
    request_digest,
)
from consensus.codec import GENESIS_CHAIN_DIGEST, WIRE_VERSION, encode_raw, signing_bytes
from tests.unit.consensus.conftest import DOMAIN, Cluster

MESSAGE_TYPES: tuple[type, ...] = typing.get_args(Message)  # what decode may return
WIRE_TYPES = (Request, PrePrepare, Prepare, Commit, Checkpoint, PreparedProof, ViewChange,
              NewView, Forward, Status, CommittedBlock, FetchBlocks, BlockSync, Conflict,
              StateVote)
BY_TAG: dict[int, type] = {cls.__struct_config__.tag: cls for cls in WIRE_TYPES}
_DECODERS = {cls: msgspec.msgpack.Decoder(cls) for cls in WIRE_TYPES}
# small clusters reach checkpoints, window edges and garbage collection in a few blocks
CONFIG = {"checkpoint_interval": 4, "watermark_window": 8, "batch_max": 2,
          "timeout_request_ms": 200, "timeout_view_change_ms": 200, "status_interval_ms": 50,
          "state_votes": True}
N_CLIENTS = 3


def tag(cls: type) -> int:
    return cls.__struct_config__.tag


# ---------------------------------------------------------------- raw msgpack pieces


def raw_float(value: float) -> msgspec.Raw:
    return msgspec.Raw(b"\xcb" + struct.pack(">d", value))


def raw_uint64(value: int) -> msgspec.Raw:
    """`value` (0 <= value < 2**64) in the 9-byte form, whatever its size (non-canonical)."""
    return msgspec.Raw(b"\xcf" + value.to_bytes(8, "big"))


def raw_int64(value: int) -> msgspec.Raw:
    return msgspec.Raw(b"\xd3" + value.to_bytes(8, "big", signed=True))


def raw_deep(depth: int, kind: str = "array") -> msgspec.Raw:
    """A value nested `depth` levels: one-element arrays (or one-entry maps) around nil."""
    if kind == "map":
        return msgspec.Raw(b"\x81\xc0" * depth + b"\xc0")
    if kind == "array16":
        return msgspec.Raw(b"\xdc\x00\x01" * depth + b"\xc0")
    return msgspec.Raw(b"\x91" * depth + b"\xc0")


def raw_list(count: int, element: bytes) -> msgspec.Raw:
    """An array of `count` copies of the encoded `element` (array32 header)."""
    return msgspec.Raw(b"\xdd" + count.to_bytes(4, "big") + element * count)


def raw_list_header_only(count: int) -> msgspec.Raw:
    """An array that claims `count` elements and has none (the frame ends early)."""
    return msgspec.Raw(b"\xdd" + count.to_bytes(4, "big"))


def wire(tree: Any) -> bytes:
    """Wire bytes of a message tree: the version byte and its msgpack encoding (an integer
    msgpack cannot carry, e.g. an extreme seq plus one, goes as the float a peer could send)."""
    return bytes([WIRE_VERSION]) + encode_raw(_encodable(tree))


def _encodable(x: Any) -> Any:
    if isinstance(x, list):
        return [_encodable(y) for y in x]
    if type(x) is int and not -(2**63) <= x < 2**64:
        return raw_float(float(x))
    return x


def to_tree(msg: Any) -> Any:
    """A message as a mutable tree of lists (tags first, bytes kept)."""
    return _lists(msgspec.to_builtins(msg, builtin_types=(bytes,)))


def _lists(x: Any) -> Any:
    if isinstance(x, list | tuple):
        return [_lists(y) for y in x]
    return x


# ---------------------------------------------------------------- the world and its scenarios


@dataclass
class World:
    """One replica in a given mode, the cluster it lives in, and real traffic to mutate."""

    name: str
    cluster: Cluster
    target: int
    pool: list[Any] = field(default_factory=list)  # real messages (any scenario's)
    blocks: list[CommittedBlock] = field(default_factory=list)  # real certified blocks
    digests: list[bytes] = field(default_factory=list)  # real digests and block hashes
    _frozen: bytes = b""

    @property
    def config(self):
        return self.cluster.config

    @property
    def domain(self) -> bytes:
        return DOMAIN

    @property
    def n(self) -> int:
        return self.config.n

    @property
    def replica(self) -> Replica:
        return self.cluster.replicas[self.target]

    @property
    def now(self) -> int:
        return self.cluster.now

    def senders(self) -> list[int]:
        return [j for j in range(self.n) if j != self.target]

    def freeze(self) -> None:
        self._frozen = pickle.dumps(self.replica, protocol=pickle.HIGHEST_PROTOCOL)

    def fresh_replica(self) -> Replica:
        """A private copy of the target replica in this scenario's state."""
        if not self._frozen:
            self.freeze()
        return pickle.loads(self._frozen)

    def signer_for(self, msg: Any, replicas: Collection[int] | None = None) -> Any | None:
        """The real key of whoever `msg` says signed it: a test client's, or a replica's if it
        is one of `replicas` (None: any replica, a coalition beyond f)."""
        c = self.cluster
        if isinstance(msg, Request):
            for k in range(N_CLIENTS):
                if c.client(k).public_key == msg.client_id:
                    return c.client(k)
            return None
        rid = msg.replica
        if not 0 <= rid < self.n or (replicas is not None and rid not in replicas):
            return None
        return c.signers[rid]

    def executed_blocks(self, frm: int, to: int) -> tuple[CommittedBlock, ...]:
        log = self.cluster.executed[self.target]
        return tuple(CommittedBlock(log[s].pre_prepare, log[s].commits)
                     for s in range(frm, to + 1) if s in log)


def _commit(c: Cluster, client: int, count: int, first: int = 0) -> None:
    reqs = [c.request(client, first + k) for k in range(count)]
    for k, r in enumerate(reqs):
        c.submit(r, to=k % c.config.n if k % c.config.n not in c.down else c.up()[0])
    assert c.run_until(lambda: c.all_executed(reqs), timeout_ms=20_000), "scenario stalled"


def _pend(c: Cluster, target: int, client: int, seqs: range) -> None:
    """Requests only `target` holds (their FORWARDs are never delivered)."""
    for s in seqs:
        c.step(target, ClientRequest(c.request(client, s)))
    c.queue.clear()


def _scenario_fresh(fast: bool) -> tuple[Cluster, int]:
    c = Cluster(fast=fast, **CONFIG)
    c.tick(1)
    return c, 1


def _scenario_committed(fast: bool) -> tuple[Cluster, int]:
    """Backup 1 after 11 committed blocks (two stable checkpoints), holding 3 pending
    requests the others never saw."""
    c = Cluster(fast=fast, **CONFIG)
    _commit(c, 0, 11)
    _pend(c, 1, 1, range(100, 103))
    return c, 1


def _scenario_primary(fast: bool) -> tuple[Cluster, int]:
    """Primary 0 after 5 blocks, with unproposed requests (no time has passed since)."""
    c = Cluster(fast=fast, **CONFIG)
    _commit(c, 0, 5)
    _pend(c, 0, 1, range(200, 204))
    return c, 0


def _scenario_vc_timeout(fast: bool) -> tuple[Cluster, int]:
    """Backup 3 in a view change it started on its request timer: the primary and replica 2
    are down, so no quorum forms and it stays there."""
    c = Cluster(fast=fast, **CONFIG)
    _commit(c, 0, 6)
    c.crash(0)
    c.crash(2)
    c.submit(c.request(1, 300), to=3)
    assert c.run_until(lambda: c.replicas[3].in_view_change, timeout_ms=5_000)
    c.queue.clear()
    return c, 3


def _scenario_vc_votes(fast: bool) -> tuple[Cluster, int]:
    """Backup 1 in view 0 holding one VIEW-CHANGE (for view 1, from replica 2): not yet f+1."""
    c = Cluster(fast=fast, **CONFIG)
    _commit(c, 0, 9)
    _pend(c, 2, 2, range(400, 401))
    c.now += c.config.timeout_request_ms + 1
    out = c.replicas[2].step(Tick(c.now))
    for send in out.send:
        if isinstance(send.message, ViewChange):
            c.step(1, Receive(2, send.message))
            c.sent.append(send.message)
    c.queue.clear()
    assert not c.replicas[1].in_view_change
    return c, 1


def _scenario_vc_joined(fast: bool) -> tuple[Cluster, int]:
    """Backup 2 joined a view change (f+1 VIEW-CHANGEs for view 1, from 1 and 3) and waits for
    the NEW-VIEW of primary 1, which never comes."""
    c = Cluster(fast=fast, **CONFIG)
    _commit(c, 0, 9)
    c.now += c.config.timeout_request_ms + 1
    for j in (1, 3):
        _pend(c, j, 2, range(500 + j, 501 + j))
        out = c.replicas[j].step(Tick(c.now))
        for send in out.send:
            if isinstance(send.message, ViewChange):
                c.sent.append(send.message)
                c.step(2, Receive(j, send.message))
    c.queue.clear()
    assert c.replicas[2].in_view_change and c.replicas[2].view == 1
    return c, 2


def _scenario_new_view(fast: bool) -> tuple[Cluster, int]:
    """Backup 2 in view 1 after a completed view change (primary 0 went silent), with more
    blocks committed in the new view."""
    c = Cluster(fast=fast, **CONFIG)
    _commit(c, 0, 5)
    c.crash(0)
    _commit(c, 1, 6)
    assert c.replicas[2].view >= 1 and not c.replicas[2].in_view_change
    return c, 2


def _scenario_catching_up(fast: bool) -> tuple[Cluster, int]:
    """Backup 3 missed 14 blocks (it was down) and has just heard STATUS from the others: it is
    behind its peers and fetching."""
    c = Cluster(fast=fast, **CONFIG)
    _commit(c, 0, 3)
    c.crash(3)
    _commit(c, 1, 14)
    c.down.discard(3)
    c.queue.clear()
    c.now += c.config.status_interval_ms
    for j in (0, 1, 2):
        for send in c.replicas[j].step(Tick(c.now)).send:
            c.sent.append(send.message)
            if isinstance(send.message, Status):
                c.step(3, Receive(j, send.message))
    # its FETCH-BLOCKS are answered, but the answers are lost (real BLOCK-SYNC traffic)
    fetches = [(to, m) for sender, to, m in c.queue if sender == 3 and isinstance(m, FetchBlocks)]
    c.queue.clear()
    for to, m in fetches:
        c.step(to, Receive(3, m))
    c.queue.clear()
    r = c.replicas[3]
    assert r.last_executed < c.replicas[0].last_executed
    return c, 3


SCENARIO_BUILDERS: dict[str, Callable[[bool], tuple[Cluster, int]]] = {
    "fresh": _scenario_fresh,
    "committed": _scenario_committed,
    "primary": _scenario_primary,
    "vc-timeout": _scenario_vc_timeout,
    "vc-votes": _scenario_vc_votes,
    "vc-joined": _scenario_vc_joined,
    "new-view": _scenario_new_view,
    "catching-up": _scenario_catching_up,
}


@cache
def worlds(fast: bool = True) -> dict[str, World]:
    """Every scenario, built once per process (deterministic), sharing one traffic pool.
    fast: keyed-hash signatures (FastSigner); else Ed25519 as nodes use."""
    out = {name: World(name, *build(fast)) for name, build in SCENARIO_BUILDERS.items()}
    pool: dict[bytes, Any] = {}
    blocks: dict[bytes, CommittedBlock] = {}
    for w in out.values():
        for msg in w.cluster.sent:
            pool.setdefault(encode(msg), msg)
        for exs in w.cluster.executed.values():
            for ex in exs.values():
                if ex.commits:
                    blk = CommittedBlock(ex.pre_prepare, ex.commits)
                    blocks.setdefault(encode_raw(blk), blk)
    digests = sorted({d for m in pool.values() for d in _digests_in(m)})
    for w in out.values():
        w.pool, w.blocks, w.digests = list(pool.values()), list(blocks.values()), digests
        w.freeze()
    return out


def _digests_in(msg: Any) -> list[bytes]:
    found: list[bytes] = []

    def walk(x: Any) -> None:
        if isinstance(x, bytes) and len(x) == 32:
            found.append(x)
        elif isinstance(x, list):
            for y in x:
                walk(y)

    walk(to_tree(msg))
    return found


# ---------------------------------------------------------------- signatures


def resign(tree: Any, world: Any, replicas: Collection[int] | None = None) -> Any:
    """`tree` with every nested message that decodes as its tag's type re-signed, innermost
    first, by the key of the client or replica it names: the signature checks pass and the
    content reaches the handlers, however bad. Only the keys of `replicas` are used (a
    Byzantine sender signs as itself; None: every replica's, a coalition beyond f); other
    parts keep their bytes (real traffic keeps its real signatures). `world`: a World, or
    anything with its `domain` and `signer_for` (another chain's keys)."""
    if not isinstance(tree, list) or not tree:
        return tree
    tree = [resign(x, world, replicas) for x in tree]
    cls = BY_TAG.get(tree[0]) if type(tree[0]) is int else None
    if cls is None or "sig" not in cls.__struct_fields__:
        return tree
    i = 1 + cls.__struct_fields__.index("sig")
    if len(tree) < i:
        return tree
    body = tree[:i] + [b""] + tree[i + 1:]
    try:
        msg = _DECODERS[cls].decode(encode_raw(body))
        signer = world.signer_for(msg, replicas)
        if signer is None:
            return tree
        body[i] = signer.sign(world.domain + signing_bytes(msg))
    except (msgspec.DecodeError, msgspec.ValidationError, ValueError, TypeError,
            OverflowError, RecursionError):
        return tree
    return body


def _decoded(cls: type, tree: Any) -> Any | None:
    try:
        return _DECODERS[cls].decode(encode_raw(tree))
    except (msgspec.DecodeError, msgspec.ValidationError, ValueError, TypeError,
            OverflowError, RecursionError):
        return None


# ---------------------------------------------------------------- value strategies

SPECIAL_INTS = (0, 1, -1, 2, 3, 4, 8, 16, 2**31 - 1, 2**31, 2**32, 2**53 + 1, 2**62,
                2**63 - 1, 2**63, 2**64 - 1, -(2**31), -(2**63))
UNENCODABLE_INTS = (-(2**63) - 1, 2**64, 2**100, -(2**100), 10**30)


def extreme_ints() -> st.SearchStrategy[Any]:
    """Integers at the edges of msgpack and of Python's fixed-width conversions, non-canonical
    encodings, and the ints msgpack cannot carry (as floats, the nearest a peer can send)."""
    return st.one_of(
        st.sampled_from(SPECIAL_INTS),
        st.integers(-(2**63), 2**64 - 1),
        st.integers(0, 2**64 - 1).map(raw_uint64),
        st.integers(-(2**63), 2**63 - 1).map(raw_int64),
        st.sampled_from(UNENCODABLE_INTS).map(lambda v: raw_float(float(v))),
        st.sampled_from(UNENCODABLE_INTS).map(str),
    )


def deep_values() -> st.SearchStrategy[msgspec.Raw]:
    return st.builds(raw_deep, st.sampled_from([2, 40, 500, 1_000, 5_000, 100_000, 1_000_000]),
                     st.sampled_from(["array", "map", "array16"]))


def huge_lists(element: bytes = b"\xc0") -> st.SearchStrategy[msgspec.Raw]:
    return st.one_of(
        st.builds(raw_list, st.sampled_from([64, 65, 1_024, 1_025, 10_000, 10_001, 70_000]),
                  st.just(element)),
        st.builds(raw_list_header_only, st.sampled_from([1, 2**16, 2**31, 2**32 - 1])),
    )


def wrong_types() -> st.SearchStrategy[Any]:
    return st.one_of(
        st.none(), st.booleans(), st.floats(allow_nan=True, allow_infinity=True),
        st.text(max_size=4), st.binary(max_size=4), st.just([]), st.just({}),
        st.dictionaries(st.text(max_size=2), st.integers(0, 3), max_size=2),
        st.lists(st.integers(0, 3), max_size=3),
        st.binary(min_size=1, max_size=2).map(lambda b: msgspec.Raw(b"\xd4\x01" + b[:1])),
    )


def bad_bytes() -> st.SearchStrategy[bytes]:
    """Digests, keys and signatures of the wrong length (and of the right one, random)."""
    return st.one_of(st.sampled_from([b"", bytes(31), bytes(33), bytes(64), bytes(65)]),
                     st.binary(min_size=32, max_size=32), st.binary(max_size=70))


def anything() -> st.SearchStrategy[Any]:
    """What a point mutation puts in place of a field."""
    return st.one_of(extreme_ints(), wrong_types(), bad_bytes(), deep_values(), huge_lists(),
                     st.integers(0, 40))


# ---------------------------------------------------------------- message builders
# Every builder draws a mostly well-formed message tree for `world` (views and seqs near the
# target's, signers real, digests right) with sig=b"" everywhere; `messages` re-signs it.


# integers a field of a built message takes now and then instead of a plausible value: the
# edges of msgpack's uint64/int64 and of the 8-byte conversions the digests make
FIELD_EXTREMES = (2**63 - 1, 2**63, 2**64 - 1, -1, -(2**63), 2**32, 2**62)


def _int(draw, plausible: st.SearchStrategy[int]) -> int:
    """A plausible integer mostly (Hypothesis leans to the first branches), an extreme
    sometimes: every integer field of every built message gets the extremes directly."""
    return draw(st.one_of(plausible, plausible, plausible, st.sampled_from(FIELD_EXTREMES)))


def _view(draw, w: World) -> int:
    v = w.replica.view
    return _int(draw, st.one_of(st.sampled_from(sorted({v, v + 1, max(0, v - 1)})),
                                st.integers(0, v + 3)))


def _seq(draw, w: World) -> int:
    r = w.replica
    edges = {r.low_watermark, r.low_watermark + 1, r.high_watermark, r.high_watermark + 1,
             r.last_executed, r.last_executed + 1, 1}
    return _int(draw, st.one_of(st.sampled_from(sorted(edges)),
                                st.integers(0, r.high_watermark + 20)))


def _digest(draw, w: World) -> bytes:
    return draw(st.one_of(st.sampled_from(w.digests), st.binary(min_size=32, max_size=32)))


def _replica_id(draw, w: World, sender: int) -> int:
    return draw(st.one_of(st.just(sender), st.just(sender), st.integers(0, w.n - 1),
                          st.sampled_from([w.n, 1024, 2**63, -1])))


def _time_ms(draw, w: World) -> int:
    now = w.now
    return _int(draw, st.one_of(st.just(now), st.integers(max(0, now - 3_000), now + 3_000),
                                st.integers(0, 2**63 - 1)))


@st.composite
def request_tree(draw, w: World) -> list:
    client = w.cluster.client(draw(st.integers(0, N_CLIENTS - 1)))
    return [tag(Request), client.public_key, _int(draw, st.integers(0, 4_200)),
            draw(st.binary(max_size=12)), _int(draw, st.sampled_from([0, 0, 1, 5, 50])), b""]


def _requests(draw, w: World, max_size: int = 3) -> list:
    return draw(st.lists(request_tree(w), max_size=max_size))


def _batch_digest(time_ms: Any, reqs: list) -> bytes:
    """The right batch digest when the parts decode, else some 32 bytes."""
    decoded = [_decoded(Request, r) for r in reqs]
    if any(r is None for r in decoded) or type(time_ms) is not int:
        return bytes(32)
    try:
        return batch_digest(time_ms, tuple(decoded))
    except (OverflowError, ValueError):
        return bytes(32)


@st.composite
def pre_prepare_tree(draw, w: World, sender: int, view: int | None = None,
                     seq: int | None = None) -> list:
    view = _view(draw, w) if view is None else view
    seq = _seq(draw, w) if seq is None else seq
    t = _time_ms(draw, w)
    reqs = _requests(draw, w)
    replica = draw(st.one_of(st.just(w.config.primary(view)), st.just(sender)))
    right = draw(st.sampled_from(["right"] * 3 + ["some digest"])) == "right"
    d = _batch_digest(t, reqs) if right else _digest(draw, w)
    return [tag(PrePrepare), view, seq, t, reqs, d, replica, b""]


def _vote_tree(cls: type, draw, w: World, sender: int, view=None, seq=None, digest=None):
    view = _view(draw, w) if view is None else view
    seq = _seq(draw, w) if seq is None else seq
    digest = _digest(draw, w) if digest is None else digest
    return [tag(cls), view, seq, digest, _replica_id(draw, w, sender), b""]


@st.composite
def prepare_tree(draw, w: World, sender: int) -> list:
    return _vote_tree(Prepare, draw, w, sender)


@st.composite
def commit_tree(draw, w: World, sender: int) -> list:
    return _vote_tree(Commit, draw, w, sender)


@st.composite
def checkpoint_tree(draw, w: World, sender: int, seq: int | None = None) -> list:
    k = w.config.checkpoint_interval
    if seq is None:
        seq = _int(draw, st.one_of(st.integers(0, 12).map(lambda i: i * k),
                                   st.integers(0, 60)))
    return [tag(Checkpoint), seq, _digest(draw, w), _replica_id(draw, w, sender), b""]


@st.composite
def prepared_proof_tree(draw, w: World, view: int, seq: int) -> list:
    """A pre-prepare of `view`'s primary and 2f matching prepares from distinct backups."""
    primary = w.config.primary(view)
    pp = draw(pre_prepare_tree(w, primary, view=view, seq=seq))
    pp[6] = primary
    backups = [j for j in range(w.n) if j != primary]
    chosen = draw(st.permutations(backups))[: w.config.quorum - 1]
    prepares = [[tag(Prepare), view, seq, pp[5], j, b""] for j in sorted(chosen)]
    return [tag(PreparedProof), pp, prepares]


@st.composite
def view_change_tree(draw, w: World, sender: int, new_view: int | None = None) -> list:
    if new_view is None:
        new_view = _int(draw, st.integers(w.replica.view, w.replica.view + 3))
    stable = w.replica.stable_seq
    proof: list = []
    digest = GENESIS_CHAIN_DIGEST
    got = _stable_proof(w)
    if got is not None and draw(st.booleans()):
        stable, digest, proof = got
    elif draw(st.booleans()):
        stable = 0
    else:
        stable, digest = _int(draw, st.integers(0, 20)), _digest(draw, w)
        proof = [draw(checkpoint_tree(w, j, seq=stable)) for j in range(w.config.quorum)]
    prepared = []
    if new_view > 0:
        for s in draw(st.lists(st.integers(stable + 1, stable + w.config.watermark_window + 1),
                               max_size=2, unique=True)):
            prepared.append(draw(prepared_proof_tree(w, draw(st.integers(0, new_view - 1)), s)))
    return [tag(ViewChange), new_view, stable, digest, proof, prepared,
            _replica_id(draw, w, sender), b""]


def _stable_proof(w: World) -> tuple[int, bytes, list] | None:
    """The target's own stable checkpoint with its proof, as trees (real signatures)."""
    r = w.replica
    if r.stable_seq == 0:
        return None
    return r.stable_seq, r._stable_digest, [to_tree(c) for c in r._stable_proof]


@st.composite
def new_view_tree(draw, w: World, sender: int) -> list:
    """A NEW-VIEW whose pre-prepares are the ones its (re-signed) VIEW-CHANGEs determine."""
    view = _int(draw, st.integers(max(1, w.replica.view), w.replica.view + 3))
    voters = sorted(draw(st.permutations(range(w.n)))[: w.config.quorum])
    vcs = [draw(view_change_tree(w, j, new_view=view)) for j in voters]
    for vc, j in zip(vcs, voters, strict=True):
        vc[6] = j
    decoded = [_decoded(ViewChange, vc) for vc in vcs]
    pps: list = []
    if all(d is not None for d in decoded):
        pps = [to_tree(pp) for pp in build_new_view(w.config, view, tuple(decoded))]
    replica = draw(st.one_of(st.just(w.config.primary(view)), st.just(sender)))
    return [tag(NewView), view, vcs, pps, replica, b""]


@st.composite
def forward_tree(draw, w: World, sender: int) -> list:
    reqs = _requests(draw, w, 6)
    return [tag(Forward), reqs, _replica_id(draw, w, sender), b""]


@st.composite
def status_tree(draw, w: World, sender: int) -> list:
    r = w.replica
    return [tag(Status), _view(draw, w), draw(st.booleans()),
            _int(draw, st.integers(0, r.last_executed + 40)),
            _int(draw, st.integers(0, r.stable_seq + 16)), _replica_id(draw, w, sender), b""]


@st.composite
def fetch_blocks_tree(draw, w: World, sender: int) -> list:
    last = w.replica.last_executed
    a = _int(draw, st.integers(0, last + 2))
    b = _int(draw, st.integers(0, last + 70))
    return [tag(FetchBlocks), a, b, _replica_id(draw, w, sender), b""]


@st.composite
def committed_block_tree(draw, w: World) -> list:
    if w.blocks and draw(st.booleans()):
        return to_tree(draw(st.sampled_from(w.blocks)))
    view, seq = _view(draw, w), w.replica.last_executed + draw(st.integers(0, 2))
    pp = draw(pre_prepare_tree(w, w.config.primary(view), view=view, seq=seq))
    voters = sorted(draw(st.permutations(range(w.n)))[: w.config.quorum])
    commits = [[tag(Commit), view, seq, pp[5], j, b""] for j in voters]
    return [tag(CommittedBlock), pp, commits]


@st.composite
def block_sync_tree(draw, w: World, sender: int) -> list:
    blocks = draw(st.lists(committed_block_tree(w), max_size=3))
    if len(blocks) > 1 and draw(st.booleans()):  # consecutive seqs from the target's next
        for k, b in enumerate(blocks):
            b[1][2] = w.replica.last_executed + 1 + k
    return [tag(BlockSync), blocks, _replica_id(draw, w, sender), b""]


@st.composite
def conflict_tree(draw, w: World, sender: int) -> list:
    slots = [s for s in w.replica._log.slots() if s.pre_prepare is not None]
    if slots and draw(st.booleans()):  # a slot the target holds: show another pre-prepare
        s = draw(st.sampled_from(slots))
        pp = draw(pre_prepare_tree(w, w.config.primary(s.view), view=s.view, seq=s.seq))
    else:
        pp = draw(pre_prepare_tree(w, sender))
    return [tag(Conflict), pp, _replica_id(draw, w, sender), b""]


@st.composite
def state_vote_tree(draw, w: World, sender: int) -> list:
    return [tag(StateVote), _seq(draw, w), _digest(draw, w), _digest(draw, w),
            _digest(draw, w), _replica_id(draw, w, sender), b""]


@st.composite
def blocks_pruned_tree(draw, w: World, sender: int) -> list:
    last = w.replica.last_executed
    return [tag(BlocksPruned), _int(draw, st.integers(0, last + 40)),
            _int(draw, st.integers(0, last + 40)), _replica_id(draw, w, sender), b""]


@st.composite
def fetch_snapshot_tree(draw, w: World, sender: int) -> list:
    return [tag(FetchSnapshot), _int(draw, st.integers(0, w.replica.last_executed + 2)),
            draw(st.binary(max_size=40)), _replica_id(draw, w, sender), b""]


@st.composite
def snapshot_chunk_tree(draw, w: World, sender: int) -> list:
    items = draw(st.lists(st.tuples(st.binary(max_size=20), st.binary(max_size=20)).map(list),
                          max_size=3))
    block = draw(st.one_of(st.none(), committed_block_tree(w)))
    return [tag(SnapshotChunk), _int(draw, st.integers(0, w.replica.last_executed + 40)),
            draw(st.binary(max_size=20)), items, draw(st.binary(max_size=64)),
            draw(st.booleans()), block, _digest(draw, w), [], _replica_id(draw, w, sender), b""]


@st.composite
def bare_request_tree(draw, w: World, sender: int) -> list:
    return draw(request_tree(w))


MESSAGE_BUILDERS: dict[str, Callable[[World, int], st.SearchStrategy[list]]] = {
    "Request": bare_request_tree,
    "PrePrepare": lambda w, s: pre_prepare_tree(w, s),
    "Prepare": prepare_tree,
    "Commit": commit_tree,
    "Checkpoint": lambda w, s: checkpoint_tree(w, s),
    "ViewChange": lambda w, s: view_change_tree(w, s),
    "NewView": new_view_tree,
    "Forward": forward_tree,
    "Status": status_tree,
    "FetchBlocks": fetch_blocks_tree,
    "BlockSync": block_sync_tree,
    "Conflict": conflict_tree,
    "StateVote": state_vote_tree,
    "BlocksPruned": blocks_pruned_tree,
    "FetchSnapshot": fetch_snapshot_tree,
    "SnapshotChunk": snapshot_chunk_tree,
}


# ---------------------------------------------------------------- mutations


def _paths(tree: Any, prefix: tuple = ()) -> list[tuple]:
    """Every position in the tree (lists only; the root is ())."""
    out = [prefix]
    if isinstance(tree, list):
        for i, x in enumerate(tree):
            out.extend(_paths(x, prefix + (i,)))
    return out


def _at(tree: Any, path: tuple) -> Any:
    for i in path:
        tree = tree[i]
    return tree


@st.composite
def mutated(draw, tree: list) -> list:
    """`tree` after one point mutation: a field replaced by something odd, or a list element
    dropped, duplicated, or extra elements appended (also nested thousands deep)."""
    tree = _lists(tree)
    paths = _paths(tree)
    path = draw(st.sampled_from(paths))
    op = draw(st.sampled_from(["replace"] * 6 + ["drop", "dup", "append", "empty"]))
    if op == "replace" and path:
        _at(tree, path[:-1])[path[-1]] = draw(anything())
        return tree
    node = _at(tree, path)
    if not isinstance(node, list):
        node = _at(tree, path[:-1]) if path else tree
    if op == "drop" and node:
        del node[draw(st.integers(0, len(node) - 1))]
    elif op == "dup" and node:
        node.append(node[draw(st.integers(0, len(node) - 1))])
    elif op == "empty":
        node.clear()
    else:
        node.extend(draw(st.lists(st.one_of(anything(), deep_values()), min_size=1,
                                  max_size=2)))
    return tree


@st.composite
def messages(draw, w: World, sender: int, kinds: tuple[str, ...] | None = None,
             mutations: int = 2, coalition: bool = False) -> bytes:
    """Wire bytes of one message from `sender`: a built or a real one, 0..`mutations` point
    mutations, mostly re-signed (valid signatures over whatever content), rarely damaged as
    bytes afterwards. Re-signed by the sender alone (the replica the message names, if a
    peer of the target), or with `coalition` by every replica it names."""
    names = sorted(kinds or MESSAGE_BUILDERS)
    source = draw(st.sampled_from(["build", "build", "real"]))
    if source == "real" and w.pool and kinds is None:
        tree = to_tree(draw(st.sampled_from(w.pool)))
    else:
        tree = draw(MESSAGE_BUILDERS[draw(st.sampled_from(names))](w, sender))
    for _ in range(draw(st.integers(0, mutations))):
        tree = draw(mutated(tree))
    # (the common choice first: Hypothesis leans towards the first element)
    if draw(st.sampled_from(["sign"] * 19 + ["keep the signatures"])) == "sign":
        tree = resign(tree, w, None if coalition else {_named_sender(tree, w, sender)})
    data = wire(tree)
    damage = draw(st.sampled_from(["none"] * 30 + ["truncate", "flip", "version", "append"]))
    if damage == "truncate":
        data = data[: draw(st.integers(0, len(data) - 1))]
    elif damage == "flip":
        i = draw(st.integers(0, len(data) - 1))
        data = data[:i] + bytes([data[i] ^ draw(st.integers(1, 255))]) + data[i + 1:]
    elif damage == "version":
        data = bytes([draw(st.integers(0, 255))]) + data[1:]
    elif damage == "append":
        data = data + draw(st.binary(min_size=1, max_size=8))
    return data


def _named_sender(tree: Any, w: World, fallback: int) -> int:
    """The peer a message tree names as its sender (its `replica` field), else `fallback`."""
    cls = BY_TAG.get(tree[0]) if tree and type(tree[0]) is int else None
    if cls is not None and "replica" in cls.__struct_fields__:
        i = 1 + cls.__struct_fields__.index("replica")
        rid = tree[i] if i < len(tree) else None
        if type(rid) is int and 0 <= rid < w.n and rid != w.target:
            return rid
    return fallback


def sender_of(data: bytes, w: World, fallback: int) -> int:
    """The transport-authenticated sender to use: the replica the message names if that is a
    peer of the target (so the claim check passes), else `fallback`."""
    try:
        msg = decode(data)
    except DecodeError:
        return fallback
    rid = getattr(msg, "replica", None)
    if type(rid) is int and 0 <= rid < w.n and rid != w.target:
        return rid
    return fallback


# ---------------------------------------------------------------- the node's pump, as a function


def feed(replica: Replica, sender: int, data: bytes, world: World | None = None):
    """What bftnode's pump and replica task do with a peer's bytes, minus I/O: decode (only
    DecodeError may escape; the pump drops those), drop a bare Request, step, then the parts
    of applying the Output that touch peer-supplied values (encode every send and evidence
    message, hash rejected requests, answer ServeFetch/LoadClients as the shell would).
    Returns (message or None, Output or None); raises whatever a real node would crash on."""
    try:
        msg = decode(data)
    except DecodeError:
        return None, None
    if not isinstance(msg, MESSAGE_TYPES):
        raise AssertionError(f"decode returned a {type(msg).__name__}")
    if isinstance(msg, Request):
        return msg, None
    out = replica.step(Receive(sender, msg))
    apply_output(replica, out, world)
    return msg, out


def apply_output(replica: Replica, out: Any, world: World | None) -> None:
    for s in out.send:
        encode(s.message)
    for ev in out.evidence:
        for m in ev.messages[:4]:
            encode(m)
    for r in out.reply:
        if hasattr(r, "request"):
            request_digest(r.request)
    for f in out.fetch:
        blocks = world.executed_blocks(f.from_seq, f.to_seq) if world is not None else ()
        apply_output(replica, replica.step(FetchedBlocks(f.to, blocks)), world)
    for lc in out.load_clients:
        apply_output(replica, replica.step(
            ClientsLoaded(replica.last_executed, tuple((c, ()) for c in lc.client_ids))), world)


# ---------------------------------------------------------------- state and bounds


def _votes(vs: Any) -> tuple:
    return tuple(sorted((r, vs._values[r]) for r in vs.voters()))


def snapshot(r: Replica) -> dict[str, Any]:
    """The replica state a rejected message must leave as it was (public properties plus the
    private tables a message could touch). Our own evidence transactions in the pool are
    left out (a report of the refusal joins it by design); empty log slots count (since
    aa52ec8 a refused PRE-PREPARE leaves none)."""
    slots = {}
    for s in r._log.slots():
        pp = s.pre_prepare
        slots[(s.view, s.seq)] = (None if pp is None else pp.digest, _votes(s.prepares),
                                  _votes(s.commits), s.prepared, s.committed)
    cps = r._checkpoints
    own_key = r.auth.signer.public_key
    return {
        "view": r.view, "in_vc": r.in_view_change, "stable_seq": r.stable_seq,
        "last_executed": r.last_executed, "last_hash": r.last_block_hash,
        "watermarks": (r.low_watermark, r.high_watermark),
        "slots": slots,
        "checkpoints": {s: _votes(cps._votes[s]) for s in cps.seqs()},
        "view_changes": {rep: tuple(sorted(vs)) for rep, vs in r._vcs._by_replica.items()},
        "new_view": r._new_view is not None,
        "buffer": len(r._buffer),
        # our own evidence transactions join the pool by design (a report of the refusal)
        "pending": tuple(sorted(k for k in r._pending if k[0] != own_key)),
        "committed": tuple(sorted(r._committed)),
        "prepared": tuple(sorted(r._prepared)),
        "own": tuple(sorted(r._own, key=repr)),
        "peer_executed": dict(r._peer_executed),
        "convicted": r.convicted,
    }


def rejected(out: Any, dropped_before: dict[str, int], r: Replica, msg: Any) -> bool:
    """Did the step refuse the message outright? Nothing to persist, send, execute or fetch,
    and evidence or a dropped count says so. A FORWARD is all or nothing: refused when it
    draws evidence (one invalid request refuses it whole) or each request is dropped; a
    checkpoint whose digest differs from ours is evidence AND still counted
    (if 2f+1 agree we are the wrong one), so it is not a refusal."""
    if out is None or out.persist or out.send or out.execute or out.fetch or out.load_clients:
        return False
    drops = sum(r.dropped.values()) - sum(dropped_before.values())
    if isinstance(msg, Forward):
        return bool(out.evidence) or drops >= max(1, len(msg.requests))
    if any(e.kind == "bad-checkpoint" for e in out.evidence):
        return False
    return bool(out.evidence) or drops > 0


def bound_violations(r: Replica) -> list[str]:
    """The replica's tables against their documented bounds (empty when all hold)."""
    cfg, n = r.config, r.config.n
    share = r._buffer_max // n
    checks = [
        ("buffer", len(r._buffer), r._buffer_max),
        ("buffer per sender", max(r._buffered.values(), default=0), share),
        ("checkpoint seqs", len(r._checkpoints.seqs()), r._checkpoints.max_seqs),
        ("own checkpoint hashes", len(r._own_checkpoints), r._checkpoints.max_seqs),
        ("view-change votes per replica",
         max((len(v) for v in r._vcs._by_replica.values()), default=0), r._vcs.per_replica),
        ("view-change voters", len(r._vcs._by_replica), n),
        ("log slots", len(r._log), cfg.watermark_window),
        ("pending", len(r._pending), cfg.max_pending_requests),
        ("peers executed", len(r._peer_executed), n),
        ("serve budgets", len(r._serves), n),
        ("reveal budgets", len(r._reveal_budget), n),
        ("status answers", len(r._status_answered), n),
        ("new-view resends", len(r._nv_resent), n),
        ("view-change resends", len(r._vc_resent), 8 * n + 1),
        ("revealed slots", len(r._revealed), cfg.watermark_window * n * 5),
        ("committed waiting", len(r._committed), cfg.watermark_window + 64),
        ("dropped reasons", len(r.dropped), 64),
    ]
    # byte shares, where the replica keeps them (per sender in the buffer, per source in the
    # pending pool)
    for name, table, limit in (("buffer bytes per sender", "_buffered_bytes", "buffer_share_bytes"),
                               ("pool bytes per source", "_pool_bytes", "pool_share_bytes")):
        if hasattr(r, table) and hasattr(r, limit):
            checks.append((name, max(getattr(r, table).values(), default=0), getattr(r, limit)))
    return [f"{name}: {got} > {limit}" for name, got, limit in checks if got > limit]


# ---------------------------------------------------------------- fuzzer inputs

KEEP_SIGS = 0x10
THEN_TICK = 0x20


def replay(data: bytes, fast: bool = True, coalition: bool = False):
    """Run one tests/fuzz/fuzz_peer.py input: byte 0 picks the scenario, byte 1 the sender
    (low bits) and flags (KEEP_SIGS: the frame's signatures as they are, else the decoded
    message is re-signed by its sender, or with `coalition` by every replica it names;
    THEN_TICK: time passes afterwards), the rest is the frame. Returns (message or None,
    Output or None, the replica); raises what the node would crash on."""
    scenarios = sorted(SCENARIO_BUILDERS)
    w = worlds(fast)[scenarios[data[0] % len(scenarios)]]
    peers = w.senders()
    sender = peers[data[1] % len(peers)]
    frame = data[2:]
    r = w.fresh_replica()
    if not data[1] & KEEP_SIGS:
        try:
            msg = decode(frame)
        except DecodeError:
            return None, None, r
        rid = getattr(msg, "replica", None)
        if type(rid) is int and rid in peers:
            sender = rid
        frame = wire(resign(to_tree(msg), w, None if coalition else {sender}))
    msg, out = feed(r, sender, frame, w)
    if msg is not None and data[1] & THEN_TICK:
        for dt in (1, w.config.status_interval_ms, w.config.timeout_request_ms + 1):
            apply_output(r, r.step(Tick(w.now + dt)), w)
    return msg, out, r
