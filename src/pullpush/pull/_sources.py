"""Sources: pull objects with no upstream."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import enum
import functools
from collections import deque
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Callable,
    Iterable,
    Iterator,
    MutableSequence,
)
from typing import Any, TypeVar

from .._obj import SourceObj, _no_items, aclose_quietly
from .._sync import ParkingLot
from .._util import check_seconds

__all__ = [
    "BufferMode",
    "PullTimerObj",
    "SourceBufferObj",
    "SourceCacheObj",
    "SourceFromIterable",
]

T = TypeVar("T")


class BufferMode(enum.Enum):
    """How :class:`SourceBufferObj` drains its buffer."""

    FIFO = "fifo"
    """Oldest first (the default)."""
    LIFO = "lifo"
    """Newest first."""


class SourceBufferObj(SourceObj[T]):
    """Yield the items of a buffer, draining it; append to ``buffer`` at any time.

    Args:
        buffer: the items. A mutable sequence (a ``list``, a :class:`collections.deque`)
            is used as it is, not copied: it is the public ``buffer``, shared with whoever
            else holds it, so items appended to it at any time -- even while the source is
            being iterated, e.g. by a :class:`SinkCollectObj` over the same list -- are
            yielded, and the items yielded are removed from it. Any other iterable is
            copied into a new deque. A FIFO drain takes ``popleft()`` from a deque and
            ``pop(0)`` from a list, which costs time in proportion to the list's length:
            pass a deque for long FIFO buffers.
        one_shot: ``True`` ends the source for good once the buffer is drained.
            ``False`` (the default) makes it *restartable*: a drained source ends the
            current iteration, and the next pull drains whatever was added since.
        mode: :attr:`BufferMode.FIFO` (default) or :attr:`BufferMode.LIFO`.
    """

    def __init__(
        self,
        buffer: Iterable[T] | None = None,
        one_shot: bool = False,
        mode: BufferMode = BufferMode.FIFO,
    ) -> None:
        super().__init__()
        if not isinstance(mode, BufferMode):
            raise TypeError(f"mode must be a BufferMode, got {mode!r}")
        if buffer is not None and not isinstance(buffer, Iterable):
            raise TypeError(f"buffer must be an iterable, got {type(buffer).__name__}")
        self.buffer: MutableSequence[T] = (
            buffer if isinstance(buffer, MutableSequence) else deque(buffer or ())
        )
        self.one_shot = one_shot
        self._mode = mode

    @property
    def restartable(self) -> bool:  # type: ignore[override]
        return not self.one_shot

    @property
    def mode(self) -> BufferMode:
        """The drain order (fixed at construction)."""
        return self._mode

    def __len__(self) -> int:
        return len(self.buffer)

    def peek(self) -> T | None:
        """Return the item the next pull would yield, or ``None`` if the buffer is empty."""
        buffer = self.buffer
        if not buffer:
            return None
        return buffer[0] if self._mode is BufferMode.FIFO else buffer[-1]

    async def pull_impl(self) -> AsyncGenerator[T, Any]:
        buffer = self.buffer
        take: Callable[[], T]
        if self._mode is BufferMode.LIFO:
            take = buffer.pop
        elif isinstance(buffer, deque):
            take = buffer.popleft
        else:
            take = functools.partial(buffer.pop, 0)
        while buffer and not self._closing:
            yield take()


class SourceCacheObj(SourceObj[T]):
    """Yield the current ``cache`` on every pull; assign ``cache`` to change the next value.

    The stream never ends by itself (``close()`` or ``aclose()`` ends it), so iterate it
    with ``anext()`` or leave the ``async for`` when done. ``SourceCacheObj("hello")``
    yields ``"hello"``; after ``source.cache = "world"`` the next pull yields ``"world"``.
    """

    def __init__(self, cache: T) -> None:
        super().__init__()
        self.cache = cache

    def peek(self) -> T:
        """Return the cache."""
        return self.cache

    async def pull_impl(self) -> AsyncGenerator[T, Any]:
        while not self._closing:
            yield self.cache


_NOTHING: Any = object()


class SourceFromIterable(SourceObj[T]):
    """Pull one item at a time from any iterable or async iterable.

    The iterable is advanced one step per pull, so a lazy generator does its work
    only as the consumer pulls (the pattern behind FireFoundry's
    ``SourceFromIterable(entity.parallel_calls(...))``).

    Peeking: :meth:`peek` looks ahead synchronously for a sync iterable; for an async
    iterable it shows the item fetched by :meth:`apeek` (``None`` until then).
    Closing the source closes the wrapped iterator if it has ``aclose``/``close``.
    """

    def __init__(self, iterable: Iterable[T] | AsyncIterable[T]) -> None:
        super().__init__()
        self._sync: Iterator[T] | None
        self._async: AsyncIterator[T] | None
        if hasattr(type(iterable), "__aiter__"):
            self._sync, self._async = None, iterable.__aiter__()  # type: ignore[union-attr]
        elif isinstance(iterable, Iterable):
            self._sync, self._async = iter(iterable), None
        else:
            raise TypeError(
                f"iterable must be an iterable or async iterable, got {type(iterable).__name__}"
            )
        self._ahead: Any = _NOTHING
        self._exhausted = False
        # Invariant: set when the sync loop must look up from the iterator (a peek
        # took an item ahead, or a close was asked): one check per item.
        self._interrupted = False

    def peek(self) -> T | None:
        """Return the next item without consuming it (see the class docs for async)."""
        if self._ahead is _NOTHING and self._sync is not None and not self._exhausted:
            try:
                self._ahead = next(self._sync)
            except StopIteration:
                self._exhausted = True
            self._interrupted = True
        return None if self._ahead is _NOTHING else self._ahead

    async def apeek(self) -> T | None:
        """Return the next item without consuming it, fetching it if needed."""
        if self._ahead is _NOTHING and self._async is not None and not self._exhausted:
            try:
                self._ahead = await self._async.__anext__()
            except StopAsyncIteration:
                self._exhausted = True
        return self.peek()

    async def pull_impl(self) -> AsyncGenerator[T, Any]:
        if self._sync is not None:
            # The sync loop. A compiled chain runs the same loop inline, with its
            # operations in the body (chain/_pull_compile.py): keep them in step.
            while (items := self._next_run()) is not None:
                for item in items:
                    yield item
                    if self._interrupted:
                        break
                else:
                    self._run_ended(items)
            return
        async_ = self._async
        assert async_ is not None
        while not self._closing:
            if self._ahead is not _NOTHING:
                item, self._ahead = self._ahead, _NOTHING
                yield item
                continue
            if self._exhausted:
                return
            try:
                item = await async_.__anext__()
            except StopAsyncIteration:
                self._exhausted = True
                return
            yield item

    def _next_run(self) -> Iterable[T] | None:
        """What the sync loop iterates next: the item a peek took ahead, else the
        iterator itself; ``None`` once the source is closing or exhausted.

        The loop checks ``_interrupted`` after each item and asks again when it is
        set (a peek took an item ahead, or a close was asked).
        """
        if self._closing:
            return None
        self._interrupted = False
        if self._ahead is not _NOTHING:
            item, self._ahead = self._ahead, _NOTHING
            return (item,)
        return None if self._exhausted else self._sync

    def _run_ended(self, items: Iterable[T]) -> None:
        """The sync loop went through ``items`` to the end."""
        if items is self._sync:
            self._exhausted = True

    def _loop_ended(self) -> None:
        """A compiled chain that runs the sync loop inline saw it end (closing or
        exhausted): this source is done, as if its own cycle had ended there."""
        if self._agen is None:
            ended = _no_items()
            with contextlib.suppress(StopIteration):
                ended.aclose().send(None)  # finish it (no await inside): ag_frame None
            self._agen = ended  # type: ignore[assignment]

    def _interrupt(self) -> None:
        self._interrupted = True

    async def aclose(self) -> None:
        await super().aclose()
        if self._async is not None:
            await aclose_quietly(self._async)
        elif self._sync is not None:
            close = getattr(self._sync, "close", None)
            if close is not None:
                close()


class PullTimerObj(SourceObj[Any]):
    """Yield every ``interval`` seconds until closed: ``None``, or the current UTC
    :class:`datetime.datetime` when ``generate_timestamp`` is true.

    The timer is paced by its consumer: a tick is due ``interval`` seconds after the
    previous one was taken, so a slow consumer never finds ticks piled up. Both
    fields are mutable; a new ``interval`` applies to the next tick, the one being
    waited for included: it is then due ``interval`` seconds after the previous
    tick (at once if that time has passed).
    """

    def __init__(self, interval: float, generate_timestamp: bool = False) -> None:
        super().__init__()
        self._lot = ParkingLot()
        self.interval = interval
        self.generate_timestamp = generate_timestamp

    @property
    def interval(self) -> float:
        """Seconds between ticks (mutable; positive)."""
        return self._interval

    @interval.setter
    def interval(self, interval: float) -> None:
        self._interval: float = check_seconds("interval", interval, positive=True)
        self._lot.unpark_all()  # a pull waiting for the next tick re-reads the interval

    def _interrupt(self) -> None:
        self._lot.unpark_all()

    async def pull_impl(self) -> AsyncGenerator[Any, Any]:
        loop = asyncio.get_running_loop()
        last = loop.time()
        while not self._closing:
            delay = last + self.interval - loop.time()
            if delay > 0:
                await self._lot.park(delay)
                if self._closing:
                    return
                if loop.time() < last + self.interval:
                    continue  # woken early (interval changed or spurious): re-check
            last = loop.time()
            yield datetime.datetime.now(datetime.timezone.utc) if self.generate_timestamp else None
