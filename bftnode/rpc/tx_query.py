"""CometBFT's `tx_search` query language (docs/rpc.md, "CometBFT routes"): conditions joined by
`AND` on `tx.height` (`=`, `<`, `<=`, `>`, `>=`: the block headers are keyed by height),
`tx.hash` (`=`: the tx index), `tx.code` (`=`: a filter on what the others select) and the
indexed event attributes (`=`: the tx-attribute index, storage.tx_attrs): `kv.key`,
`lock.key`, `election.key` and `lease.id`. Any other attribute
or operator (`CONTAINS`, `EXISTS`, `OR`) is refused, naming it.

`parse(query) -> TxQuery`; `TxQuery.heights(tip)` the height range to read when no attribute
is given (at most MAX_SEARCH_BLOCKS blocks a call: a range beyond it is refused, to be paged
by height).
Pure: stdlib, storage.tx_attrs, bftnode.app.events and bftnode.rpc.errors.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from storage.tx_attrs import MAX_VALUE

from ..app.events import INDEXED_ATTRS
from .errors import INVALID_PARAMS, RPCError

MAX_QUERY = 2048  # characters (an indexed value may have 1,024 bytes)
MAX_ATTR_CONDITIONS = 4  # each one is a range read of the index
MAX_SEARCH_BLOCKS = 1000  # blocks one tx_search may read
_COND = re.compile(r"""^\s*(tx\.height|tx\.hash|tx\.code)\s*(<=|>=|=|<|>)\s*
                       ('[^']*'|"[^"]*"|\d{1,19})\s*$""", re.X)
_ATTR = re.compile(r"^\s*([A-Za-z_][\w.]*)")
ATTRS = INDEXED_ATTRS
_ATTR_COND = re.compile(r"""^\s*([A-Za-z_][\w.]*)\s*=\s*('[^']*'|"[^"]*"|\d{1,19})\s*$""")


def _refuse(msg: str) -> RPCError:
    return RPCError(INVALID_PARAMS, f"param 'query': {msg}", {"param": "query"})


@dataclass(frozen=True)
class TxQuery:
    lo: int = 1  # inclusive heights
    hi: int | None = None
    tx_hash: bytes | None = None
    code: int | None = None
    attrs: tuple[tuple[bytes, bytes], ...] = ()  # (attribute, value): every one must match

    def heights(self, tip: int) -> range:
        hi = tip if self.hi is None else min(self.hi, tip)
        if hi - self.lo + 1 > MAX_SEARCH_BLOCKS:
            raise _refuse(f"the heights {self.lo}..{hi} span more than {MAX_SEARCH_BLOCKS} "
                          "blocks: narrow tx.height (e.g. tx.height>=N AND tx.height<N+1000)")
        return range(self.lo, hi + 1)


def parse(query: str) -> TxQuery:
    if len(query) > MAX_QUERY:
        raise _refuse(f"longer than {MAX_QUERY} characters")
    lo, hi, tx_hash, code = 1, None, None, None
    attrs: list[tuple[bytes, bytes]] = []
    parts = re.split(r"\s+AND\s+", query.strip())
    if parts == [""]:
        raise _refuse("empty (e.g. \"tx.height>=5 AND tx.height<10\")")
    for part in parts:
        m = _COND.match(part)
        if m is None:
            a = _ATTR_COND.match(part)
            if a is not None and a.group(1) in ATTRS:
                if len(attrs) == MAX_ATTR_CONDITIONS:
                    raise _refuse(f"at most {MAX_ATTR_CONDITIONS} event attribute conditions")
                attrs.append(_attr(a.group(1), a.group(2)))
                continue
            attr = _ATTR.match(part)
            name = attr.group(1) if attr else part.strip()[:40]
            if name in ("tx.height", "tx.hash", "tx.code") or name in ATTRS:
                raise _refuse(f"cannot read condition {part.strip()[:80]!r} (event "
                              "attributes take = only)")
            raise _refuse(f"{name!r} is not indexed here (tx.height, tx.hash, tx.code and "
                          f"{', '.join(ATTRS)} are; AND only)")
        attr, op, raw = m.groups()
        text = raw[1:-1] if raw[0] in "'\"" else raw
        if attr == "tx.hash":
            if op != "=":
                raise _refuse("tx.hash takes = only")
            try:
                h = bytes.fromhex(text[2:] if text[:2] in ("0x", "0X") else text)
            except ValueError:
                raise _refuse("tx.hash must be 64 hex characters") from None
            if len(h) != 32:
                raise _refuse("tx.hash must be 64 hex characters")
            tx_hash = h
            continue
        if not text.isdigit():
            raise _refuse(f"{attr} compares with an integer, not {text[:40]!r}")
        v = int(text)
        if attr == "tx.code":
            if op != "=":
                raise _refuse("tx.code takes = only")
            code = v
        elif op == "=":
            lo, hi = max(lo, v), v if hi is None else min(hi, v)
        elif op in (">", ">="):
            lo = max(lo, v + (op == ">"))
        else:
            top = v - (op == "<")
            hi = top if hi is None else min(hi, top)
    return TxQuery(max(lo, 1), hi, tx_hash, code, tuple(attrs))


def _attr(name: str, raw: str) -> tuple[bytes, bytes]:
    text = raw[1:-1] if raw[0] in "'\"" else raw
    value = text.encode()
    if len(value) > MAX_VALUE:
        raise _refuse(f"{name} values are indexed up to {MAX_VALUE} bytes")
    return name.encode(), value


_TM_EVENT = re.compile(r"""^\s*tm\.event\s*=\s*('([^']*)'|"([^"]*)")\s*$""")


def parse_subscription(query: str) -> TxQuery:
    """A `subscribe` query (topic `txs`): the tx_search language, plus CometBFT's
    `tm.event='Tx'` (the only event kind a tx subscription has; any other is refused)."""
    if len(query) > MAX_QUERY:
        raise _refuse(f"longer than {MAX_QUERY} characters")
    kept = []
    for part in re.split(r"\s+AND\s+", query.strip()):
        m = _TM_EVENT.match(part)
        if m is None:
            kept.append(part)
        elif (m.group(2) or m.group(3)) != "Tx":
            raise _refuse(f"tm.event {m.group(1)} is not served: topic txs has tm.event='Tx' "
                          "(for blocks, subscribe to topic blocks)")
    return parse(" AND ".join(kept)) if kept else TxQuery()


def matches(q: TxQuery, height: int, tx_hash: bytes, code: int,
            attrs: set[tuple[bytes, bytes]]) -> bool:
    """Does a committed tx (its height, hash, result code and event attributes) satisfy `q`?"""
    return (q.lo <= height and (q.hi is None or height <= q.hi)
            and (q.tx_hash is None or tx_hash == q.tx_hash)
            and (q.code is None or code == q.code)
            and all(a in attrs for a in q.attrs))
