"""One-to-one pull operators that change *when* items are pulled: eager read-ahead
and per-pull timeouts; and :class:`PendingPull`, the carried-over pull they share."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator
from typing import Any, Final, TypeVar

from .._exceptions import PullTimeoutError
from .._obj import PullObj1To1Link, pull_iter
from .._sync import ParkingLot
from .._util import check_int, check_seconds

__all__ = ["PendingPull", "PullEagerObj", "PullTimeoutObj"]

T = TypeVar("T")


async def _step(iterator: AsyncIterator[T]) -> T:
    return await iterator.__anext__()


class _Marker:
    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


class PendingPull:
    """One outstanding pull from an iterator that survives a timeout.

    :meth:`next` waits up to a deadline for the next item. If the deadline passes
    first, the pull stays in flight and the next call waits for the same pull: at
    most one pull is ever outstanding, and a late item is never lost.
    """

    TIMED_OUT: Final = _Marker("TIMED_OUT")
    END: Final = _Marker("END")

    __slots__ = ("_iterator", "_task")

    def __init__(self, iterator: AsyncIterator[Any]) -> None:
        self._iterator = iterator
        self._task: asyncio.Task[Any] | None = None

    @property
    def in_flight(self) -> bool:
        """Whether a pull is outstanding."""
        return self._task is not None

    async def next(self, timeout: float | None) -> Any:
        """Return the next item, :attr:`END`, or :attr:`TIMED_OUT` after ``timeout`` s."""
        task = self._task
        if task is None:
            task = self._task = asyncio.ensure_future(_step(self._iterator))
        if not task.done():
            if timeout is not None and timeout <= 0:
                return self.TIMED_OUT
            await asyncio.wait((task,), timeout=timeout)
            if not task.done():
                return self.TIMED_OUT
        self._task = None
        try:
            return task.result()
        except StopAsyncIteration:
            return self.END

    async def cancel(self) -> None:
        """Cancel the outstanding pull, if any, and wait until it has ended."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


class PullTimeoutObj(PullObj1To1Link[T, T]):
    """Limit how long each pull may take.

    Args:
        source: the upstream.
        time_out: seconds each pull may take (mutable).
        throw_on_timeout: ``True`` (default) raises :class:`PullTimeoutError` when a
            pull takes longer; ``False`` keeps waiting, counting the timeout in
            :attr:`timeouts`.

    The pull that timed out is *not* cancelled and no second pull overlaps it
    (decision C6): it is carried over, so after a :class:`PullTimeoutError` you may
    :meth:`restart` the object and the late item is the next one yielded. Closing
    the object cancels the carried-over pull.
    """

    def __init__(
        self, source: AsyncIterable[T], time_out: float, throw_on_timeout: bool = True
    ) -> None:
        super().__init__(source)
        self.time_out = check_seconds("time_out", time_out, positive=True)
        self.throw_on_timeout = throw_on_timeout
        self.timeouts = 0
        self._pull: PendingPull | None = None

    async def pull_impl(self) -> AsyncGenerator[T, Any]:
        pull = self._pull
        if pull is None or not pull.in_flight:
            pull = self._pull = PendingPull(pull_iter(self.source))
        while True:
            outcome = await pull.next(self.time_out)
            if outcome is PendingPull.END:
                return
            if outcome is PendingPull.TIMED_OUT:
                self.timeouts += 1
                if self.throw_on_timeout:
                    raise PullTimeoutError(f"PullTimeoutObj: pull timed out after {self.time_out}s")
                continue
            yield outcome

    async def aclose(self) -> None:
        pull, self._pull = self._pull, None
        if pull is not None:
            await pull.cancel()
        await super().aclose()


class PullEagerObj(PullObj1To1Link[T, T]):
    """Read ahead: keep up to ``buffer_size`` items pulled ahead of the consumer.

    A background task pulls from the source (starting at the first pull, or at
    :meth:`prefetch`) while the consumer works, holding at most ``buffer_size``
    items (mutable). Errors from the source are raised to the consumer after the
    items pulled before them. Closing cancels the read-ahead task.
    """

    def __init__(self, source: AsyncIterable[T], buffer_size: int = 1) -> None:
        super().__init__(source)
        self.buffer_size = check_int("buffer_size", buffer_size, minimum=1)
        self._reset()

    def _reset(self) -> None:
        # Invariant: at most buffer_size items in _items; _task pulls while it is below.
        self._items: deque[T] = deque()
        self._arrived = ParkingLot()  # the consumer parks here for an item
        self._room = ParkingLot()  # the read-ahead task parks here for room
        self._task: asyncio.Task[None] | None = None
        self._ended = False
        self._error: BaseException | None = None

    def prefetch(self) -> None:
        """Start reading ahead now, before the first pull."""
        if self._task is None and not self._ended:
            self._task = asyncio.ensure_future(self._read_ahead(pull_iter(self.source)))

    async def _read_ahead(self, iterator: AsyncIterator[T]) -> None:
        items = self._items
        try:
            while True:
                while len(items) >= self.buffer_size:
                    await self._room.park()
                items.append(await iterator.__anext__())
                self._arrived.unpark()
        except StopAsyncIteration:
            pass
        except Exception as error:
            self._error = error
        finally:
            self._ended = True
            self._arrived.unpark_all()

    async def pull_impl(self) -> AsyncGenerator[T, Any]:
        self.prefetch()
        items = self._items
        while True:
            if items:
                item = items.popleft()
                self._room.unpark()
                yield item
            elif self._ended:
                if self._error is not None:
                    raise self._error
                return
            else:
                await self._arrived.park()

    def _interrupt(self) -> None:
        self._arrived.unpark_all()

    async def aclose(self) -> None:
        task = self._task
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        await super().aclose()

    def restart(self) -> None:
        if self._task is not None and not self._task.done():
            raise RuntimeError("cannot restart PullEagerObj while it is reading ahead")
        super().restart()
        self._reset()
