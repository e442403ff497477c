"""A cheap walk over msgpack bytes that bounds their shape before anything decodes them.

Owns `shape_error`: nesting depth, number of items and truncation, checked iteratively (no
recursion, so no stack depth of the caller can change the answer) in time linear in the
number of items, skipping str/bin/ext payloads without reading them. A decoder given bytes
that passed cannot recurse deeper than the bound. Imports: stdlib only.
"""

from __future__ import annotations

# Lead byte -> (kind, n): kind 0 = a scalar of n more bytes; 1 = a payload whose length is an
# n-byte big-endian integer (ext: plus 1 type byte, see _EXT); 2 = an array of n items; 3 = a
# map of n pairs; 4 = an array whose count is an n-byte integer; 5 = such a map; 6 = invalid.
_SCALAR, _SIZED, _ARRAY, _MAP, _ARRAY_N, _MAP_N, _INVALID = range(7)


def _table() -> tuple[tuple[int, int], ...]:
    t: list[tuple[int, int]] = [(_INVALID, 0)] * 256
    for b in range(0x00, 0x80):
        t[b] = (_SCALAR, 0)  # positive fixint
    for b in range(0xE0, 0x100):
        t[b] = (_SCALAR, 0)  # negative fixint
    for b in range(0x80, 0x90):
        t[b] = (_MAP, b & 0x0F)
    for b in range(0x90, 0xA0):
        t[b] = (_ARRAY, b & 0x0F)
    for b in range(0xA0, 0xC0):
        t[b] = (_SCALAR, b & 0x1F)  # fixstr: its payload is a fixed skip
    for b in (0xC0, 0xC2, 0xC3):
        t[b] = (_SCALAR, 0)  # nil, false, true
    for b, n in ((0xC4, 1), (0xC5, 2), (0xC6, 4), (0xD9, 1), (0xDA, 2), (0xDB, 4)):
        t[b] = (_SIZED, n)  # bin 8/16/32, str 8/16/32
    for b, n in ((0xC7, 1), (0xC8, 2), (0xC9, 4)):
        t[b] = (_SIZED, n)  # ext 8/16/32 (+1 type byte)
    for b, n in ((0xCA, 4), (0xCB, 8), (0xCC, 1), (0xCD, 2), (0xCE, 4), (0xCF, 8),
                 (0xD0, 1), (0xD1, 2), (0xD2, 4), (0xD3, 8)):
        t[b] = (_SCALAR, n)  # float 32/64, uint 8..64, int 8..64
    for b, n in ((0xD4, 2), (0xD5, 3), (0xD6, 5), (0xD7, 9), (0xD8, 17)):
        t[b] = (_SCALAR, n)  # fixext 1/2/4/8/16: type byte + data
    t[0xDC], t[0xDD] = (_ARRAY_N, 2), (_ARRAY_N, 4)
    t[0xDE], t[0xDF] = (_MAP_N, 2), (_MAP_N, 4)
    return tuple(t)


_LEAD = _table()
_EXT = frozenset((0xC7, 0xC8, 0xC9))
_CONTAINER_LEADS = bytes([*range(0x80, 0xA0), 0xDC, 0xDD, 0xDE, 0xDF])


def container_bytes(data: bytes) -> int:
    """How many bytes of `data` could open a container (payload bytes count too): an upper
    bound on its nesting depth, found in C."""
    return len(data) - len(data.translate(None, _CONTAINER_LEADS))


def shape_error(data: bytes, max_depth: int, max_items: int) -> str | None:
    """None if `data` is exactly one msgpack object nested at most `max_depth` containers deep
    with at most `max_items` array elements + map keys and values in all; else why not."""
    end = len(data)
    pos = 0
    items = 0
    left = [1]  # items still expected at each open level (the outermost: one object)
    while left:
        if not left[-1]:
            left.pop()
            continue
        left[-1] -= 1
        if pos >= end:
            return "truncated msgpack"
        lead = data[pos]
        kind, n = _LEAD[lead]
        pos += 1
        if kind == _SCALAR:
            pos += n
            continue
        if kind == _SIZED:
            size = int.from_bytes(data[pos : pos + n], "big")
            pos += n + size + (lead in _EXT)
            continue
        if kind == _INVALID:
            return f"invalid msgpack byte 0x{lead:02x}"
        if kind >= _ARRAY_N:
            count = int.from_bytes(data[pos : pos + n], "big")
            pos += n
            kind -= 2
        else:
            count = n
        if kind == _MAP:
            count *= 2
        items += count
        if items > max_items:
            return f"more than {max_items} msgpack items"
        if count > end - pos:  # every item takes at least one byte
            return "truncated msgpack"
        if count:
            if len(left) > max_depth:
                return f"msgpack nested deeper than {max_depth}"
            left.append(count)
    if pos != end:
        return "truncated msgpack" if pos > end else "trailing bytes after the msgpack object"
    return None
