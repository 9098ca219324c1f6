"""RayExecutor's actors (one per CPU, each running its calls in order) and the
capacity hand-off on Ray: a task queued in an actor behind a running one holds no
capacity; cancel, timeout and crash of an actor call. On a real local Ray, one for
the module (as in test_ray.py)."""

from __future__ import annotations

import asyncio
import functools
import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _ray_support import need_ray
from _recording import RecordingEvents, WatchedRunner

from pullpush import (
    CapacitySource,
    HierarchicalTaskPoolRunner,
    RayExecutor,
    TaskTimeoutError,
    WorkerCrashedError,
)
from pullpush.testing import assert_one_terminal_per_task, collect

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[Any]:
    """A local Ray with 2 CPUs for the module, started on the main thread. This
    module's functions travel by value (the workers cannot import it)."""
    ray = need_ray()
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield ray
    finally:
        ray.shutdown()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def _gone(pid: int, within: float = 20.0) -> bool:
    deadline = time.monotonic() + within
    while _alive(pid) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    return not _alive(pid)


def where_and_when(seconds: float, value: Any = None) -> tuple[Any, int, float, float]:
    """Runs in the actor: ``(value, pid, start, end)``."""
    start = time.time()
    time.sleep(seconds)
    return value, os.getpid(), start, time.time()


class _Watched(WatchedRunner):
    """Records the units of its capacity in use at every event its executor
    reports, and, every 2 ms while :meth:`watched` runs, the tasks its executor
    holds (running, or queued in an actor)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.held: list[int] = [0]

    async def watched(self, executor: RayExecutor) -> list[Any]:

        async def watch() -> None:
            while True:
                self.held.append(executor.running)
                self.units.append(self.capacity.in_use)
                await asyncio.sleep(0.002)

        watcher = asyncio.create_task(watch())
        try:
            return await collect(self.run_tasks())
        finally:
            watcher.cancel()


async def test_one_actor_holds_one_unit_of_capacity_while_tasks_queue_in_it(
    ray_cluster: Any,
) -> None:
    """RayExecutor(num_cpus=1) + CapacitySource(4): one task runs at a time, so one
    unit is held, while the next task already waits in the actor (the hand-off)."""
    capacity = CapacitySource(4)
    async with RayExecutor(num_cpus=1) as executor:
        source = [functools.partial(where_and_when, 0.05, i) for i in range(8)]
        runner = _Watched("one", source, capacity, executor=executor, timeout=30.0)
        ends = assert_one_terminal_per_task(await runner.watched(executor))
        assert [ends[i].value[0] for i in range(8)] == list(range(8))
        assert max(runner.units) == 1, runner.units
        assert max(runner.held) >= 2, runner.held  # a task was queued behind the running one
        assert len({ends[i].value[1] for i in range(8)}) == 1  # one actor ran them all
        assert capacity.in_use == 0 and executor.capacity is not None
        assert executor.capacity.in_use == 0 and executor.running == 0
        assert await executor.run(where_and_when, 0, "again") is not None


async def test_a_queued_successor_cancelled_ends_before_its_predecessor(
    ray_cluster: Any,
) -> None:
    """Cancelled while queued in the actor, a successor ends at once (Ray confirms
    it never ran); its own successor stays behind the predecessor and starts only
    once that one ended."""
    async with RayExecutor(num_cpus=1) as executor:
        events = RecordingEvents()
        first = executor.submit(0, functools.partial(where_and_when, 0.5, 0), events)
        assert 0 in events.placed
        assert executor.successor_room(first)
        second = executor.submit(1, functools.partial(where_and_when, 0, 1), events, after=first)
        executor.submit(2, functools.partial(where_and_when, 0, 2), events, after=second)
        with pytest.raises(ValueError, match="no successor"):
            executor.submit(3, functools.partial(where_and_when, 0, 3), events, after=first)
        second.cancel()
        await events.wait_for(3)
        assert [task_id for task_id, _ in events.ends] == [1, 0, 2]
        assert isinstance(events.ends[0][1], asyncio.CancelledError)
        (_, first_pid, _, first_end), (_, third_pid, third_start, _) = (
            events.ends[1][1],
            events.ends[2][1],
        )
        assert third_pid == first_pid  # in the same actor,
        assert third_start >= first_end  # once its predecessor ended
        assert executor.running == 0


async def test_a_timeout_of_blocking_code_kills_the_actor_and_the_queued_task_runs(
    ray_cluster: Any, tmp_path: Path
) -> None:
    """A sync call blocked in C cannot be interrupted in an actor: after the grace
    its actor is killed; the task queued behind it (it never ran) goes to a
    replacement and ends FINAL; every unit comes back."""
    pid_file = tmp_path / "pid"

    def blocks() -> None:
        pid_file.write_text(str(os.getpid()))
        time.sleep(30)

    capacity = CapacitySource(3)
    async with RayExecutor(num_cpus=1, cancel_grace=0.3) as executor:
        source: list[Any] = [blocks, functools.partial(where_and_when, 0, 1)]
        source.append(functools.partial(where_and_when, 0, 2))
        runner = _Watched("stuck", source, capacity, executor=executor, timeout=1.5)
        ends = assert_one_terminal_per_task(await runner.watched(executor))
        assert isinstance(ends[0].error, TaskTimeoutError)
        assert [ends[i].value[0] for i in (1, 2)] == [1, 2]
        assert max(runner.held) >= 2  # task 1 waited in the actor behind task 0
        assert max(runner.units) == 1
        stuck = int(pid_file.read_text())
        assert stuck not in {ends[1].value[1], ends[2].value[1]}  # a replacement ran them
        assert await _gone(stuck)
        assert capacity.in_use == 0 and executor.capacity is not None
        assert executor.capacity.in_use == 0 and executor.running == 0
        assert (await executor.run(where_and_when, 0, "again"))[0] == "again"


async def test_an_actor_that_dies_fails_only_its_running_task(ray_cluster: Any) -> None:
    """``os._exit`` in the runner: that task fails with WorkerCrashedError (Ray's
    error as its cause), the tasks queued behind it run in a replacement actor."""

    def dies() -> None:
        os._exit(3)

    capacity = CapacitySource(4)
    async with RayExecutor(num_cpus=1) as executor:
        source: list[Any] = [dies] + [functools.partial(where_and_when, 0.01, i) for i in (1, 2, 3)]
        runner = _Watched("crash", source, capacity, executor=executor)
        ends = assert_one_terminal_per_task(await runner.watched(executor))
        error = ends[0].error
        assert isinstance(error, WorkerCrashedError), error
        assert "task 0" in str(error)
        assert isinstance(error.__cause__, ray_cluster.exceptions.RayActorError)
        assert [ends[i].value[0] for i in (1, 2, 3)] == [1, 2, 3]
        assert max(runner.units) == 1
        assert capacity.in_use == 0 and executor.capacity is not None
        assert executor.capacity.in_use == 0 and executor.running == 0
        assert (await executor.run(where_and_when, 0, "again"))[0] == "again"


async def test_a_function_is_defined_once_per_actor_and_the_actors_go_at_close(
    ray_cluster: Any,
) -> None:
    """Twenty tasks of one function over two actors: each actor is sent it (defines
    it) at most once; after aclose() no actor process is left."""
    async with RayExecutor(num_cpus=2) as executor:
        source = [functools.partial(where_and_when, 0.01, i) for i in range(20)]
        ends = assert_one_terminal_per_task(
            await collect(
                HierarchicalTaskPoolRunner("f", source, 20, executor=executor).run_tasks()
            )
        )
        assert [ends[i].value[0] for i in range(20)] == list(range(20))
        assert executor.actors == 2
        stats = [await slot.actor.statistics.remote() for slot in executor._slots_live]
        assert all(s["defined"] <= 1 for s in stats), stats
        assert sum(s["calls"] for s in stats) == 20
        assert {s["pid"] for s in stats} == {e.value[1] for e in ends.values()}
    for s in stats:
        assert await _gone(s["pid"]), s


async def test_runs_beyond_the_actors_queue_in_them_and_a_cost_runs_as_a_ray_task(
    ray_cluster: Any,
) -> None:
    """Standalone runs (no capacity taken) beyond the CPUs queue in the actors and
    all end; a task whose cost asks Ray for more than one CPU is a Ray task of its
    own: nothing may be queued behind it."""
    async with RayExecutor(num_cpus=1) as executor:
        results = await asyncio.gather(*(executor.run(where_and_when, 0.02, i) for i in range(6)))
        assert [r[0] for r in results] == list(range(6))
        assert executor.actors == 1 and executor.running == 0
        events = RecordingEvents()
        own = executor.submit(  # type: ignore[call-arg]
            0, functools.partial(where_and_when, 0.2, "own"), events, cost={"cpu": 0.5}
        )
        assert not executor.successor_room(own)
        with pytest.raises(ValueError, match="actor call"):
            executor.submit(1, functools.partial(where_and_when, 0, 1), events, after=own)
        await events.wait_for(1)
        assert events.ends[0][1][0] == "own"
        assert executor.running == 0


@pytest.mark.timeout(20)  # the grace is 30 s: only an interrupt ends them in time
async def test_a_running_call_is_interrupted_in_its_actor_which_lives_on(
    ray_cluster: Any, tmp_path: Path
) -> None:
    """Python code spinning and an async runner awaiting are interrupted where they
    run (KeyboardInterrupt, the private loop woken), as ray.cancel does in a Ray
    task: both time out, and the same actor runs the next task."""
    pid_file = tmp_path / "pid"

    def spins() -> None:
        pid_file.write_text(str(os.getpid()))
        while True:
            pass

    async def sleeps() -> None:
        await asyncio.sleep(3600)

    async with RayExecutor(num_cpus=1, cancel_grace=30.0) as executor:
        runner = HierarchicalTaskPoolRunner(
            "interrupted", [spins, sleeps], CapacitySource(2), executor=executor, timeout=0.5
        )
        ends = assert_one_terminal_per_task(await collect(runner.run_tasks()))
        assert [type(ends[i].error) for i in (0, 1)] == [TaskTimeoutError] * 2
        assert executor.running == 0
        assert (await executor.run(where_and_when, 0, "after"))[1] == int(pid_file.read_text())


async def _until(condition: Any, within: float = 20.0) -> bool:
    deadline = time.monotonic() + within
    while not condition() and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    return bool(condition())


@pytest.mark.parametrize("how", ["os.kill", "ray.kill"])
async def test_an_actor_killed_while_idle_is_replaced_before_any_call_finds_it(
    ray_cluster: Any, how: str
) -> None:
    """An idle actor killed from outside (its process, or ``ray.kill``) is found by
    its death watch with no call pending: it is dropped and replaced, and the
    tasks that come next all end FINAL in live actors; after aclose() no actor
    process is left."""
    async with RayExecutor(num_cpus=2) as executor:
        await asyncio.gather(*(executor.run(where_and_when, 0.2, i) for i in range(2)))
        assert executor.actors == 2 and executor.running == 0
        victim = executor._slots_live[0]
        pid = (await victim.actor.statistics.remote())["pid"]
        if how == "os.kill":
            os.kill(pid, signal.SIGKILL)
        else:
            ray_cluster.kill(victim.actor)
        assert await _gone(pid)
        assert await _until(lambda: victim not in executor._slots_live)  # no call sent
        assert await _until(lambda: executor.actors == 2)  # replaced, idle
        source = [functools.partial(where_and_when, 0.01, i) for i in range(10)]
        capacity = CapacitySource(4)
        runner = HierarchicalTaskPoolRunner("after", source, capacity, executor=executor)
        ends = assert_one_terminal_per_task(await collect(runner.run_tasks()))
        assert [ends[i].value[0] for i in range(10)] == list(range(10)), ends
        assert pid not in {ends[i].value[1] for i in range(10)}
        assert capacity.in_use == 0 and executor.running == 0 and executor.actors == 2
        stats = [await slot.actor.statistics.remote() for slot in executor._slots_live]
    for s in stats:
        assert await _gone(s["pid"]), s


def _logged(log: Path, seconds: float, name: str) -> tuple[str, int]:
    """Runs in the actor: append ``name`` to ``log`` (one line a run), sleep, return
    ``(name, pid)``."""
    with log.open("a") as file:
        file.write(name + "\n")
    time.sleep(seconds)
    return name, os.getpid()


async def test_an_unreachable_actor_is_stopped_and_only_calls_it_never_started_run_again(
    ray_cluster: Any, tmp_path: Path
) -> None:
    """``ActorUnavailableError`` (told here by the actor's watch while it runs a
    call, two queued behind it): the actor is asked to start no more calls and is
    killed; the call it started fails with WorkerCrashedError, the two it never
    started run once each, in a replacement."""
    log = tmp_path / "log"
    logged = functools.partial(_logged, log)

    async with RayExecutor(num_cpus=1) as executor:
        events = RecordingEvents()
        first = executor.submit(0, functools.partial(logged, 5, "a"), events)
        second = executor.submit(1, functools.partial(logged, 0, "b"), events, after=first)
        executor.submit(2, functools.partial(logged, 0, "c"), events, after=second)
        slot = executor._slots_live[0]
        assert await _until(lambda: log.exists())  # "a" runs
        unavailable = ray_cluster.exceptions.ActorUnavailableError("cut off (test)", None)
        executor._watch_ended(slot, unavailable)
        assert executor.actors == 1 and slot.killed  # no new call goes there
        await events.wait_for(3)
        ends = dict(events.ends)
        assert isinstance(ends[0], WorkerCrashedError), ends
        assert [ends[1][0], ends[2][0]] == ["b", "c"]
        assert slot.started == first.call_id  # the actor said so
        assert log.read_text().split() == ["a", "b", "c"]  # each ran once
        assert executor.running == 0 and executor.actors == 1 and slot.dead
        assert (await executor.run(logged, 0, "d"))[1] == ends[1][1]


async def test_an_unreachable_actor_that_never_answers_fails_every_call_it_may_have_run(
    ray_cluster: Any, tmp_path: Path
) -> None:
    """``ActorUnavailableError`` told while the actor is in fact dead (it cannot
    answer which calls it started): every call sent to it with no outcome (the
    running one, the one queued behind it) fails with WorkerCrashedError -- none
    is sent again, as any may have run while it was cut off -- and the next task
    runs in a replacement."""
    log = tmp_path / "log"
    logged = functools.partial(_logged, log)

    capacity = CapacitySource(3)
    async with RayExecutor(num_cpus=1) as executor:
        source = [functools.partial(logged, 30, "a")]
        source += [functools.partial(logged, 0, name) for name in ("b", "c")]
        runner = HierarchicalTaskPoolRunner("cut", source, capacity, executor=executor)
        collected = asyncio.create_task(collect(runner.run_tasks()))
        assert await _until(lambda: log.exists() and executor.running == 2)
        slot = executor._slots_live[0]
        pid = (await slot.actor.statistics.options(concurrency_group="control").remote())["pid"]
        os.kill(pid, signal.SIGKILL)
        unavailable = ray_cluster.exceptions.ActorUnavailableError("cut off (test)", None)
        executor._watch_ended(slot, unavailable)  # before Ray tells of the death
        ends = assert_one_terminal_per_task(await collected)
        assert all(isinstance(ends[i].error, WorkerCrashedError) for i in (0, 1)), ends
        assert ends[2].value[0] == "c" and ends[2].value[1] != pid
        assert log.read_text().split() == ["a", "c"] and slot.started is None and slot.dead
        assert capacity.in_use == 0 and executor.running == 0
        assert (await executor.run(logged, 0, "d"))[1] == ends[2].value[1]
