"""Key layout of the application state (all app state lives in the StateReader's keyspace).

    m/rev                      current revision (8 bytes big-endian)
    m/compact                  compacted revision
    m/compact_pass             a running compaction pass (compaction.py), absent when none
    m/height, m/time           last executed height and agreed block time
    k/<key>                    live key:   msgpack [value, create_rev, mod_rev, version, lease,
                               owner] (owner: the client charged for it, quotas.py)
    h/<esc(key)>\\0\\0<rev8>     history:    same record; value nil = tombstone (deleted)
    l/<id8>                    lease:      msgpack map
    le/<deadline8><id8>        expiry index (processed in deadline, then id, order)
    lk/<id8><key>              keys attached to a lease
    ll/<id8><kind><name>       locks (kind L) and elections (kind E) a lease holds or waits on
    L/<name>, E/<name>         lock / election record: holder and FIFO queue
    q/<client_id>              quota usage: msgpack [keys, bytes, leases] (quotas.py); absent = 0
    a/r/<role>                 permission role: msgpack [[perm bits, key, range_end], ...]
    a/u/<client32>             roles bound to a client key: msgpack sorted [role, ...]
    a/on                       permission checks on (1) / off (0); absent = genesis default
    x/<replica8>               conviction: height(8) + kind, written by the evidence tx that
                               convicts (the first per replica), so snapshots carry it

Big-endian fixed-width integers keep byte order = numeric order. `esc` doubles NUL bytes so the
history of one key is contiguous and prefix scans still work. Imports: stdlib, msgspec.
"""

from __future__ import annotations

import msgspec

REV = b"m/rev"
COMPACT = b"m/compact"
COMPACT_PASS = b"m/compact_pass"
HEIGHT = b"m/height"
TIME = b"m/time"
KV = b"k/"
HIST = b"h/"
LEASE = b"l/"
LEASE_EXPIRY = b"le/"
LEASE_KEYS = b"lk/"
LEASE_LOCKS = b"ll/"
LOCK_KIND = b"L"
ELECTION_KIND = b"E"

CONVICTION = b"x/"
QUOTA = b"q/"
AUTH_ROLE = b"a/r/"
AUTH_USER = b"a/u/"
AUTH_ON = b"a/on"

_enc = msgspec.msgpack.Encoder()
_dec = msgspec.msgpack.Decoder()


def u64(n: int) -> bytes:
    return n.to_bytes(8, "big")


def from_u64(b: bytes | None) -> int:
    return int.from_bytes(b, "big") if b else 0


def conviction_key(replica: int) -> bytes:
    return CONVICTION + u64(replica)


def convictions(state) -> list[tuple[int, int, str]]:
    """(replica, height, kind) of every conviction recorded in the state, by replica."""
    out = []
    for k, v in state.iterate(CONVICTION):
        out.append((from_u64(k[len(CONVICTION):]), from_u64(v[:8]), v[8:].decode()))
    return out


def esc(key: bytes) -> bytes:
    return key.replace(b"\x00", b"\x00\xff")


def unesc(data: bytes) -> bytes:
    return data.replace(b"\x00\xff", b"\x00")


def hist_key(key: bytes, rev: int) -> bytes:
    return HIST + esc(key) + b"\x00\x00" + u64(rev)


def hist_prefix(key: bytes, exact: bool) -> bytes:
    return HIST + esc(key) + (b"\x00\x00" if exact else b"")


def parse_hist_key(hk: bytes) -> tuple[bytes, int]:
    assert hk.startswith(HIST) and hk[-10:-8] == b"\x00\x00", hk
    return unesc(hk[len(HIST) : -10]), from_u64(hk[-8:])


def pack(obj) -> bytes:
    return _enc.encode(obj)


def unpack(data: bytes):
    return _dec.decode(data)
