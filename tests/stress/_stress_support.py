"""What the stress tests share: the tally behind the summary line, seeded random
generators, leak and memory checks that count what they find, and the capacity
ledger (an executor wrapper that counts, per capacity level, what the tasks an
executor holds have acquired, and fails on any moment over a limit)."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import random
from collections import Counter
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import psutil
import uvloop

from pullpush import CapacitySource, Executor, ResourceCapacitySource
from pullpush.executors import TaskEvents, TaskHandle, TaskRunner
from pullpush.testing import assert_no_leaks

SEED = int(os.environ.get("PULLPUSH_STRESS_SEED", "20261122"))
"""The suite's seed; every generator is derived from it (override with the
``PULLPUSH_STRESS_SEED`` environment variable to explore)."""


@dataclasses.dataclass
class Tally:
    """The figures of the summary line, summed over the stress tests that ran."""

    tasks: int = 0
    """Tasks that ran to a terminal envelope (or were cancelled by a storm)."""
    injected: int = 0
    """Faults the tests planted: exceptions, worker kills, timeouts, bad input."""
    observed: int = 0
    """Faults seen as the expected ERROR envelope or exception."""
    leaks: int = 0
    """Leak checks that failed (child processes, fds, capacity, memory)."""

    def add(self, tasks: int = 0, injected: int = 0, observed: int = 0) -> None:
        self.tasks += tasks
        self.injected += injected
        self.observed += observed

    def summary(self) -> str:
        """The summary line."""
        return (
            f"stress summary: tasks run {self.tasks:,}, faults injected {self.injected:,}, "
            f"faults observed {self.observed:,}, leaks found {self.leaks} (seed {SEED})"
        )


TALLY = Tally()


def rng_for(name: str) -> random.Random:
    """A generator seeded from the suite's seed and ``name``; prints the seed."""
    print(f"{name}: seed {SEED}")
    return random.Random(f"{SEED}:{name}")


def leak_found(message: str) -> AssertionError:
    """Count a leak and return the assertion to raise."""
    TALLY.leaks += 1
    return AssertionError(message)


@contextlib.asynccontextmanager
async def counted_no_leaks(grace: float = 5.0) -> AsyncIterator[None]:
    """:func:`pullpush.testing.assert_no_leaks` (no pending task, child process or fd
    left behind), counting a failure in the tally."""
    # libuv opens one pipe pair for good with the first uvloop loop of a process (its
    # signal lock); a thread executor's loops would be the first under asyncio.
    uvloop.new_event_loop().close()
    try:
        async with assert_no_leaks(grace):
            yield
    except AssertionError as error:
        if "leaked" in str(error) or "left pending" in str(error):
            raise leak_found(str(error)) from None
        raise


def check_capacity_returned(*levels: CapacitySource | ResourceCapacitySource) -> None:
    """Every unit or resource of every level is back."""
    for level in levels:
        if isinstance(level, CapacitySource):
            back = level.available == level.limit and level.in_use == 0
        else:
            back = level.available == level.limits and not any(level.in_use.values())
        if not back:
            raise leak_found(f"capacity not returned: {level!r}")


def rss() -> int:
    """This process's resident memory, in bytes."""
    return psutil.Process().memory_info().rss


def check_rss(before: int, bound_mib: int, what: str, peak: int = 0) -> None:
    """The parent's resident memory (now, and at the sampled ``peak``) grew by at most
    ``bound_mib`` MiB since ``before``."""
    grown = (max(rss(), peak) - before) / 2**20
    print(f"{what}: parent RSS grew by at most {grown:.1f} MiB (bound {bound_mib} MiB)")
    if grown > bound_mib:
        raise leak_found(f"{what}: parent RSS grew by {grown:.1f} MiB, over {bound_mib} MiB")


# -- the capacity ledger ------------------------------------------------------------------------

Level = CapacitySource | ResourceCapacitySource


def _books(level: Level) -> Mapping[str, float]:
    """What the level's own books say is in use, per resource."""
    if isinstance(level, CapacitySource):
        return {"units": level.in_use}
    return level.in_use


def _limits(level: Level) -> Mapping[str, float]:
    if isinstance(level, CapacitySource):
        return {"units": level.limit}
    return level.limits


class Ledger:
    """Counts, per capacity level, what the tasks handed to an executor and not yet
    reported ended have acquired -- independently of the levels' own books -- and
    records every moment one level is over its limit, or lends less than its tasks
    hold (a unit given back while its task still runs).

    The count goes up in ``submit`` (after the runner acquired the task's capacity)
    and down when the executor reports the task's end, before the runner sees it
    (and releases).
    """

    def __init__(self, levels: Mapping[str, Level]) -> None:
        self.levels = dict(levels)
        self.held: dict[str, Counter[str]] = {name: Counter() for name in self.levels}
        self.peak: dict[str, Counter[str]] = {name: Counter() for name in self.levels}
        self.violations: list[str] = []

    def enter(self, path: tuple[str, ...], cost: Mapping[str, float]) -> None:
        for name in path:
            held, peak = self.held[name], self.peak[name]
            for resource, amount in cost.items():
                held[resource] += amount
                peak[resource] = max(peak[resource], held[resource])
            self._check(name)

    def leave(self, path: tuple[str, ...], cost: Mapping[str, float]) -> None:
        for name in path:
            held = self.held[name]
            for resource, amount in cost.items():
                held[resource] -= amount
            self._check(name)

    def _check(self, name: str) -> None:
        level = self.levels[name]
        limits, books, held = _limits(level), _books(level), self.held[name]
        for resource, limit in limits.items():
            amount = held.get(resource, 0)
            if amount > limit + 1e-9:
                self.violations.append(f"{name}: {resource} {amount} held, over the limit {limit}")
            if amount > books.get(resource, 0) + 1e-9:
                self.violations.append(
                    f"{name}: {resource} {amount} held by running tasks, "
                    f"but the level's books say {books.get(resource, 0)}"
                )
        if len(self.violations) > 20:  # enough to diagnose
            del self.violations[20:]

    def check(self) -> None:
        """Fail on any recorded violation, and unless every count is back to zero."""
        assert not self.violations, self.violations
        for name, held in self.held.items():
            assert not any(abs(v) > 1e-9 for v in held.values()), (name, dict(held))

    def peaks(self) -> dict[str, dict[str, float]]:
        return {name: dict(peak) for name, peak in self.peak.items()}


class LedgerExecutor(Executor):
    """Wraps a (shared) executor for one runner: every task it submits is counted
    in ``ledger`` on ``path`` (its capacity levels, innermost first) with the cost
    ``cost_of(runner)``, until the executor reports its end."""

    name = "ledger"

    def __init__(
        self,
        inner: Executor,
        ledger: Ledger,
        path: tuple[str, ...],
        cost_of: Callable[[TaskRunner], Mapping[str, float]] = lambda _: {"units": 1},
    ) -> None:
        super().__init__()
        self.inner = inner
        self.ledger = ledger
        self.path = path
        self.cost_of = cost_of
        self.credit_window = inner.credit_window
        self._runs = 0

    @property
    def capacity(self) -> CapacitySource | None:
        return self.inner.capacity

    async def _start(self) -> None:
        await self.inner.start()

    def submit(self, task_id: int, runner: TaskRunner, events: TaskEvents) -> TaskHandle:
        cost = self.cost_of(runner)
        self.ledger.enter(self.path, cost)
        tracked = _LedgerEvents(events, self, task_id, cost)
        try:
            return self.inner.submit(task_id, runner, tracked)
        except BaseException:
            tracked.ended()
            raise


class _LedgerEvents:
    """Forwards a task's events to its runner, leaving the ledger at its end."""

    def __init__(
        self, events: TaskEvents, owner: LedgerExecutor, task_id: int, cost: Mapping[str, float]
    ) -> None:
        self.events = events
        self.owner = owner
        self.cost = cost
        self.task_id = task_id
        self.done = False

    def ended(self) -> None:
        if self.done:
            self.owner.ledger.violations.append(f"task {self.task_id}: reported ended twice")
            return
        self.done = True
        self.owner.ledger.leave(self.owner.path, self.cost)

    def task_intermediate(self, task_id: int, value: Any) -> None:
        if self.done:
            self.owner.ledger.violations.append(f"task {task_id}: INTERMEDIATE after its end")
        self.events.task_intermediate(task_id, value)

    def task_final(self, task_id: int, value: Any) -> None:
        self.ended()
        self.events.task_final(task_id, value)

    def task_error(self, task_id: int, error: BaseException) -> None:
        self.ended()
        self.events.task_error(task_id, error)

    def task_resources(self, task_id: int, usage: Any) -> None:
        report = getattr(self.events, "task_resources", None)
        if report is not None:
            report(task_id, usage)
