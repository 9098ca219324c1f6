"""A recording push sink for tests of push objects and chains."""

from __future__ import annotations

import asyncio
from typing import Any

from .._obj import SinkObj

__all__ = ["RecordingSink"]


class RecordingSink(SinkObj[Any]):
    """A sink that records what reached it, and how.

    Args:
        delay: seconds to sleep in each ``asend`` (``0`` with ``yield_to_loop``
            still lets other tasks run, to provoke interleavings).
        yield_to_loop: ``await asyncio.sleep(0)`` in each ``asend``.
        fail_at: index of the value whose ``asend`` raises ``error``.
        error: the exception raised at ``fail_at``.
        done_after: report done (``asend`` returns ``False``) after this many values.

    Attributes:
        items: the values received, in order.
        closed: whether ``aclose`` was called.
        error_received: the exception given to ``athrow``, if any.
        max_in_flight: the most ``asend`` calls that were running at once.
    """

    def __init__(
        self,
        *,
        delay: float = 0.0,
        yield_to_loop: bool = False,
        fail_at: int | None = None,
        error: BaseException | None = None,
        done_after: int | None = None,
    ) -> None:
        super().__init__()
        self.delay = delay
        self.yield_to_loop = yield_to_loop
        self.fail_at = fail_at
        self.error = error or RuntimeError("RecordingSink failure")
        self.done_after = done_after
        self.items: list[Any] = []
        self.closed = False
        self.error_received: BaseException | None = None
        self.max_in_flight = 0
        self._in_flight = 0
        self._calls = 0

    def __repr__(self) -> str:
        return (
            f"<RecordingSink items={len(self.items)} closed={self.closed} "
            f"error={self.error_received!r}>"
        )

    async def next_impl(self, value: Any) -> None:
        index = self._calls
        self._calls += 1
        self._in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self._in_flight)
        try:
            if self.delay:
                await asyncio.sleep(self.delay)
            elif self.yield_to_loop:
                await asyncio.sleep(0)
            if index == self.fail_at:
                raise self.error
            self.items.append(value)
            if self.done_after is not None and len(self.items) >= self.done_after:
                self._done = True
        finally:
            self._in_flight -= 1

    async def close_impl(self) -> None:
        self.closed = True

    async def throw_impl(self, error: BaseException) -> None:
        self.error_received = error
