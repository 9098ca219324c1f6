"""Property tests: random hierarchies under random acquires, releases, cancellations
and timeouts never exceed a limit, never lose a unit, and serve waiters FIFO."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import pytest
import uvloop
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pullpush import (
    AcquireTimeoutError,
    CapacitySource,
    QuotaCapacitySource,
    ResourceCapacitySource,
    ScheduledTask,
    ScheduledTaskPoolRunner,
    TaskProgressEnvelope,
)
from pullpush.testing import assert_no_pending_tasks, settle

LOOPS = (asyncio.new_event_loop, uvloop.new_event_loop)
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def run_on_both_loops(main: Callable[[], Coroutine[Any, Any, None]]) -> None:
    for new_loop in LOOPS:
        loop = new_loop()
        try:
            loop.run_until_complete(main())
        finally:
            loop.close()


# A tree: node 0 is the root, node i > 0 hangs under an earlier node. Small limits
# and shapes make contention (and so waiters) the common case.
trees = st.one_of(
    st.tuples(st.lists(st.integers(0, 2), min_size=4, max_size=4), st.just((0, 0, 1))),
    st.integers(1, 4).flatmap(
        lambda n: st.tuples(
            st.lists(st.integers(0, 2), min_size=n, max_size=n),
            st.tuples(*[st.integers(0, i - 1) for i in range(1, n)]),
        )
    ),
)
ops = st.lists(
    st.one_of(
        st.tuples(st.just("acquire"), st.integers(0, 4), st.sampled_from([None, None, 0])),
        st.tuples(st.just("step"), st.integers(1, 2)),
        st.tuples(st.just("release"), st.integers(0, 20)),
        st.tuples(st.just("release_then_cancel"), st.integers(0, 20)),
        st.tuples(st.just("cancel"), st.integers(0, 20)),
        st.tuples(st.just("raise_limit"), st.integers(0, 4), st.integers(1, 2)),
    ),
    min_size=4,
    max_size=40,
)


def assert_no_lost_wakeups(levels: Any) -> None:
    """After the loop settled, no queued acquire could have been served."""
    for level in levels:
        if level._waiters:
            head = next(iter(level._waiters))
            assert not level._chain_fits(head.cost), f"{level!r} has a servable waiter"


class Model:
    """Drive a CapacitySource tree and keep the expected books."""

    def __init__(self, limits: list[int], parents: tuple[int, ...]) -> None:
        self.levels: list[CapacitySource] = []
        self.parent_of: list[int | None] = [None, *parents]
        for i, limit in enumerate(limits):
            parent = self.parent_of[i]
            self.levels.append(
                CapacitySource(limit, None if parent is None else self.levels[parent])
            )
        self.tasks: list[tuple[int, asyncio.Task[int]]] = []
        self.released: set[int] = set()  # ids of tasks whose unit was given back

    def chain(self, i: int) -> list[int]:
        out: list[int] = []
        node: int | None = i
        while node is not None:
            out.append(node)
            node = self.parent_of[node]
        return out

    def held(self) -> list[tuple[int, asyncio.Task[int]]]:
        return [
            (i, t)
            for i, t in self.tasks
            if t.done()
            and not t.cancelled()
            and t.exception() is None
            and id(t) not in self.released
        ]

    def pending(self) -> list[asyncio.Task[int]]:
        return [t for _, t in self.tasks if not t.done()]

    def release(self, k: int) -> None:
        held = self.held()
        if held:
            i, task = held[k % len(held)]
            self.levels[i].release()
            self.released.add(id(task))

    def check_limits(self) -> None:
        for level in self.levels:
            assert 0 <= level.in_use <= level.limit, level
            assert level.available == level.limit - level.in_use

    def check_books(self) -> None:
        expected = [0] * len(self.levels)
        for i, _ in self.held():
            for j in self.chain(i):
                expected[j] += 1
        assert [level.in_use for level in self.levels] == expected


async def _swallow(task: asyncio.Task[int]) -> None:
    try:
        await task
    except (asyncio.CancelledError, AcquireTimeoutError):
        pass


@SETTINGS
@given(tree=trees, script=ops)
def test_hierarchy_never_exceeds_a_limit_and_returns_every_unit(
    tree: tuple[list[int], tuple[int, ...]], script: list[tuple[Any, ...]]
) -> None:
    limits, parents = tree

    async def main() -> None:
        model = Model(limits, parents)
        for op in script:
            kind = op[0]
            if kind == "acquire":
                i = op[1] % len(model.levels)
                model.tasks.append((i, asyncio.create_task(model.levels[i].acquire(timeout=op[2]))))
            elif kind == "release":
                model.release(op[1])
            elif kind == "cancel" and model.pending():
                pending = model.pending()
                pending[op[1] % len(pending)].cancel()
            elif kind == "release_then_cancel":
                # Grants the unit to the oldest waiter, which is cancelled before it
                # resumes: the unit must come back.
                model.release(op[1])
                for task in model.pending():
                    task.cancel()
                    break
            elif kind == "raise_limit":
                level = model.levels[op[1] % len(model.levels)]
                level.set_limit(level.limit + op[2])
            elif kind == "step":
                for _ in range(op[1]):
                    await asyncio.sleep(0)
                assert_no_lost_wakeups(model.levels)
            model.check_limits()
        await settle()
        model.check_books()
        assert_no_lost_wakeups(model.levels)
        for task in model.pending():
            task.cancel()
        for _, task in model.tasks:
            await _swallow(task)
        for i, task in model.held():
            model.levels[i].release()
            model.released.add(id(task))
        for level in model.levels:
            assert (level.in_use, level.available, level.waiting) == (0, level.limit, 0)
            assert not level._queued
        await assert_no_pending_tasks()

    run_on_both_loops(main)


@SETTINGS
@given(
    limit=st.integers(0, 2),
    script=st.lists(st.sampled_from(["acquire", "release", "cancel", "step"]), max_size=40),
)
def test_waiters_of_one_source_are_served_in_arrival_order(limit: int, script: list[str]) -> None:
    async def main() -> None:
        cap = CapacitySource(limit)
        served: list[int] = []
        tasks: list[asyncio.Task[None]] = []

        async def worker(n: int) -> None:
            await cap.acquire()
            served.append(n)

        for op in script:
            pending = [t for t in tasks if not t.done()]
            if op == "acquire":
                tasks.append(asyncio.create_task(worker(len(tasks))))
            elif op == "release" and cap.in_use:
                cap.release()
            elif op == "cancel" and pending:
                pending[len(pending) // 2].cancel()
            await asyncio.sleep(0)
        await settle()
        assert served == sorted(served)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    run_on_both_loops(main)


costs = st.dictionaries(st.sampled_from(["a", "b"]), st.integers(0, 3), min_size=1)


@SETTINGS
@given(
    limits=st.tuples(st.integers(0, 4), st.integers(0, 4), st.integers(0, 4)),
    script=st.lists(
        st.one_of(
            st.tuples(st.just("acquire"), st.integers(0, 1), costs, st.sampled_from([None, 0])),
            st.tuples(st.just("try"), st.integers(0, 1), costs),
            st.tuples(st.just("release"), st.integers(0, 20)),
            st.tuples(st.just("cancel"), st.integers(0, 20)),
            st.tuples(st.just("step"), st.integers(1, 2)),
        ),
        max_size=30,
    ),
)
def test_resource_hierarchy_returns_every_amount(
    limits: tuple[int, int, int], script: list[tuple[Any, ...]]
) -> None:
    async def main() -> None:
        root = ResourceCapacitySource({"a": limits[0], "b": limits[1]})
        children = [
            ResourceCapacitySource({"a": limits[2]}, root),
            ResourceCapacitySource({"b": limits[2]}, root),
        ]
        held: list[tuple[ResourceCapacitySource, dict[str, int]]] = []
        tasks: list[asyncio.Task[None]] = []

        async def take(child: ResourceCapacitySource, cost: dict[str, int], t: Any) -> None:
            await child.acquire(cost, timeout=t)
            held.append((child, cost))

        for op in script:
            if op[0] == "acquire":
                tasks.append(asyncio.create_task(take(children[op[1]], op[2], op[3])))
            elif op[0] == "try" and children[op[1]].try_acquire(op[2]):
                held.append((children[op[1]], op[2]))
            elif op[0] == "release" and held:
                child, cost = held.pop(op[1] % len(held))
                child.release(cost)
            elif op[0] == "cancel" and tasks:
                tasks[op[1] % len(tasks)].cancel()
            elif op[0] == "step":
                for _ in range(op[1]):
                    await asyncio.sleep(0)
                assert_no_lost_wakeups((root, *children))
            for level in (root, *children):
                assert all(v >= 0 for v in level.available.values())
                for key, used in level.in_use.items():
                    assert used <= level.limits[key]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for child, cost in held:
            child.release(cost)
        for level in (root, *children):
            assert level.available == level.limits
            assert all(v == 0 for v in level.in_use.values())
            assert level.waiting == 0

    run_on_both_loops(main)


@pytest.mark.timeout(120)
@SETTINGS
@given(
    limit=st.integers(1, 4),
    pool=st.sampled_from([None, 1, 2]),
    backfill=st.integers(0, 2),
    task_costs=st.lists(st.integers(1, 5), min_size=1, max_size=10),
    refills=st.lists(
        st.one_of(st.just(("reset", 0)), st.tuples(st.just("increment"), st.integers(1, 3))),
        max_size=8,
    ),
)
def test_a_runner_waiting_on_a_quota_consumes_exactly_what_its_tasks_cost(
    limit: int,
    pool: int | None,
    backfill: int,
    task_costs: list[int],
    refills: list[tuple[str, int]],
) -> None:
    # Issue 13: waiting for the head's cost must not consume quota. Whatever the
    # refills, the quota goes down by exactly the costs of the tasks started, nothing
    # affordable is left waiting, and resets alone eventually run every task.
    async def main() -> None:
        quota = QuotaCapacitySource({"req": limit})
        capacity = quota if pool is None else ResourceCapacitySource({"req": pool}, quota)
        ceiling = limit if pool is None else min(limit, pool)
        ran: list[int] = []

        def task(i: int) -> ScheduledTask[int]:
            async def run() -> int:
                ran.append(i)
                return i

            return ScheduledTask(i, run, {"req": task_costs[i]})

        runner = ScheduledTaskPoolRunner(
            "quota", [task(i) for i in range(len(task_costs))], capacity, backfill=backfill
        )
        possible = [i for i, cost in enumerate(task_costs) if cost <= ceiling]
        envelopes: list[TaskProgressEnvelope] = []

        async def consume() -> None:
            async for envelope in runner.run_tasks():
                envelopes.append(envelope)

        consumer = asyncio.create_task(consume())
        expected = float(limit)  # the quota's available budget, by the books
        seen = 0

        async def check() -> None:
            nonlocal expected, seen
            await settle(60)
            expected -= sum(task_costs[i] for i in ran[seen:])
            seen = len(ran)
            assert quota.available == {"req": expected}, (ran, quota)
            # The head and the ``backfill`` tasks behind it, by position: a task that
            # can never fit holds its place until it is rejected as the head.
            ended = {e.key for e in envelopes}
            window = [i for i in range(len(task_costs)) if i not in ended][: backfill + 1]
            waiting = [i for i in window if i in possible and i not in ran]
            if waiting:  # nothing affordable is left waiting
                assert min(task_costs[i] for i in waiting) > expected, (ran, quota)

        await check()
        for kind, amount in [*refills, *[("reset", 0)] * len(task_costs)]:
            if consumer.done():
                break
            if kind == "reset":
                quota.reset()
                expected = float(limit)
            else:
                quota.increment({"req": amount})
                expected = min(float(limit), expected + amount)
            await check()
        await asyncio.wait_for(consumer, 10)
        assert sorted(ran) == possible
        assert len(envelopes) == len(task_costs)
        finals = sorted(e.key for e in envelopes if e.type.value == "FINAL")
        assert finals == possible
        assert quota.in_use == {"req": 0} and quota.waiting == 0
        assert capacity.in_use == {"req": 0}
        await assert_no_pending_tasks()

    run_on_both_loops(main)
