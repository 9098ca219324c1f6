"""Numbers where objects were required: an int capacity, and workers= for the
executor a runner builds from a name."""

from __future__ import annotations

import functools

import pytest

from pullpush import (
    HierarchicalTaskPoolRunner,
    ResourceCapacitySource,
    ScheduledTask,
    ScheduledTaskPoolRunner,
)


def double(x: int) -> int:
    return 2 * x


async def test_an_int_capacity_and_workers_for_a_named_thread_executor() -> None:
    tasks = [functools.partial(double, i) for i in range(10)]
    runner = HierarchicalTaskPoolRunner("ints", tasks, 3, executor="thread", workers=2)
    assert runner.capacity.limit == 3
    sizes = set()
    values = []
    async for envelope in runner.run_tasks():
        assert runner.executor is not None
        sizes.add(runner.executor.max_workers)  # type: ignore[attr-defined]
        if envelope.type == "FINAL":
            values.append(envelope.value)
    assert sorted(values) == [2 * i for i in range(10)]
    assert sizes == {2}
    assert runner.capacity.in_use == 0


async def test_a_scheduled_runner_takes_an_int_capacity() -> None:
    tasks = [ScheduledTask(i, functools.partial(double, i)) for i in range(4)]
    runner = ScheduledTaskPoolRunner("ints", tasks, 2)
    assert isinstance(runner.capacity, ResourceCapacitySource)
    assert runner.capacity.limits == {"capacity": 2}
    finals = [e.value async for e in runner.run_tasks() if e.type == "FINAL"]
    assert sorted(finals) == [0, 2, 4, 6]


def test_workers_is_checked() -> None:
    with pytest.raises(ValueError, match="workers must be >= 1"):
        HierarchicalTaskPoolRunner("x", [], 1, executor="process", workers=0)
    with pytest.raises(TypeError, match="workers must be an int"):
        HierarchicalTaskPoolRunner("x", [], 1, executor="thread", workers=1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="has no worker pool"):
        ScheduledTaskPoolRunner("x", [], 1, executor="inline", workers=2)
    with pytest.raises(ValueError, match="capacity must be >= 1"):
        ScheduledTaskPoolRunner("x", [], 0)
