"""The NodeAPI contract: the fake used by these tests and the real Node (bftnode.node) both provide
every member the RPC layer calls, with the same sync/async shape."""

from __future__ import annotations

import inspect

import pytest

from bftnode.rpc.node_api import NodeAPI

from .fake_node import FakeNode

MEMBERS = [n for n in dir(NodeAPI) if not n.startswith("_")]
ATTRIBUTES = {"node_id", "chain_id", "domain"}


def _methods():
    return [n for n in MEMBERS if n not in ATTRIBUTES]


@pytest.mark.parametrize("impl", ["fake", "runtime"])
def test_implementation_has_every_nodeapi_method_with_the_same_async_shape(impl):
    if impl == "fake":
        cls = FakeNode
    else:
        from bftnode.node.node import Node

        cls = Node
    assert _methods(), "NodeAPI lists no methods"
    for name in _methods():
        fn = getattr(cls, name, None)
        assert callable(fn), f"{cls.__name__} lacks NodeAPI.{name}"
        want_async = inspect.iscoroutinefunction(getattr(NodeAPI, name))
        assert inspect.iscoroutinefunction(fn) == want_async, f"{name}: async mismatch"


def test_the_fake_is_a_nodeapi_instance():
    assert isinstance(FakeNode(), NodeAPI)
