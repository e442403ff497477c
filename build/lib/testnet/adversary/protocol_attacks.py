"""Strategies that lie in the protocol: silence, equivocation, wrong digests, forgeries,
replays, far-future views, slowness, fabricated view changes and new views, bad checkpoints,
forged catch-up blocks, garbage floods and false evidence.

Each rewrites the honest replica's `Output` (mostly `send`); the `flood` strategy puts raw
`bytes` into `Send.message`, which a shell sends as they are and receivers drop at decode.
"""

from __future__ import annotations

import hashlib

import msgspec

from consensus.codec import GENESIS_CHAIN_DIGEST, MAX_MESSAGE_BYTES, batch_digest
from consensus.events import Send, Tick
from consensus.evidence import encode_proof, evidence_request
from consensus.messages import (
    BlockSync,
    Checkpoint,
    Commit,
    CommittedBlock,
    FetchBlocks,
    Forward,
    NewView,
    Prepare,
    PreparedProof,
    PrePrepare,
    Request,
    StateVote,
    Status,
    ViewChange,
)

from .context import ByzContext, Strategy, _targets

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


class BadRoots(Strategy):
    """StateVotes with wrong roots (re-signed, so they verify): certificates must still form
    from the honest votes, and no honest replica may raise a divergence."""

    name = "bad-roots"

    def rewrite(self, ctx, event, out):
        sends = []
        for s in out.send:
            m = s.message
            if isinstance(m, StateVote) and m.replica == ctx.replica_id:
                m = ctx.sign(msgspec.structs.replace(m, state_root=ctx.rng.bytes(32),
                                                     results_root=ctx.rng.bytes(32)))
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


