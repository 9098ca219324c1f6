"""Push chain recipes: one :class:`PushOpDescriptor` per fluent operation.

The builder records descriptors; a terminal turns each into a push object
(:func:`build_link`), or hands runs of fusable ones to :class:`CompiledPushChain`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from types import MappingProxyType
from typing import Any, Final, NamedTuple

from .._obj import PushObj, check_push_sink
from .._util import PLAIN_TYPES, is_awaitable
from ..push._batch import PushBufferObj, PushWindowObj
from ..push._reduce import PushBufferReduceObj, PushReduceObj
from ..push._serial import PushSerialObj
from ..push._timeout import PushWindowTimeoutObj
from ..push._transform import (
    PushFilterObj,
    PushFlatMapObj,
    PushFlattenObj,
    PushMapObj,
    PushPostCallbacksObj,
    PushPreCallbacksObj,
)

__all__ = [
    "BARRIER_KINDS",
    "FAST_KINDS",
    "GENERAL_KINDS",
    "PushOpDescriptor",
    "build_link",
    "turnstile_callback",
]

_NO_OPTIONS: Final[Mapping[str, Any]] = MappingProxyType({})


class PushOpDescriptor(NamedTuple):
    """One operation of a push chain recipe, as recorded by the builder."""

    kind: str
    """The builder method that recorded it: ``"map"``, ``"window"``, ``"serial"`` ..."""
    args: tuple[Any, ...]
    """Its positional arguments (callables, sizes ...)."""
    options: Mapping[str, Any] = _NO_OPTIONS
    """Its keyword options (``flush_on_close``, ``timeout_from`` ...)."""


FAST_KINDS: Final = frozenset(
    {"map", "filter", "reduce", "pre_callback", "post_callback", "turnstile"}
)
"""Cardinality-preserving kinds: the compiler fuses them into straight-line code."""

GENERAL_KINDS: Final = frozenset({"window", "buffer", "flat_map", "flatten", "buffer_reduce"})
"""Cardinality-changing kinds: fused too, each feeding the rest of its segment."""

BARRIER_KINDS: Final = frozenset({"serial", "pipe", "window_timeout"})
"""Kinds that stay separate push objects; compilation fuses the runs between them."""


def turnstile_callback(
    checkpoint: Any, collector: Any, id: Callable[[Any], Any] | None
) -> Callable[[Any], Awaitable[None] | None]:
    """Return a callback reporting each item to ``collector.on_turnstile_pass``.

    Metrics never break the stream: errors from ``id`` or the collector are
    swallowed.
    """
    on_pass = collector.on_turnstile_pass

    def turnstile(item: Any) -> Awaitable[None] | None:
        try:
            result = on_pass(checkpoint, None if id is None else id(item))
        except Exception:
            return None
        if type(result) not in PLAIN_TYPES and is_awaitable(result):
            return _swallow(result)
        return None

    return turnstile


async def _swallow(awaitable: Awaitable[Any]) -> None:
    try:
        await awaitable
    except Exception:
        pass


def build_link(op: PushOpDescriptor, sink: PushObj[Any]) -> PushObj[Any]:
    """Return the push object that performs ``op``, sending to ``sink``."""
    kind, args, options = op
    if kind == "map":
        return PushMapObj(sink, *args)
    if kind == "filter":
        return PushFilterObj(sink, *args)
    if kind == "reduce":
        return PushReduceObj(sink, *args)
    if kind == "flat_map":
        return PushFlatMapObj(sink, *args)
    if kind == "flatten":
        return PushFlattenObj(sink)
    if kind == "buffer_reduce":
        return PushBufferReduceObj(sink, *args)
    if kind == "window":
        return PushWindowObj(sink, *args, **options)
    if kind == "buffer":
        return PushBufferObj(sink, *args, **options)
    if kind == "window_timeout":
        return PushWindowTimeoutObj(sink, *args, **options)
    if kind == "pre_callback":
        return PushPreCallbacksObj(sink, *args)
    if kind == "post_callback":
        return PushPostCallbacksObj(sink, *args)
    if kind == "turnstile":
        return PushPreCallbacksObj(sink, turnstile_callback(*args))
    if kind == "serial":
        return PushSerialObj(sink)
    if kind == "pipe":
        (factory,) = args
        return check_push_sink("pipe() factory result", factory(sink))  # type: ignore[no-any-return]
    raise ValueError(f"unknown push operation kind {kind!r}")
