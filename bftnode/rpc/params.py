"""The parameters of every JSON-RPC method: one msgspec Struct per method, and `parse`, the one
place where a caller's params become typed values or an `invalid_params` error naming the param.

Owns the accepted type, range and shape of each param (docs/rpc.md, "Parameters") and the
wording of every invalid_params message. The rules are the same for POST, WebSocket and GET
(`/block?height=5`, where every value arrives as a string):

- integers are JSON integers or decimal strings of ASCII digits ("5", as CometBFT clients
  send), within [0, 2^63) and the param's own range; booleans are never integers;
- booleans are true/false or the strings "true"/"false"; seconds are numbers or decimal strings;
- text (hashes, client ids, txs, names of choices) must parse as what it names; keys, values
  and names are UTF-8 strings (NUL is a byte like any other; a lone surrogate is not UTF-8) or
  base64 when the call says `"encoding": "base64"`;
- null means absent; params a method does not take are ignored.

Imports: stdlib, msgspec, consensus (Request decoding), bftnode.rpc.errors. Must not import
starlette, hypercorn, trio or bftnode.node.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from typing import Annotated, Any, Literal, TypeVar

import msgspec
import msgspec.inspect as mi

from consensus import Request, decode
from consensus.errors import DecodeError

from .errors import INVALID_PARAMS, TOO_LARGE, RPCError

U63_MAX = 2**63 - 1  # every integer on our wire (heights, seqs, ids, revisions) is below 2^63
DEFAULT_COMMIT_TIMEOUT_S = 10.0
MAX_COMMIT_TIMEOUT_S = 120.0
MAX_RANGE_LIMIT = 10_000
MAX_TX_BYTES = 2 * 1024 * 1024  # decoded; the node applies its own (smaller) request limit
TOPICS = ("blocks", "txs", "kv", "events")

U63 = Annotated[int, msgspec.Meta(ge=0, le=U63_MAX)]
Positive = Annotated[int, msgspec.Meta(ge=1, le=U63_MAX)]
Seconds = Annotated[float, msgspec.Meta(ge=0.0, le=MAX_COMMIT_TIMEOUT_S)]
Limit = Annotated[int, msgspec.Meta(ge=0, le=MAX_RANGE_LIMIT)]
# keys, values and names: bytes, sent as UTF-8 text or base64 (`encoding`); see Params.
Data = Annotated[str, msgspec.Meta(extra={"data": "non-empty"})]
DataOrEmpty = Annotated[str, msgspec.Meta(extra={"data": "may be empty"})]
Encoding = Literal["utf8", "base64"]
Consistency = Literal["serializable", "sequential", "linearizable"]
Topic = Literal["blocks", "txs", "kv", "events"]
assert Topic.__args__ == TOPICS  # type: ignore[attr-defined]


class TxHash(bytes):
    """A 32-byte hash, sent as 64 hex characters (an 0x prefix is allowed)."""


class ClientId(bytes):
    """A client's Ed25519 public key, sent as 64 hex characters."""


class SignedTx:
    """Param `tx`: base64 of `consensus.codec.encode(Request)`, decoded."""

    __slots__ = ("request",)

    def __init__(self, request: Request) -> None:
        self.request = request


# ---------------------------------------------------------------- schemas


class Params(msgspec.Struct, kw_only=True):
    """Base of every method's params. `Data` fields arrive as text and leave as bytes."""

    def __post_init__(self) -> None:
        plan = _plan(type(self))
        encoding = getattr(self, "encoding", "utf8")
        for name, allow_empty in plan.data.items():
            v = getattr(self, name)
            if isinstance(v, str):
                setattr(self, name, _data_bytes(name, v, encoding, allow_empty))
        self.check()

    def check(self) -> None:
        """Rules across params (one method's own); raise ValueError("param 'x' ...")."""


class NoParams(Params, kw_only=True):
    pass


class Encoded(Params, kw_only=True):
    encoding: Encoding = "utf8"


class Fresh(Encoded, kw_only=True):
    """Read freshness (docs/rpc.md): the node must be at `min_height` (it waits briefly), and
    its last block no older than `max_lag_ms`, or the read fails with stale_read."""

    min_height: U63 | None = None
    max_lag_ms: U63 | None = None
    prove: bool | None = None  # a proof with the answer (default: on with authenticated_state)


class RevisionParams(Fresh, kw_only=True):
    pass


class AuthStatusParams(Fresh, kw_only=True):
    def check(self) -> None:
        if self.prove:
            raise ValueError("param 'prove': auth_status is answered without a proof")


class BlockParams(Params, kw_only=True):
    height: Positive | None = None  # latest when absent
    min_height: U63 | None = None  # freshness (Fresh)
    max_lag_ms: U63 | None = None


class BlockchainParams(Params, kw_only=True):
    min_height: Positive = 1  # the range's lower bound (CometBFT's), not freshness
    max_height: U63 | None = None  # current height when absent
    max_lag_ms: U63 | None = None  # freshness (Fresh)


class TxParams(Fresh, kw_only=True):
    hash: TxHash


class TxStatusParams(Fresh, kw_only=True):
    tx: SignedTx | None = None
    hash: TxHash | None = None
    valid_until: U63 | None = None
    client_id: ClientId | None = None
    request_seq: U63 | None = None

    def check(self) -> None:
        if self.tx is None and self.hash is None:
            if self.client_id is None:
                raise ValueError("missing required param 'client_id' (or 'hash', or 'tx')")
            if self.request_seq is None:
                raise ValueError("missing required param 'request_seq' (with 'client_id')")


class BroadcastParams(Encoded, kw_only=True):
    tx: SignedTx


class BroadcastCommitParams(BroadcastParams, kw_only=True):
    timeout: Seconds = DEFAULT_COMMIT_TIMEOUT_S
    prove: bool | None = None


class ReadParams(Fresh, kw_only=True):
    revision: U63 | None = None
    min_revision: U63 | None = None
    consistency: Consistency = "serializable"

    def check(self) -> None:
        if self.consistency == "linearizable":
            raise ValueError(
                "param 'consistency': linearizable reads are ordered through consensus: submit "
                "a client-signed range tx with broadcast_tx_commit (bftnode.client does this "
                "for consistency='linearizable'), or read from 2f+1 nodes at the same height")


class KvGetParams(ReadParams, kw_only=True):
    key: Data


# ---------------------------------------------------------------- CometBFT's routes (comet.py)


class HeightParams(Fresh, kw_only=True):
    height: Positive | None = None  # latest when absent


class BlockHashParams(Fresh, kw_only=True):
    hash: TxHash  # 64 hex characters (0x allowed), like a tx hash


class TxSearchParams(Fresh, kw_only=True):
    query: str
    page: Positive = 1
    per_page: Annotated[int, msgspec.Meta(ge=1, le=100)] = 30
    order_by: Literal["asc", "desc", ""] = "asc"


class AbciQueryParams(Params, kw_only=True):
    path: str = ""  # "", "/key" or "/store/kv/key": a key read (the only store)
    data: str = ""  # the key, hex (as CometBFT sends it)
    height: U63 = 0  # 0: latest; else served once the node is at least there (min_height)
    prove: bool = False


class UnconfirmedParams(Params, kw_only=True):
    limit: Annotated[int, msgspec.Meta(ge=1, le=100)] = 30


class KvRangeParams(ReadParams, kw_only=True):
    key: DataOrEmpty = ""  # with prefix (the default), empty ranges over every key
    prefix: bool | None = None
    keys_only: bool | None = None
    count_only: bool | None = None
    limit: Limit | None = None
    cursor: str | None = None  # the `cursor` of the previous page's answer (docs/rpc.md)


class LeaseTtlParams(Fresh, kw_only=True):
    id: Positive
    keys: bool | None = None


class LockStatusParams(Fresh, kw_only=True):
    name: Data
    token: Positive | None = None
    lease: Positive | None = None


class ElectionLeaderParams(Fresh, kw_only=True):
    name: Data
    require: bool | None = None


class SubscribeParams(Encoded, kw_only=True):
    topic: Topic
    from_height: Positive | None = None
    prefix: DataOrEmpty | None = None  # topic kv: the key prefix (or `key`)
    key: Data | None = None
    from_revision: U63 = 0
    client_id: ClientId | None = None  # topic txs: only this client's txs
    full: bool = False
    query: str | None = None  # topic txs: CometBFT's query language (rpc.tx_query)

    def check(self) -> None:
        if self.topic == "kv" and self.prefix is None and self.key is None:
            raise ValueError("missing required param 'prefix' (or 'key') for topic 'kv'")
        if self.query is not None and self.topic != "txs":
            raise ValueError("param 'query' is for topic 'txs'")


class UnsubscribeParams(Params, kw_only=True):
    subscription: str


# ---------------------------------------------------------------- parsing

P = TypeVar("P", bound=Params)


def parse(schema: type[P], params: dict[str, Any]) -> P:
    """The typed params of one call, or RPCError(INVALID_PARAMS) naming the bad param."""
    plan = _plan(schema)
    args: dict[str, Any] = {}
    for name in plan.fields:
        v = params.get(name)
        if v is None:
            continue
        if isinstance(v, str) and name not in plan.data:  # data fields say it their way
            _check_text(name, v)
            kind = plan.scalars.get(name)
            if kind is not None:
                v = _from_text(name, kind, v)
        args[name] = v
    try:
        return msgspec.convert(args, schema, dec_hook=_dec_hook)
    except msgspec.ValidationError as exc:
        raise _invalid(str(exc), plan) from None


@dataclass(frozen=True)
class _Plan:
    """What `parse` needs to know of a schema, read once from its type annotations."""

    fields: tuple[str, ...]
    scalars: dict[str, str]  # name -> "int" | "float" | "bool": also accepted as text
    data: dict[str, bool]  # Data fields -> may be empty
    choices: dict[str, tuple[Any, ...]]  # Literal fields -> allowed values


_plans: dict[type, _Plan] = {}
_SCALARS: dict[type, str] = {mi.IntType: "int", mi.FloatType: "float", mi.BoolType: "bool"}


def _plan(schema: type) -> _Plan:
    plan = _plans.get(schema)
    if plan is None:
        info = mi.type_info(schema)
        assert isinstance(info, mi.StructType)
        scalars, data, choices = {}, {}, {}
        for f in info.fields:
            t, extra = _unwrap(f.type)
            if type(t) in _SCALARS:
                scalars[f.name] = _SCALARS[type(t)]
            elif extra.get("data"):
                data[f.name] = extra["data"] == "may be empty"
            elif isinstance(t, mi.LiteralType):
                choices[f.name] = t.values
        plan = _plans[schema] = _Plan(tuple(f.name for f in info.fields), scalars, data,
                                      choices)
    return plan


def _unwrap(t: mi.Type) -> tuple[mi.Type, dict[str, Any]]:
    """The one non-null type of an optional field, without its Metadata wrapper."""
    if isinstance(t, mi.UnionType):
        kinds = [u for u in t.types if not isinstance(u, mi.NoneType)]
        assert len(kinds) == 1, f"a param has one type (or null), got {t}"
        t = kinds[0]
    if isinstance(t, mi.Metadata):
        return t.type, dict(t.extra or {})
    return t, {}


_INT_TEXT = re.compile(r"[+-]?[0-9]+")
_FLOAT_TEXT = re.compile(r"[+-]?[0-9]{1,16}(\.[0-9]{1,16})?")


def _from_text(name: str, kind: str, v: str) -> Any:
    """An int/float/bool param sent as text (GET query values, CometBFT-style "5")."""
    s = v.strip(" \t")
    if kind == "bool":
        return {"true": True, "false": False}.get(s, v)
    if kind == "int" and _INT_TEXT.fullmatch(s):
        if len(s.lstrip("+-")) > 19:  # before int(): 4,301 digits would raise in int()
            raise _bad(name, f"param {name!r} must be an integer <= {U63_MAX}")
        return int(s)
    if kind == "float" and _FLOAT_TEXT.fullmatch(s):
        return float(s)
    return v  # left for msgspec to refuse with the expected type


def _check_text(name: str, v: str) -> None:
    """Text that is not data (hashes, txs, choices, numbers as text): no NUL, and encodable
    (msgspec cannot even compare a lone surrogate with a choice)."""
    if "\x00" in v or _has_surrogate(v):
        raise _bad(name, f"param {name!r} must be text without NUL or lone surrogates")


def _has_surrogate(v: str) -> bool:
    try:
        v.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _data_bytes(name: str, v: str, encoding: str, allow_empty: bool) -> bytes:
    if encoding == "base64":
        try:
            raw = base64.b64decode(v, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError(f"param {name!r} is not valid base64") from None
    else:
        try:
            raw = v.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError(f"param {name!r} is not valid UTF-8 (a lone surrogate); send "
                             "binary data with \"encoding\": \"base64\"") from None
    if not raw and not allow_empty:
        raise ValueError(f"param {name!r} must not be empty")
    return raw


_HEX64 = re.compile(r"(?:0[xX])?([0-9a-fA-F]{64})")


def _hex32(v: Any, what: str) -> bytes:
    if not isinstance(v, str):
        raise TypeError(f"must be {what} (64 hex characters), got {_json_type(v)}")
    m = _HEX64.fullmatch(v)
    if m is None:
        raise ValueError(f"must be {what} (64 hex characters), got {len(v)} characters")
    return bytes.fromhex(m.group(1))


def _signed_tx(v: Any) -> SignedTx:
    if not isinstance(v, str):
        raise TypeError(f"must be a string (base64 of an encoded Request), got {_json_type(v)}")
    if len(v) > MAX_TX_BYTES * 4 // 3 + 4:
        raise RPCError(TOO_LARGE, f"tx of {len(v)} base64 chars exceeds {MAX_TX_BYTES} bytes",
                       {"param": "tx"})
    try:
        raw = base64.b64decode(v, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("is not valid base64") from None
    try:
        msg = decode(raw)
    except DecodeError as exc:
        raise ValueError(f"is not an encoded consensus Request: {exc}") from None
    if not isinstance(msg, Request):
        raise ValueError(f"must be a Request, got {type(msg).__name__}")
    return SignedTx(msg)


_CUSTOM: dict[type, Any] = {
    TxHash: lambda v: TxHash(_hex32(v, "a 32-byte hash")),
    ClientId: lambda v: ClientId(_hex32(v, "a client's public key")),
    SignedTx: _signed_tx,
}


def _dec_hook(t: type, v: Any) -> Any:
    return _CUSTOM[t](v)


# ---------------------------------------------------------------- messages


def _bad(name: str | None, msg: str) -> RPCError:
    return RPCError(INVALID_PARAMS, msg, None if name is None else {"param": name})


_AT = re.compile(r"(?P<what>.*?)(?: - at `\$(?:\.(?P<param>\w+))?(?P<path>[^`]*)`)?", re.S)
_EXPECTED = re.compile(r"Expected `(?P<want>[^`]+)`(?:, got `(?P<got>[^`]+)`)?(?P<rest>.*)",
                       re.S)
_MISSING = re.compile(r"Object missing required field `(?P<param>\w+)`")
_NAMED = re.compile(r"(?:missing required )?param '(?P<param>\w+)'")
_NOUNS = {"int": "an integer", "str": "a string", "bool": "true or false",
          "float": "a number", "object": "an object", "array": "an array"}


def _invalid(msg: str, plan: _Plan) -> RPCError:
    """msgspec's ValidationError text -> our invalid_params message naming the param."""
    m = _MISSING.fullmatch(msg)
    if m:
        return _bad(m["param"], f"missing required param {m['param']!r}")
    m = _NAMED.match(msg)
    if m:  # ours, from a check or a data field: already worded
        return _bad(m["param"], msg)
    at = _AT.fullmatch(msg)
    assert at is not None  # the pattern matches any text
    what, name, path = at["what"], at["param"], at["path"] or ""
    if name is None:
        return _bad(None, f"invalid params: {what}")
    where = f"param {name + path!r}"
    exp = _EXPECTED.fullmatch(what)
    if name in plan.choices and (exp is None or exp["got"] == "str"):
        allowed = ", ".join(map(str, plan.choices[name]))
        return _bad(name, f"{where} must be one of {allowed}")
    if exp is None:  # from a custom type's parser ("must be ...", "is not ...") or msgspec
        return _bad(name, f"{where} {what[:1].lower()}{what[1:]}")
    want = exp["want"].removesuffix(" | null")
    noun = _NOUNS.get(want, f"`{want}`")
    if exp["got"]:
        return _bad(name, f"{where} must be {noun}, got {exp['got']}")
    return _bad(name, f"{where} must be {noun}{exp['rest'].rstrip()}")


def _json_type(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, dict):
        return "object"
    if isinstance(v, list | tuple):
        return "array"
    return type(v).__name__

