"""Request intake and relay (PBFT's REQUEST and the backups' forwarding of it).

A client's request enters the pending pool (`_on_client_request`, `_admit`), is relayed to the
primary and later to every replica (`_forward_new`, `_relay_unproposed`; `on_forward` takes a
peer's FORWARD), and leaves the pool once executed or expired (`_forget_request`,
`_drop_expired`).

The content checks of a request (sizes, signature, evidence ops) are the pure
`normal.check_request`; the per-source admission rates are `fair.SourceRates`; busy clients
wait while sparse ones are served (`fair.SparseFirst`).
"""

from __future__ import annotations

from ..events import Duplicate, Rejected
from ..messages import Forward, Request
from ..normal import check_request, expired
from ..peers import held_bytes
from ..types import request_size
from .state import Key, ReplicaState, _key

MAX_FORWARD_REQUESTS = 10_000
CONFLICTING = "conflicting request: this request_seq is pending with different content"
LOAD_REASONS = ("rate limited", "pool full", "client quota")  # prefixes of refusals for load


def is_load_refusal(reason: str) -> bool:
    """A refusal for load (the client offers more than it gets in now; sparse-first and the
    client quota included), not for the tx itself: worth sending again after a wait."""
    return reason.startswith(LOAD_REASONS)


SPARSE_FIRST = ("client quota: this client already has requests pending while the pool is "
                "backed up and clients with one request at a time wait; retry shortly")
REFORWARD_MAX = 32  # waiting requests relayed again per status interval
FORWARD_MAX_BYTES = 1024 * 1024  # a FORWARD is split beyond this many request bytes


class IntakeMixin(ReplicaState):
    """The pending pool and PBFT's request relay (FORWARD)."""

    def _admit(self, req: Request, source: int | None = None) -> str | None:
        """Add a validly signed request to the pending pool, on `source`'s byte share (a
        relaying replica, the primary that proposed it, or us); a reason if it cannot be."""
        status = self._clients.status(req.client_id, req.request_seq)
        if status == "duplicate":
            return "duplicate"
        if status is not None:
            return status
        if expired(req, self._last_executed + 1):
            return "expired"
        key = _key(req)
        if key in self._pending:  # the same (client, seq) with other content can never be
            held = self._pending[key][0]  # ordered too: say so rather than drop it silently
            return "already pending" if held == req else CONFLICTING
        if len(self._pending) >= self.config.max_pending_requests:
            return "pool full"
        quota = self._over_quota(req.client_id)
        if quota is not None:
            return quota
        if source is None and self._sparse.holds_back(req.client_id, len(self._pending),
                                                      self._now):
            return SPARSE_FIRST
        src = self.id if source is None else source
        size = held_bytes(req)
        if self._pool_bytes[src] + size > self.pool_share_bytes:
            return "pool full"
        self._pool_bytes[src] += size
        self._pool_entry[key] = (src, size)
        self._sparse.note(req.client_id, self._pool_clients[req.client_id], self._now)
        self._pool_clients[req.client_id] += 1
        self._pending[key] = (req, self._now)
        self._forwarded_ms[key] = self._now
        if req.valid_until:
            self._expiring.add(key)
        if key not in self._proposed:
            self._unproposed.add(key, src, request_size(len(req.op)))
        self._arm_request_timer()
        return None

    def quota_refusal(self, req: Request, ahead: int = 0, own: int = 0) -> str | None:
        """Why `req` would be refused for its client's pending quota now, or None; None too for
        a request this pool holds or the client table knows (its own answer comes first:
        already pending, duplicate, too old). Only verified requests are counted, so the node
        may ask before checking the signature: nobody can fill another client's quota.
        `ahead`: requests of the same call before this one, which would enter the pool first
        (`own` of them this client's): a call of many then has only what fits checked and
        verified, not all of it. The answer is the one `_admit` would give after those."""
        reason = self._over_quota(req.client_id, own)
        # the one before it entered while the client held one already: that made it busy
        busy = own > 0 and self._pool_clients[req.client_id] + own >= 2
        if reason is None and self._sparse.holds_back(req.client_id, len(self._pending) + ahead,
                                                      self._now, busy):
            reason = SPARSE_FIRST
        if reason is None or _key(req) in self._pending:
            return None
        return reason if self._clients.status(req.client_id, req.request_seq) is None else None

    def _over_quota(self, client_id: bytes, own: int = 0) -> str | None:
        cap = self.config.max_pending_per_client
        if cap and self._pool_clients[client_id] + own >= cap:
            return (f"client quota: this client already has {cap} requests pending "
                    "(max_pending); wait for some to commit")
        return None

    def _is_admitted(self, req: Request) -> bool:
        entry = self._pending.get(_key(req))
        return entry is not None and entry[0] == req

    def _on_client_request(self, req: Request) -> None:
        reason = check_request(self.config, self.auth, req)
        if reason is None and not self._is_admitted(req):
            size = request_size(len(req.op))
            light = not self._pool_clients[req.client_id]
            if not self._rates.take(self.id, self._now, size, half=True, light=light):
                self.dropped["client-request-over-rate"] += 1
                reason = "rate limited"
            else:
                reason = self._admit(req)
                if reason is None:
                    self._to_forward.append(req)
                    return
                self._rates.give(self.id, size)
            if is_load_refusal(reason):  # it offers more than it gets in
                self._sparse.mark_busy(req.client_id, self._now)
        elif reason is None:
            reason = "already pending"
        if reason == "duplicate":
            self._out.reply.append(Duplicate(req.client_id, req.request_seq))
        elif reason != "already pending":
            self._out.reply.append(Rejected(req, reason))

    def forward_over_rate(self, sender: int, fwd: Forward) -> bool:
        """True (and counted) if `sender`'s admission bucket cannot take even the smallest
        request of this FORWARD now: on_forward would drop every request in it over the rate,
        so the replica drops the whole FORWARD before checking its signature. A relay flooding
        at link speed then costs a decode per frame, not a signature check over its bytes."""
        reqs = fwd.requests
        if not reqs or len(reqs) > MAX_FORWARD_REQUESTS or self._rates.off:
            return False
        # what we hold already costs the relay nothing (a re-forward is no flood)
        smallest = min((len(r.op) for r in reqs if not self._is_admitted(r)), default=None)
        if smallest is None or self._rates.can_take(sender, self._now, request_size(smallest),
                                                    light=False):
            return False
        light = min((len(r.op) for r in reqs if not self._pool_clients[r.client_id]),
                    default=None)
        if light is not None and self._rates.can_take(sender, self._now, request_size(light)):
            return False
        held = sum(1 for r in reqs if self._is_admitted(r))  # only on the (cheap) drop path
        self.dropped["forwarded-request-over-rate"] += len(reqs) - held
        self.dropped["forwarded-request-already-pending"] += held
        return True

    def on_forward(self, sender: int, fwd: Forward) -> None:
        """All or nothing: one invalid request refuses the whole FORWARD (one fault), checked
        before anything is admitted."""
        if len(fwd.requests) > MAX_FORWARD_REQUESTS:
            self._evidence("invalid-message", sender, "forward too large")
            return
        fresh = []
        room = self.pool_share_bytes - self._pool_bytes[sender]
        for i, (req, light) in enumerate(self._light_first(fwd.requests)):
            if self._is_admitted(req):
                self.dropped["forwarded-request-already-pending"] += 1
                continue  # a relay of what we hold: no need to verify it again
            size = held_bytes(req)
            if size > room:  # over the relay's pool share: dropped unverified (no CPU spent)
                self.dropped["forwarded-request-over-share"] += 1
                continue
            if not self._rates.take(sender, self._now, request_size(len(req.op)), light=light):
                # unverified, like the rest of this FORWARD: the bucket refills with time only
                self.dropped["forwarded-request-over-rate"] += len(fwd.requests) - i
                break
            room -= size
            reason = check_request(self.config, self.auth, req)
            if reason is not None:
                self._evidence("invalid-message", sender, f"forwarded request: {reason}", req)
                return
            fresh.append(req)
        for req in fresh:
            if self._admit(req, sender) is not None:
                self.dropped["forwarded-request-not-admitted"] += 1

    def _light_first(self, reqs: tuple[Request, ...]) -> list[tuple[Request, bool]]:
        """A FORWARD's requests, the first of each client with nothing pending here ("light")
        ahead of the rest, each in relay order: the relay's admission rate goes to clients
        that wait for one request before a flood's backlog (a flood's clients hold many)."""
        seen: set[bytes] = set()
        light: list[tuple[Request, bool]] = []
        heavy: list[tuple[Request, bool]] = []
        for req in reqs:
            cid = req.client_id
            if cid not in seen and not self._pool_clients[cid]:
                seen.add(cid)
                light.append((req, True))
            else:
                heavy.append((req, False))
        return light + heavy

    def _forward_new(self, reqs: list[Request]) -> None:
        """Requests our clients just gave us. PBFT's relay: a backup sends them to the
        primary only (the primary needs nothing: it proposes them), and relays them to every
        replica `forward_relay_ms` later if they are still pending then (see
        _relay_unproposed), so all replicas' request timers run against a primary that
        censors them; each tx then crosses the mesh once instead of twice (FORWARD, then the
        PRE-PREPARE). With forward_relay_ms = 0 or during a view change
        (primary unknown), to every replica at once."""
        relay_ms = self._relay_ms()
        if self._in_vc or relay_ms <= 0:
            self._send_forward(reqs, None)
            return
        due = self._now + relay_ms
        for req in reqs:
            self._relay_idx += 1
            self._relay_due[_key(req)] = (due, self._relay_idx)
        if not self.is_primary:
            self._send_forward(reqs, self.primary)

    def _send_forward(self, reqs: list[Request], to: int | None) -> None:
        """Signed Forwards of `reqs`, split at FORWARD_MAX_BYTES; to one replica or (None) all."""
        for chunk in _by_bytes(reqs, FORWARD_MAX_BYTES):
            fwd = self.auth.sign(Forward(chunk, self.id))
            if to is None:
                self._broadcast(fwd)
            else:
                self._send(to, fwd)

    def _relay_ms(self) -> int:
        # well before the request timer fires, whatever the configured timeouts
        return min(self.config.forward_relay_ms, self.config.timeout_request_ms // 4)

    def _relay_unproposed(self) -> None:
        """Relay to every replica our requests that the primary alone has and has not proposed
        forward_relay_ms after we sent them, unless it is visibly working through them in
        order: the primary batches in arrival order and our Forwards arrive in the order we
        sent them, so it is the request's turn soon if the primary proposed one of ours in the
        last forward_relay_ms and none sent after it. A primary that skips a request (proposes
        a later one of ours) or stops proposing ours gets it relayed. Under load this saves
        the broadcast of requests that merely queue at an honest primary. Entries leave
        `_relay_due` at their PRE-PREPARE or execution; a stalled batch is the request
        timers' and the view change's job."""
        relay_ms = self._relay_ms()
        working = self._now - self._relay_progress_ms < relay_ms
        again: list[Request] = []
        while self._relay_due:
            key, (due, idx) = next(iter(self._relay_due.items()))  # forwarding order = due order
            if due > self._now or (working and idx > self._relay_seen_idx):
                break
            del self._relay_due[key]
            entry = self._pending.get(key)
            if entry is not None:
                again.append(entry[0])
                self._forwarded_ms[key] = self._now
        self._send_forward(again, None)

    def _relay_proposed(self, key: Key) -> None:
        """The primary proposed `key`: no relay needed; note its progress through ours."""
        entry = self._relay_due.pop(key, None)
        if entry is not None:
            self._relay_progress_ms = self._now
            if entry[1] > self._relay_seen_idx:
                self._relay_seen_idx = entry[1]

    def _reforward_old_requests(self) -> None:
        """Lossy networks: relay requests that have waited long again. Our clients' to every
        replica, so each learns of them (and starts its request timer) even if the first
        Forward was lost; another relay's to the primary only (PBFT's backup rule: it may
        have refused them over that relay's rate), so a flooding relay's requests are not
        re-broadcast on our share. At most REFORWARD_MAX per status interval."""
        wait = max(self.config.timeout_request_ms, self.config.status_interval_ms)
        limit = min(self.config.batch_max, REFORWARD_MAX)
        mine: list[Request] = []
        others: list[Request] = []
        for key, (req, _) in self._pending.items():
            if self._now - self._forwarded_ms.get(key, 0) >= wait:
                (mine if self._pool_entry[key][0] == self.id else others).append(req)
                if len(mine) + len(others) >= limit:
                    break
        if self.is_primary or self._in_vc:
            others = []  # nobody to hand them to: they wait for their batch or the new view
        for req in mine + others:
            self._forwarded_ms[_key(req)] = self._now
        if mine:
            self._broadcast(self.auth.sign(Forward(tuple(mine), self.id)))
        if others:
            self._send(self.primary, self.auth.sign(Forward(tuple(others), self.id)))

    def _forget_request(self, key: Key) -> None:
        if self._pending.pop(key, None) is not None:
            src, size = self._pool_entry.pop(key)
            self._pool_bytes[src] -= size
            left = self._pool_clients[key[0]] - 1
            if left:
                self._pool_clients[key[0]] = left
            else:
                del self._pool_clients[key[0]]
        self._relay_due.pop(key, None)
        self._forwarded_ms.pop(key, None)
        self._expiring.discard(key)
        self._unproposed.discard(key)
        self._proposed.discard(key)

    def _drop_expired(self) -> None:
        nxt = self._last_executed + 1
        gone = sorted(k for k in self._expiring if expired(self._pending[k][0], nxt))
        for key in gone:
            req = self._pending[key][0]
            self._forget_request(key)
            self._out.reply.append(Rejected(req, "expired"))
        if gone and not self._pending:
            self._rt.stop()


def _by_bytes(reqs: list[Request], limit: int) -> list[tuple[Request, ...]]:
    """Split `reqs` (in order) into chunks of at most `limit` request bytes (>= 1 each)."""
    chunks: list[tuple[Request, ...]] = []
    cur: list[Request] = []
    size = 0
    for r in reqs:
        n = request_size(len(r.op))
        if cur and size + n > limit:
            chunks.append(tuple(cur))
            cur, size = [], 0
        cur.append(r)
        size += n
    if cur:
        chunks.append(tuple(cur))
    return chunks
