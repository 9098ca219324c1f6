"""One-to-one pull operators that batch items: window, window-with-timeout, buffer."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterable, Callable
from typing import Any, Literal, TypeVar

from .._obj import PullObj1To1Link, pull_iter
from .._util import PLAIN_TYPES, check_callable, check_int, check_seconds, is_awaitable
from ._flow import PendingPull

__all__ = ["PullBufferObj", "PullWindowObj", "PullWindowTimeoutObj", "TimeoutFrom"]

T = TypeVar("T")

TimeoutFrom = Literal["batch_start", "last_item"]


class PullWindowObj(PullObj1To1Link[T, list[T]]):
    """Yield lists of ``window_size`` consecutive items.

    The trailing partial window is yielded too (nothing is dropped), unless
    ``yield_remainder=False``. ``window_size`` is mutable and applies to the next window.
    """

    def __init__(
        self, source: AsyncIterable[T], window_size: int, *, yield_remainder: bool = True
    ) -> None:
        super().__init__(source)
        self.window_size = check_int("window_size", window_size, minimum=1)
        self.yield_remainder = yield_remainder

    async def pull_impl(self) -> AsyncGenerator[list[T], Any]:
        window: list[T] = []
        async for item in pull_iter(self.source):
            window.append(item)
            if len(window) >= self.window_size:
                yield window
                window = []
        if window and self.yield_remainder:
            yield window


class PullWindowTimeoutObj(PullObj1To1Link[T, list[T]]):
    """Batch by count or time, like Kafka's ``batch.size`` + ``linger.ms``.

    A batch is yielded when it holds ``window_size`` items or when its deadline
    passes, whichever comes first. Empty batches are never yielded: a deadline that
    passes with nothing collected starts a new one.

    Args:
        source: the upstream.
        window_size: the most items per batch (mutable; next batch).
        timeout: seconds (mutable; next deadline).
        timeout_from: ``"batch_start"`` (default): the deadline is ``timeout`` after
            the batch began; ``"last_item"``: ``timeout`` after the latest item
            (an inactivity timeout; decision C17).
        yield_remainder: yield the partial batch when the source ends (default).

    A pull still pending when a deadline passes is carried over as the first pull
    of the next batch: at most one pull is ever outstanding and nothing is lost.
    """

    def __init__(
        self,
        source: AsyncIterable[T],
        window_size: int,
        timeout: float,
        *,
        timeout_from: TimeoutFrom = "batch_start",
        yield_remainder: bool = True,
    ) -> None:
        super().__init__(source)
        self.window_size = check_int("window_size", window_size, minimum=1)
        self.timeout = check_seconds("timeout", timeout, positive=True)
        if timeout_from not in ("batch_start", "last_item"):
            raise ValueError(
                f"timeout_from must be 'batch_start' or 'last_item', got {timeout_from!r}"
            )
        self.timeout_from: TimeoutFrom = timeout_from
        self.yield_remainder = yield_remainder

    async def pull_impl(self) -> AsyncGenerator[list[T], Any]:
        loop = asyncio.get_running_loop()
        pull = PendingPull(pull_iter(self.source))
        try:
            while True:
                batch: list[T] = []
                deadline = loop.time() + self.timeout
                while len(batch) < self.window_size:
                    outcome = await pull.next(deadline - loop.time())
                    if outcome is PendingPull.TIMED_OUT:
                        break
                    if outcome is PendingPull.END:
                        if batch and self.yield_remainder:
                            yield batch
                        return
                    batch.append(outcome)
                    if self.timeout_from == "last_item":
                        deadline = loop.time() + self.timeout
                if batch:
                    yield batch
        finally:
            await pull.cancel()


class PullBufferObj(PullObj1To1Link[T, list[T]]):
    """Append each item to a buffer, then ask ``condition(buffer)`` (sync or async):
    when it is truthy the buffer is yielded and a new one started.

    A non-empty remainder at the end of the stream is yielded (decision C13) unless
    ``yield_remainder=False``.
    """

    def __init__(
        self,
        source: AsyncIterable[T],
        condition: Callable[[list[T]], Any],
        *,
        yield_remainder: bool = True,
    ) -> None:
        super().__init__(source)
        check_callable("condition", condition)
        self.condition = condition
        self.yield_remainder = yield_remainder

    async def pull_impl(self) -> AsyncGenerator[list[T], Any]:
        buffer: list[T] = []
        async for item in pull_iter(self.source):
            buffer.append(item)
            flush = self.condition(buffer)
            if type(flush) not in PLAIN_TYPES and is_awaitable(flush):
                flush = await flush
            if flush:
                yield buffer
                buffer = []
        if buffer and self.yield_remainder:
            yield buffer
