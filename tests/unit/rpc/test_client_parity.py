"""`Client` and `AsyncClient` cannot drift: the same public methods with the same
parameters (sync `close` is async `aclose`), every async one awaitable, and each operation
generated from the one sans-I/O flow of that name."""

from __future__ import annotations

import inspect

from bftnode.client import AsyncClient, Client
from bftnode.client.flows import PUBLIC, Core

RENAMED = {"close": "aclose"}  # sync name -> async name


def public(cls: type) -> dict[str, object]:
    return {n: getattr(cls, n) for n in dir(cls) if not n.startswith("_")}


def params(obj: object) -> list[tuple]:
    if isinstance(obj, property):
        return [("property",)]
    sig = inspect.signature(obj)  # type: ignore[arg-type]
    return [(p.name, p.kind, p.default, p.annotation) for p in sig.parameters.values()]


def test_sync_and_async_clients_have_the_same_public_methods_and_signatures():
    sync, aio = public(Client), public(AsyncClient)
    assert {RENAMED.get(n, n) for n in sync} == set(aio)
    for name, obj in sync.items():
        twin = aio[RENAMED.get(name, name)]
        assert params(obj) == params(twin), name
    assert params(Client.__init__) == params(AsyncClient.__init__)


def test_every_async_method_is_awaitable_or_an_async_context_manager():
    for name, obj in public(AsyncClient).items():
        if isinstance(obj, property):
            continue
        wrapped = getattr(obj, "__wrapped__", None)
        assert inspect.iscoroutinefunction(obj) or inspect.isasyncgenfunction(wrapped), name


def test_operations_come_from_the_one_flow_of_their_name():
    for name in PUBLIC:
        assert Client.__dict__[name].__wrapped__ is Core.__dict__[name]
        assert AsyncClient.__dict__[name].__wrapped__ is Core.__dict__[name]
        assert inspect.isgeneratorfunction(Core.__dict__[name]), name
