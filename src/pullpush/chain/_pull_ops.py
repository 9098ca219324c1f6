"""Pull chain recipes: one :class:`PullOpDescriptor` per fluent operation.

:class:`PullChain` records a descriptor for every link it adds and builds the link
with :func:`build_pull_link`; :class:`CompiledPullChain` fuses the runs of fusable
descriptors and builds the others (the barriers) the same way.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, Mapping
from types import MappingProxyType
from typing import Any, Final, NamedTuple

from .._obj import check_pull_source
from ..pull._batch import PullBufferObj, PullWindowObj, PullWindowTimeoutObj
from ..pull._combine import PullConcatObj, PullRaceRobinObj, PullRaceValuesObj, PullRoundRobinObj
from ..pull._flow import PullEagerObj, PullTimeoutObj
from ..pull._select import PullDedupeObj, PullInOrderObj
from ..pull._sources import SourceBufferObj
from ..pull._transform import (
    PullBufferReduceObj,
    PullCallbackObj,
    PullFilterObj,
    PullFlatMapObj,
    PullFlattenObj,
    PullMapObj,
    PullReduceObj,
)
from ._ops import turnstile_callback

__all__ = [
    "BARRIER_KINDS",
    "FAST_KINDS",
    "GENERAL_KINDS",
    "PullOpDescriptor",
    "build_pull_link",
    "check_pull_op",
]

_NO_OPTIONS: Final[Mapping[str, Any]] = MappingProxyType({})


class PullOpDescriptor(NamedTuple):
    """One operation of a pull chain, as recorded by :class:`PullChain`."""

    kind: str
    """The chain method that recorded it: ``"map"``, ``"window"``, ``"pipe"`` ..."""
    args: tuple[Any, ...]
    """Its positional arguments (callables, sizes, the other sources of a merge ...)."""
    options: Mapping[str, Any] = _NO_OPTIONS
    """Its keyword options (``consecutive``, ``yield_remainder`` ...)."""


FAST_KINDS: Final = frozenset({"map", "filter", "dedupe", "reduce", "callback", "turnstile"})
"""Cardinality-preserving kinds: fused into straight-line code in one loop."""

GENERAL_KINDS: Final = frozenset(
    {"window", "buffer", "flat_map", "flatten", "buffer_reduce", "in_order"}
)
"""Cardinality-changing kinds: fused too, as nested loops and end-of-stream flushes."""

BARRIER_KINDS: Final = frozenset(
    {
        "eager",
        "timeout",
        "window_timeout",
        "pipe",
        "merge_race_fair",
        "merge_race",
        "merge_round_robin",
        "merge_concat",
    }
)
"""Kinds that stay separate pull objects; compilation fuses the runs between them."""

_MERGES: Final[Mapping[str, Any]] = MappingProxyType(
    {
        "merge_race_fair": PullRaceRobinObj,
        "merge_race": PullRaceValuesObj,
        "merge_round_robin": PullRoundRobinObj,
        "merge_concat": PullConcatObj,
    }
)


def build_pull_link(op: PullOpDescriptor, upstream: AsyncIterable[Any]) -> AsyncIterable[Any]:
    """Return the pull object that performs ``op``, reading ``upstream``.

    Raises:
        TypeError, ValueError: an argument is invalid (the operator's own checks).
        ValueError: ``op.kind`` is unknown.
    """
    kind, args, options = op
    if kind == "map":
        return PullMapObj(upstream, *args)
    if kind == "filter":
        return PullFilterObj(upstream, *args)
    if kind == "dedupe":
        return PullDedupeObj(upstream, *args, **options)
    if kind == "reduce":
        return PullReduceObj(upstream, *args)
    if kind == "callback":
        return PullCallbackObj(upstream, *args)
    if kind == "turnstile":
        return PullCallbackObj(upstream, turnstile_callback(*args))
    if kind == "window":
        return PullWindowObj(upstream, *args, **options)
    if kind == "buffer":
        return PullBufferObj(upstream, *args, **options)
    if kind == "flat_map":
        return PullFlatMapObj(upstream, *args)
    if kind == "flatten":
        return PullFlattenObj(upstream)
    if kind == "buffer_reduce":
        return PullBufferReduceObj(upstream, *args)
    if kind == "in_order":
        return PullInOrderObj(upstream, *args, **options)
    if kind == "eager":
        return PullEagerObj(upstream, *args)
    if kind == "timeout":
        return PullTimeoutObj(upstream, *args)
    if kind == "window_timeout":
        return PullWindowTimeoutObj(upstream, *args, **options)
    if kind == "pipe":
        (factory,) = args
        return check_pull_source("pipe() factory result", factory(upstream))  # type: ignore[no-any-return]
    merge = _MERGES.get(kind)
    if merge is not None:
        return merge([upstream, *args])  # type: ignore[no-any-return]
    raise ValueError(f"unknown pull operation kind {kind!r}")


def check_pull_op(op: PullOpDescriptor) -> None:
    """Raise what building ``op`` raises for a bad argument, without running anything.

    Fusable kinds are built over an empty, never-iterated source; barriers are
    checked when they are built for real.
    """
    if op.kind in FAST_KINDS or op.kind in GENERAL_KINDS:
        build_pull_link(op, SourceBufferObj((), one_shot=True))
    elif op.kind not in BARRIER_KINDS:
        raise ValueError(f"unknown pull operation kind {op.kind!r}")
