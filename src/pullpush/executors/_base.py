"""The executor seam: where a task runner runs.

A pool runner keeps capacity, task pulling and envelope delivery on the caller's event
loop and hands each task runner to an :class:`Executor`. The executor reports what the
task produces through the runner's :class:`TaskEvents` -- plain method calls on the
caller's loop, so a remote executor can deliver a whole batch of envelopes from one
pipe read without creating an asyncio task per task -- and returns a
:class:`TaskHandle` through which the runner cancels the task and grants it
flow-control credits.

Contract of an executor:

* ``submit`` never blocks. It may queue the task; ``capacity`` (if not ``None``) is a
  :class:`CapacitySource` whose units are the executor's slots, and a runner holds one
  unit per task it has submitted and not yet seen end.
* For every ``submit``, exactly one of ``events.task_final`` / ``events.task_error``
  is called, last, after the task's ``events.task_intermediate`` calls, all on the
  loop ``start()`` ran on.
* Starts: an executor whose tasks may wait after ``submit`` before they run (queued
  behind others) sets :attr:`Executor.reports_starts` and calls
  ``events.task_started(task_id)`` when each task begins running, before its other
  events; the runners start a task's ``timeout`` clock then (at ``submit`` for an
  executor that does not report starts).
* Flow control: a task may have at most ``credit_window`` INTERMEDIATE envelopes
  outstanding (reported but not acknowledged through ``TaskHandle.ack``); then it is
  paused until the consumer catches up. Nothing is ever dropped.
* ``TaskHandle.cancel(error)`` stops the task as soon as it can and ends it with
  ``task_error(error)`` (default: :class:`asyncio.CancelledError`), unless its end was
  already reported on the caller's loop. A task is never reported ended while it
  still runs (its capacity would be handed out again).
* Successors (the capacity hand-off; only an executor that sets
  :attr:`Executor.queues_successors`, which must also report starts): a task
  submitted with ``after=handle`` waits behind ``handle``'s task, which has not
  ended, and starts only once that task ended (in a process pool: in the same
  worker, with no round trip). It holds no capacity (no slot, no user unit) until
  then: its predecessor's end hands them over. Each task has at most one successor;
  one submitted behind a successor makes a chain. A successor that ends before its
  predecessor (cancelled while queued) leaves its own successor behind its
  predecessor. A successor whose predecessor is lost with its worker is sent again,
  still never started before its predecessor ended. Executors without a queue per
  worker (inline, thread) do not queue successors (Ray queues them in its actors).
* Waitable task runners (:class:`~pullpush.Waitable`), on an executor that sets
  :attr:`Executor.runs_waitables` and for a receiver whose ``accepts_messages`` is
  true: the executor calls the runner with a :class:`~pullpush.TaskContext`, and its
  handle is a :class:`MessageHandle`. ``handle.send(m)`` puts ``m`` in the task's
  inbox (in order); the task reports each message it takes
  (``events.task_received``). A ``receive`` that finds the inbox empty reports
  ``events.task_parked`` and waits, counting against none of the executor's slots,
  until ``handle.resume()``; the receiver decides when (it sends the messages first).
"""

from __future__ import annotations

import abc
import asyncio
import warnings
from collections.abc import AsyncGenerator, Awaitable, Callable, Generator
from typing import TYPE_CHECKING, Any, ParamSpec, Protocol, TypeVar, overload

from .._exceptions import ExecutorClosedError
from ..runners._envelope import EnvelopeType, TaskProgressEnvelope
from ._events import TaskEvents, as_task_events, intermediates_reporter

if TYPE_CHECKING:
    from ..capacity import CapacitySource

__all__ = [
    "Executor",
    "ExecutorClosedError",
    "TaskEvents",
    "TaskHandle",
    "BaseTaskHandle",
    "MessageHandle",
    "TaskRunner",
    "as_task_events",
    "intermediates_reporter",
]

_E = TypeVar("_E", bound="Executor")
_P = ParamSpec("_P")
_R = TypeVar("_R")

TaskRunner = Callable[[], Any]
"""A zero-argument callable; what it returns decides the envelopes (SPEC 2)."""


class TaskHandle(Protocol):
    """The runner's side of one submitted task."""

    def cancel(self, error: BaseException | None = None) -> None:
        """Stop the task; it ends with ``task_error(error or CancelledError())``."""

    def ack(self, count: int = 1) -> None:
        """``count`` INTERMEDIATE envelopes of the task were consumed."""


class MessageHandle(TaskHandle, Protocol):
    """The handle of a waitable task (on an executor that runs them)."""

    def send(self, message: Any) -> None:
        """Put ``message`` in the task's inbox, after those sent before."""

    def resume(self, timed_out: bool = False) -> None:
        """Let a task that reported ``task_parked`` go on (its slot is held for it
        again): with the next message of its inbox, or, ``timed_out`` and the inbox
        still empty, with its ``receive``'s ``TimeoutError``."""


class BaseTaskHandle:
    """What every executor's :class:`TaskHandle` shares: the task's end, reported
    once, and the rule that a cancel wins.

    * ``ended`` turns true when :meth:`report_end` reports the task's end; nothing is
      reported after that.
    * A cancel wins: once :meth:`request_cancel` ran, the task ends with the cancel's
      error (``asyncio.CancelledError()`` when it gave none) whatever the task's own
      outcome -- it may have finished an instant before the request reached it. The
      task's own error, unless a ``CancelledError`` (the cancel itself), is kept as
      that error's ``__context__`` (if it has none yet).
    * Before the end is reported, ``forget(handle)``, the executor's callback, is
      called, so the executor no longer counts the task when the receiver hears of
      its end (and may hand its capacity out again).

    A subclass stops the task on :meth:`request_cancel` returning true, and calls
    :meth:`report_end` once the task stopped (never earlier: its capacity would be
    handed out while it still runs).
    """

    __slots__ = ("cancel_error", "cancel_requested", "ended", "events", "forget", "task_id")

    def __init__(
        self,
        task_id: int,
        events: TaskEvents,
        forget: Callable[[Any], None] | None = None,
    ) -> None:
        self.task_id = task_id
        self.events = events
        self.forget = forget
        self.ended = False
        self.cancel_requested = False
        self.cancel_error: BaseException | None = None

    def request_cancel(self, error: BaseException | None) -> bool:
        """Record a cancel (the first error given wins); return whether the task
        must be stopped now: true for the first request before the end, else false."""
        if self.ended:
            return False
        if self.cancel_error is None:
            self.cancel_error = error
        if self.cancel_requested:
            return False
        self.cancel_requested = True
        return True

    def report_end(self, error: BaseException | None, value: Any = None) -> None:
        """Report the task's end, once: its ``error``, else its FINAL ``value``; after
        a cancel, the cancel's error."""
        if self.ended:
            return
        self.ended = True
        if self.forget is not None:
            self.forget(self)
        if self.cancel_requested:
            self.events.task_error(self.task_id, _cancel_wins(self.cancel_error, error))
        elif error is not None:
            self.events.task_error(self.task_id, error)
        else:
            self.events.task_final(self.task_id, value)


def _cancel_wins(cancel_error: BaseException | None, own: BaseException | None) -> BaseException:
    """The error a cancelled task ends with: the cancel's, the task's own error (if
    any, and not the cancellation itself) as its context."""
    cancelled = isinstance(own, asyncio.CancelledError)
    if cancel_error is None:
        if cancelled:
            assert own is not None
            return own  # the cancellation as the task saw it, traceback included
        cancel_error = asyncio.CancelledError()
    if (
        own is not None
        and not cancelled
        and own is not cancel_error
        and cancel_error.__context__ is None
    ):
        cancel_error.__context__ = own
    return cancel_error


class Executor(abc.ABC):
    """Base of the executors: ``"inline"``, ``"thread"``, ``"process"``, ``"ray"``.

    Usable on its own: ``async with ProcessExecutor() as ex: await ex.run(f, x)``.

    Whoever builds an executor closes it (``aclose()`` or ``async with``); a runner
    closes only the executors it built from a name. A thread or process executor that
    was started and is garbage-collected unclosed warns with :class:`ResourceWarning`
    (shown under ``python -X dev`` and by pytest), as asyncio's transports do.
    """

    name: str = "executor"
    reports_starts: bool = False
    """Whether this executor calls ``TaskEvents.task_started`` for every task (when
    the receiver has it); if not, a task counts as started at ``submit``."""
    credit_window: int = 256
    """INTERMEDIATE envelopes a task may have outstanding before it is paused."""
    runs_waitables: bool = False
    """Whether the executor runs :class:`~pullpush.Waitable` task runners (its
    handles are then :class:`MessageHandle` objects); the runners refuse a waitable
    runner for any other executor with :class:`~pullpush.NotWaitableError`."""
    takes_costs: bool = False
    """Whether ``submit`` takes a keyword ``cost`` (a :class:`ScheduledTask`'s cost,
    which the scheduled runner then passes): the Ray executor asks Ray for it."""
    _warn_unclosed: bool = False
    # Whether an instance started and never closed warns with ResourceWarning when it is
    # collected (executors holding threads or processes).

    def __init__(self) -> None:
        self._started = False
        self._closed = False
        # Invariant: set by the first start(); every start() waits on it.
        self._starting: asyncio.Future[None] | None = None
        # Invariant: set by the first aclose(); every aclose() waits on it.
        self._closing: asyncio.Task[None] | None = None

    queues_successors: bool = False
    """Whether ``submit`` takes a keyword ``after`` (a handle of this executor's, of a
    task not yet ended and with no successor yet): the task is queued behind that one
    and starts once it ended, holding no capacity until then (see the contract above
    and :meth:`successor_room`). Such an executor reports starts."""

    @property
    def capacity(self) -> CapacitySource | None:
        """The executor's slots as a capacity level (``None``: unlimited): one per task
        that may run at once. A runner holds one, with a unit of its own capacity,
        for each task it submitted and not yet seen end, but a successor (see
        :attr:`queues_successors`), which gets its predecessor's."""
        return None

    def successor_room(self, handle: TaskHandle) -> bool:
        """Whether a task submitted now with ``after=handle`` would be queued at once
        behind ``handle``'s task (where it is: in its worker's queue, within the
        executor's prefetch). Default: false (no successors)."""
        return False

    @property
    def started(self) -> bool:
        """Whether :meth:`start` ran."""
        return self._started

    @property
    def closed(self) -> bool:
        """Whether :meth:`aclose` ran."""
        return self._closed

    async def start(self) -> None:
        """Make the executor ready (start workers...). Idempotent.

        Several runners sharing the executor may call it at once: the first call
        starts it, the others wait for that start (and see its error, if it failed;
        if it was cancelled and the executor is :attr:`_restartable`, one of them
        starts it afresh).
        """
        while True:
            if self._closed:
                raise ExecutorClosedError(f"{type(self).__name__} is closed")
            starting = self._starting
            if starting is None:
                break
            if not self._restartable:
                await asyncio.shield(starting)
                return
            if not starting.done():
                await asyncio.wait([starting])  # raises our own cancellation only
            if not starting.cancelled():
                starting.result()
                return
            # That start was cancelled, and undone: start afresh.
        self._starting = starting = asyncio.get_running_loop().create_future()
        try:
            await self._start()
        except BaseException as error:
            if self._restartable and isinstance(error, asyncio.CancelledError):
                self._starting = None
                starting.cancel()  # whoever waits for it starts afresh
                raise
            starting.set_exception(error)
            starting.exception()  # retrieved: later start() calls re-raise it
            raise
        self._started = True
        starting.set_result(None)

    _restartable = False
    """Whether :meth:`_start` undoes itself when cancelled, so that a later
    :meth:`start` starts afresh (else it raises that cancellation again)."""

    async def _start(self) -> None:  # noqa: B027 - optional hook
        """What starting means to this executor."""

    @abc.abstractmethod
    def submit(self, task_id: int, runner: TaskRunner, events: TaskEvents) -> TaskHandle:
        """Start (or queue) ``runner`` as task ``task_id``, reporting to ``events``.

        An executor that :attr:`takes_costs` takes a keyword ``cost``; one that
        :attr:`queues_successors` a keyword ``after``."""

    async def aclose(self) -> None:
        """Stop the executor: cancel what runs, release workers. Idempotent.

        Shielded: cancelling the caller does not stop the closing half-way (workers
        would be left behind); it goes on, and every ``aclose()`` waits for it.
        """
        if self._closing is None:
            self._closed = True
            self._closing = asyncio.ensure_future(self._aclose())
        await asyncio.shield(self._closing)

    async def _aclose(self) -> None:  # noqa: B027 - optional hook
        """What closing means to this executor."""

    def __del__(self, _warn: Any = warnings.warn) -> None:
        # As asyncio's transports do: an executor started and dropped without aclose()
        # says so (python -W error::ResourceWarning, pytest's filterwarnings, -X dev).
        if (
            self._warn_unclosed
            and getattr(self, "_starting", None) is not None
            and not getattr(self, "_closed", True)
        ):
            _warn(
                f"unclosed executor {self!r}: call (await) its aclose(), or use it as `async with`",
                ResourceWarning,
                source=self,
            )
            self._abandon()

    def _abandon(self) -> None:  # noqa: B027 - optional hook
        """Collected unclosed: release what can be released without a loop."""

    async def __aenter__(self: _E) -> _E:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # -- standalone use -------------------------------------------------------------------

    # The overloads type the result (first match wins): an async generator's FINAL
    # value is Any (its Final marker is not typed), a generator's is its return value,
    # an awaitable's is what it resolves to.
    @overload
    async def run(
        self, fn: Callable[_P, AsyncGenerator[Any, Any]], /, *args: _P.args, **kwargs: _P.kwargs
    ) -> Any: ...

    @overload
    async def run(
        self, fn: Callable[_P, Generator[Any, Any, _R]], /, *args: _P.args, **kwargs: _P.kwargs
    ) -> _R: ...

    @overload
    async def run(
        self, fn: Callable[_P, Awaitable[_R]], /, *args: _P.args, **kwargs: _P.kwargs
    ) -> _R: ...

    @overload
    async def run(self, fn: Callable[_P, _R], /, *args: _P.args, **kwargs: _P.kwargs) -> _R: ...

    async def run(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        """Run ``fn(*args, **kwargs)`` as one task; return its FINAL value or raise.

        INTERMEDIATE values are discarded. Cancelling the caller cancels the task.
        Typed: the arguments are checked against ``fn``'s parameters, and the result
        is ``fn``'s return type (awaited for an ``async def``, a generator's return
        value; ``Any`` for an async generator).
        """
        result: Any = None
        async for envelope in self.stream(fn, *args, **kwargs):
            if envelope.type is EnvelopeType.FINAL:
                result = envelope.value
        return result

    async def stream(
        self, fn: Callable[_P, Any], /, *args: _P.args, **kwargs: _P.kwargs
    ) -> AsyncGenerator[TaskProgressEnvelope[Any, None], None]:
        """Run ``fn(*args, **kwargs)`` as one task and yield its envelopes: every
        INTERMEDIATE, then the FINAL. An ERROR is raised, not yielded. Leaving the
        loop early cancels the task."""
        await self.start()
        runner = _bind(fn, args, kwargs)
        collector = _Collector()
        handle = self.submit(0, runner, collector)
        try:
            while True:
                while not collector.envelopes:
                    await collector.wait()
                envelope = collector.envelopes.pop(0)
                if envelope.type is EnvelopeType.ERROR:
                    assert envelope.error is not None
                    raise envelope.error
                if envelope.type is EnvelopeType.INTERMEDIATE:
                    handle.ack(1)
                yield envelope
                if envelope.type is EnvelopeType.FINAL:
                    return
        finally:
            if not collector.ended:
                handle.cancel()
                while not collector.ended:
                    await collector.wait()


def _bind(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> TaskRunner:
    if not callable(fn):
        raise TypeError(f"fn must be callable, got {type(fn).__name__}")
    if not args and not kwargs:
        return fn
    import functools

    return functools.partial(fn, *args, **kwargs)


class _Collector(TaskEvents):
    """A :class:`TaskEvents` for one standalone task."""

    def __init__(self) -> None:
        self.envelopes: list[TaskProgressEnvelope] = []
        self.ended = False
        self._waiter: asyncio.Future[None] | None = None

    async def wait(self) -> None:
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None

    def _add(self, envelope: TaskProgressEnvelope) -> None:
        self.envelopes.append(envelope)
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def task_intermediate(self, task_id: int, value: Any) -> None:
        self._add(TaskProgressEnvelope(EnvelopeType.INTERMEDIATE, task_id, None, value))

    def task_final(self, task_id: int, value: Any) -> None:
        self.ended = True
        self._add(TaskProgressEnvelope(EnvelopeType.FINAL, task_id, None, value))

    def task_error(self, task_id: int, error: BaseException) -> None:
        self.ended = True
        self._add(TaskProgressEnvelope(EnvelopeType.ERROR, task_id, None, None, error))
