"""Stateful push reducers: a running reduce, and a per-value buffer reduce."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final, TypeVar

from .._obj import PushObj
from .._util import PLAIN_TYPES, check_callable, is_awaitable
from ._serial import PushObjSerial1To1
from ._transform import MaybeAwaitable, feed

__all__ = ["UNSEEDED", "PushBufferReduceObj", "PushReduceObj"]

IN = TypeVar("IN")
OUT = TypeVar("OUT")


class _Unseeded:
    __slots__ = ()

    def __repr__(self) -> str:
        return "UNSEEDED"


UNSEEDED: Final[Any] = _Unseeded()
"""The ``accum`` of a reduce that was given no initial value and has seen no value."""


class PushReduceObj(PushObjSerial1To1[IN, OUT]):
    """Forward the running accumulator: ``accum = reducer(accum, value)`` per value.

    The reducer takes ``(accumulator, value)`` like :func:`functools.reduce`
    (decision C16), and may be sync or async. Without an initial ``accum`` the first
    value becomes the accumulator and is forwarded as is, like
    :func:`itertools.accumulate`.

    Concurrent sends take turns (see :class:`PushObjSerial1To1`): every value is
    folded exactly once and accumulators leave in arrival order. If the reducer
    raises, ``accum`` keeps its previous value and the error goes to the sender.

    Args:
        sink: the downstream push object.
        reducer: ``(accum, value) -> new accum``, sync or async (mutable).
        accum: the initial accumulator (mutable; reassign to reset).
    """

    def __init__(
        self,
        sink: PushObj[OUT],
        reducer: Callable[[OUT, IN], MaybeAwaitable[OUT]],
        accum: Any = UNSEEDED,
    ) -> None:
        super().__init__(sink)
        check_callable("reducer", reducer)
        self.reducer = reducer
        # Invariant: accum is the accumulator after the last value (UNSEEDED before
        # the first one when no initial value was given).
        self.accum: Any = accum

    async def next_impl(self, value: IN) -> None:
        accum: Any = self.accum
        if accum is UNSEEDED:
            accum = value
        else:
            accum = self.reducer(accum, value)
            if type(accum) not in PLAIN_TYPES and is_awaitable(accum):
                accum = await accum
        self.accum = accum
        if not await self.sink.asend(accum):
            self._done = True


class PushBufferReduceObj(PushObjSerial1To1[IN, OUT]):
    """Forward every output of ``reducer(value)``, in order, per value.

    The reducer returns zero or more outputs as any iterable or async iterable --
    a list, a generator, an async generator -- or an awaitable resolving to one
    (``None`` means no output). It usually keeps state in a closure, for instance
    to emit a batch once enough values arrived; concurrent sends take turns, so that
    state is never shared by two calls at once.

    Args:
        sink: the downstream push object.
        reducer: ``value -> iterable of outputs`` (mutable).

    Raises:
        TypeError: (from ``asend``) the reducer returned something else, or a str.
    """

    def __init__(self, sink: PushObj[OUT], reducer: Callable[[IN], Any]) -> None:
        super().__init__(sink)
        check_callable("reducer", reducer)
        self.reducer = reducer

    async def next_impl(self, value: IN) -> None:
        outputs: Any = self.reducer(value)
        if type(outputs) not in PLAIN_TYPES and is_awaitable(outputs):
            outputs = await outputs
        if outputs is None:
            return
        cls = type(outputs)
        if not (hasattr(cls, "__iter__") or hasattr(cls, "__aiter__")) or isinstance(
            outputs, (str, bytes, bytearray)
        ):
            raise TypeError(
                "reducer must return an iterable or async iterable of outputs (or None), "
                f"got {cls.__name__}"
            )
        if not await feed(outputs, self.sink.asend):
            self._done = True
