"""Recorders for the capacity hand-off tests of the process and Ray executors: a
:class:`TaskEvents` that records each task's end (for tests that drive an executor's
``submit`` by hand) and a runner that records its units in use at every event."""

from __future__ import annotations

import asyncio
from typing import Any

from pullpush import HierarchicalTaskPoolRunner
from pullpush.executors import TaskEvents


class RecordingEvents(TaskEvents):
    """``ends``: ``(task_id, value or error)`` in the order the tasks ended;
    ``placed``: the task ids the executor reported placed."""

    def __init__(self) -> None:
        self.ends: list[tuple[int, Any]] = []
        self.done = asyncio.Event()
        self.placed: set[int] = set()

    def task_placed(self, task_id: int) -> None:
        self.placed.add(task_id)

    def task_intermediate(self, task_id: int, value: Any) -> None:
        pass

    def task_final(self, task_id: int, value: Any) -> None:
        self.ends.append((task_id, value))
        self.done.set()

    def task_error(self, task_id: int, error: BaseException) -> None:
        self.ends.append((task_id, error))
        self.done.set()

    async def wait_for(self, count: int) -> None:
        """Until ``count`` tasks have ended."""
        while len(self.ends) < count:
            self.done.clear()
            await self.done.wait()


class WatchedRunner(HierarchicalTaskPoolRunner[Any]):
    """A runner that records the units of its capacity in use (``units``) at every
    event its executor reports, before and after the runner handles it;
    :meth:`_look` is where subclasses record more."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.units: list[int] = []

    def _look(self) -> None:
        self.units.append(self.capacity.in_use)

    def task_started(self, task_id: int) -> None:
        super().task_started(task_id)
        self._look()

    def task_placed(self, task_id: int) -> None:
        super().task_placed(task_id)
        self._look()

    def task_final(self, task_id: int, value: Any) -> None:
        self._look()
        super().task_final(task_id, value)
        self._look()

    def task_error(self, task_id: int, error: BaseException) -> None:
        self._look()
        super().task_error(task_id, error)
        self._look()
