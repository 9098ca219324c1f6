"""What :class:`PullChain` and :class:`CompiledPullChain` share: a pull object made
of other pull objects, whose cycle *is* its tail's cycle, and the terminals."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterable, Sequence
from types import AsyncGeneratorType
from typing import Any, TypeVar, cast

from .._obj import PullObj, _no_items
from .._util import PLAIN_TYPES, check_callable, is_awaitable

__all__ = ["PullChainBase", "is_done"]

T = TypeVar("T")


def is_done(obj: object) -> bool:
    """Whether a pull stage has ended: a ``done`` pull object, a finished async generator."""
    if isinstance(obj, AsyncGeneratorType):
        return obj.ag_frame is None
    return getattr(obj, "done", False) is True


def in_flight(obj: object) -> bool:
    """Whether a pull is running in ``obj``'s current cycle right now."""
    agen = getattr(obj, "_agen", None) if isinstance(obj, PullObj) else None
    return agen is not None and bool(agen.ag_running)


class PullChainBase(PullObj[T]):
    """A pull object over a row of stages, head (the source) first.

    Pulling from it pulls from the tail stage's own cycle -- no generator of its
    own, so iterating it costs what iterating the tail costs. Closing it closes
    every stage, tail first (each also closes its own upstream).
    """

    def __init__(self, stages: Sequence[Any]) -> None:
        super().__init__()
        self._set_stages(stages)

    def _set_stages(self, stages: Sequence[Any]) -> None:
        # Invariant: _stages[0] is the source, _stages[k + 1] reads _stages[k] (or,
        # for a merge, reads it among others); _tail is _stages[-1]; _tail_iter is
        # the iterator of a tail that is not a PullObj, once taken.
        self._stages: list[Any] = list(stages)
        self._tail: Any = self._stages[-1]
        self._tail_iter: AsyncIterator[Any] | None = None

    # -- the cycle is the tail's ---------------------------------------------------------

    def _cycle(self) -> AsyncGenerator[T, Any]:
        if self._closed:
            return _no_items()
        tail = self._tail
        if isinstance(tail, PullObj):
            return tail._cycle()
        iterator = self._tail_iter
        if iterator is None:
            iterator = self._tail_iter = tail.__aiter__()
        return cast("AsyncGenerator[T, Any]", iterator)

    def _upstreams(self) -> Iterable[object]:
        return self._stages[::-1]

    @property
    def done(self) -> bool:
        """Whether the chain has ended: closed, or its tail stage is done."""
        return self._closed or is_done(self._tail)

    def _check_idle(self, what: str) -> None:
        for stage in self._stages:
            if in_flight(stage):
                raise RuntimeError(f"cannot {what} {type(self).__name__} while a pull is in flight")

    def _restart_stages(self) -> None:
        """Give every stage that is a pull object a new cycle (the source included)."""
        self._check_idle("restart")
        for stage in self._stages:
            if isinstance(stage, PullObj):
                stage.restart()
        self._tail_iter = None
        super().restart()

    def __repr__(self) -> str:
        names = " -> ".join(type(stage).__name__ for stage in self._stages)
        state = "closed" if self._closed else "done" if self.done else "open"
        return f"<{type(self).__name__} {names} {state}>"

    # -- terminals ---------------------------------------------------------------------

    async def collect(self) -> list[T]:
        """Pull every item and return them as a list (the chain is then done)."""
        return [item async for item in self]

    async def first(self) -> T | None:
        """Pull one item and return it, or ``None`` if the chain has ended."""
        try:
            return await self.__anext__()
        except StopAsyncIteration:
            return None

    async def for_each(self, fn: Callable[[T], Any]) -> None:
        """Call ``fn(item)`` (sync or async: awaited) for every item, in order.

        An error from ``fn`` (or cancellation) closes the chain at once and propagates.
        """
        check_callable("fn", fn)
        plain = PLAIN_TYPES
        items = self.__aiter__()
        try:
            async for item in items:
                result = fn(item)
                if type(result) not in plain and is_awaitable(result):
                    await result
        except BaseException:
            # Close now, not when the garbage collector finalizes the iteration.
            await items.aclose()
            raise
