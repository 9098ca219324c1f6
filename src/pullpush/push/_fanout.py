"""One-to-many push objects: fork, round robin, distribute, labeled distribute.

A fan-out is done once every one of its sinks is done. Closing and failing reach the
sinks only when ``forward_close`` / ``forward_errors`` are set (the chain builder's
terminals set both).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Generic, TypeVar

from .._exceptions import SinkIndexError, SinkLabelError
from .._obj import PushObj, check_push_sink
from .._util import PLAIN_TYPES, is_awaitable, make_selector

__all__ = [
    "PushDistributeObj",
    "PushForkObj",
    "PushLabeledDistributeObj",
    "PushObj1ToMany",
    "PushObj1ToManyBase",
    "PushObjLabeled1ToMany",
    "PushRoundRobinObj",
]

IN = TypeVar("IN")
OUT = TypeVar("OUT")
T = TypeVar("T")
L = TypeVar("L")


def _check_sinks(sinks: Iterable[object]) -> list[Any]:
    if isinstance(sinks, (str, bytes, Mapping)) or not isinstance(sinks, Iterable):
        raise TypeError(f"sinks must be an iterable of push objects, got {sinks!r}")
    checked = [check_push_sink(f"sinks[{i}]", sink) for i, sink in enumerate(sinks)]
    if not checked:
        raise ValueError("sinks must not be empty")
    return checked


async def _end_all(sinks: Iterable[PushObj[Any]], error: BaseException | None) -> None:
    # Close (or fail) every sink, even when one of them raises; re-raise the first.
    first: BaseException | None = None
    for sink in sinks:
        try:
            if error is None:
                await sink.aclose()
            else:
                await sink.athrow(error)
        except BaseException as raised:  # noqa: PERF203 - every sink must be reached
            if first is None:
                first = raised
    if first is not None:
        raise first


class PushObj1ToManyBase(PushObj[IN], Generic[IN, OUT]):
    """Base of push objects with several downstream sinks.

    Subclasses provide :attr:`sinks`. ``aclose`` goes to every sink when
    ``forward_close`` is set, ``athrow`` when ``forward_errors`` is set; every sink
    is reached even if one of them raises (the first error is re-raised).
    """

    @property
    def sinks(self) -> list[PushObj[OUT]]:
        """The downstream sinks."""
        raise NotImplementedError

    async def close_impl(self) -> None:
        if self.forward_close:
            await _end_all(self.sinks, None)

    async def throw_impl(self, error: BaseException) -> None:
        if self.forward_errors:
            await _end_all(self.sinks, error)


class PushObj1ToMany(PushObj1ToManyBase[IN, OUT]):
    """A fan-out over a list of sinks; a sink that reports done is removed.

    Args:
        sinks: the downstream push objects (at least one; mutable through
            :attr:`sinks`).
        forward_errors: whether ``athrow`` reaches the sinks.
        forward_close: whether ``aclose`` reaches the sinks.
    """

    def __init__(
        self,
        sinks: Iterable[PushObj[OUT]],
        forward_errors: bool = False,
        forward_close: bool = False,
    ) -> None:
        super().__init__(forward_errors, forward_close)
        # Invariant: _sinks holds the sinks not known to be done. Removals replace
        # the list (copy on write), so a send iterating the old list is unaffected.
        self._sinks: list[PushObj[OUT]] = _check_sinks(sinks)

    @property
    def sinks(self) -> list[PushObj[OUT]]:
        """The live sinks (mutable list; assign a new list to replace them)."""
        return self._sinks

    @sinks.setter
    def sinks(self, sinks: Iterable[PushObj[OUT]]) -> None:
        self._sinks = _check_sinks(sinks)

    async def send_to_sink(self, value: OUT, index: int) -> bool:
        """Send ``value`` to ``sinks[index]``; remove that sink if it reports done.

        Returns:
            Whether the sink still accepts values.
        """
        sink = self._sinks[index]
        if await sink.asend(value):
            return True
        self._remove_sink(sink)
        return False

    def _remove_sink(self, sink: PushObj[OUT]) -> None:
        remaining = [s for s in self._sinks if s is not sink]
        self._sinks = remaining
        if not remaining:
            self._done = True


class PushForkObj(PushObj1ToMany[T, T]):
    """Send every value to every sink (broadcast).

    By default the sinks are served **one after another**, in list order: each
    branch's ``asend`` is awaited before the next branch gets the value, so the
    fork's latency is the sum of the branches', and an exception in one branch
    propagates at once (later branches do not get that value).

    With ``concurrent=True`` the branches get the value **together**, each in its
    own task, and ``asend`` returns once all of them are done. An exception in one
    branch does not stop the others: the fork waits for every branch, then raises
    the first error in branch order. Cancelling the sender cancels every branch
    still running and waits for them, so no task outlives the ``asend``. A fork with
    a single live sink sends inline, with no task.

    Every branch receives the same object (no copy). Branches that report done are
    dropped; the fork is done when all are.

    Args:
        sinks: the branches (at least one).
        forward_errors: whether ``athrow`` reaches the branches.
        forward_close: whether ``aclose`` reaches the branches.
        concurrent: deliver to the branches together instead of one by one.
    """

    def __init__(
        self,
        sinks: Iterable[PushObj[T]],
        forward_errors: bool = False,
        forward_close: bool = False,
        *,
        concurrent: bool = False,
    ) -> None:
        super().__init__(sinks, forward_errors, forward_close)
        self.concurrent = concurrent

    async def next_impl(self, value: T) -> None:
        sinks = self._sinks
        if self.concurrent and len(sinks) > 1:
            await self._send_concurrently(sinks, value)
            return
        for sink in sinks:
            if not await sink.asend(value):
                self._remove_sink(sink)

    async def _send_concurrently(self, sinks: list[PushObj[T]], value: T) -> None:
        loop = asyncio.get_running_loop()
        tasks = [loop.create_task(sink.asend(value)) for sink in sinks]
        # gather() cancelled (our sender cancelled) cancels every branch task and
        # completes only once they have all finished: nothing outlives this call.
        results = await asyncio.gather(*tasks, return_exceptions=True)
        error: BaseException | None = None
        for sink, result in zip(sinks, results, strict=True):
            if isinstance(result, BaseException):
                if error is None:
                    error = result
            elif not result:
                self._remove_sink(sink)
        if error is not None:
            raise error


class PushRoundRobinObj(PushObj1ToMany[T, T]):
    """Send each value to one sink, cycling through them: 0, 1, 2, 0, 1, ...

    A sink that reports done leaves the rotation; the rest keep their turns.

    Args:
        sinks: the sinks (at least one).
        forward_errors: whether ``athrow`` reaches the sinks.
        forward_close: whether ``aclose`` reaches the sinks.
    """

    def __init__(
        self,
        sinks: Iterable[PushObj[T]],
        forward_errors: bool = False,
        forward_close: bool = False,
    ) -> None:
        super().__init__(sinks, forward_errors, forward_close)
        # Invariant: _next is the position of the sink that gets the next value
        # (taken modulo the current number of sinks).
        self._next = 0

    async def next_impl(self, value: T) -> None:
        sinks = self._sinks
        index = self._next
        if index >= len(sinks):
            index = 0
        self._next = index + 1
        sink = sinks[index]
        if not await sink.asend(value):
            self._remove_sink(sink)

    def _remove_sink(self, sink: PushObj[T]) -> None:
        sinks = self._sinks
        for position, candidate in enumerate(sinks):
            if candidate is sink:
                if position < self._next:
                    self._next -= 1
                break
        super()._remove_sink(sink)


class PushDistributeObj(PushObj1ToMany[T, T]):
    """Send each value to the sink at the index ``selector(value)`` returns.

    Sinks keep their positions: one that reports done stays in the list and simply
    drops what it is sent; the distributor is done when every sink is.

    Args:
        sinks: the sinks (at least one).
        selector: ``value -> index``, sync or async, or a key/attribute name
            (SPEC 6) (mutable).
        forward_errors: whether ``athrow`` reaches the sinks.
        forward_close: whether ``aclose`` reaches the sinks.

    Raises:
        SinkIndexError: (an ``IndexError``, from ``asend``) the index is negative or
            past the last sink; it names the index.
        TypeError: (from ``asend``) the selector returned something not an int.
    """

    def __init__(
        self,
        sinks: Iterable[PushObj[T]],
        selector: str | Callable[[T], Any],
        forward_errors: bool = False,
        forward_close: bool = False,
    ) -> None:
        super().__init__(sinks, forward_errors, forward_close)
        self.selector: Callable[[T], Any] = make_selector(selector, "selector")
        # Invariant: _finished holds id() of the sinks that reported done.
        self._finished: set[int] = set()

    async def next_impl(self, value: T) -> None:
        index = self.selector(value)
        if type(index) not in PLAIN_TYPES and is_awaitable(index):
            index = await index
        sinks = self._sinks
        if not isinstance(index, int):
            raise TypeError(f"selector must return an int index, got {type(index).__name__}")
        if index < 0 or index >= len(sinks):
            raise SinkIndexError(index, len(sinks))
        sink = sinks[index]
        if not await sink.asend(value):
            self._finished.add(id(sink))
            if all(id(s) in self._finished for s in self._sinks):
                self._done = True


class PushObjLabeled1ToMany(PushObj1ToManyBase[IN, OUT], Generic[L, IN, OUT]):
    """A fan-out over labeled sinks.

    Routing to a label with no sink drops the value, or raises
    :class:`~pullpush.SinkLabelError` (a ``KeyError``) when
    ``throw_on_nonexistence`` is set. A sink that reports done keeps its label and
    drops what it is sent; the fan-out is done when every sink is.

    Args:
        labeled_sinks: label -> sink (at least one; mutable dict ``labeled_sinks``).
        forward_errors: whether ``athrow`` reaches the sinks.
        forward_close: whether ``aclose`` reaches the sinks.
        throw_on_nonexistence: raise instead of dropping for a missing label.
    """

    def __init__(
        self,
        labeled_sinks: Mapping[L, PushObj[OUT]],
        forward_errors: bool = False,
        forward_close: bool = False,
        throw_on_nonexistence: bool = False,
    ) -> None:
        super().__init__(forward_errors, forward_close)
        if not isinstance(labeled_sinks, Mapping):
            raise TypeError(
                f"labeled_sinks must be a mapping of label to sink, got {labeled_sinks!r}"
            )
        if not labeled_sinks:
            raise ValueError("labeled_sinks must not be empty")
        self.labeled_sinks: dict[L, PushObj[OUT]] = {
            label: check_push_sink(f"labeled_sinks[{label!r}]", sink)
            for label, sink in labeled_sinks.items()
        }
        self.throw_on_nonexistence = throw_on_nonexistence
        # Invariant: _finished holds id() of the sinks that reported done.
        self._finished: set[int] = set()

    @property
    def sinks(self) -> list[PushObj[OUT]]:
        """The sinks, in label order."""
        return list(self.labeled_sinks.values())

    async def send_to_label(self, value: OUT, label: L) -> bool:
        """Send ``value`` to the sink labeled ``label``.

        Returns:
            Whether that sink still accepts values (``True`` for a dropped value).

        Raises:
            SinkLabelError: no such label and ``throw_on_nonexistence`` is set.
        """
        sink = self.labeled_sinks.get(label)
        if sink is None:
            if self.throw_on_nonexistence:
                raise SinkLabelError(label)
            return True
        if await sink.asend(value):
            return True
        self._finished.add(id(sink))
        if all(id(s) in self._finished for s in self.labeled_sinks.values()):
            self._done = True
        return False


class PushLabeledDistributeObj(PushObjLabeled1ToMany[L, T, T]):
    """Send each value to the sink labeled ``label_getter(value)``.

    Args:
        labeled_sinks: label -> sink (at least one).
        label_getter: ``value -> label``, sync or async, or a key/attribute name
            (SPEC 6) (mutable).
        forward_errors: whether ``athrow`` reaches the sinks.
        forward_close: whether ``aclose`` reaches the sinks.
        throw_on_nonexistence: raise :class:`~pullpush.SinkLabelError` instead of
            dropping a value whose label has no sink.
    """

    def __init__(
        self,
        labeled_sinks: Mapping[L, PushObj[T]],
        label_getter: str | Callable[[T], Any],
        forward_errors: bool = False,
        forward_close: bool = False,
        throw_on_nonexistence: bool = False,
    ) -> None:
        super().__init__(labeled_sinks, forward_errors, forward_close, throw_on_nonexistence)
        self.label_getter: Callable[[T], Any] = make_selector(label_getter, "label_getter")

    async def next_impl(self, value: T) -> None:
        label = self.label_getter(value)
        if type(label) not in PLAIN_TYPES and is_awaitable(label):
            label = await label
        await self.send_to_label(value, label)
