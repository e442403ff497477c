"""`bftnode client auth …`: permission commands (bftnode.app.auth), added to the client CLI by
bftnode.client_cli. Role, grant, bind and enable commands are admin txs (signed with --key,
which must be one of the genesis `app.admins`); `status` and `whoami` read.

  auth role add|delete ROLE
  auth role grant|revoke ROLE read|write|readwrite KEY [--prefix | --range-end END]
  auth user bind|unbind CLIENT_KEY_HEX ROLE
  auth enable | auth disable | auth status | auth whoami

Imports: stdlib. Must not import trio.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

PERMS = ("read", "write", "readwrite")


def add_auth_arguments(sub: Any, common: Callable[[argparse.ArgumentParser, bool], None],
                       run: Callable[[argparse.Namespace], int]) -> None:
    """Add `auth` to the client's subparsers; `common` adds the shared options, `run` runs a
    command (bftnode.client_cli.run_client)."""
    auth = sub.add_parser("auth", help="permissions: role|user|enable|disable|status|whoami")
    asub = auth.add_subparsers(dest="auth_cmd", required=True, metavar="ACTION")

    def leaf(parent: Any, name: str, func: Callable[..., Any], help_: str) -> Any:
        p = parent.add_parser(name, help=help_, description=help_)
        common(p, False)
        p.set_defaults(func=run, client_func=func)
        return p

    role = asub.add_parser("role", help="role add|delete|grant|revoke")
    rsub = role.add_subparsers(dest="role_cmd", required=True, metavar="ACTION")
    leaf(rsub, "add", cmd_role_add, "create role ROLE (admin)").add_argument("role")
    leaf(rsub, "delete", cmd_role_delete, "delete role ROLE and unbind it (admin)") \
        .add_argument("role")
    for name, func in (("grant", cmd_grant), ("revoke", cmd_revoke)):
        p = leaf(rsub, name, func, f"{name} PERM on KEY (a key, --prefix, or [KEY, "
                                   f"--range-end)) {'to' if name == 'grant' else 'from'} ROLE "
                                   "(admin)")
        p.add_argument("role")
        p.add_argument("perm", choices=PERMS)
        p.add_argument("key", help="the key, or the prefix with --prefix ('' = every key)")
        span = p.add_mutually_exclusive_group()
        span.add_argument("--prefix", action="store_true", help="every key starting with KEY")
        span.add_argument("--range-end", default="", metavar="END",
                          help="etcd's [KEY, END); '\\0' = every key >= KEY")
    user = asub.add_parser("user", help="user bind|unbind")
    usub = user.add_subparsers(dest="user_cmd", required=True, metavar="ACTION")
    for name, func in (("bind", cmd_bind), ("unbind", cmd_unbind)):
        p = leaf(usub, name, func, f"{name} ROLE {'to' if name == 'bind' else 'from'} the "
                                   "client key CLIENT (64 hex chars) (admin)")
        p.add_argument("client")
        p.add_argument("role")
    leaf(asub, "enable", cmd_enable, "turn permission checks on (admin)")
    leaf(asub, "disable", cmd_disable, "turn permission checks off (admin)")
    leaf(asub, "status", cmd_status, "checks on/off, admins, roles and bindings")
    leaf(asub, "whoami", cmd_whoami, "this client's public key (what `user bind` takes)")


def _done(r: dict[str, Any], text: str) -> tuple[dict, str]:
    res = r.get("result") if isinstance(r.get("result"), dict) else {}
    out = {"hash": r.get("hash"), "height": r.get("height"), "code": r.get("code"),
           "result": res}
    return out, f"{text} (height {r.get('height')})"


def cmd_role_add(c: Any, a: argparse.Namespace) -> tuple[dict, str]:
    return _done(c.auth_role_add(a.role), f"role {a.role} added")


def cmd_role_delete(c: Any, a: argparse.Namespace) -> tuple[dict, str]:
    return _done(c.auth_role_delete(a.role), f"role {a.role} deleted")


def _span(a: argparse.Namespace) -> str:
    if a.range_end:
        return f"[{a.key!r}, {a.range_end!r})"
    return f"prefix {a.key!r}" if a.prefix else f"key {a.key!r}"


def _range_end(a: argparse.Namespace) -> bytes:
    return b"\x00" if a.range_end == "\\0" else a.range_end.encode()


def cmd_grant(c: Any, a: argparse.Namespace) -> tuple[dict, str]:
    r = c.auth_grant(a.role, a.perm, a.key, prefix=a.prefix, range_end=_range_end(a))
    return _done(r, f"granted {a.perm} on {_span(a)} to {a.role}")


def cmd_revoke(c: Any, a: argparse.Namespace) -> tuple[dict, str]:
    r = c.auth_revoke(a.role, a.perm, a.key, prefix=a.prefix, range_end=_range_end(a))
    return _done(r, f"revoked {a.perm} on {_span(a)} from {a.role}")


def cmd_bind(c: Any, a: argparse.Namespace) -> tuple[dict, str]:
    return _done(c.auth_bind(a.client, a.role), f"bound {a.role} to {a.client[:16]}…")


def cmd_unbind(c: Any, a: argparse.Namespace) -> tuple[dict, str]:
    return _done(c.auth_unbind(a.client, a.role), f"unbound {a.role} from {a.client[:16]}…")


def cmd_enable(c: Any, a: argparse.Namespace) -> tuple[dict, str]:
    return _done(c.auth_enable(True), "permission checks on")


def cmd_disable(c: Any, a: argparse.Namespace) -> tuple[dict, str]:
    return _done(c.auth_enable(False), "permission checks off")


def cmd_status(c: Any, a: argparse.Namespace) -> tuple[dict, str]:
    r = c.auth_status()
    lines = [f"checks {'on' if r.get('enabled') else 'off'}; admins: "
             f"{', '.join(k[:16] + '…' for k in r.get('admins', [])) or 'none'}"]
    for role in r.get("roles", []):
        perms = ", ".join(f"{p['perm']} {_shown(p['key'], p['range_end'])}"
                          for p in role.get("permissions", []))
        lines.append(f"role {role['role']}: {perms or 'no permissions'}")
    for b in r.get("bindings", []):
        lines.append(f"client {b['client']}: {', '.join(b['roles'])}")
    return r, "\n".join(lines)


def _shown(key: Any, end: Any) -> str:
    if not end:
        return f"key {key!r}"
    return f"keys >= {key!r}" if end == "\x00" else f"[{key!r}, {end!r})"


def cmd_whoami(c: Any, a: argparse.Namespace) -> tuple[dict, str]:
    key = c.client_id.hex()
    return {"client": key}, key
