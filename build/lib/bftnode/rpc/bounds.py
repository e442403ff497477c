"""Bounds on a JSON payload checked on its raw bytes, before it is decoded.

Owns `check_json_bounds`: how deep a request body or WebSocket message may nest and how many
values it may hold (the node config's `rpc_max_json_depth` and `rpc_max_json_elements`,
docs/rpc.md "Bad input"), and `BadPayload`, the error for a payload refused whole (with a
reason code from a closed set, for the metrics). The scan runs at C speed: strings are cut out
with one regex, then brackets and commas are counted; depth is checked by peeling the
innermost bracket pairs `max_depth` times. Imports: stdlib, bftnode.rpc.errors.
"""

from __future__ import annotations

import re

from .errors import INVALID_REQUEST, PARSE_ERROR, RPCError

# reason codes of a refused payload (metrics label `reason`; anything else is "other")
REASONS = ("malformed", "too_deep", "too_many_values", "binary_frame", "other")

_STRING = re.compile(rb'"(?:[^"\\]++|\\.)*+"', re.DOTALL)
_SQUARE = bytes.maketrans(b"{}", b"[]")
_NOT_BRACKET = bytes(b for b in range(256) if b not in b"[]{}")


class BadPayload(RPCError):
    """A payload refused whole, before any call in it ran (HTTP 400 over POST)."""

    def __init__(self, code: int, message: str, reason: str) -> None:
        super().__init__(code, message)
        self.reason = reason if reason in REASONS else "other"


def check_json_bounds(data: bytes, max_depth: int, max_elements: int) -> None:
    """Raise BadPayload if `data` nests deeper than `max_depth` arrays/objects or holds more
    than `max_elements` values (array items and object members, counted over the whole
    payload: commas plus opening brackets, an upper bound). Malformed JSON within the bounds
    is left to the decoder, which then never recurses deeper than `max_depth`."""
    raw_opens = data.count(b"[") + data.count(b"{")  # counts with strings: never fewer
    if raw_opens <= max_depth and data.count(b",") + raw_opens <= max_elements:
        return  # the common case (one call, a big tx): no need to cut out the strings
    bare = _STRING.sub(b"", data) if b'"' in data else data
    brackets = bare.translate(_SQUARE, _NOT_BRACKET)
    opens = brackets.count(b"[")
    values = bare.count(b",") + opens
    if opens > max_depth:  # depth first: a deep nest is "too deep", whatever else it is
        # each pass removes the innermost pairs: a balanced payload is gone after `depth` passes
        peeled = brackets
        for _ in range(max_depth):
            shorter = peeled.replace(b"[]", b"")
            if len(shorter) == len(peeled):
                break
            peeled = shorter
        if peeled and b"[]" in peeled:
            raise BadPayload(PARSE_ERROR, f"parse error: JSON nested deeper than {max_depth} "
                             "levels (rpc_max_json_depth)", "too_deep")
        if peeled:
            raise BadPayload(PARSE_ERROR, "parse error: body is not valid JSON (its brackets do "
                             f"not balance, or it opens more than {max_depth} levels)",
                             "malformed")
    if values > max_elements:
        raise BadPayload(INVALID_REQUEST, f"invalid request: about {values} JSON values in one "
                         f"message, over the limit of {max_elements} (rpc_max_json_elements)",
                         "too_many_values")
