"""What an executor reports a task's progress to: :class:`TaskEvents` (the receiver a
pool runner is), :func:`as_task_events` for a receiver that is no subclass, and
:func:`intermediates_reporter`. The executor contract is in
:mod:`pullpush.executors._base`, which re-exports these names."""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import Any

__all__ = ["TaskEvents", "as_task_events", "intermediates_reporter"]


class TaskEvents(abc.ABC):
    """What an executor reports to; the pool runners subclass it.

    The three abstract methods are what every receiver must have; the others have
    defaults, so an executor calls each of them directly. A receiver that does not
    subclass :class:`TaskEvents` but has the three methods (duck typing) works too:
    the thread, inline and Ray executors wrap it (:func:`as_task_events`), using
    whichever of the optional methods it has.
    """

    __slots__ = ()

    @property
    def listens_for_starts(self) -> bool:
        """Whether starts need reporting (default true): false tells an executor for
        which reporting a start costs something (a wire message) to skip it."""
        return True

    def task_started(self, task_id: int) -> None:  # noqa: B027 - optional, a no-op
        """The task began running. It may be reported early (the process executor
        does so while no worker is ready, so a worker that never gets ready cannot
        hold a task past its timeout), then again when it starts."""

    def task_waiting(self, task_id: int) -> None:  # noqa: B027 - optional, a no-op
        """A task reported started early waits behind other tasks after all; it is
        reported started again when it runs."""

    def task_placed(self, task_id: int) -> None:  # noqa: B027 - optional, a no-op
        """The task reached the worker that runs it (running or queued there), so a
        task may now be queued behind it (an executor that
        :attr:`~Executor.queues_successors` reports it)."""

    @property
    def accepts_messages(self) -> bool:
        """Whether this receiver runs waitable tasks (handles :meth:`task_parked` and
        resumes them); an executor refuses a waitable runner for one that does not."""
        return False

    def task_parked(  # noqa: B027 - optional, a no-op
        self, task_id: int, received: int, timeout: float | None
    ) -> None:
        """A waitable task waits in ``receive()`` with its inbox empty, having taken
        ``received`` messages in all; it holds no executor slot now and goes on at
        ``MessageHandle.resume()``. ``timeout``: the ``receive``'s, for the receiver
        to resume it with ``timed_out=True``. Default: nothing (executors refuse
        waitable runners for a receiver that does not set :attr:`accepts_messages`)."""

    def task_received(self, task_id: int, received: int) -> None:  # noqa: B027 - optional
        """A waitable task has taken ``received`` messages in all from its inbox."""

    @abc.abstractmethod
    def task_intermediate(self, task_id: int, value: Any) -> None:
        """The task yielded ``value``."""

    def task_intermediates(self, task_id: int, values: list[Any]) -> None:
        """The task yielded each of ``values`` (a list, in order); an executor that
        receives values in batches reports them at once. Default: one
        :meth:`task_intermediate` per value."""
        intermediate = self.task_intermediate
        for value in values:
            intermediate(task_id, value)

    def task_resources(self, task_id: int, usage: Any) -> None:  # noqa: B027 - optional
        """What an executor measured the task using (e.g. ``{"memory_mb": 412.5}``),
        reported just before its terminal event. Default: ignored."""

    @abc.abstractmethod
    def task_final(self, task_id: int, value: Any) -> None:
        """The task finished with ``value``."""

    @abc.abstractmethod
    def task_error(self, task_id: int, error: BaseException) -> None:
        """The task failed with ``error``."""


class _DuckEvents(TaskEvents):
    """A receiver that has :class:`TaskEvents`' methods without subclassing it: its
    own methods, and the defaults for the optional ones it lacks."""

    __slots__ = ("receiver",)

    def __init__(self, receiver: Any) -> None:
        self.receiver = receiver

    @property
    def listens_for_starts(self) -> bool:
        return bool(getattr(self.receiver, "listens_for_starts", True))

    def task_started(self, task_id: int) -> None:
        method = getattr(self.receiver, "task_started", None)
        if method is not None:
            method(task_id)

    def task_waiting(self, task_id: int) -> None:
        method = getattr(self.receiver, "task_waiting", None)
        if method is not None:
            method(task_id)

    def task_placed(self, task_id: int) -> None:
        method = getattr(self.receiver, "task_placed", None)
        if method is not None:
            method(task_id)

    @property
    def accepts_messages(self) -> bool:
        return bool(getattr(self.receiver, "accepts_messages", False))

    def task_parked(self, task_id: int, received: int, timeout: float | None) -> None:
        self.receiver.task_parked(task_id, received, timeout)

    def task_received(self, task_id: int, received: int) -> None:
        method = getattr(self.receiver, "task_received", None)
        if method is not None:
            method(task_id, received)

    def task_intermediate(self, task_id: int, value: Any) -> None:
        self.receiver.task_intermediate(task_id, value)

    def task_intermediates(self, task_id: int, values: list[Any]) -> None:
        method = getattr(self.receiver, "task_intermediates", None)
        if method is not None:
            method(task_id, values)
        else:
            super().task_intermediates(task_id, values)

    def task_resources(self, task_id: int, usage: Any) -> None:
        method = getattr(self.receiver, "task_resources", None)
        if method is not None:
            method(task_id, usage)

    def task_final(self, task_id: int, value: Any) -> None:
        self.receiver.task_final(task_id, value)

    def task_error(self, task_id: int, error: BaseException) -> None:
        self.receiver.task_error(task_id, error)


def as_task_events(events: Any) -> TaskEvents:
    """``events`` itself when it subclasses :class:`TaskEvents`, else ``events``
    (duck-typed) with the defaults for the optional methods it lacks."""
    if isinstance(events, TaskEvents):
        return events
    return _DuckEvents(events)


def intermediates_reporter(events: TaskEvents) -> Callable[[int, list[Any]], None]:
    """What reports a batch of INTERMEDIATE values to ``events``: its
    ``task_intermediates`` when it has one, else ``task_intermediate`` per value
    (for a receiver that does not subclass :class:`TaskEvents`; the process executor
    still takes its receivers as they come)."""
    batch: Callable[[int, list[Any]], None] | None = getattr(events, "task_intermediates", None)
    if batch is not None:
        return batch
    one = events.task_intermediate

    def one_by_one(task_id: int, values: list[Any]) -> None:
        for value in values:
            one(task_id, value)

    return one_by_one
