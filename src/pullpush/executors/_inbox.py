"""The executor side of a waitable task: :class:`Inbox`, the :class:`TaskContext`
the inline and thread executors hand a waitable task runner.

Who does what: the runner (on the caller's loop) puts messages in with
:meth:`Inbox.put`, and lets a parked task go on with :meth:`Inbox.grant`; the task
(on the caller's loop inline, on its worker thread with the thread executor) takes
them with ``receive``. State crossing threads is guarded by ``_lock``; what the task
reports (``parked``, ``received``) goes through the executor's callbacks, which
deliver it on the caller's loop.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

from .._exceptions import NoMessageError
from ..runners._waitable import TaskContext

__all__ = ["Inbox"]

# Inbox._grant: why a parked receive goes on.
_NONE, _RESUME, _TIMED_OUT, _CANCELLED = 0, 1, 2, 3


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class Inbox(TaskContext):
    """A waitable task's messages, and the wait of a ``receive`` that found none.

    Args:
        task_id: the task's id.
        parked: called (on the task's thread) as ``parked(received, timeout)`` when a
            ``receive`` finds the inbox empty and waits; it reports ``task_parked``.
            It may raise (a limit on waiting tasks): ``receive`` raises that error.
        received: called (on the task's thread) as ``received(count)`` after each
            message the task took; it reports ``task_received``.
        blocking: whether ``receive_blocking`` may block this thread (a synchronous
            runner on a thread of its own).
    """

    __slots__ = (
        "_blocking",
        "_cancelled",
        "_event",
        "_grant",
        "_lock",
        "_messages",
        "_on_parked",
        "_on_received",
        "_taken",
        "_waiter",
    )

    def __init__(
        self,
        task_id: int,
        parked: Callable[[int, float | None], None],
        received: Callable[[int], None],
        blocking: bool = False,
    ) -> None:
        super().__init__(task_id)
        self._on_parked = parked
        self._on_received = received
        self._blocking = blocking
        self._lock = threading.Lock()
        # Invariant (under _lock): the messages put and not yet taken, in order.
        self._messages: deque[Any] = deque()
        self._taken = 0  # messages taken, in all (the task's thread only)
        self._grant = _NONE  # why the parked receive goes on (_NONE while it may not)
        self._cancelled = False
        # The parked receive's wake-up: (loop, future) for receive(), an Event for
        # receive_blocking(); None while no receive is parked.
        self._waiter: tuple[asyncio.AbstractEventLoop, asyncio.Future[None]] | None = None
        self._event: threading.Event | None = None

    # -- the task's side ---------------------------------------------------------------------

    def _take(self) -> Any:
        """Take the head message (the inbox is not empty); report it."""
        with self._lock:
            message = self._messages.popleft()
        self._taken += 1
        self._on_received(self._taken)
        return message

    def receive_nowait(self) -> Any:
        with self._lock:
            if not self._messages:
                raise NoMessageError(f"no message waiting for task {self.task_id}")
        return self._take()

    async def receive(self, timeout: float | None = None) -> Any:
        if timeout is not None and not timeout >= 0:
            raise ValueError(f"timeout must be >= 0 or None, got {timeout!r}")
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        with self._lock:
            ready = bool(self._messages)
            if not ready:
                self._grant = _NONE
                self._waiter = (loop, future)
        if ready:
            return self._take()
        try:
            self._on_parked(self._taken, timeout)
        except BaseException:
            with self._lock:
                self._waiter = None
            raise
        try:
            await future
        finally:
            with self._lock:
                self._waiter = None
        return self._after_grant(timeout)

    def receive_blocking(self, timeout: float | None = None) -> Any:
        if not self._blocking:
            super().receive_blocking(timeout)
        if timeout is not None and not timeout >= 0:
            raise ValueError(f"timeout must be >= 0 or None, got {timeout!r}")
        event = threading.Event()
        with self._lock:
            if self._cancelled:
                raise asyncio.CancelledError
            ready = bool(self._messages)
            if not ready:
                self._grant = _NONE
                self._event = event
        if ready:
            return self._take()
        try:
            self._on_parked(self._taken, timeout)
        except BaseException:
            with self._lock:
                self._event = None
            raise
        event.wait()
        with self._lock:
            self._event = None
        return self._after_grant(timeout)

    def _after_grant(self, timeout: float | None) -> Any:
        with self._lock:
            grant, empty = self._grant, not self._messages
            self._grant = _NONE
        if grant == _CANCELLED:
            raise asyncio.CancelledError
        if empty:
            raise TimeoutError(f"task {self.task_id} received no message within {timeout}s")
        return self._take()

    # -- the runner's side (any thread) ------------------------------------------------------

    def put(self, message: Any) -> None:
        """Add ``message`` after those put before (it does not wake a parked receive:
        :meth:`grant` does)."""
        with self._lock:
            self._messages.append(message)

    def grant(self, timed_out: bool = False) -> None:
        """Let the parked receive go on: with the next message, or (none there and
        ``timed_out``) with ``TimeoutError``."""
        self._wake(_TIMED_OUT if timed_out else _RESUME)

    def abort(self) -> None:
        """The task is cancelled: a ``receive_blocking`` parked (or to park) raises
        ``CancelledError`` (a parked ``receive`` is cancelled with its asyncio task)."""
        with self._lock:
            self._cancelled = True
        self._wake(_CANCELLED)

    def _wake(self, grant: int) -> None:
        with self._lock:
            waiter, event = self._waiter, self._event
            if waiter is None and event is None:
                return
            self._grant = grant
        if event is not None:
            event.set()
        if waiter is not None:
            loop, future = waiter
            try:
                loop.call_soon_threadsafe(_resolve, future)
            except RuntimeError:
                pass  # the task's loop is closed: the task is over
