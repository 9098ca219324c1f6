"""What a :class:`ScheduledTaskPoolRunner` schedules: :class:`ScheduledTask`, and the
:class:`RetryPolicy` it applies to failed tasks of a dependency source."""

from __future__ import annotations

import dataclasses
import random
from collections import deque
from collections.abc import AsyncIterable, Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from .._util import check_int, check_seconds

if TYPE_CHECKING:
    import asyncio

    from ..capacity import CapacitySource
    from ..executors import TaskHandle

__all__ = ["DEFAULT_COST", "RetryPolicy", "ScheduledTask", "TaskSource"]

K = TypeVar("K")
T = TypeVar("T")

TaskSource = Iterable[T] | AsyncIterable[T]
"""What a runner reads its tasks from: an iterable, an async iterable or a pull object
(the type of a ``source`` parameter)."""

DEFAULT_COST: Mapping[str, float] = {"capacity": 1}
"""The cost of a :class:`ScheduledTask` that names none."""


@dataclasses.dataclass
class ScheduledTask(Generic[K]):
    """A task for :class:`ScheduledTaskPoolRunner`.

    Attributes:
        key: the task's name; envelopes carry it as ``key``.
        runner: the task runner (a zero-argument callable, SPEC 2).
        cost: resources the task holds while it runs (default ``{"capacity": 1}``).
        on_complete: called as ``on_complete(key, result)`` before its FINAL envelope.
        on_error: called as ``on_error(key, error)`` before its ERROR envelope.
            With a dependency source, both are called while the task's node is
            still running, so they may ``complete``/``fail``/``abort`` it; the
            runner's auto-wiring acts only if they leave it running.
        timeout: seconds the task may run, > 0 (overrides the runner's ``timeout``);
            anything else raises ``ValueError`` or ``TypeError`` here.
    """

    key: K
    runner: Callable[[], Any]
    cost: Mapping[str, float] | None = None
    on_complete: Callable[[K, Any], Any] | None = None
    on_error: Callable[[K, BaseException], Any] | None = None
    timeout: float | None = None

    def __post_init__(self) -> None:
        if self.timeout is not None:
            check_seconds("timeout", self.timeout, positive=True)


@dataclasses.dataclass(frozen=True)
class RetryPolicy:
    """How a runner retries the failed tasks of a dependency source.

    Attempt ``n`` (from 1) that fails is retried after
    ``min(backoff * multiplier ** (n - 1), max_backoff)`` seconds, stretched by a random
    factor in ``[1 - jitter, 1 + jitter]``, while ``n < max_attempts`` and the error is
    an instance of ``retry_on``. Then the task's node is aborted, with its dependents.
    The policy applies to failures whose ``on_error`` left the node running; attempts
    the callback sent back to ready with ``fail`` count towards ``max_attempts`` too.
    """

    max_attempts: int = 1
    backoff: float = 0.1
    jitter: float = 0.0
    multiplier: float = 2.0
    max_backoff: float = 60.0
    retry_on: tuple[type[BaseException], ...] = (Exception,)

    def __post_init__(self) -> None:
        check_int("max_attempts", self.max_attempts, minimum=1)
        check_seconds("backoff", self.backoff)
        check_seconds("max_backoff", self.max_backoff)
        if not 0 <= self.jitter <= 1:
            raise ValueError(f"jitter must be between 0 and 1, got {self.jitter}")
        if self.multiplier < 1:
            raise ValueError(f"multiplier must be >= 1, got {self.multiplier}")

    def should_retry(self, attempt: int, error: BaseException) -> bool:
        """Whether failed attempt number ``attempt`` (from 1) is retried."""
        return attempt < self.max_attempts and isinstance(error, self.retry_on)

    def delay(self, attempt: int, rng: Callable[[], float] = random.random) -> float:
        """Seconds to wait before retrying after failed attempt ``attempt``."""
        base = min(self.backoff * self.multiplier ** (attempt - 1), self.max_backoff)
        return max(0.0, base * (1 + self.jitter * (2 * rng() - 1)))


class Mail:
    """The runner's side of a waitable task's messages (``Running.mail``).

    Invariants: ``sent`` counts the messages accepted for the task, in send order;
    ``held`` holds the last ``sent - forwarded`` of them (kept while the task is
    parked, handed to the executor when it resumes); ``received <= forwarded``
    counts those the task took. ``waiters`` holds, in order, ``(n, future)`` for each
    ``await send`` of message number ``n`` (from 1) not yet received.
    """

    __slots__ = (
        "forwarded",
        "held",
        "left",
        "parked",
        "queued",
        "receive_timer",
        "received",
        "sent",
        "timed_out",
        "waiters",
    )

    def __init__(self) -> None:
        self.sent = 0
        self.forwarded = 0
        self.received = 0
        self.held: deque[Any] = deque()
        self.waiters: deque[tuple[int, asyncio.Future[None]]] = deque()
        # Whether the task is parked in receive(), holding nothing (until it resumes).
        self.parked = False
        # Whether it is in the runner's queue of tasks to resume.
        self.queued = False
        # Whether its receive's timeout expired while it was parked.
        self.timed_out = False
        self.receive_timer: asyncio.TimerHandle | None = None
        # Seconds of the task's timeout left when it parked (None: no timeout clock).
        self.left: float | None = None


class Running:
    """A task in flight, from submit to its terminal event."""

    __slots__ = (
        "after",
        "cost",
        "handle",
        "key",
        "mail",
        "scheduled",
        "slots",
        "successor",
        "task_id",
        "timeout",
        "timer",
    )

    def __init__(
        self,
        task_id: int,
        key: Any,
        slots: CapacitySource | None,
        scheduled: ScheduledTask[Any] | None,
        cost: Any = None,
    ) -> None:
        self.task_id = task_id
        self.key = key
        # The executor's slots the task holds a unit of (None: an unlimited executor).
        # What else it holds, the runner's _release knows (its capacity, its cost).
        self.slots = slots
        self.scheduled = scheduled
        self.cost = cost
        self.handle: TaskHandle | None = None
        # Seconds the task may run (None: no limit); its timer starts when it starts.
        self.timeout: float | None = None
        self.timer: asyncio.TimerHandle | None = None
        # A waitable task's messages (None: the task cannot receive).
        self.mail: Mail | None = None
        # The capacity hand-off (see PoolRunner._follow): the task it waits behind,
        # holding nothing, until that one ends and hands its capacity over (None: it
        # holds its own); and the task waiting behind it (None: none).
        self.after: Running | None = None
        self.successor: Running | None = None


class Start:
    """What the dispatcher decided to start next, with its capacity already held, or
    (``after`` set) to queue behind a task of the runner's, holding nothing until that
    one hands its capacity over."""

    __slots__ = ("after", "cost", "key", "runner", "scheduled", "slots", "timeout")

    def __init__(
        self,
        runner: Any,
        slots: CapacitySource | None,
        key: Any = None,
        timeout: float | None = None,
        scheduled: ScheduledTask[Any] | None = None,
        cost: Any = None,
        after: Running | None = None,
    ) -> None:
        self.runner = runner
        self.slots = slots
        self.key = key
        self.timeout = timeout
        self.scheduled = scheduled
        self.cost = cost
        # Set: the task holds no capacity; it is queued behind ``after`` (a hand-off).
        self.after = after


def release_slot(slots: CapacitySource | None) -> None:
    """Give back a slot taken from ``slots`` (``None``: nothing was taken)."""
    if slots is not None:
        slots.release()
