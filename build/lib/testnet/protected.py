"""A protected resource for fencing tokens: a tiny store on its own socket (127.0.0.1) that
accepts a write to a resource only with a token at least as high as any it has accepted
for that resource (the holder of one grant may write several times), and records what it
accepted and refused. The nemesis run's lock clients write to it with the chain's fencing
tokens; `check_resource` then judges the record against the chain's grants.

Protocol: one JSON object per line each way. Request {"resource", "token", "client",
"value"}; answer {"ok": bool, "max": highest accepted token}. At most MAX_CONNECTIONS clients
and MAX_LINE bytes per request (a bad line gets {"error": ...} and the connection closes).
Imports: stdlib, trio (the async client).
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

MAX_LINE = 4096
MAX_CONNECTIONS = 64


@dataclass
class Resource:
    """The store's state: per resource, the highest accepted token, and the log."""

    max_token: dict[str, int] = field(default_factory=dict)
    accepted: list[dict] = field(default_factory=list)
    refused: list[dict] = field(default_factory=list)

    def write(self, resource: str, token: int, client: str, value: str, t: float) -> dict:
        best = self.max_token.get(resource, 0)
        rec = {"resource": resource, "token": token, "client": client, "value": value,
               "time": t, "max_before": best}
        if token >= best:
            self.max_token[resource] = token
            self.accepted.append(rec)
            return {"ok": True, "max": token}
        self.refused.append(rec)
        return {"ok": False, "max": best}


class ProtectedServer:
    """`Resource` behind a TCP socket on 127.0.0.1 (threads; `with` starts and stops it).
    `clock` gives the record's times (the run's clock, so they line up with the history)."""

    def __init__(self, clock: Any = time.monotonic) -> None:
        self.state = Resource()
        self.clock = clock
        self._lock = threading.Lock()
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.address = self._sock.getsockname()[:2]
        self._conns = 0
        self._stop = False
        self._thread = threading.Thread(target=self._accept, name="protected", daemon=True)

    def __enter__(self) -> ProtectedServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop = True
        self._sock.close()

    def _accept(self) -> None:
        while not self._stop:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            with self._lock:
                if self._conns >= MAX_CONNECTIONS:
                    conn.close()
                    continue
                self._conns += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            with conn, conn.makefile("rb") as rf:
                while line := rf.readline(MAX_LINE + 1):
                    answer, close = self._answer(line)
                    conn.sendall(json.dumps(answer).encode() + b"\n")
                    if close:
                        return
        except OSError:
            pass
        finally:
            with self._lock:
                self._conns -= 1

    def _answer(self, line: bytes) -> tuple[dict, bool]:
        if len(line) > MAX_LINE:
            return {"error": f"request over {MAX_LINE} bytes"}, True
        try:
            req = json.loads(line)
            resource, token = str(req["resource"]), req["token"]
            if isinstance(token, bool) or not isinstance(token, int) or token < 0:
                raise ValueError("token must be a non-negative integer")
            client, value = str(req.get("client", "")), str(req.get("value", ""))
        except (ValueError, KeyError, TypeError) as exc:
            return {"error": f"bad request: {exc}"}, True
        with self._lock:
            return self.state.write(resource, token, client, value, self.clock()), False


async def write(address: tuple[str, int], resource: str, token: int, client: str,
                value: str, timeout: float = 5.0) -> bool:
    """One fenced write (a fresh connection); True if accepted. Raises OSError/TooSlowError."""
    import trio

    with trio.fail_after(timeout):
        stream = await trio.open_tcp_stream(*address)
        async with stream:
            await stream.send_all(json.dumps({"resource": resource, "token": token,
                                              "client": client, "value": value}).encode()
                                  + b"\n")
            buf = b""
            while not buf.endswith(b"\n"):
                chunk = await stream.receive_some(MAX_LINE)
                if not chunk:
                    raise OSError("protected resource closed the connection")
                buf += chunk
    answer = json.loads(buf)
    if "error" in answer:
        raise OSError(answer["error"])
    return bool(answer["ok"])


def check_resource(state: Resource, grants: Iterable[dict] | None) -> dict[str, Any]:
    """Mutual exclusion as the resource saw it: per resource, accepted tokens never go down
    and one token's writes are not interleaved with another's; every accepted token was
    granted by the chain for that lock to that client (`grants`: {lock, token, client} from
    the chain's lock events mapped to clients; None = not known, that part is skipped)."""
    bad: list[str] = []
    last: dict[str, int] = {}
    done: dict[str, set[int]] = {}
    for rec in state.accepted:
        r, t = rec["resource"], rec["token"]
        prev = last.get(r, 0)
        if t < prev:
            bad.append(f"{r}: accepted token {t} after {prev}")
        if t != prev:
            finished = done.setdefault(r, set())
            if t in finished:
                bad.append(f"{r}: token {t} wrote again after token {prev}")
            finished.add(prev)
        last[r] = max(prev, t)
    unknown = 0
    if grants is not None:
        granted = {(g["lock"], g["token"]): g.get("client") for g in grants}
        for rec in state.accepted:
            who = granted.get((rec["resource"], rec["token"]), "")
            if who == "":
                unknown += 1
                bad.append(f"{rec['resource']}: accepted token {rec['token']} from "
                           f"{rec['client']} that the chain never granted")
            elif who is not None and who != rec["client"]:
                bad.append(f"{rec['resource']}: token {rec['token']} was granted to {who}, "
                           f"written by {rec['client']}")
    return {"result": "violation" if bad else "ok", "accepted": len(state.accepted),
            "refused": len(state.refused), "resources": len(state.max_token),
            "ungranted": unknown, "violations": bad[:20]}
