"""One validator against the honest ones' decoders and tables: validly signed messages with
integers out of range (`poison-ints`) or deep trailing nesting (`deep-nest`), checkpoints
far ahead (`checkpoint-flood`), maximum-size pre-prepares kept for later (`bloat`) and
FORWARDs of badly signed requests (`forward-junk`).

`poison-ints` and `deep-nest` put raw wire `bytes` into `Send.message`; a shell sends such
payloads as they are, and receivers must drop them when decoding.
"""

from __future__ import annotations

import hashlib
from typing import Any

import msgspec

from consensus.auth import sign_request
from consensus.codec import GENESIS_CHAIN_DIGEST, MAX_MESSAGE_BYTES, encode, request_digest
from consensus.events import Send
from consensus.messages import (
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

from .context import ByzContext, _Periodic

# ---------------------------------------------------------------- one validator vs. the honest

POISON_INTS = (1 << 63, (1 << 64) - 1, -1, -(1 << 63))
"""Integers msgpack carries but our encoders never produce (views, seqs and times are
0 <= x < 2^63): the first two overflow an 8-byte signed field, the others are negative."""




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


