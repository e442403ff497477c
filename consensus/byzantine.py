"""Byzantine behaviour as pure wrappers around an honest replica.

Owns `ByzantineReplica` (same `step` as `Replica`), the `Strategy` rewriters, the strategy
registry used by `--byzantine I:STRATEGY` (simulator and real testnet), and `Collusion`, the
shared knowledge of a group of colluding replicas (their keys and the lies they agreed on).

A strategy rewrites the honest replica's `Output` (mostly `send`). Everything is deterministic:
the only "randomness" is `DetRng`, a hash counter seeded by the caller. No I/O, no clock (time
comes from `Tick` events). Must not import time, random, socket, asyncio, threading, trio,
plyvel, libp2p or any other bftnode package.

Note for shells: the `flood`, `poison-ints` and `deep-nest` strategies put raw `bytes` into
`Send.message` (undecodable or oversized frames, out-of-range integers, deep nesting); a shell
sends such payloads as they are, and receivers must drop them when decoding.
"""

from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec

from .auth import Authenticator, Ed25519Signer, FastSigner, sign_request
from .codec import GENESIS_CHAIN_DIGEST, MAX_MESSAGE_BYTES, batch_digest, encode, request_digest
from .events import ClientRequest, ClientRequests, Event, Output, Receive, Send, Tick
from .evidence import encode_proof, evidence_request
from .messages import (
    BlockSync,
    Checkpoint,
    Commit,
    CommittedBlock,
    Conflict,
    FetchBlocks,
    Forward,
    NewView,
    Prepare,
    PreparedProof,
    PrePrepare,
    Request,
    Status,
    ViewChange,
)
from .replica import MAX_FORWARD_REQUESTS
from .types import REQUEST_OVERHEAD_BYTES, Config

# ---------------------------------------------------------------- deterministic choices


class DetRng:
    """A deterministic pseudo-random stream (BLAKE2b in counter mode). Not for secrets."""

    def __init__(self, seed: int | bytes) -> None:
        self._seed = seed if isinstance(seed, bytes) else str(seed).encode()
        self._counter = 0

    def bytes(self, n: int) -> bytes:
        out = b""
        while len(out) < n:
            self._counter += 1
            out += hashlib.blake2b(
                self._counter.to_bytes(8, "big"), key=self._seed[:64], digest_size=64
            ).digest()
        return out[:n]

    def random(self) -> float:
        return int.from_bytes(self.bytes(7), "big") / float(1 << 56)

    def randrange(self, n: int) -> int:
        if n <= 0:
            raise ValueError("randrange of an empty range")
        return int.from_bytes(self.bytes(8), "big") % n

    def choice(self, seq: Sequence[Any]) -> Any:
        return seq[self.randrange(len(seq))]

    def chance(self, p: float) -> bool:
        return self.random() < p


# ---------------------------------------------------------------- shared collusion state


@dataclass
class Collusion:
    """What a group of colluding replicas share: their keys and the lies they agreed on.

    `alternatives` maps (view, seq, honest digest) to the conflicting pre-prepare the group's
    primary showed the other half of the honest replicas, so colluding backups vote for it too.
    """

    members: dict[int, Authenticator]
    seed: int = 0
    alternatives: dict[tuple[int, int, bytes], PrePrepare] = field(default_factory=dict)

    def is_member(self, rid: int) -> bool:
        return rid in self.members


# ---------------------------------------------------------------- context and base class


class ByzContext:
    """What a strategy may look at: the wrapped replica, identity, keys, time and history."""

    def __init__(
        self,
        inner: Any,
        replica_id: int,
        config: Config,
        auth: Authenticator,
        rng: DetRng,
        collusion: Collusion | None,
    ) -> None:
        self.inner = inner
        self.replica_id = replica_id
        self.config = config
        self.auth = auth
        self.rng = rng
        self.collusion = collusion
        self.now_ms = 0
        self.steps = 0
        self.sent_history: deque[Any] = deque(maxlen=256)
        self.received_history: deque[Any] = deque(maxlen=256)

    @property
    def n(self) -> int:
        return self.config.n

    @property
    def f(self) -> int:
        return self.config.f

    @property
    def view(self) -> int:
        return int(getattr(self.inner, "view", 0))

    def is_primary(self, view: int | None = None) -> bool:
        return self.config.primary(self.view if view is None else view) == self.replica_id

    def others(self) -> list[int]:
        return [j for j in range(self.n) if j != self.replica_id]

    def colluders(self) -> list[int]:
        if self.collusion is None:
            return [self.replica_id]
        return sorted(self.collusion.members)

    def honest_halves(self, salt: int) -> tuple[list[int], list[int]]:
        """Split the non-colluding replicas in two (deterministically, varying with `salt`)."""
        victims = [j for j in self.others() if j not in self.colluders()]
        rot = salt % max(1, len(victims))
        victims = victims[rot:] + victims[:rot]
        half = (len(victims) + 1) // 2
        return victims[:half], victims[half:]

    def honest_groups(self, salt: int, size: int) -> list[list[int]]:
        """Split the non-colluding replicas into groups of at most `size`."""
        first, second = self.honest_halves(salt)
        victims = first + second
        return [victims[i: i + size] for i in range(0, len(victims), size)]

    def sign(self, msg: Any) -> Any:
        return self.auth.sign(msg)

    def sign_as(self, rid: int, msg: Any) -> Any:
        """Sign as `rid` if the group holds its key, else sign with our own (invalid) key."""
        msg = msgspec.structs.replace(msg, replica=rid)
        if self.collusion is not None and rid in self.collusion.members:
            return self.collusion.members[rid].sign(msg)
        return self.auth.sign(msg)


def _targets(ctx: ByzContext, send: Send) -> list[int]:
    return ctx.others() if send.to is None else [send.to]


class Strategy:
    """Rewrites one step's Output. Subclasses override `rewrite`; `name` is the CLI name."""

    name = "honest"

    def rewrite(self, ctx: ByzContext, event: Event, out: Output) -> Output:
        return out

    def __repr__(self) -> str:
        return self.name


# ---------------------------------------------------------------- strategies


class Silent(Strategy):
    """Sends nothing and serves no fetches (a crashed or mute replica that keeps its disk)."""

    name = "silent"

    def rewrite(self, ctx, event, out):
        out.send = []
        out.fetch = []
        return out


class SilentPrimary(Strategy):
    """Withholds its own pre-prepares and new-views whenever it is primary (forces a view
    change) but otherwise behaves; combine with `fake-view-change` to lie in the view change."""

    name = "silent-primary"

    def rewrite(self, ctx, event, out):
        out.send = [s for s in out.send if not isinstance(s.message, PrePrepare | NewView)]
        return out


class CrashAfter(Strategy):
    """Behaves honestly for its first K sent messages, then goes silent forever."""

    name = "crash-after"

    def __init__(self, k: int) -> None:
        if k < 0:
            raise ValueError("crash-after:K needs K >= 0")
        self.k = k
        self.sent = 0

    def rewrite(self, ctx, event, out):
        if self.sent >= self.k:
            out.send, out.fetch = [], []
            return out
        keep = out.send[: self.k - self.sent]
        self.sent += len(keep)
        out.send = keep
        return out

    def __repr__(self) -> str:
        return f"crash-after:{self.k}"


class Equivocate(Strategy):
    """As primary: different batches to different groups of honest replicas (alone: groups
    too small for any batch to prepare, so only a view change helps; colluding: two halves).
    As backup: votes for the real digest to one half and a conflicting digest to the other;
    in a view change, its prepared certificates to one half and none to the other.
    In a collusion the group votes consistently for the primary's two batches, so f+1
    colluders break safety (the checkers must say so) and f do not."""

    name = "equivocate"

    def rewrite(self, ctx, event, out):
        sends: list[Send] = []
        for s in out.send:
            m = s.message
            if isinstance(m, PrePrepare) and m.replica == ctx.replica_id:
                sends.extend(self._split_pre_prepare(ctx, s, m))
            elif isinstance(m, Prepare | Commit) and m.replica == ctx.replica_id:
                sends.extend(self._split_vote(ctx, s, m))
            elif isinstance(m, ViewChange) and m.replica == ctx.replica_id and m.prepared:
                # half the replicas hear our prepared certificates, the other half none
                alt = ctx.sign(msgspec.structs.replace(m, prepared=()))
                first, second = ctx.honest_halves(m.new_view)
                sends += [Send(j, alt if j in second else m) for j in _targets(ctx, s)]
            else:
                sends.append(s)
        out.send = sends
        return out

    def _alternative(self, ctx: ByzContext, pp: PrePrepare, g: int = 1) -> PrePrepare:
        key = (pp.view, pp.seq, pp.digest)
        if g == 1 and ctx.collusion is not None and key in ctx.collusion.alternatives:
            return ctx.collusion.alternatives[key]
        time_ms = pp.time_ms + g
        requests = pp.requests[:-1] if pp.requests and g % 2 else pp.requests
        alt = ctx.sign(
            msgspec.structs.replace(
                pp, time_ms=time_ms, requests=requests, digest=batch_digest(time_ms, requests)
            )
        )
        if g == 1 and ctx.collusion is not None:
            ctx.collusion.alternatives[key] = alt
        return alt

    def _split_pre_prepare(self, ctx, s: Send, pp: PrePrepare) -> list[Send]:
        if ctx.collusion is None:
            # alone: groups too small to prepare anything (< 2f backups agree): blocks progress
            groups = ctx.honest_groups(pp.seq, max(1, 2 * ctx.f - 1))
        else:
            # colluding: two halves, each helped to a quorum by the group's votes
            groups = list(ctx.honest_halves(pp.seq))
        where = {j: g for g, members in enumerate(groups) for j in members}
        out = []
        for j in _targets(ctx, s):
            g = where.get(j, 0)
            out.append(Send(j, pp if g == 0 else self._alternative(ctx, pp, g)))
        return out

    def _split_vote(self, ctx, s: Send, vote: Prepare | Commit) -> list[Send]:
        alt_digest: bytes | None = None
        if ctx.collusion is not None:
            for (view, seq, honest), alt in ctx.collusion.alternatives.items():
                if view == vote.view and seq == vote.seq:
                    if vote.digest == honest:
                        alt_digest = alt.digest
                    elif vote.digest == alt.digest:
                        alt_digest = honest
                    break
        if alt_digest is None:
            alt_digest = ctx.rng.bytes(32)
        alt_vote = ctx.sign(msgspec.structs.replace(vote, digest=alt_digest))
        first, second = ctx.honest_halves(vote.seq)
        if ctx.collusion is not None:
            # a colluder may itself have been shown the alternative: give each half "its" batch
            honest = [k for k in ctx.collusion.alternatives if k[:2] == (vote.view, vote.seq)]
            if honest and vote.digest != honest[0][2]:
                first, second = second, first
        out = [Send(j, vote) for j in _targets(ctx, s) if j not in second]
        out += [Send(j, alt_vote) for j in _targets(ctx, s) if j in second]
        return out


class WrongDigest(Strategy):
    """Pre-prepares, prepares and commits carry a digest that matches nothing (re-signed)."""

    name = "wrong-digest"

    def rewrite(self, ctx, event, out):
        sends = []
        for s in out.send:
            m = s.message
            if isinstance(m, PrePrepare | Prepare | Commit) and m.replica == ctx.replica_id:
                m = ctx.sign(msgspec.structs.replace(m, digest=ctx.rng.bytes(32)))
            sends.append(Send(s.to, m))
        out.send = sends
        return out


class Forge(Strategy):
    """Messages that claim another replica or carry a broken signature, forged commit
    certificates for fabricated blocks (BlockSync), lures (Status with a huge height), and
    forwarded client requests with bad client signatures. Honest messages still flow."""

    name = "forge"

    def rewrite(self, ctx, event, out):
        extra: list[Send] = []
        for s in out.send:
            m = s.message
            if not hasattr(m, "sig") or not hasattr(m, "replica") or not ctx.rng.chance(0.5):
                continue
            victim = ctx.rng.choice(ctx.others())
            # our key under another replica's name: must never verify
            claim = ctx.auth.sign(msgspec.structs.replace(m, replica=victim))
            extra.append(Send(s.to, claim))
            broken = msgspec.structs.replace(m, sig=ctx.rng.bytes(64))
            extra.append(Send(s.to, broken))
        if isinstance(event, Tick) and ctx.rng.chance(0.3):
            extra.extend(self._fabricated_block(ctx))
        out.send = list(out.send) + extra
        return out

    def _fabricated_block(self, ctx: ByzContext) -> list[Send]:
        seq = int(getattr(ctx.inner, "last_executed", 0)) + 1
        view = ctx.view
        req = Request(client_id=ctx.rng.bytes(32), request_seq=1, op=b"forged", sig=b"\0" * 64)
        time_ms = ctx.now_ms
        pp = PrePrepare(
            view=view, seq=seq, time_ms=time_ms, requests=(req,),
            digest=batch_digest(time_ms, (req,)), replica=ctx.config.primary(view),
        )
        pp = ctx.auth.sign(pp)  # our key, someone else's name: must not verify
        commits = tuple(
            ctx.auth.sign(Commit(view=view, seq=seq, digest=pp.digest, replica=j))
            for j in range(ctx.config.quorum)
        )
        sync = ctx.sign(
            BlockSync(blocks=(CommittedBlock(pre_prepare=pp, commits=commits),),
                      replica=ctx.replica_id)
        )
        lure = ctx.sign(
            Status(view=view, in_view_change=False, last_executed=seq + 1000,
                   stable_seq=seq + 999, replica=ctx.replica_id)
        )
        fwd = ctx.sign(Forward(requests=(req,), replica=ctx.replica_id))
        return [Send(None, sync), Send(None, lure), Send(None, fwd)]


class Replay(Strategy):
    """Re-sends old messages, its own and other replicas' (signed, so valid but stale),
    including messages from old views, to random replicas."""

    name = "replay"

    def rewrite(self, ctx, event, out):
        history = list(ctx.sent_history) + list(ctx.received_history)
        extra = []
        # only when time passes: replaying on every receive would let two replayers (or a
        # replayer and a flooder) amplify each other into an endless storm at one instant
        if history and isinstance(event, Tick) and ctx.rng.chance(0.5):
            for _ in range(1 + ctx.rng.randrange(4)):
                msg = ctx.rng.choice(history)
                to = None if ctx.rng.chance(0.3) else ctx.rng.choice(ctx.others())
                extra.append(Send(to, msg))
        out.send = list(out.send) + extra
        return out


class FutureView(Strategy):
    """VIEW-CHANGE and STATUS spam for far-future views."""

    name = "future-view"

    def rewrite(self, ctx, event, out):
        if isinstance(event, Tick):
            far = ctx.view + 2 + ctx.rng.randrange(1 << (4 + ctx.rng.randrange(36)))
            vc = ctx.sign(
                ViewChange(new_view=far, stable_seq=0, stable_digest=GENESIS_CHAIN_DIGEST,
                           checkpoint_proof=(), prepared=(), replica=ctx.replica_id)
            )
            st = ctx.sign(
                Status(view=far, in_view_change=True, last_executed=0, stable_seq=0,
                       replica=ctx.replica_id)
            )
            out.send = list(out.send) + [Send(None, vc), Send(None, st)]
        return out


class Slow(Strategy):
    """Holds its own pre-prepares for `fraction` of the request timeout (just under it)."""

    name = "slow"

    def __init__(self, fraction: float = 0.9) -> None:
        self.fraction = fraction
        self.held: list[tuple[int, Send]] = []

    def rewrite(self, ctx, event, out):
        delay = int(ctx.config.timeout_request_ms * self.fraction)
        sends = []
        for s in out.send:
            if isinstance(s.message, PrePrepare) and s.message.replica == ctx.replica_id:
                self.held.append((ctx.now_ms + delay, s))
            else:
                sends.append(s)
        due = [s for t, s in self.held if t <= ctx.now_ms]
        self.held = [(t, s) for t, s in self.held if t > ctx.now_ms]
        out.send = sends + due
        if self.held:
            nxt = min(t for t, _ in self.held)
            if out.next_deadline_ms is None or nxt < out.next_deadline_ms:
                out.next_deadline_ms = nxt
        return out


class FakeViewChange(Strategy):
    """VIEW-CHANGE messages with fabricated prepared certificates (and real ones omitted).
    Colluders fabricate the same batches (derived from the group seed) and sign the
    certificates with every key the group holds; other signatures are forged (invalid)."""

    name = "fake-view-change"

    def rewrite(self, ctx, event, out):
        sends = []
        for s in out.send:
            m = s.message
            if isinstance(m, ViewChange) and m.replica == ctx.replica_id:
                m = ctx.sign(msgspec.structs.replace(m, prepared=self._fabricate(ctx, m)))
            sends.append(Send(s.to, m))
        out.send = sends
        return out

    def _fabricate(self, ctx: ByzContext, vc: ViewChange) -> tuple[PreparedProof, ...]:
        group_seed = ctx.collusion.seed if ctx.collusion is not None else ctx.replica_id
        old_view = max(0, vc.new_view - 1)
        primary = ctx.config.primary(old_view)
        proofs = []
        for seq in range(vc.stable_seq + 1, vc.stable_seq + 3):
            tag = hashlib.blake2b(
                f"{group_seed}/{vc.new_view}/{seq}".encode(), digest_size=16
            ).digest()
            req = Request(client_id=tag * 2, request_seq=seq, op=b"fabricated:" + tag,
                          sig=b"\0" * 64)
            time_ms = 1
            pp = ctx.sign_as(primary, PrePrepare(
                view=old_view, seq=seq, time_ms=time_ms, requests=(req,),
                digest=batch_digest(time_ms, (req,)), replica=primary,
            ))
            backups = [j for j in range(ctx.n) if j != primary][: 2 * ctx.f]
            prepares = tuple(
                ctx.sign_as(j, Prepare(view=old_view, seq=seq, digest=pp.digest, replica=j))
                for j in backups
            )
            proofs.append(PreparedProof(pre_prepare=pp, prepares=prepares))
        return tuple(proofs)


class InvalidNewView(Strategy):
    """As the new primary, sends NEW-VIEW messages that break the rules: too few
    view-changes, a re-proposal replaced by another batch, or an extra pre-prepare."""

    name = "invalid-new-view"

    def rewrite(self, ctx, event, out):
        sends = []
        for s in out.send:
            m = s.message
            if isinstance(m, NewView) and m.replica == ctx.replica_id:
                m = self._corrupt(ctx, m)
            sends.append(Send(s.to, m))
        out.send = sends
        return out

    def _corrupt(self, ctx: ByzContext, nv: NewView) -> NewView:
        kind = ctx.rng.randrange(3)
        if kind == 0 and nv.view_changes:
            nv = msgspec.structs.replace(nv, view_changes=nv.view_changes[:-1])
        elif kind == 1 and nv.pre_prepares:
            pp = nv.pre_prepares[0]
            time_ms = pp.time_ms + 7
            req = Request(client_id=ctx.rng.bytes(32), request_seq=1, op=b"swapped",
                          sig=b"\0" * 64)
            bad = ctx.sign(msgspec.structs.replace(
                pp, time_ms=time_ms, requests=(req,), digest=batch_digest(time_ms, (req,))
            ))
            nv = msgspec.structs.replace(nv, pre_prepares=(bad,) + nv.pre_prepares[1:])
        else:
            last = max((pp.seq for pp in nv.pre_prepares), default=0)
            extra = ctx.sign(PrePrepare(
                view=nv.view, seq=last + 5, time_ms=ctx.now_ms, requests=(),
                digest=batch_digest(ctx.now_ms, ()), replica=ctx.replica_id,
            ))
            nv = msgspec.structs.replace(nv, pre_prepares=nv.pre_prepares + (extra,))
        return ctx.sign(nv)


class BadCheckpoint(Strategy):
    """Checkpoints with wrong state digests (re-signed, so they verify)."""

    name = "bad-checkpoint"

    def rewrite(self, ctx, event, out):
        sends = []
        for s in out.send:
            m = s.message
            if isinstance(m, Checkpoint) and m.replica == ctx.replica_id:
                m = ctx.sign(msgspec.structs.replace(m, state_digest=ctx.rng.bytes(32)))
            sends.append(Send(s.to, m))
        out.send = sends
        return out


class BadSync(Strategy):
    """Serves forged blocks to catching-up replicas: every block in its BlockSync answers gets
    another block time (a self-consistent pre-prepare whose commit certificate no longer
    matches). The envelope is properly signed, so only the certificate check can catch it."""

    name = "bad-sync"

    def rewrite(self, ctx, event, out):
        sends = []
        for s in out.send:
            m = s.message
            if isinstance(m, BlockSync) and m.replica == ctx.replica_id and m.blocks:
                forged = []
                for b in m.blocks:
                    pp = b.pre_prepare
                    t = pp.time_ms + 1 + ctx.rng.randrange(1000)
                    pp = msgspec.structs.replace(pp, time_ms=t,
                                                 digest=batch_digest(t, pp.requests))
                    forged.append(CommittedBlock(pp, b.commits))
                m = ctx.sign(BlockSync(tuple(forged), m.replica))
            sends.append(Send(s.to, m))
        out.send = sends
        return out


class Flood(Strategy):
    """Garbage: undecodable bytes, now and then an oversized frame, and many well-formed junk
    messages (random views/seqs/digests, huge fetch ranges, unsigned client requests)."""

    name = "flood"

    def __init__(self, per_step: int = 16, oversized_every: int = 200) -> None:
        self.per_step = per_step
        self.oversized_every = oversized_every

    def rewrite(self, ctx, event, out):
        rng = ctx.rng
        extra: list[Send] = []
        if not isinstance(event, Tick):  # paced by time, not by what it receives (see Replay)
            return out
        for _ in range(rng.randrange(self.per_step + 1)):
            to = None if rng.chance(0.2) else rng.choice(ctx.others())
            kind = rng.randrange(6)
            if kind == 0:
                extra.append(Send(to, rng.bytes(1 + rng.randrange(64))))  # undecodable
            elif kind == 1:
                extra.append(Send(to, ctx.sign(Prepare(
                    view=rng.randrange(1 << 40), seq=rng.randrange(1 << 40),
                    digest=rng.bytes(32), replica=ctx.replica_id))))
            elif kind == 2:
                extra.append(Send(to, ctx.sign(Commit(
                    view=ctx.view, seq=rng.randrange(1 << 20), digest=rng.bytes(32),
                    replica=ctx.replica_id))))
            elif kind == 3:
                extra.append(Send(to, ctx.sign(FetchBlocks(
                    from_seq=0, to_seq=1 << 40, replica=ctx.replica_id))))
            elif kind == 4:
                junk = tuple(
                    Request(client_id=rng.bytes(32), request_seq=rng.randrange(1 << 30),
                            op=rng.bytes(16), sig=rng.bytes(64))
                    for _ in range(4)
                )
                extra.append(Send(to, ctx.sign(Forward(requests=junk, replica=ctx.replica_id))))
            else:
                extra.append(Send(to, ctx.sign(Status(
                    view=rng.randrange(1 << 20), in_view_change=rng.chance(0.5),
                    last_executed=rng.randrange(1 << 30), stable_seq=rng.randrange(1 << 30),
                    replica=ctx.replica_id))))
        self.ticks = getattr(self, "ticks", 0) + 1
        if self.oversized_every and self.ticks % self.oversized_every == 1:
            extra.append(Send(rng.choice(ctx.others()), b"\x01" + bytes(MAX_MESSAGE_BYTES)))
        out.send = list(out.send) + extra
        return out


class FalseEvidence(Strategy):
    """Files fabricated equivocation proofs against honest replicas: evidence transactions
    signed with its own validator key (so they are ordered and committed) whose two
    "conflicting" pre-prepares carry signatures it cannot make. Honest replicas must convict
    nobody. One per honest replica, then again every `every_ms`."""

    name = "false-evidence"

    def __init__(self, every_ms: int = 5_000) -> None:
        self.every_ms = every_ms
        self.next_ms = 0
        self.seq = 0

    def rewrite(self, ctx, event, out):
        if not isinstance(event, Tick) or ctx.now_ms < self.next_ms:
            return out
        self.next_ms = ctx.now_ms + self.every_ms
        victims = [j for j in ctx.others() if j not in ctx.colluders()]
        reqs = []
        for victim in victims:
            view = victim  # a view whose primary is the victim
            fakes = []
            for g in (1, 2):
                t = g
                pp = PrePrepare(view=view, seq=1, time_ms=t, requests=(),
                                digest=batch_digest(t, ()), replica=victim)
                fakes.append(msgspec.structs.replace(pp, sig=ctx.rng.bytes(64)))
            self.seq = max(ctx.now_ms, self.seq + 1)
            reqs.append(evidence_request(ctx.auth, victim, "equivocation",
                                         "two pre-prepares for one view and seq",
                                         encode_proof(*fakes), self.seq))
        if reqs:
            fwd = ctx.sign(Forward(requests=tuple(reqs), replica=ctx.replica_id))
            out.send = list(out.send) + [Send(None, fwd)]
        return out


# ---------------------------------------------------------------- one validator vs. the honest

POISON_INTS = (1 << 63, (1 << 64) - 1, -1, -(1 << 63))
"""Integers msgpack carries but our encoders never produce (views, seqs and times are
0 <= x < 2^63): the first two overflow an 8-byte signed field, the others are negative."""


class _Periodic(Strategy):
    """Acts on at most one Tick every `every_ms` (`NAME:P:MS` on the command line; default
    `EVERY_MS`), and asks the shell for Ticks that often."""

    EVERY_MS = 500
    _next_ms = 0

    def __init__(self, every_ms: int | None = None) -> None:
        self.every_ms = self.EVERY_MS if every_ms is None else every_ms
        if self.every_ms < 1:
            raise ValueError(f"{self.name}: the period needs MS >= 1")

    def _spec(self, param: Any) -> str:
        """The command-line spec of this instance (the period only if not the default)."""
        every = "" if self.every_ms == self.EVERY_MS else f":{self.every_ms}"
        return f"{self.name}:{param}{every}"

    def due(self, ctx: ByzContext, event: Event, out: Output) -> bool:
        fire = isinstance(event, Tick) and ctx.now_ms >= self._next_ms
        if fire:
            self._next_ms = ctx.now_ms + self.every_ms
        if out.next_deadline_ms is None or self._next_ms < out.next_deadline_ms:
            out.next_deadline_ms = self._next_ms
        return fire


def _wire(ctx: ByzContext, msg: Any) -> bytes:
    """`msg` signed by us, as wire bytes: sent as they are, whatever the codec would refuse."""
    return encode(ctx.sign(msg))


def _with_trailing(wire: bytes, extra: bytes) -> bytes:
    """Wire bytes of a struct (a msgpack array) with one more element, `extra`, at the end:
    the signature still covers the message, which is otherwise unchanged."""
    body = wire[1:]
    if 0x90 <= body[0] <= 0x9F:
        count, rest = body[0] & 0x0F, body[1:]
    elif body[0] == 0xDC:
        count, rest = int.from_bytes(body[1:3], "big"), body[3:]
    else:
        raise ValueError("not a msgpack array of fewer than 65,536 elements")
    count += 1
    head = bytes([0x90 | count]) if count < 16 else b"\xdc" + count.to_bytes(2, "big")
    return wire[:1] + head + rest + extra


def _nested(depth: int, maps: bool) -> bytes:
    """One msgpack value nested `depth` levels deep: [[[…nil…]]] or {nil: {nil: …nil…}}."""
    return (b"\x81\xc0" if maps else b"\x91") * depth + b"\xc0"


def _view_of(ctx: ByzContext, below: int) -> tuple[int, int]:
    """(view, its primary) for a pre-prepare inside a proof for view `below`: our own latest
    view under it if there is one (we sign it), else view 0 (its signature is junk; the
    content checks come first)."""
    me, n = ctx.replica_id, ctx.n
    if below - 1 >= me:
        return me + n * ((below - 1 - me) // n), me
    return 0, ctx.config.primary(0)


class PoisonInts(_Periodic):
    """Validly signed messages whose integers are valid msgpack but outside what our encoders
    produce (`POISON_INTS`, one value per round): catch-up answers (BLOCK-SYNC) for seq 1 and
    the next seq, VIEW-CHANGEs whose prepared proof has such a pre-prepare time, a NEW-VIEW
    (for our next view as primary) carrying one, pre-prepares in the window (when primary),
    and votes, checkpoints, status, fetches, conflicts and forwarded requests with such fields.
    Built and sent as raw wire bytes (a codec that checks ranges refuses them at decode) every
    `every_ms`; only the ranges are wrong (signatures, digest lengths and shapes are right)."""

    name = "poison-ints"

    def __init__(self, every_ms: int | None = None) -> None:
        super().__init__(every_ms)
        self.round = 0

    def rewrite(self, ctx, event, out):
        if not self.due(ctx, event, out):
            return out
        v = POISON_INTS[self.round % len(POISON_INTS)]
        self.round += 1
        out.send = list(out.send) + [Send(None, m) for m in self.messages(ctx, v)]
        return out

    def _pp(self, ctx: ByzContext, view: int, seq: int, time_ms: int,
            replica: int | None = None) -> PrePrepare:
        pp = PrePrepare(view=view, seq=seq, time_ms=time_ms, requests=(),
                        digest=ctx.rng.bytes(32), replica=ctx.replica_id)
        if replica is None or replica == ctx.replica_id:
            return ctx.sign(pp)
        return msgspec.structs.replace(pp, replica=replica, sig=ctx.rng.bytes(64))

    def _view_change(self, ctx: ByzContext, new_view: int, v: int) -> ViewChange:
        pview, primary = _view_of(ctx, new_view)
        proof = PreparedProof(pre_prepare=self._pp(ctx, pview, 1, v, primary), prepares=())
        return ctx.sign(ViewChange(new_view=new_view, stable_seq=0,
                                   stable_digest=GENESIS_CHAIN_DIGEST, checkpoint_proof=(),
                                   prepared=(proof,), replica=ctx.replica_id))

    def messages(self, ctx: ByzContext, v: int) -> list[bytes]:
        me, rng, view = ctx.replica_id, ctx.rng, ctx.view
        last = int(getattr(ctx.inner, "last_executed", 0))
        msgs: list[Any] = []
        # catch-up answers (processed even unasked): seq 1 (executed: its digest differs, so
        # the certificate is checked; not yet: it is the next block) and the next block
        blocks = tuple(
            CommittedBlock(self._pp(ctx, 0, seq, v, ctx.config.primary(0)), commits=(
                ctx.sign(Commit(view=0, seq=seq, digest=rng.bytes(32), replica=me)),))
            for seq in (1, last + 1)
        )
        msgs.append(BlockSync(blocks=blocks, replica=me))
        # view-change proofs: a VIEW-CHANGE for the next view, and one for view v itself
        msgs.append(self._view_change(ctx, max(view + 1, 1), v))
        msgs.append(msgspec.structs.replace(self._view_change(ctx, max(view + 1, 1), 1),
                                            new_view=v, stable_seq=v))
        # a NEW-VIEW for our next view as primary: our VIEW-CHANGE first (validly signed,
        # poisoned), then junk ones from the others to make up the quorum
        nv = view + 1 + (me - view - 1) % ctx.n
        own = self._view_change(ctx, nv, v)
        others = [msgspec.structs.replace(own, replica=j, sig=rng.bytes(64))
                  for j in ctx.others()[: ctx.config.quorum - 1]]
        msgs.append(NewView(view=nv, view_changes=(own, *others),
                            pre_prepares=(self._pp(ctx, nv, 1, v),), replica=me))
        if ctx.is_primary():  # backups drop a backup's pre-prepare before looking inside
            high = int(getattr(ctx.inner, "high_watermark", last + 1))
            msgs += [self._pp(ctx, view, high, v), self._pp(ctx, v, last + 1, ctx.now_ms),
                     self._pp(ctx, view, v, ctx.now_ms)]
        cp_seq = v - v % ctx.config.checkpoint_interval if v > 0 else v
        junk = Request(client_id=rng.bytes(32), request_seq=v, op=b"poison", valid_until=v,
                       sig=rng.bytes(64))
        msgs += [
            Status(view=v, in_view_change=False, last_executed=v, stable_seq=v, replica=me),
            Checkpoint(seq=cp_seq, state_digest=rng.bytes(32), replica=me),
            Prepare(view=view, seq=v, digest=rng.bytes(32), replica=me),
            Commit(view=v, seq=last + 1, digest=rng.bytes(32), replica=me),
            FetchBlocks(from_seq=1, to_seq=v, replica=me),
            Forward(requests=(junk,), replica=me),
            Conflict(pre_prepare=self._pp(ctx, view, last + 1, v), replica=me),
        ]
        return [_wire(ctx, m) for m in msgs]

    def __repr__(self) -> str:
        return f"poison-ints:{self.every_ms}" if self.every_ms != self.EVERY_MS else self.name


class DeepNest(_Periodic):
    """Otherwise valid, validly signed messages (our STATUS and the last message we sent)
    with one extra trailing element nested `depth` levels deep (arrays, then maps, in turn).
    A decoder that skips unknown trailing fields recurses into it. Every `every_ms`."""

    name = "deep-nest"

    def __init__(self, depth: int = 100_000, every_ms: int | None = None) -> None:
        super().__init__(every_ms)
        if depth < 1:
            raise ValueError("deep-nest:DEPTH needs DEPTH >= 1")
        self.depth = depth
        self.round = 0

    def rewrite(self, ctx, event, out):
        if not self.due(ctx, event, out):
            return out
        extra = _nested(self.depth, maps=bool(self.round % 2))
        self.round += 1
        inner = ctx.inner
        msgs = [ctx.sign(Status(view=ctx.view, in_view_change=False,
                                last_executed=int(getattr(inner, "last_executed", 0)),
                                stable_seq=int(getattr(inner, "stable_seq", 0)),
                                replica=ctx.replica_id))]
        if ctx.sent_history and getattr(ctx.sent_history[-1], "replica", None) == ctx.replica_id:
            msgs.append(ctx.sent_history[-1])
        out.send = list(out.send) + [Send(None, _with_trailing(encode(m), extra)) for m in msgs]
        return out

    def __repr__(self) -> str:
        return self._spec(self.depth)


class CheckpointFlood(_Periodic):
    """Validly signed CHECKPOINTs for seqs ahead of everyone (multiples of the interval): half
    in a band just past the watermark window, half far ahead; `count` of them (default: more
    than a table of 4 windows' checkpoints holds), again every `every_ms`. Each seq always
    gets the same digest, so this is no equivocation, just votes nobody else will match.
    Its genuine checkpoints are withheld, so the honest replicas' votes must do (with
    `silent` first, nor does its VIEW-CHANGE carry a stable proof to rescue them)."""

    name = "checkpoint-flood"

    def __init__(self, count: int = 0, every_ms: int | None = None) -> None:
        super().__init__(every_ms)
        if count < 0:
            raise ValueError("checkpoint-flood:COUNT needs COUNT >= 0 (0: the default)")
        self.count = count

    def seqs(self, ctx: ByzContext) -> list[int]:
        cfg = ctx.config
        ci, window = cfg.checkpoint_interval, cfg.watermark_window
        count = self.count or 4 * (window // ci) + 8
        inner = ctx.inner
        done = max(int(getattr(inner, "last_executed", 0)), int(getattr(inner, "stable_seq", 0)))
        near = (done // ci + 1) * ci + window
        far = (done // ci + 1_000_000) * ci
        half = count // 2
        return ([near + ci * k for k in range(half)]
                + [far + ci * 7919 * k for k in range(count - half)])

    def rewrite(self, ctx, event, out):
        me = ctx.replica_id
        out.send = [s for s in out.send
                    if not (isinstance(s.message, Checkpoint) and s.message.replica == me)]
        if not self.due(ctx, event, out):
            return out
        extra = []
        for seq in self.seqs(ctx):
            digest = hashlib.blake2b(f"flood/{me}/{seq}".encode(), digest_size=32).digest()
            extra.append(Send(None, ctx.sign(Checkpoint(seq=seq, state_digest=digest,
                                                        replica=me))))
        out.send = list(out.send) + extra
        return out

    def __repr__(self) -> str:
        return self._spec(self.count)


class Bloat(_Periodic):
    """Maximum-size, validly signed PRE-PREPAREs a replica may keep for later: for this view and
    the next two in turn, each for a new slot a few windows above the high watermark.
    Each carries about `kib` KiB of validly client-signed requests (a client key of ours, ops of
    max_request_bytes; the default fills an 8 MiB frame) with the right batch digest. One
    every `every_ms` to every peer: legal-looking traffic that costs memory if kept by count."""

    name = "bloat"

    EVERY_MS = 250

    def __init__(self, kib: int = MAX_MESSAGE_BYTES // 1024 - 64,
                 every_ms: int | None = None) -> None:
        super().__init__(every_ms)
        if kib < 1:
            raise ValueError("bloat:KIB needs KIB >= 1")
        self.kib = kib
        self.sent = 0
        self._requests: tuple[tuple[Request, ...], list[bytes]] | None = None

    def requests(self, ctx: ByzContext) -> tuple[tuple[Request, ...], list[bytes]]:
        """The requests (made and signed once) and their digests."""
        if self._requests is None:
            size = max(8, ctx.config.max_request_bytes - 64)
            pad = ctx.rng.bytes(64) * (size // 64 + 1)
            left, reqs = self.kib * 1024, []
            while left > 0:
                chunk = min(size, left)
                op = len(reqs).to_bytes(4, "big") + pad[: max(0, chunk - 4)]
                reqs.append(sign_request(ctx.auth.domain, ctx.auth.signer,
                                         Request(b"", len(reqs) + 1, op)))
                left -= chunk
            # not through the codec's memo: that would keep the requests alive here
            uncached = getattr(request_digest, "__wrapped__", request_digest)
            self._requests = (tuple(reqs), [uncached(r) for r in reqs])
        return self._requests

    def rewrite(self, ctx, event, out):
        if not self.due(ctx, event, out):
            return out
        reqs, digests = self.requests(ctx)
        h = hashlib.blake2b(digest_size=32)  # codec.batch_digest, from the digests above
        h.update(ctx.now_ms.to_bytes(8, "big", signed=True))
        for d in digests:
            h.update(d)
        k = self.sent
        self.sent += 1
        window = ctx.config.watermark_window
        high = int(getattr(ctx.inner, "high_watermark", window))
        # slots a few windows ahead: kept until the window gets there (or the view changes)
        view, seq = ctx.view + k % 3, high + 1 + 4 * window + k
        pp = ctx.sign(PrePrepare(view=view, seq=seq, time_ms=ctx.now_ms, requests=reqs,
                                 digest=h.digest(), replica=ctx.replica_id))
        out.send = list(out.send) + [Send(None, pp)]
        return out

    def __repr__(self) -> str:
        return self._spec(self.kib)


class ForwardJunk(_Periodic):
    """FORWARDs of `per_forward` client requests with bad client signatures (under real
    public keys, so each costs a full signature check), new request seqs every time, one
    every `every_ms` to every peer: a relay that costs honest CPU and log volume."""

    name = "forward-junk"

    EVERY_MS = 50

    def __init__(self, per_forward: int = 2_000, every_ms: int | None = None) -> None:
        super().__init__(every_ms)
        if per_forward < 1:
            raise ValueError("forward-junk:N needs N >= 1")
        self.per_forward = per_forward
        self.seq = 0

    def rewrite(self, ctx, event, out):
        if not self.due(ctx, event, out):
            return out
        keys = ctx.auth.replica_keys
        sigs = [ctx.rng.bytes(64) for _ in range(8)]
        first, self.seq = self.seq, self.seq + self.per_forward
        reqs = tuple(
            Request(client_id=keys[i % len(keys)], request_seq=first + i + 1, op=b"junk",
                    sig=sigs[i % 8])
            for i in range(self.per_forward)
        )
        fwd = ctx.sign(Forward(requests=reqs, replica=ctx.replica_id))
        out.send = list(out.send) + [Send(None, fwd)]
        return out

    def __repr__(self) -> str:
        return self._spec(self.per_forward)


# ---------------------------------------------------------------- one validator vs. execution

_pack = msgspec.msgpack.encode


def _map(*pairs: tuple[Any, Any] | bytes) -> bytes:
    """A msgpack map from (key, value) pairs, each encoded, or raw bytes (one encoded key and
    value, e.g. a deep value msgspec would refuse to build)."""
    body = b"".join(p if isinstance(p, bytes) else _pack(p[0]) + _pack(p[1]) for p in pairs)
    n = len(pairs)
    return (bytes([0x80 | n]) if n < 16 else b"\xde" + n.to_bytes(2, "big")) + body


def poison_ops(depth: int, max_bytes: int) -> list[tuple[str, bytes]]:
    """(variant, op bytes) a client could sign but no client library builds: each at most
    `max_bytes` (a request the replicas admit), none a valid op. Deep nesting (`depth` levels,
    maps or arrays, under an unknown field after or before the "op" tag), integers past what
    a field holds (uint64 max, int64 min, a 5,000-digit decimal string), wrong types, unknown
    ops, not a map at all, invalid UTF-8, truncated and trailing bytes, too many items."""
    room = max(16, max_bytes - 64)
    levels = min(depth, room // 2 - 8)  # a map level takes 2 bytes, an array level 1
    deep_map, deep_arr = _nested(levels, maps=True), _nested(min(depth, room - 16), maps=False)
    put = (("op", "put"), ("key", b"k"), ("value", b"v"))
    many = min(100_000, room - 32)
    ops = [
        ("deep-map", _map(*put, _pack("x-unknown") + deep_map)),
        ("deep-map-before-tag", _map(_pack("x-unknown") + deep_map, *put)),
        ("deep-array", _map(*put, _pack("x-unknown") + deep_arr)),
        ("deep-evidence", _map(("op", "evidence"), ("accused", 0), ("kind", "equivocation"),
                               _pack("x-unknown") + deep_arr)),
        ("huge-revision", _map(("op", "compact"), ("revision", (1 << 64) - 1))),
        ("huge-ttl", _map(("op", "lease_grant"), ("ttl_ms", (1 << 64) - 1))),
        ("negative-lease", _map(*put, ("lease", -(1 << 63)))),
        ("digit-string-revision", _map(("op", "compact"), ("revision", "9" * 5_000))),
        ("nan-revision", _map(("op", "compact"), ("revision", float("nan")))),
        ("wrong-types", _map(("op", "put"), ("key", 12), ("value", [1, 2]))),
        ("txn-wrong-shape", _map(("op", "txn"), ("success", {"put": 1}), ("compare", 7))),
        ("op-not-a-string", _map(("op", 7), ("key", b"k"))),
        ("unknown-op", _map(("op", "transfer_all"), ("to", b"x"))),
        ("not-a-map", _pack([1, 2, 3])),
        ("nil", b"\xc0"),
        ("empty", b""),
        ("invalid-utf8", b"\x81\xa2op\xa3\xff\xfe\xfd"),
        ("truncated", _map(*put)[:-3]),
        ("trailing", _map(*put) + b"\xc0"),
        ("many-items", _map(*put, _pack("x-unknown") + b"\xdd" + many.to_bytes(4, "big")
                            + b"\xc0" * many)),
    ]
    return [(name, op) for name, op in ops if len(op) <= max_bytes]


def relay_poison_signer(replica_id: int, fast: bool = False) -> Any:
    """The client key a `relay-poison` replica signs with (deterministic, so a test harness can
    recompute the requests and look up their results)."""
    seed = hashlib.blake2b(f"relay-poison/{replica_id}".encode(), digest_size=32).digest()
    return FastSigner(seed) if fast else Ed25519Signer(seed)


class RelayPoison(_Periodic):
    """Client-signed requests whose op bytes no client library builds (`poison_ops`: a map
    nested `depth` deep under an unknown field, huge integers, wrong types, unknown ops, …),
    signed with a client key of its own (`relay_poison_signer`) for the chain's domain, so
    they pass every check before ordering. Every `every_ms` one round of them, fresh request
    seqs, in one signed FORWARD to every replica; as primary it also proposes them. Honest
    replicas order and execute them: each must get an error result, on every replica alike,
    and nobody may stop."""

    name = "relay-poison"

    def __init__(self, depth: int = 10_000, every_ms: int | None = None) -> None:
        super().__init__(every_ms)
        if depth < 1:
            raise ValueError("relay-poison:DEPTH needs DEPTH >= 1")
        self.depth = depth
        self.round = 0
        self._ops: list[tuple[str, bytes]] | None = None

    def ops(self, max_bytes: int) -> list[tuple[str, bytes]]:
        if self._ops is None:
            self._ops = poison_ops(self.depth, max_bytes)
        return self._ops

    def round_requests(self, domain: bytes, signer: Any, k: int,
                       max_bytes: int) -> tuple[Request, ...]:
        """Round `k`'s requests (request seqs k*len(ops)+1 …), signed by `signer`."""
        ops = self.ops(max_bytes)
        first = k * len(ops)
        return tuple(sign_request(domain, signer, Request(b"", first + i + 1, op))
                     for i, (_, op) in enumerate(ops))

    def rewrite(self, ctx, event, out):
        if not self.due(ctx, event, out):
            return out
        signer = relay_poison_signer(ctx.replica_id, isinstance(ctx.auth.signer, FastSigner))
        reqs = self.round_requests(ctx.auth.domain, signer, self.round,
                                   ctx.config.max_request_bytes)
        self.round += 1
        fwd = ctx.sign(Forward(requests=reqs, replica=ctx.replica_id))
        out.send = list(out.send) + [Send(None, fwd)]
        if ctx.is_primary():
            extra = ctx.inner.step(ClientRequests(reqs))  # admitted and proposed like a client's
            extra.reply = []  # no client waits for them here
            out.extend(extra)
        return out

    def __repr__(self) -> str:
        return self._spec(self.depth)


# ---------------------------------------------------------------- one validator vs. the pool

RELAY_FLOOD_KEYS = 256  # client keys a relay-flood replica cycles through
RELAY_FLOOD_VALUE_BYTES = 2048
FORWARD_CHUNK_BYTES = 1024 * 1024  # what an honest replica puts in one FORWARD (at most)


def relay_flood_signer(replica_id: int, k: int, fast: bool = False) -> Any:
    """Client key `k` (0 <= k < RELAY_FLOOD_KEYS) of a `relay-flood` replica: deterministic,
    so a harness can recompute the requests and look them up."""
    seed = hashlib.blake2b(f"relay-flood/{replica_id}/{k}".encode(), digest_size=32).digest()
    return FastSigner(seed) if fast else Ed25519Signer(seed)


def relay_flood_op(replica_id: int, k: int, n: int) -> bytes:
    """The put of request `n` of client key `k`: a legal 2 KB put, as `ops.put` builds it
    (a msgpack map op/key/value), its key per client key, its value naming the request."""
    value = n.to_bytes(8, "big") + b"\xa5" * (RELAY_FLOOD_VALUE_BYTES - 8)
    return _map(("op", "put"), ("key", f"relay-flood/{replica_id}/{k}".encode()),
                ("value", value))


class RelayFlood(_Periodic):
    """Heavy legal load from one validator (issue 36c): every `every_ms`, `per_tick` VALID
    client requests (2 KB puts, each signed for the chain's domain by one of RELAY_FLOOD_KEYS
    client keys of its own, `relay_flood_signer`, with fresh request seqs) in signed FORWARDs
    to every replica, split like an honest relay's (at most FORWARD_CHUNK_BYTES and
    MAX_FORWARD_REQUESTS each). Nothing is invalid, so nothing is evidence: an honest
    replica admits them on this relay's share of its pool (max_pending_bytes / n) and drops
    the rest, and its primary orders what it admitted next to its clients' requests. Honest
    clients' latency must stay close to what it is without the flood, with no view change."""

    name = "relay-flood"

    EVERY_MS = 20

    def __init__(self, per_tick: int = 100, every_ms: int | None = None) -> None:
        super().__init__(every_ms)
        if not 1 <= per_tick <= MAX_FORWARD_REQUESTS:
            raise ValueError(f"relay-flood:N needs 1 <= N <= {MAX_FORWARD_REQUESTS}")
        self.per_tick = per_tick
        self.sent = 0  # requests built so far: request i is key i % KEYS, seq i // KEYS + 1
        self._signers: dict[int, Any] = {}

    def request(self, domain: bytes, replica_id: int, i: int, fast: bool) -> Request:
        """Request number `i` of this replica's flood (deterministic)."""
        k, n = i % RELAY_FLOOD_KEYS, i // RELAY_FLOOD_KEYS + 1
        signer = self._signers.get(k)
        if signer is None:
            signer = self._signers[k] = relay_flood_signer(replica_id, k, fast)
        return sign_request(domain, signer, Request(b"", n, relay_flood_op(replica_id, k, n)))

    def rewrite(self, ctx, event, out):
        if not self.due(ctx, event, out):
            return out
        fast = isinstance(ctx.auth.signer, FastSigner)
        first, self.sent = self.sent, self.sent + self.per_tick
        reqs = [self.request(ctx.auth.domain, ctx.replica_id, i, fast)
                for i in range(first, self.sent)]
        sends = []
        chunk: list[Request] = []
        size = 0
        for req in reqs:
            if chunk and (len(chunk) == MAX_FORWARD_REQUESTS or size + len(req.op)
                          + REQUEST_OVERHEAD_BYTES > FORWARD_CHUNK_BYTES):
                sends.append(Send(None, ctx.sign(Forward(tuple(chunk), ctx.replica_id))))
                chunk, size = [], 0
            chunk.append(req)
            size += len(req.op) + REQUEST_OVERHEAD_BYTES
        if chunk:
            sends.append(Send(None, ctx.sign(Forward(tuple(chunk), ctx.replica_id))))
        out.send = list(out.send) + sends
        return out

    def __repr__(self) -> str:
        return self._spec(self.per_tick)


# ---------------------------------------------------------------- registry and parsing

STRATEGIES: dict[str, Callable[..., Strategy]] = {
    "silent": Silent,
    "silent-primary": SilentPrimary,
    "crash-after": CrashAfter,
    "equivocate": Equivocate,
    "wrong-digest": WrongDigest,
    "forge": Forge,
    "replay": Replay,
    "future-view": FutureView,
    "slow": Slow,
    "fake-view-change": FakeViewChange,
    "invalid-new-view": InvalidNewView,
    "bad-checkpoint": BadCheckpoint,
    "bad-sync": BadSync,
    "flood": Flood,
    "false-evidence": FalseEvidence,
    "poison-ints": PoisonInts,
    "deep-nest": DeepNest,
    "checkpoint-flood": CheckpointFlood,
    "bloat": Bloat,
    "forward-junk": ForwardJunk,
    "relay-poison": RelayPoison,
    "relay-flood": RelayFlood,
}
"""Strategy names accepted by `--byzantine I:NAME` (`crash-after:K` takes a parameter; the
periodic ones a second, their period: `bloat:KIB:MS`)."""

_PARAMETRIZED = {"crash-after": int, "slow": float, "flood": int, "false-evidence": int,
                 "poison-ints": int, "deep-nest": int, "checkpoint-flood": int, "bloat": int,
                 "forward-junk": int, "relay-poison": int, "relay-flood": int}
_PERIODIC = {"deep-nest", "checkpoint-flood", "bloat", "forward-junk", "relay-poison",
             "relay-flood"}  # NAME:P:MS too


def parse_strategy(spec: str) -> Strategy:
    """`"silent"` or `"crash-after:5"` -> a fresh Strategy; ValueError names what is wrong."""
    name, _, param = spec.strip().partition(":")
    if name not in STRATEGIES:
        raise ValueError(f"unknown byzantine strategy {name!r}; known: {', '.join(STRATEGIES)}")
    if param:
        conv = _PARAMETRIZED.get(name)
        if conv is None:
            raise ValueError(f"strategy {name!r} takes no parameter (got {param!r})")
        first, _, every = param.partition(":")
        if every and name not in _PERIODIC:
            raise ValueError(f"strategy {name!r} takes one parameter (got {param!r})")
        try:
            return STRATEGIES[name](conv(first), *([int(every)] if every else []))
        except ValueError as exc:
            raise ValueError(f"bad parameter for {name!r}: {param!r} ({exc})") from None
    if name == "crash-after":
        raise ValueError("crash-after needs a parameter: crash-after:K")
    return STRATEGIES[name]()


def parse_byzantine(specs: Sequence[str], n: int | None = None) -> dict[int, list[str]]:
    """Parse repeated `I:STRATEGY[,I:STRATEGY…]` options into {replica: [strategy specs]}.

    A replica named several times gets all its strategies, applied in the given order."""
    result: dict[int, list[str]] = {}
    for spec in specs:
        for item in spec.split(","):
            item = item.strip()
            if not item:
                continue
            idx, sep, strat = item.partition(":")
            if not sep or not idx.strip().isdigit():
                raise ValueError(f"bad --byzantine item {item!r}: expected I:STRATEGY")
            rid = int(idx)
            if n is not None and not 0 <= rid < n:
                raise ValueError(f"bad --byzantine item {item!r}: replica {rid} not in 0..{n - 1}")
            parse_strategy(strat)  # validate early
            result.setdefault(rid, []).append(strat.strip())
    return result


# ---------------------------------------------------------------- the wrapper


class ByzantineReplica:
    """An honest `Replica` whose outputs are rewritten by `strategies`, in order.

    `seed` drives every choice the strategies make; `collusion` (shared by the members of a
    group) lets colluders sign for each other and lie consistently."""

    def __init__(
        self,
        inner: Any,
        strategies: Sequence[Strategy | str],
        auth: Authenticator,
        *,
        replica_id: int | None = None,
        config: Config | None = None,
        seed: int = 0,
        collusion: Collusion | None = None,
    ) -> None:
        self.inner = inner
        self.strategies = [parse_strategy(s) if isinstance(s, str) else s for s in strategies]
        rid = replica_id if replica_id is not None else getattr(inner, "replica_id", None)
        if rid is None:
            rid = getattr(inner, "id", None)
        if rid is None:
            raise ValueError("ByzantineReplica needs replica_id (inner exposes none)")
        cfg = config if config is not None else getattr(inner, "config", None)
        if cfg is None:
            raise ValueError("ByzantineReplica needs config (inner exposes none)")
        self.ctx = ByzContext(inner, int(rid), cfg, auth,
                              DetRng(f"byz/{seed}/{rid}".encode()), collusion)
        # the honest core must not convict its own group by accident (strategies decide what
        # evidence a Byzantine replica files, e.g. false-evidence)
        never = getattr(inner, "never_accuse", None)
        if isinstance(never, set):
            never.update(self.ctx.colluders())

    @property
    def replica_id(self) -> int:
        return self.ctx.replica_id

    def __getattr__(self, name: str) -> Any:
        # view, primary, last_executed, health() … come from the honest replica
        return getattr(self.inner, name)

    def step(self, event: Event) -> Output:
        ctx = self.ctx
        ctx.steps += 1
        if isinstance(event, Tick):
            ctx.now_ms = max(ctx.now_ms, event.now_ms)
        elif isinstance(event, Receive) and not isinstance(event.message, bytes | bytearray):
            ctx.received_history.append(event.message)
        elif isinstance(event, ClientRequest):
            pass
        out = self.inner.step(event)
        group = set(ctx.colluders())
        out.send = [  # nor show peers the pre-prepares that would prove its group equivocated
            s for s in out.send
            if not (isinstance(s.message, Conflict) and s.message.pre_prepare.replica in group)
        ]
        for strategy in self.strategies:
            out = strategy.rewrite(ctx, event, out)
        for s in out.send:
            if not isinstance(s.message, bytes | bytearray):
                ctx.sent_history.append(s.message)
        return out

    def __repr__(self) -> str:
        return f"ByzantineReplica({self.replica_id}, {self.strategies})"
