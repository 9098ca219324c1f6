"""How a runner reads its task source: a sync iterable without awaiting, an async
iterable or pull object through its raw cycle; and the metrics hooks it calls."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from typing import TYPE_CHECKING, Any

from .._obj import pull_iter

if TYPE_CHECKING:  # metrics
    from ..metrics import RunnerMetricsCollector

END: Any = object()
"""What :class:`TaskFeed` returns once the source is exhausted."""

_RUNNER_HOOKS = (
    "on_task_pulled",
    "on_task_started",
    "on_task_rejected",
    "on_task_ended",
    "on_envelope",
)


def check_metrics(metrics: RunnerMetricsCollector | None) -> RunnerMetricsCollector | None:
    """``metrics`` if it is None or has every hook a runner calls (duck typing, so a
    user's own collector works too), else a TypeError naming what is missing."""
    if metrics is not None:
        missing = [h for h in _RUNNER_HOOKS if not callable(getattr(metrics, h, None))]
        if missing:
            raise TypeError(
                "metrics must be a RunnerMetricsCollector or have its hooks; "
                f"{type(metrics).__name__} lacks {', '.join(missing)}"
            )
    return metrics


class TaskFeed:
    """Reads a task source of any kind: a sync iterable (no awaiting), or an async
    iterable / pull object (read through its raw cycle)."""

    __slots__ = ("_async", "_metrics", "_sync", "never_waits")

    def __init__(self, source: object, metrics: RunnerMetricsCollector | None = None) -> None:
        self._metrics = metrics
        self._sync: Any = None
        self._async: AsyncIterator[Any] | None = None
        if hasattr(type(source), "__aiter__"):
            self._async = pull_iter(source)  # type: ignore[arg-type]
        elif isinstance(source, Iterable) and not isinstance(source, (str, bytes)):
            self._sync = iter(source)
        else:
            raise TypeError(
                f"source must be an iterable, async iterable or pull object of task runners, "
                f"got {type(source).__name__}"
            )
        self.never_waits = self._sync is not None
        """Whether taking the next task never waits (a sync iterable)."""

    def next_now(self) -> Any:
        """The next task of a sync source, or ``END`` (only when ``never_waits``)."""
        task = next(self._sync, END)
        if self._metrics is not None and task is not END:  # metrics
            self._metrics.on_task_pulled()
        return task

    async def next(self) -> Any:
        """The next task, or ``END``."""
        if self._sync is not None:
            task = next(self._sync, END)
        else:
            assert self._async is not None
            try:
                task = await self._async.__anext__()
            except StopAsyncIteration:
                return END
        if self._metrics is not None and task is not END:  # metrics
            self._metrics.on_task_pulled()
        return task
