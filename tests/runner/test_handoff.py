"""The capacity hand-off (SPEC 3: a task holds user capacity only while it runs), with
an executor that queues successors in its workers (tests/runner/_queue_executor.py,
the model of the process executor's prefetch): user units held never exceed the tasks
running, the worker count bounds capacity use, yet tasks queue behind running ones."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections import Counter
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pullpush import (
    CapacitySource,
    EnvelopeType,
    HierarchicalTaskPoolRunner,
    ResourceCapacitySource,
    ScheduledTask,
    ScheduledTaskPoolRunner,
    TaskProgressEnvelope,
    TaskTimeoutError,
)
from pullpush.capacity import QuotaCapacitySource
from pullpush.testing import run

from ._queue_executor import Crashed, QueueExecutor

FINAL, ERROR = EnvelopeType.FINAL, EnvelopeType.ERROR


class Watch:
    """Checks, at every start and end the executor reports, that the units a runner
    holds are those of its tasks running: each task the runner counts as holding
    capacity (not queued behind another) runs in the executor, and the runner's
    capacity has at most one unit more in use (granted to its dispatcher, which
    starts a task with it on its next turn); the root likewise, over every runner.
    It remembers the most units each runner held. A breach is recorded (the
    executor's callbacks must not raise), and :meth:`assert_kept` raises it."""

    def __init__(self, executor: QueueExecutor, root: CapacitySource | None = None) -> None:
        self.executor = executor
        self.root = root
        self.runners: list[HierarchicalTaskPoolRunner[Any]] = []
        self.peak: Counter[int] = Counter()
        self.breaches: list[str] = []
        executor.observe = self.check

    def check(self) -> None:
        ex = self.executor
        everyone = 0
        for index, runner in enumerate(self.runners):
            holders = sum(record.after is None for record in runner._running.values())
            everyone += holders
            running = ex.running_by[id(runner)]
            held = runner.capacity.in_use
            if holders > running or held > holders + 1:
                self.breaches.append(
                    f"runner {index}: {held} units, {holders} holders, {running} running"
                )
            self.peak[index] = max(self.peak[index], held)
        if self.root is not None and self.root.in_use > everyone + len(self.runners):
            self.breaches.append(f"root: {self.root.in_use} units, {everyone} holders")

    def assert_kept(self) -> None:
        assert not self.breaches, self.breaches[:5]


async def collect(runner: Any) -> list[TaskProgressEnvelope]:
    async with contextlib.aclosing(runner.run_tasks()) as stream:
        return [envelope async for envelope in stream]


def terminal(envelopes: list[TaskProgressEnvelope]) -> dict[int, TaskProgressEnvelope]:
    ends = [e for e in envelopes if e.type is not EnvelopeType.INTERMEDIATE]
    counts = Counter(e.task_id for e in ends)
    assert all(count == 1 for count in counts.values()), counts
    return {e.task_id: e for e in ends}


def sleeper(seconds: float, value: Any) -> Any:
    async def task() -> Any:
        await asyncio.sleep(seconds)
        return value

    return task


@pytest.mark.timeout(20)
def test_one_worker_holds_one_unit_while_tasks_queue_behind() -> None:
    # ProcessExecutor(1) + CapacitySource(4), modelled: one task runs at a time, so
    # one unit is held, while the next ones wait in the worker behind it.
    async def main() -> None:
        async with QueueExecutor(1, prefetch=2) as ex:
            watch = Watch(ex)
            capacity = CapacitySource(4)
            runner = HierarchicalTaskPoolRunner(
                "r", [sleeper(0.002, i) for i in range(12)], capacity, executor=ex
            )
            watch.runners.append(runner)
            ends = terminal(await collect(runner))
            assert sorted(e.value for e in ends.values()) == list(range(12))
            assert watch.peak[0] == 1
            assert ex.successors >= 8  # most tasks were queued behind another
            assert capacity.in_use == 0 and ex.capacity.in_use == 0
            watch.assert_kept()

    run(main())


@pytest.mark.timeout(20)
def test_quota_capacity_never_hands_over() -> None:
    # A quota's released units restore nothing: each task spends its own.
    async def main() -> None:
        async with QueueExecutor(1, prefetch=2) as ex:
            quota = QuotaCapacitySource({"runs": 5})
            capacity = CapacitySource(4, quota, cost={"runs": 1})
            runner = HierarchicalTaskPoolRunner(
                "r", [sleeper(0.001, i) for i in range(5)], capacity, executor=ex
            )
            ends = terminal(await collect(runner))
            assert len(ends) == 5 and all(e.type is FINAL for e in ends.values())
            assert ex.successors == 0
            assert quota.available["runs"] == 0

    run(main())


@pytest.mark.timeout(20)
def test_queued_successor_cancelled_gives_back_nothing_and_the_next_moves_up() -> None:
    async def main() -> None:
        async with QueueExecutor(1, prefetch=3) as ex:
            watch = Watch(ex)
            gate = asyncio.Event()

            async def first() -> str:
                await gate.wait()
                return "first"

            tasks = [first, sleeper(0, "a"), sleeper(0, "b"), sleeper(0, "c")]
            capacity = CapacitySource(4)
            runner = HierarchicalTaskPoolRunner("r", tasks, capacity, executor=ex)
            watch.runners.append(runner)
            consumer = asyncio.ensure_future(collect(runner))
            while ex.successors < 3:
                await asyncio.sleep(0)
            assert capacity.in_use == 1
            record = runner._running[1]
            assert record.handle is not None and record.after is not None
            record.handle.cancel()  # task 1 is queued behind task 0
            await asyncio.sleep(0)
            assert capacity.in_use == 1  # it gave back nothing
            gate.set()
            ends = terminal(await consumer)
            assert ends[1].type is ERROR and isinstance(ends[1].error, asyncio.CancelledError)
            assert [ends[i].value for i in (0, 2, 3)] == ["first", "b", "c"]
            # task 2 moved up behind task 0 and ran after it, then task 3
            order = [task_id for _, task_id in ex.started_order]
            assert order == [0, 2, 3]
            assert capacity.in_use == 0 and ex.capacity.in_use == 0
            watch.assert_kept()

    run(main())


@pytest.mark.timeout(20)
def test_predecessor_timed_out_hands_over_and_queued_time_does_not_count() -> None:
    # Task 0 hangs and times out: its unit passes to task 1, which runs. Tasks 1 and 2
    # each take 0.15 s of a 0.25 s timeout, queued for longer than that: their clocks
    # start when they start.
    async def main() -> None:
        async with QueueExecutor(1, prefetch=2) as ex:
            watch = Watch(ex)
            tasks = [sleeper(3600, "hang"), sleeper(0.15, 1), sleeper(0.15, 2)]
            capacity = CapacitySource(2)
            runner = HierarchicalTaskPoolRunner("r", tasks, capacity, executor=ex, timeout=0.25)
            watch.runners.append(runner)
            ends = terminal(await collect(runner))
            assert isinstance(ends[0].error, TaskTimeoutError)
            assert ends[1].value == 1 and ends[2].value == 2
            assert ex.successors == 2 and watch.peak[0] == 1
            watch.assert_kept()
            assert capacity.in_use == 0

    run(main())


@pytest.mark.timeout(20)
def test_crash_with_queued_successors_sends_them_again_holding_the_unit() -> None:
    async def main() -> None:
        async with QueueExecutor(1, prefetch=2) as ex:
            watch = Watch(ex)
            gate = asyncio.Event()

            async def stuck() -> str:
                await gate.wait()
                return "never"

            capacity = CapacitySource(3)
            tasks = [stuck, sleeper(0, "a"), sleeper(0, "b")]
            runner = HierarchicalTaskPoolRunner("r", tasks, capacity, executor=ex)
            watch.runners.append(runner)
            consumer = asyncio.ensure_future(collect(runner))
            while ex.successors < 2:
                await asyncio.sleep(0)
            assert ex.crash(0) == 1
            ends = terminal(await consumer)
            assert isinstance(ends[0].error, Crashed) and "task 0" in str(ends[0].error)
            assert ends[1].value == "a" and ends[2].value == "b"
            assert capacity.in_use == 0 and ex.capacity.in_use == 0
            watch.assert_kept()
            # the pool runs another task afterwards
            again = HierarchicalTaskPoolRunner("again", [sleeper(0, "x")], capacity, executor=ex)
            watch.runners[:] = [again]
            got = await collect(again)
            assert [(e.type, e.value) for e in got] == [(FINAL, "x")], got[0].error
            watch.assert_kept()

    run(main())


@pytest.mark.timeout(20)
def test_a_waiter_of_another_branch_is_not_passed_by_a_chain() -> None:
    # Two runners under one root of 1 unit, each with its own one-worker executor.
    # Once B waits for the root, A queues nothing more: B gets the unit after at
    # most A's already queued tasks (the prefetch depth) ran.
    async def main() -> None:
        prefetch = 2
        log: list[str] = []

        def task(name: str) -> Any:
            async def body() -> None:
                log.append(name)
                await asyncio.sleep(0.002)

            return body

        root = CapacitySource(1)
        async with QueueExecutor(1, prefetch=prefetch) as ex_a, QueueExecutor(1) as ex_b:
            a = HierarchicalTaskPoolRunner(
                "a", [task("a") for _ in range(30)], CapacitySource(4, root), executor=ex_a
            )
            b = HierarchicalTaskPoolRunner(
                "b", [task("b") for _ in range(3)], CapacitySource(4, root), executor=ex_b
            )
            first = asyncio.ensure_future(collect(a))
            while len(log) < 3:
                await asyncio.sleep(0.001)
            mark = len(log)
            second = asyncio.ensure_future(collect(b))
            await asyncio.gather(first, second)
            a_before_b = log[mark:].index("b")
            assert a_before_b <= prefetch + 1, log
            assert ex_a.successors > 0 and root.in_use == 0

    run(main())


@pytest.mark.timeout(30)
def test_tasks_per_worker_two_successor_waits_for_its_own_predecessor() -> None:
    # Two tasks run at once in the worker; a successor starts when *its* predecessor
    # ended, never when the other running task did (the executor asserts that).
    async def main() -> None:
        async with QueueExecutor(1, tasks_per_worker=2, prefetch=3) as ex:
            watch = Watch(ex)
            rng = random.Random(7)
            tasks = [sleeper(rng.random() * 0.004, i) for i in range(40)]
            capacity = CapacitySource(8)
            runner = HierarchicalTaskPoolRunner("r", tasks, capacity, executor=ex)
            watch.runners.append(runner)
            ends = terminal(await collect(runner))
            assert sorted(e.value for e in ends.values()) == list(range(40))
            assert watch.peak[0] == 2 and ex.successors > 0
            watch.assert_kept()
            assert capacity.in_use == 0

    run(main())


# -- randomised: two runners, one executor, a capacity tree, failures, timeouts, crashes --

spec = st.tuples(
    st.sampled_from(["ok", "error", "sync", "hang"]), st.integers(min_value=0, max_value=3)
)


def make_task(kind: str, turns: int, index: int) -> Any:
    if kind == "sync":
        return lambda: index

    async def body() -> int:
        for _ in range(turns):
            await asyncio.sleep(0)
        if kind == "error":
            raise ValueError(index)
        if kind == "hang":
            await asyncio.sleep(3600)
        return index

    return body


@settings(max_examples=60, deadline=None)
@given(
    a=st.lists(spec, max_size=30),
    b=st.lists(spec, max_size=30),
    shape=st.tuples(
        st.integers(min_value=1, max_value=3),  # workers
        st.integers(min_value=1, max_value=2),  # tasks per worker
        st.integers(min_value=0, max_value=3),  # prefetch
        st.integers(min_value=1, max_value=5),  # root limit
        st.integers(min_value=1, max_value=4),  # a's limit
        st.integers(min_value=1, max_value=4),  # b's limit
    ),
    crashes=st.integers(min_value=0, max_value=4),
    seed=st.integers(min_value=0, max_value=2**16),
)
@pytest.mark.timeout(120)
def test_units_held_never_exceed_tasks_running(
    a: list[tuple[str, int]],
    b: list[tuple[str, int]],
    shape: tuple[int, int, int, int, int, int],
    crashes: int,
    seed: int,
) -> None:
    workers, per_worker, prefetch, root_limit, a_limit, b_limit = shape

    async def main() -> None:
        rng = random.Random(seed)
        root = CapacitySource(root_limit)
        async with QueueExecutor(workers, tasks_per_worker=per_worker, prefetch=prefetch) as ex:
            watch = Watch(ex, root)
            runners = [
                HierarchicalTaskPoolRunner(
                    name,
                    [make_task(kind, turns, i) for i, (kind, turns) in enumerate(tasks)],
                    CapacitySource(limit, root),
                    executor=ex,
                    timeout=0.02,
                )
                for name, tasks, limit in (("a", a, a_limit), ("b", b, b_limit))
            ]
            watch.runners.extend(runners)
            consumers = [asyncio.ensure_future(collect(r)) for r in runners]

            async def chaos() -> None:
                for _ in range(crashes):
                    for _ in range(rng.randrange(1, 8)):
                        await asyncio.sleep(0)
                    ex.crash(rng.randrange(workers))

            results = await asyncio.gather(*consumers, chaos())
            for runner, tasks, envelopes in zip(runners, (a, b), results[:2], strict=True):
                ends = terminal(envelopes)
                assert sorted(ends) == list(range(len(tasks)))
                for task_id, envelope in ends.items():
                    kind = tasks[task_id][0]
                    if envelope.type is FINAL:
                        assert kind in ("ok", "sync") and envelope.value == task_id
                    else:
                        assert isinstance(envelope.error, (ValueError, TaskTimeoutError, Crashed))
                        if kind in ("ok", "sync"):
                            assert isinstance(envelope.error, Crashed)
                assert runner.capacity.in_use == 0
            assert root.in_use == 0 and ex.capacity.in_use == 0 and ex.running == 0
            assert watch.peak[0] <= workers * per_worker
            watch.assert_kept()

    run(main())


@pytest.mark.timeout(20)
def test_resource_parent_and_leaving_early_give_everything_back() -> None:
    # A bridged tree (units under a resource parent) hands over too; breaking out of
    # the run cancels running and queued tasks alike and returns every unit.
    async def main() -> None:
        async with QueueExecutor(2, prefetch=3) as ex:
            watch = Watch(ex)
            memory = ResourceCapacitySource({"memory_mb": 1000})
            capacity = CapacitySource(6, memory, cost={"memory_mb": 100})
            runner = HierarchicalTaskPoolRunner(
                "r", [sleeper(0.01, i) for i in range(50)], capacity, executor=ex
            )
            watch.runners.append(runner)
            seen = 0
            async with contextlib.aclosing(runner.run_tasks()) as stream:
                async for _ in stream:
                    seen += 1
                    if seen == 5:
                        break
            assert ex.successors > 0 and watch.peak[0] <= 2
            assert capacity.in_use == 0 and memory.in_use == {"memory_mb": 0}
            assert ex.capacity.in_use == 0
            watch.assert_kept()

    run(main())


@pytest.mark.timeout(20)
def test_scheduled_runner_hands_over_between_tasks_of_one_cost() -> None:
    # Tasks of two costs: a task is queued only behind one of its own cost, and the
    # units held never exceed the costs of the tasks running.
    async def main() -> None:
        async with QueueExecutor(1, prefetch=2) as ex:
            capacity = ResourceCapacitySource({"cpu": 4})
            costs = [{"cpu": 1}] * 6 + [{"cpu": 2}] * 4 + [{"cpu": 1}] * 3
            tasks = [ScheduledTask(i, sleeper(0.002, i), cost=cost) for i, cost in enumerate(costs)]
            runner = ScheduledTaskPoolRunner("s", tasks, capacity, executor=ex)
            breaches: list[str] = []
            peak = [0.0]

            def check() -> None:
                running = [
                    r for r in runner._running.values() if r.after is None and r.handle is not None
                ]
                held = capacity.in_use["cpu"]
                peak[0] = max(peak[0], held)
                # the running (holding) tasks' costs, plus one head granted in transit
                if held > sum(r.cost["cpu"] for r in running) + 2:
                    breaches.append(f"{held} held by {len(running)}")
                for record in runner._running.values():
                    if record.after is not None and record.after.cost != record.cost:
                        breaches.append(f"task {record.task_id} behind another cost")

            ex.observe = check
            ends = terminal(await collect(runner))
            assert sorted(e.key for e in ends.values()) == list(range(13))
            assert all(e.type is FINAL for e in ends.values())
            assert ex.successors > 0 and peak[0] <= 2 and not breaches, breaches
            assert capacity.in_use == {"cpu": 0} and ex.capacity.in_use == 0

    run(main())
