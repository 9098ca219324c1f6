"""Code generation shared by the chain compilers (push and pull).

A compiler writes the Python source of one function that applies every fused
operation inline, then compiles it with :func:`exec` (the technique
:mod:`dataclasses` uses). The source is wrapped in a ``_factory(*, names...)``
function: the callables of the operations enter as keyword arguments named
``_c0``, ``_c1`` ..., so chains built from one recipe share one code object and
differ only in what they bind.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping
from types import CodeType, MappingProxyType
from typing import Any, Final

from .._util import PLAIN_TYPES, is_awaitable

__all__ = ["RUNTIME", "CodeWriter", "load_factory"]

RUNTIME: Final[Mapping[str, Any]] = MappingProxyType(
    {"_plain": PLAIN_TYPES, "_is_awaitable": is_awaitable, "_type": type}
)
"""The names every generated call refers to (see :meth:`CodeWriter.call`)."""


class CodeWriter:
    """Collect the constants generated code refers to; write calls that await
    their result when it is awaitable."""

    def __init__(self) -> None:
        self.constants: dict[str, Any] = {}
        # Invariant: _names[id(v)] names v, which self.constants keeps alive.
        self._names: dict[int, str] = {}

    def constant(self, value: Any) -> str:
        """Return the name the generated code uses for ``value`` (one per object)."""
        name = self._names.get(id(value))
        if name is None:
            name = self._names[id(value)] = f"_c{len(self.constants)}"
            self.constants[name] = value
        return name

    def call(self, pad: str, target: str | None, fn: Any, args: str) -> list[str]:
        """Lines that call ``fn(args)`` into ``target`` and await the result when needed.

        A coroutine function is awaited directly; any other callable's result is
        awaited when it is awaitable (the cheap :data:`~pullpush._util.PLAIN_TYPES`
        test first), as the uncompiled operators do.
        """
        name = self.constant(fn)
        if inspect.iscoroutinefunction(fn):
            return [f"{pad}{target or '_'} = await {name}({args})"]
        if target is None:
            return [
                f"{pad}_ = {name}({args})",
                f"{pad}if _type(_) not in _plain and _is_awaitable(_):",
                f"{pad}    await _",
            ]
        return [
            f"{pad}{target} = {name}({args})",
            f"{pad}if _type({target}) not in _plain and _is_awaitable({target}):",
            f"{pad}    {target} = await {target}",
        ]


@functools.lru_cache(maxsize=256)
def _code(source: str, filename: str) -> CodeType:
    # Chains built from one recipe share their source: compile it once.
    return compile(source, filename, "exec")


def load_factory(source: str, filename: str) -> Callable[..., Any]:
    """Execute generated ``source`` and return the ``_factory`` it defines."""
    namespace: dict[str, Any] = {}
    exec(_code(source, filename), namespace)
    return namespace["_factory"]  # type: ignore[no-any-return]
