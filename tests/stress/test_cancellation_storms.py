"""Cancellation storms: many runs, one after another on shared executors, each left
by its consumer at a random point -- a bare ``break`` (cleanup by the async-generator
finalizer), ``aclose()``, cancelling the consumer's task, a ``wait_for`` timeout, an
exception in the loop body -- while its tasks sleep, stream, spin or hang (some in
blocking code, whose worker must be terminated).

After every storm: every started task ended, capacity is back at every level and in
the executors' slots, no asyncio task is left, the process pool has exactly its
workers (no stray child) and the parent exactly its file descriptors of before.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import random
import time
from collections.abc import Callable, Iterator
from typing import Any

import _stress_tasks as tasks
import pytest
from _stress_support import (
    TALLY,
    Ledger,
    LedgerExecutor,
    check_capacity_returned,
    counted_no_leaks,
    leak_found,
    rng_for,
)

from pullpush import (
    CapacitySource,
    Executor,
    HierarchicalTaskPoolRunner,
    InlineExecutor,
    ProcessExecutor,
    ResourceCapacitySource,
    ScheduledTask,
    ScheduledTaskPoolRunner,
    ThreadExecutor,
)
from pullpush.testing import assert_no_pending_tasks
from pullpush.testing._leaks import _children, _fd_count

pytestmark = pytest.mark.stress

STORMS = 100
TASKS_PER_STORM = 400
WAYS_OUT = ("break", "aclose", "cancel", "wait_for", "raise")
SETTLE = 15.0  # seconds a storm's cleanup may take (a stuck worker is killed in ~0.5 s)


class LeftTheLoop(Exception):
    """Raised by a consumer's loop body to leave it."""


def runners_for(rng: random.Random, in_process: bool) -> Iterator[Any]:
    """Task runners of every shape; blocking ones only where they can be stopped."""
    for key in range(TASKS_PER_STORM):
        draw = rng.random()
        if draw < 0.4:
            yield functools.partial(tasks.ok, key)
        elif draw < 0.6:
            yield functools.partial(tasks.nap, key, rng.uniform(0.001, 0.05))
        elif draw < 0.75:
            yield functools.partial(tasks.stream, key, rng.randint(1, 2000))  # flow control
        elif draw < 0.85:
            yield functools.partial(tasks.astream, key, rng.randint(1, 50))
        elif draw < 0.95:
            yield functools.partial(tasks.hang)
        elif in_process and draw < 0.97:
            yield functools.partial(tasks.hang_blocking)
        elif in_process:
            yield functools.partial(tasks.spin, key, 20_000)
        else:
            yield functools.partial(tasks.ok, key)


async def leave_early(stream: Any, way: str, rng: random.Random) -> int:
    """Read ``stream`` and leave it the way ``way`` says, after a random number of
    envelopes or (at the first envelope after) a random delay; return envelopes read."""
    stop_after = rng.randint(0, 200)
    delay = rng.uniform(0.001, 0.05)
    deadline = time.monotonic() + rng.uniform(0, 0.5)
    read = 0

    def leave() -> bool:
        return read >= stop_after or time.monotonic() > deadline

    async def read_all() -> None:
        nonlocal read
        async for _ in stream:
            read += 1

    if way == "break":
        async for _ in stream:
            read += 1
            if leave():
                break
    elif way == "aclose":
        async with contextlib.aclosing(stream):
            async for _ in stream:
                read += 1
                if leave():
                    break
    elif way == "raise":
        with contextlib.suppress(LeftTheLoop):
            async with contextlib.aclosing(stream):
                async for _ in stream:
                    read += 1
                    if leave():
                        raise LeftTheLoop()
    elif way == "cancel":
        consumer = asyncio.ensure_future(read_all())
        await asyncio.sleep(delay)
        consumer.cancel()
        await asyncio.gather(consumer, return_exceptions=True)
    else:
        with contextlib.suppress(TimeoutError, asyncio.TimeoutError):
            await asyncio.wait_for(read_all(), delay)
    return read


def make_runner(
    rng: random.Random,
    executor: Executor,
    global_unit: CapacitySource,
    global_resources: ResourceCapacitySource,
    in_process: bool,
) -> tuple[Any, list[Any], Ledger]:
    """A hierarchical or a scheduled runner under the global level, and its levels.
    Its tasks time out (hanging ones always do), so a run never stops producing
    envelopes before its consumer leaves."""
    task_rng = random.Random(rng.random())
    timeout = rng.uniform(0.1, 0.5)
    if rng.random() < 0.6:
        level: Any = CapacitySource(rng.randint(1, 12), parent=global_unit)
        ledger = Ledger({"runner": level, "global": global_unit})
        runner: Any = HierarchicalTaskPoolRunner(
            "storm",
            runners_for(task_rng, in_process),
            level,
            executor=LedgerExecutor(executor, ledger, ("runner", "global")),
            timeout=timeout,
            max_unread=rng.choice((1, 16, 1024)),
        )
        return runner, [level, global_unit], ledger
    level = ResourceCapacitySource({"cpu": rng.randint(4, 16)}, parent=global_resources)
    ledger = Ledger({"runner": level, "global": global_resources})
    costs: dict[int, Any] = {}

    def scheduled() -> Iterator[ScheduledTask[int]]:
        for key, runner in enumerate(runners_for(task_rng, in_process)):
            cost = {"cpu": task_rng.randint(1, 4)}
            costs[id(runner)] = cost
            yield ScheduledTask(key, runner, cost)

    cost_of: Callable[[Any], Any] = lambda runner: costs.pop(id(runner))  # noqa: E731
    runner = ScheduledTaskPoolRunner(
        "storm",
        scheduled(),
        level,
        executor=LedgerExecutor(executor, ledger, ("runner", "global"), cost_of),
        timeout=timeout,
    )
    return runner, [level, global_resources], ledger


async def wait_ready(pool: ProcessExecutor) -> None:
    """Wait until every worker of ``pool`` has run a task (so none is still starting,
    and the baselines of child processes and fds are the steady ones)."""
    seen: set[int] = set()
    while not set(pool.pids) <= seen:
        pids = await asyncio.gather(
            *(pool.run(tasks.pid_after, 0.02) for _ in range(2 * pool.max_workers))
        )
        seen.update(pids)


async def wait_settled(
    runner: Any,
    executor: Executor,
    pool: ProcessExecutor,
    children: set[int],
    fds: int,
    levels: list[Any],
    what: str,
) -> None:
    """Wait (up to SETTLE s) until the storm ``what`` is cleaned up; then check it is."""
    deadline = time.monotonic() + SETTLE
    while time.monotonic() < deadline:
        stats = pool.statistics()
        if (
            runner.executor is None  # the run's shutdown finished
            and runner.running == 0
            and stats.in_flight == stats.pending == 0
            and len(pool.pids) == pool.max_workers
            and _children() - children == set(pool.pids)
            and _fd_count() == fds
        ):
            break
        await asyncio.sleep(0.01)
    assert runner.executor is None and runner.running == 0, (what, runner)
    for slots in (pool.capacity, executor.capacity):
        if slots is not None and slots.in_use:
            raise leak_found(f"{what}: executor slots not returned: {slots!r}")
    check_capacity_returned(*levels)
    stray = _children() - children - set(pool.pids)
    if stray or len(pool.pids) != pool.max_workers:
        raise leak_found(f"{what}: child processes: stray {stray}, workers {pool.pids}")
    if _fd_count() != fds:
        raise leak_found(f"{what}: {_fd_count() - fds} file descriptors more than before")
    await assert_no_pending_tasks()


@pytest.mark.timeout(180)
@pytest.mark.parametrize("loop_kind", ["asyncio", "uvloop"])
async def test_cancellation_storms_leak_nothing_and_return_capacity(loop_kind: str) -> None:
    rng = rng_for(f"storms-{loop_kind}")
    global_unit = CapacitySource(16)
    global_resources = ResourceCapacitySource({"cpu": 32})
    children_before = _children()
    started = storms = cut_short = 0
    ways: dict[str, int] = dict.fromkeys(WAYS_OUT, 0)
    async with (
        counted_no_leaks(),
        ProcessExecutor(2, cancel_grace=0.5, kill_grace=0.5) as pool,
        ThreadExecutor(4) as threads,
    ):
        await wait_ready(pool)
        fds = _fd_count()
        executors: dict[str, Executor] = {
            "process": pool,
            "thread": threads,
            "inline": InlineExecutor(),
        }
        for _ in range(STORMS):
            # One generator per storm, so timing (how far each run gets) changes nothing
            # in the storms after it.
            storm = random.Random(rng.random())
            kind = storm.choices(("process", "inline", "thread"), (0.7, 0.15, 0.15))[0]
            runner, levels, ledger = make_runner(
                storm, executors[kind], global_unit, global_resources, kind == "process"
            )
            way = storm.choice(WAYS_OUT)
            ways[way] += 1
            what = f"storm {storms}: {type(runner).__name__} on {kind}, out by {way}"
            try:
                await asyncio.wait_for(leave_early(runner.run_tasks(), way, storm), SETTLE)
            except (TimeoutError, asyncio.TimeoutError):
                raise AssertionError(f"{what}: leaving took over {SETTLE} s: {runner!r}") from None
            await wait_settled(runner, executors[kind], pool, children_before, fds, levels, what)
            ledger.check()
            stats = runner.statistics()
            started += stats.started
            cut_short += stats.started - stats.completed - stats.failed
            storms += 1
    print(
        f"cancellation storms on {loop_kind}: {storms} storms {ways}, {started} tasks "
        f"started, {cut_short} of them cancelled by their consumer leaving"
    )
    TALLY.add(tasks=started, injected=storms, observed=storms)
