"""A tampering HTTP proxy for the proof tests: starlette served by hypercorn on trio, httpx to
the node; `tamper(method, params, result)` rewrites each JSON-RPC result in place before it
goes back to the client. For tests only."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import trio
from hypercorn.config import Config
from hypercorn.trio import serve
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

Tamper = Callable[[str, dict[str, Any], Any], None]


def proxy_app(upstream: str, tamper: Tamper, counter: list[int]) -> Starlette:
    http = httpx.AsyncClient(timeout=30)

    async def root(request: Request) -> Response:
        body = await request.body()
        r = await http.post(upstream + "/", content=body,
                            headers={"content-type": "application/json"})
        out = r.json()
        call = json.loads(body)
        if isinstance(call, dict) and isinstance(out, dict) and isinstance(
                out.get("result"), dict):
            tamper(call.get("method", ""), call.get("params") or {}, out["result"])
            counter[0] += 1
        return Response(json.dumps(out), status_code=r.status_code,
                        media_type="application/json")

    return Starlette(routes=[Route("/", root, methods=["POST"])])


async def start_proxy(nursery: trio.Nursery, upstream: str, port: int, tamper: Tamper,
                      counter: list[int]) -> str:
    cfg = Config()
    cfg.bind = [f"127.0.0.1:{port}"]
    cfg.accesslog = cfg.errorlog = None
    await nursery.start(lambda task_status: serve(
        proxy_app(upstream, tamper, counter), cfg, task_status=task_status))
    return f"http://127.0.0.1:{port}"
