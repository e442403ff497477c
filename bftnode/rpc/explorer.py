"""The web explorer (`GET /ui`, docs/rpc.md "Explorer") and the listings it reads.

The page is static HTML + JS (bftnode/rpc/ui/, package data) that calls the JSON-RPC methods
of the node that serves it and verifies signatures in the browser (WebCrypto Ed25519 and
SHA-256). `lock_list` and `lease_list` are ordinary read methods (paged, under the read bounds,
answered without a proof). Imports: stdlib, starlette, bftnode.rpc.
"""

from __future__ import annotations

from importlib import resources
from typing import Annotated, Any, Literal

import msgspec
from starlette.requests import Request as HTTPRequest
from starlette.responses import Response
from starlette.routing import Route

from .handlers import _given, _query
from .params import U63, DataOrEmpty, Fresh
from .registry import CallContext, method

MAX_LIST = 100
ListLimit = Annotated[int, msgspec.Meta(ge=1, le=MAX_LIST)]
_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
          ".css": "text/css; charset=utf-8"}
# the page needs nothing from elsewhere: scripts, styles and connections only to this node
_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")


class LockListParams(Fresh, kw_only=True):
    kind: Literal["lock", "election"] = "lock"
    after: DataOrEmpty | None = None  # the `next` of the previous page
    limit: ListLimit | None = None

    def check(self) -> None:
        if self.prove:
            raise ValueError("param 'prove': lock_list is answered without a proof")


class LeaseListParams(Fresh, kw_only=True):
    after: U63 | None = None
    limit: ListLimit | None = None

    def check(self) -> None:
        if self.prove:
            raise ValueError("param 'prove': lease_list is answered without a proof")


@method("lock_list", LockListParams)
async def on_lock_list(ctx: CallContext, p: LockListParams) -> Any:
    """{kind?, after?, limit?} -> {items: [lock_status…], next}: locks (or elections) by name."""
    p.prove = False
    return await _query(ctx, "lock_list", {"kind": p.kind, **_given(p, "after", "limit")}, p)


@method("lease_list", LeaseListParams)
async def on_lease_list(ctx: CallContext, p: LeaseListParams) -> Any:
    """{after?, limit?} -> {items: [lease_ttl…], next}: live leases by id."""
    p.prove = False
    return await _query(ctx, "lease_list", _given(p, "after", "limit"), p)


def _asset(name: str) -> bytes | None:
    if "/" in name or name.startswith(".") or not any(name.endswith(s) for s in _TYPES):
        return None
    f = resources.files("bftnode.rpc").joinpath("ui", name)
    return f.read_bytes() if f.is_file() else None


async def _serve(request: HTTPRequest) -> Response:
    name = request.path_params.get("name", "index.html")
    body = _asset(name)
    if body is None:
        return Response("not found\n", status_code=404, media_type="text/plain")
    ext = name[name.rfind("."):]
    return Response(body, media_type=_TYPES[ext], headers={
        "Content-Security-Policy": _CSP, "X-Content-Type-Options": "nosniff",
        "Cache-Control": "no-cache"})


def routes() -> list[Route]:
    """`/ui` (the page) and `/ui/<asset>`; before the node's catch-all `/{method}`."""
    return [Route("/ui", _serve, methods=["GET"]),
            Route("/ui/{name:str}", _serve, methods=["GET"])]


__all__: list[Any] = ["routes", "on_lock_list", "on_lease_list"]
