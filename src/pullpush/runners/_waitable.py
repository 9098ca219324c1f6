"""Waitable tasks: task runners that receive messages while they run.

A waitable task runner is a function whose first parameter is a :class:`TaskContext`,
wrapped with :func:`waitable` (as a decorator, or with the arguments that follow the
context)::

    async def review(ctx: TaskContext, doc: str) -> str:
        draft = await analyse(doc)
        verdict = await ctx.receive()        # parks here: holds no capacity
        return await finish(draft, verdict)

    runner = HierarchicalTaskPoolRunner("docs", (waitable(review, d) for d in docs), 4)
    ...
    await runner.send(task_id, "approved")   # from the consumer side

While a task waits in ``receive()`` with no message for it, it holds no capacity at
any level and no executor slot; the runner emits a WAITING envelope. A message sent
to it makes the runner re-acquire the task's capacity (and a slot), ahead of new
tasks, then the task resumes (a RESUMED envelope) with the message.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import Any, Concatenate, Generic, ParamSpec, TypeVar

from .._exceptions import NotWaitableError

__all__ = ["TaskContext", "Waitable", "waitable"]

T = TypeVar("T")
P = ParamSpec("P")


class TaskContext(abc.ABC):
    """What a waitable task runner gets as its first argument: its id and its inbox.

    Messages arrive exactly once each, in the order they were sent (``send`` or
    ``send_nowait`` of the runner running the task).

    * ``await receive()`` returns the next message. With none waiting, the task
      *parks*: the runner emits a WAITING envelope and gives back everything the task
      holds (its capacity at every level, its executor slot); when a message comes,
      it re-acquires them before the task goes on (a RESUMED envelope).
    * ``await receive(timeout=s)`` raises ``TimeoutError`` when no message came within
      ``s`` seconds of waiting; the task re-acquires its capacity before it sees the
      error. A message that arrives while it re-acquires wins over the timeout.
    * ``receive_nowait()`` returns the next message waiting, or raises
      :class:`~pullpush.NoMessageError`; it never parks.
    * ``receive_blocking(timeout=None)``: ``receive`` for a synchronous task runner,
      on the thread executor only (the thread blocks, its slot is given back).

    The Ray executor does not run waitable task runners (a task gets an ERROR
    envelope with :class:`~pullpush.NotWaitableError`).

    Attributes:
        task_id: the task's id (its envelopes' ``task_id``).
    """

    __slots__ = ("task_id",)

    def __init__(self, task_id: int) -> None:
        self.task_id = task_id

    @abc.abstractmethod
    async def receive(self, timeout: float | None = None) -> Any:
        """The next message for this task; park (holding nothing) until one comes."""

    @abc.abstractmethod
    def receive_nowait(self) -> Any:
        """The next message waiting, else :class:`~pullpush.NoMessageError`."""

    def receive_blocking(self, timeout: float | None = None) -> Any:
        """``receive`` for a synchronous task runner running in a thread of its own
        (the thread executor); elsewhere a ``RuntimeError``: it would block the loop."""
        raise RuntimeError(
            "receive_blocking() needs a synchronous task runner on the thread executor; "
            "use 'await ctx.receive()' in an async task runner"
        )

    def __repr__(self) -> str:
        return f"<{type(self).__name__} task={self.task_id}>"


class Waitable(Generic[T]):
    """A task runner that takes a :class:`TaskContext`: ``fn(context, *args,
    **kwargs)``. Build it with :func:`waitable`.

    A pool runner (:class:`HierarchicalTaskPoolRunner`,
    :class:`ScheduledTaskPoolRunner`) on the inline, thread or process executor calls it with
    the task's context; ``fn``'s result is a task runner's result as usual (a value,
    a coroutine, a generator...: SPEC 2). Calling it without a context (an executor
    or an API that cannot deliver messages) raises :class:`~pullpush.NotWaitableError`.
    """

    __slots__ = ("args", "fn", "kwargs", "task_id")

    def __init__(self, fn: Callable[..., T], args: tuple[Any, ...], kwargs: dict[str, Any]):
        if not callable(fn):
            raise TypeError(f"waitable() needs a callable, got {type(fn).__name__}")
        self.fn = fn
        self.args = args
        self.kwargs = kwargs
        # The task id, for an executor that builds the context elsewhere (a worker
        # process): set on the copy it sends.
        self.task_id: int | None = None

    def for_task(self, task_id: int) -> Waitable[T]:
        """A copy that carries ``task_id`` (what a worker process names its context)."""
        copy: Waitable[T] = Waitable(self.fn, self.args, self.kwargs)
        copy.task_id = task_id
        return copy

    def bind(self, context: TaskContext) -> Callable[[], T]:
        """The zero-argument task runner that calls ``fn`` with ``context``."""
        fn, args, kwargs = self.fn, self.args, self.kwargs

        def run() -> T:
            return fn(context, *args, **kwargs)

        return run

    def __call__(self) -> T:
        name = getattr(self.fn, "__qualname__", repr(self.fn))
        raise NotWaitableError(
            f"waitable task runner {name} needs a TaskContext: run it in a "
            "HierarchicalTaskPoolRunner or ScheduledTaskPoolRunner on the inline, thread or "
            "process executor"
        )

    def __repr__(self) -> str:
        name = getattr(self.fn, "__qualname__", repr(self.fn))
        return f"<Waitable {name}>"


def waitable(
    fn: Callable[Concatenate[TaskContext, P], T], /, *args: P.args, **kwargs: P.kwargs
) -> Waitable[T]:
    """Make ``fn`` a waitable task runner: the pool runner calls
    ``fn(ctx, *args, **kwargs)`` with the task's :class:`TaskContext` ``ctx``.

    As a decorator (``@waitable`` on ``async def task(ctx: TaskContext)``) or with
    arguments (``waitable(review, doc)``, one task per call). Typed: ``args`` are
    checked against ``fn``'s parameters after the context, and the result types the
    runner's envelopes as ``fn``'s result would.
    """
    return Waitable(fn, args, kwargs)
