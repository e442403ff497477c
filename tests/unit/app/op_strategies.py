"""Hypothesis strategies for op bytes: every op type, valid or mutated.

An op is drawn as a Python map (field name -> value) shaped like its schema, then maybe
mutated (integer edges and past 2^64, negatives, wrong types, deep nesting, huge and empty
collections, invalid UTF-8, unknown fields, shuffled field order, a dropped field) and encoded
by `pack`, a raw msgpack encoder that can also write what msgspec never would (see `Raw`).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from hypothesis import strategies as st

from bftnode.app import ops


@dataclass(frozen=True)
class Raw:
    """Bytes spliced into the encoding as they are (malformed or hand-built msgpack)."""

    data: bytes


def pack(obj) -> bytes:
    """msgpack of nil/bool/int/float/str/bytes/list/tuple/dict/Raw. Ints past the 64-bit range
    have no msgpack form: they are written as float64 (as a lax encoder would)."""
    if isinstance(obj, Raw):
        return obj.data
    if obj is None:
        return b"\xc0"
    if obj is True or obj is False:
        return b"\xc3" if obj else b"\xc2"
    if isinstance(obj, int):
        if 0 <= obj < 128:
            return bytes([obj])
        if -32 <= obj < 0:
            return struct.pack(">b", obj)
        if 0 <= obj < 2**64:
            return b"\xcf" + obj.to_bytes(8, "big")
        if -(2**63) <= obj < 0:
            return b"\xd3" + obj.to_bytes(8, "big", signed=True)
        return b"\xcb" + struct.pack(">d", float(obj))
    if isinstance(obj, float):
        return b"\xcb" + struct.pack(">d", obj)
    if isinstance(obj, str):
        return _sized(obj.encode("utf-8", "surrogatepass"), 0xA0, 0xD9)
    if isinstance(obj, bytes):
        return _sized(obj, None, 0xC4)
    if isinstance(obj, list | tuple):
        return _header(len(obj), 0x90, 0xDC) + b"".join(pack(x) for x in obj)
    if isinstance(obj, dict):
        return _header(len(obj), 0x80, 0xDE) + b"".join(pack(k) + pack(v) for k, v in obj.items())
    raise TypeError(type(obj))


def _sized(data: bytes, fix: int | None, base: int) -> bytes:
    n = len(data)
    if fix is not None and n < 32:
        return bytes([fix | n]) + data
    if n < 256:
        return bytes([base, n]) + data
    if n < 65536:
        return bytes([base + 1]) + n.to_bytes(2, "big") + data
    return bytes([base + 2]) + n.to_bytes(4, "big") + data


def _header(n: int, fix: int, base: int) -> bytes:
    if n < 16:
        return bytes([fix | n])
    if n < 65536:
        return bytes([base]) + n.to_bytes(2, "big")
    return bytes([base + 1]) + n.to_bytes(4, "big")


def deep(depth: int, leaf: bytes = b"\xc0", kind: str = "map") -> Raw:
    """`depth` nested maps ({"x": ...}) or arrays around `leaf`."""
    head = b"\x81\xa1x" if kind == "map" else b"\x91"
    return Raw(head * depth + leaf)


# ---------------------------------------------------------------- field values

EDGE_INTS = [0, 1, -1, 2, 127, 128, 255, 256, 2**31 - 1, 2**32, 2**53 + 1, 2**63 - 2, 2**63 - 1,
             2**63, 2**64 - 1, 2**64, 2**70, -(2**31), -(2**63), -(2**63) - 1, -(2**64)]
ints = st.one_of(st.sampled_from(EDGE_INTS), st.integers(-(2**65), 2**65), st.integers(0, 50))
small_ints = st.integers(0, 60)  # revisions, lease ids and tokens that may exist
keys = st.one_of(
    st.sampled_from([b"", b"a", b"b", b"k/1", b"key/000001", b"\x00", b"\xff", b"lock"]),
    st.binary(max_size=12),
    st.sampled_from([4095, 4096, 4097]).map(lambda n: b"k" * n),
)
values = st.one_of(st.binary(max_size=16),
                   st.sampled_from([0, ops.MAX_VALUE_BYTES, ops.MAX_VALUE_BYTES + 1])
                   .map(lambda n: b"v" * n))
texts = st.one_of(st.text(max_size=8), st.sampled_from(["", "equivocation", "x" * 65]))
invalid_utf8 = st.sampled_from([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"a\x80b"]).map(
    lambda b: Raw(bytes([0xA0 | len(b)]) + b))
wrong = st.one_of(
    st.none(), st.booleans(), ints, st.floats(allow_nan=True), texts, st.binary(max_size=4),
    st.lists(st.integers(0, 3), max_size=3), st.dictionaries(st.text(max_size=2), st.none(),
                                                              max_size=2),
    invalid_utf8, st.integers(1, 40).map(deep), st.integers(1, 40).map(lambda d: deep(d, kind="a")),
    st.sampled_from([Raw(b"\xc1"), Raw(b"\xd4\x01\x00"), Raw(b"\xc7\x00\x05"), Raw(b"\xcf\x00"),
                     Raw(b"\xdd\xff\xff\xff\xff"), Raw(b"\xdf\x00\x01\x00\x00")]),
)


# ---------------------------------------------------------------- valid-shaped op maps

def _m(tag: str, **fields) -> st.SearchStrategy[dict]:
    return st.fixed_dictionaries({"op": st.just(tag), **fields})


bools = st.booleans()
put_map = st.fixed_dictionaries({"op": st.just("put"), "key": keys, "value": values},
                                optional={"lease": small_ints, "prev_kv": bools})
delete_map = st.fixed_dictionaries({"op": st.just("delete"), "key": keys},
                                   optional={"prefix": bools, "prev_kv": bools})
range_map = st.fixed_dictionaries(
    {"op": st.just("range"), "key": keys},
    optional={"prefix": bools, "limit": st.integers(0, 12), "revision": small_ints,
              "keys_only": bools, "count_only": bools,
              "range_end": st.sampled_from([b"", b"\x00", b"b", b"key/1", b"\xff"])},
)
sub_range_map = range_map.map(lambda d: {k: v for k, v in d.items() if k != "revision"})
compare_map = st.fixed_dictionaries(
    {"key": keys, "target": st.sampled_from(["value", "version", "create", "mod", "lease"]),
     "result": st.sampled_from(["=", "!=", "<", ">"])},
    optional={"value": st.one_of(st.none(), small_ints, st.binary(max_size=3))},
)
sub_ops = st.one_of(put_map, delete_map, sub_range_map)
small_put = st.fixed_dictionaries({"op": st.just("put"), "key": st.binary(max_size=4),
                                   "value": st.binary(max_size=4)})
txn_map = st.fixed_dictionaries(
    {"op": st.just("txn")},
    optional={"compare": st.lists(compare_map, max_size=3),
              "success": st.lists(sub_ops, max_size=4), "failure": st.lists(sub_ops, max_size=3)},
)
roles = st.sampled_from(["r1", "reader", "w-2", "", "-bad", "x" * 65, "r1\n"])
perms = st.sampled_from(["read", "write", "readwrite", "all"])
OP_MAPS = {
    "put": put_map,
    "delete": delete_map,
    "range": range_map,
    "txn": txn_map,
    "compact": _m("compact", revision=small_ints),
    "lease_grant": _m("lease_grant", ttl_ms=st.sampled_from([1, 100, 5_000, ops.MAX_TTL_MS])),
    "lease_keepalive": _m("lease_keepalive", id=small_ints),
    "lease_revoke": _m("lease_revoke", id=small_ints),
    "lock_acquire": st.fixed_dictionaries({"op": st.just("lock_acquire"), "name": keys,
                                           "lease": small_ints}, optional={"wait": bools}),
    "lock_release": _m("lock_release", name=keys, token=small_ints),
    "lock_cancel": _m("lock_cancel", name=keys, lease=small_ints),
    "campaign": st.fixed_dictionaries({"op": st.just("campaign"), "name": keys,
                                       "lease": small_ints}, optional={"value": values}),
    "proclaim": _m("proclaim", name=keys, token=small_ints, value=values),
    "resign": _m("resign", name=keys, token=small_ints),
    "evidence": st.fixed_dictionaries(
        {"op": st.just("evidence"), "accused": st.integers(0, 5), "kind": texts},
        optional={"reason": texts, "proof": st.binary(max_size=8)}),
    **{tag: _m(tag, role=roles) for tag in ("auth_role_add", "auth_role_delete")},
    **{tag: st.fixed_dictionaries(
        {"op": st.just(tag), "role": roles, "perm": perms, "key": keys},
        optional={"prefix": bools, "range_end": st.sampled_from([b"", b"\x00", b"key/2"])})
       for tag in ("auth_grant", "auth_revoke")},
    **{tag: _m(tag, client=st.sampled_from([b"A" * 32, b"B" * 32, b"C" * 31]), role=roles)
       for tag in ("auth_bind", "auth_unbind")},
    "auth_enable": st.fixed_dictionaries({"op": st.just("auth_enable")},
                                         optional={"enabled": bools}),
}
assert set(OP_MAPS) == {t.__struct_config__.tag for t in ops.Op.__args__}  # every op type


# ---------------------------------------------------------------- mutations

MUTATIONS = ("int", "wrong_type", "unknown_field", "drop_field", "tag_last", "deep", "empty",
             "invalid_utf8", "non_str_key", "many_items", "in_sub_op")


def _place(draw, d: dict, key, value) -> dict:
    """`d` with `key` set to `value` at a drawn position (first = before the "op" tag)."""
    rest = [(k, v) for k, v in d.items() if k != key]
    at = draw(st.integers(0, len(rest)))
    return dict(rest[:at] + [(key, value)] + rest[at:])


def _mutate(draw, d: dict) -> dict:
    d = dict(d)
    kind = draw(st.sampled_from(MUTATIONS))
    fields = list(d)
    name = draw(st.sampled_from(fields)) if fields else "op"
    if kind == "int":
        name = draw(st.sampled_from([k for k, v in d.items() if type(v) is int] or [name]))
        d[name] = draw(ints)
    elif kind == "wrong_type":
        d[name] = draw(wrong)
    elif kind == "unknown_field":
        extra = draw(st.one_of(st.text(max_size=4), st.sampled_from(["op", "key", "zzz"])))
        d = _place(draw, d, extra, draw(st.one_of(wrong, st.just(deep(10_000)))))
    elif kind == "drop_field":
        d.pop(name, None)
    elif kind == "tag_last":
        d = {k: v for k, v in d.items() if k != "op"} | {"op": d.get("op")}
    elif kind == "deep":
        depth = draw(st.sampled_from([7, 8, 9, 10, 100, 10_000]))
        d = _place(draw, d, name, deep(depth, kind=draw(st.sampled_from(["map", "array"]))))
    elif kind == "empty":
        d[name] = draw(st.sampled_from([b"", "", [], {}, 0]))
    elif kind == "invalid_utf8":
        d[name] = draw(invalid_utf8)
    elif kind == "non_str_key":
        d[draw(st.one_of(ints, st.binary(max_size=3), st.none()))] = draw(wrong)
    elif kind == "many_items":
        n = draw(st.sampled_from([128, 129, 300, 5000, 9000]))
        item = draw(st.one_of(small_put, st.none(), st.integers(0, 3)))  # n copies: keep small
        d[name] = [item] * n
    elif kind == "in_sub_op":
        lists = [k for k, v in d.items() if isinstance(v, list) and v]
        if lists:
            name = draw(st.sampled_from(lists))
            items = list(d[name])
            i = draw(st.integers(0, len(items) - 1))
            items[i] = _mutate(draw, items[i]) if isinstance(items[i], dict) else draw(wrong)
            d[name] = items
    return d


@st.composite
def op_maps(draw, mutate: bool = True) -> dict:
    """An op map of any type, with up to three mutations when `mutate`."""
    d = draw(st.one_of(*OP_MAPS.values()))
    for _ in range(draw(st.integers(0, 3)) if mutate else 0):
        d = _mutate(draw, d)
    return d


@st.composite
def op_bytes(draw) -> bytes:
    """Op bytes: a packed (maybe mutated) op map, sometimes damaged after encoding."""
    data = pack(draw(op_maps()))
    damage = draw(st.sampled_from(["none"] * 6 + ["truncate", "append", "flip", "garbage"]))
    if damage == "truncate" and data:
        data = data[: draw(st.integers(0, len(data) - 1))]
    elif damage == "append":
        data += draw(st.binary(min_size=1, max_size=4))
    elif damage == "flip" and data:
        i = draw(st.integers(0, len(data) - 1))
        data = data[:i] + bytes([data[i] ^ draw(st.integers(1, 255))]) + data[i + 1 :]
    elif damage == "garbage":
        data = draw(st.binary(max_size=64))
    return data
