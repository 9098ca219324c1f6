"""A push window flushed by size or by time (Kafka's ``batch.size`` + ``linger.ms``)."""

from __future__ import annotations

import asyncio
from typing import TypeVar, get_args

from .._obj import PushObj
from .._util import check_seconds
from ..pull._batch import TimeoutFrom
from ._batch import PushWindowObj

__all__ = ["PushWindowTimeoutObj", "TimeoutFrom"]

T = TypeVar("T")

_TIMEOUT_FROM: tuple[str, ...] = get_args(TimeoutFrom)


class PushWindowTimeoutObj(PushWindowObj[T]):
    """Forward lists of ``window_size`` values, or fewer once ``timeout`` expires.

    A window is flushed as soon as it is full; otherwise a timer flushes the partial
    window ``timeout`` seconds after

    * ``timeout_from="batch_start"`` (the default): its **first** value arrived.
      Latency is bounded: no value waits longer than ``timeout``, however steadily
      values trickle in. This is the pull side's behaviour (decision C17).
    * ``timeout_from="last_item"``: its **latest** value arrived (the timer restarts
      on every value). This is FireFoundry's push behaviour: it flushes after a
      pause in the stream, and a steady trickle may hold a window open.

    No timer runs while the window is empty, so empty windows are never sent. The
    timer is a loop ``call_at`` handle; a flush it starts runs in a short task that
    takes the stage's turn like a sender, so it never interleaves with sends. An
    error from the sink during a timed flush is kept and raised by the next
    ``asend``, ``aclose`` or ``athrow`` on this stage.

    ``aclose()`` cancels the timer, flushes the partial window (unless
    ``flush_on_close=False``) and closes the sink; when a timed flush is delivering
    at that moment, it waits for it (and for the close it then runs), so no task is
    left behind. ``athrow()`` cancels the timer and keeps the partial window in
    ``buffer``.

    Args:
        sink: the downstream push object, receiving lists.
        window_size: values per window, >= 1 (mutable; next window).
        timeout: seconds, > 0 (mutable; next timer).
        timeout_from: ``"batch_start"`` or ``"last_item"`` (mutable).
        flush_on_close: whether ``aclose`` flushes a partial window.

    Raises:
        TypeError, ValueError: an argument is out of range (the message names it).
    """

    def __init__(
        self,
        sink: PushObj[list[T]],
        window_size: int,
        timeout: float,
        *,
        timeout_from: TimeoutFrom = "batch_start",
        flush_on_close: bool = True,
    ) -> None:
        super().__init__(sink, window_size, flush_on_close=flush_on_close)
        self.timeout: float = check_seconds("timeout", timeout, positive=True)
        if timeout_from not in _TIMEOUT_FROM:
            raise ValueError(f"timeout_from must be one of {_TIMEOUT_FROM}, got {timeout_from!r}")
        self.timeout_from: TimeoutFrom = timeout_from
        self._loop: asyncio.AbstractEventLoop | None = None
        # Invariant: _batch counts flushes; a timer or timed flush only acts on the
        # window it was armed for (its batch number still current).
        self._batch = 0
        # Invariant: _timer is None or a pending handle for window _batch, and it is
        # None whenever that window is empty or the stage is finished.
        self._timer: asyncio.TimerHandle | None = None
        self._deadline = 0.0
        # Invariant: _flushing is True while the timer's flush task holds the turn.
        self._flush_task: asyncio.Task[None] | None = None
        self._flushing = False
        self._error: BaseException | None = None

    async def asend(self, value: T) -> bool:
        """Add ``value`` to the window; return whether the stage still accepts values."""
        if self._error is not None:
            self._raise_timed_error()
        return await super().asend(value)

    async def next_impl(self, value: T) -> None:
        buffer = self.buffer
        buffer.append(value)
        if len(buffer) >= self.window_size:
            self.buffer = []
            self._batch += 1
            self._cancel_timer()
            if not await self.sink.asend(buffer):
                self._done = True
        elif len(buffer) == 1 or self.timeout_from == "last_item":
            self._arm()

    def _arm(self) -> None:
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        self._deadline = deadline = loop.time() + self.timeout
        if self._timer is None:
            self._timer = loop.call_at(deadline, self._on_timer, self._batch)

    def _cancel_timer(self) -> None:
        timer = self._timer
        if timer is not None:
            self._timer = None
            timer.cancel()

    def _on_timer(self, batch: int) -> None:
        self._timer = None
        if batch != self._batch or self._done or not self.buffer:
            return
        loop = self._loop
        assert loop is not None
        if loop.time() < self._deadline:
            # "last_item": later values pushed the deadline back; sleep on.
            self._timer = loop.call_at(self._deadline, self._on_timer, batch)
            return
        task = self._flush_task
        if task is None or task.done():
            self._flush_task = loop.create_task(self.run_in_turn(self._flush_timed_out))

    async def _flush_timed_out(self) -> None:
        buffer = self.buffer
        if not buffer or (self._done and self._turn.pending is None):
            return
        self.buffer = []
        self._batch += 1
        self._cancel_timer()
        self._flushing = True
        try:
            if not await self.sink.asend(buffer):
                self._done = True
        except Exception as error:
            self._error = error  # nobody awaits this task: the next call raises it
        finally:
            self._flushing = False

    def _raise_timed_error(self) -> None:
        error, self._error = self._error, None
        assert error is not None
        raise error

    async def close_impl(self) -> None:
        self._cancel_timer()
        await super().close_impl()

    async def throw_impl(self, error: BaseException) -> None:
        self._cancel_timer()
        await super().throw_impl(error)

    async def aclose(self) -> None:
        """Cancel the timer; flush the partial window; close the sink."""
        await super().aclose()
        await self._settle()

    async def athrow(self, error: BaseException) -> None:
        """Cancel the timer; fail the sink with ``error``; keep ``buffer``."""
        await super().athrow(error)
        await self._settle()

    async def _settle(self) -> None:
        # Wait for the timer's flush task when that cannot wait for us: it holds
        # the turn (and runs a deferred close when done), or it has not started and
        # the turn is free. When it is queued behind a send -- perhaps the send
        # that called us -- it finishes by itself once that send ends.
        task = self._flush_task
        if (
            task is not None
            and not task.done()
            and task is not asyncio.current_task()
            and (self._flushing or self._turn.idle)
        ):
            await task
        if self._error is not None:
            self._raise_timed_error()
