"""How much memory a simulated replica holds: the bytes of every object reachable from it.

Owns `held_bytes(root, skip)`: a walk over the object graph below `root` (instance dicts,
slots, containers, msgspec structs: whatever the garbage collector can traverse), adding up
`sys.getsizeof` of each object once. Shared configuration (the `skip` objects, e.g. the
Authenticator and Config), classes, modules and functions are not counted. Objects shared
with other replicas (a decoded message delivered to several) count in full for each: the
figure is what this replica keeps alive, an upper bound of what it alone costs.

Deterministic for one interpreter build (no allocator statistics, no clock), so a simulator
seed that exceeds a memory bound replays exactly. Imports: stdlib only.
"""

from __future__ import annotations

import gc
import sys
import types
from collections.abc import Iterable
from typing import Any

_NOT_DATA = (type, types.ModuleType, types.FunctionType, types.BuiltinFunctionType,
             types.MethodType, types.CodeType, types.FrameType)


def held_bytes(root: Any, skip: Iterable[Any] = ()) -> int:
    """Bytes of the objects reachable from `root`, each counted once, `skip` excluded."""
    seen = {id(o) for o in skip}
    stack = [root]
    total = 0
    while stack:
        obj = stack.pop()
        if id(obj) in seen or isinstance(obj, _NOT_DATA):
            continue
        seen.add(id(obj))
        total += sys.getsizeof(obj)
        if isinstance(obj, dict):  # a str-keyed dict's traversal skips its keys
            stack.extend(obj.keys())
        stack.extend(gc.get_referents(obj))
    return total
