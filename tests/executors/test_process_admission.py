"""The process executor and the runners' admission: when a task's timeout clock
starts, a worker whose initializer never returns, a capacity that admits nothing."""

from __future__ import annotations

import asyncio
import functools
from typing import Any

import _process_tasks as tasks
import pytest

from pullpush import (
    CapacitySource,
    EnvelopeType,
    HierarchicalTaskPoolRunner,
    ProcessExecutor,
    TaskTimeoutError,
)
from pullpush.testing import assert_no_leaks, collect


def _terminal(envelopes: list[Any]) -> dict[int, Any]:
    """Each task's terminal envelope; fails if a task has none or two."""
    ends: dict[int, Any] = {}
    for envelope in envelopes:
        if envelope.type is not EnvelopeType.INTERMEDIATE:
            assert envelope.task_id not in ends, f"two terminal envelopes for {envelope}"
            ends[envelope.task_id] = envelope
    return ends


@pytest.mark.timeout(60)
async def test_a_task_queued_behind_slow_ones_is_timed_from_its_own_start() -> None:
    """Five tasks of 0.3 s queue in one worker; each runs well within the 1 s timeout,
    though the last ones wait longer than that to start."""
    capacity = CapacitySource(10)
    async with assert_no_leaks(), ProcessExecutor(1, prefetch=8) as executor:
        source = [functools.partial(tasks.doze, i, 0.3) for i in range(5)]
        source.append(functools.partial(tasks.identity, "quick"))
        runner = HierarchicalTaskPoolRunner(
            "queued", source, capacity, executor=executor, timeout=1.0
        )
        ends = _terminal(await collect(runner.run_tasks()))
        assert {e.task_id: e.type for e in ends.values()} == dict.fromkeys(
            range(6), EnvelopeType.FINAL
        )
        assert [ends[i].value for i in range(6)] == [0, 1, 2, 3, 4, "quick"]
        assert capacity.in_use == 0 and executor.capacity.in_use == 0
        assert await executor.run(tasks.identity, 7) == 7


@pytest.mark.timeout(60)
async def test_a_slow_task_queued_behind_others_times_out_after_it_starts() -> None:
    capacity = CapacitySource(10)
    async with (
        assert_no_leaks(),
        ProcessExecutor(1, prefetch=8, cancel_grace=0.1, kill_grace=0.5) as executor,
    ):
        source = [functools.partial(tasks.doze, i, 0.3) for i in range(3)]
        source.append(functools.partial(tasks.doze, "stuck", 30.0))
        runner = HierarchicalTaskPoolRunner(
            "slow", source, capacity, executor=executor, timeout=1.0
        )
        ends = _terminal(await collect(runner.run_tasks()))
        assert [ends[i].value for i in range(3)] == [0, 1, 2]
        assert ends[3].type is EnvelopeType.ERROR
        assert isinstance(ends[3].error, TaskTimeoutError)
        assert "task 3 timed out after 1.0s" in str(ends[3].error)
        assert capacity.in_use == 0
        assert await executor.run(tasks.identity, 7) == 7  # the stuck worker was replaced


@pytest.mark.timeout(60)
async def test_tasks_for_a_worker_whose_initializer_never_returns_time_out_and_cancel() -> None:
    """Rule: no worker is ready, so a task's clock starts at submit; it waits in the
    parent, where cancelling (a timeout, wait_for, the consumer leaving) ends it at once."""
    capacity = CapacitySource(4)
    async with assert_no_leaks():
        executor = ProcessExecutor(
            1, initializer=tasks.hanging_initializer, cancel_grace=0.1, kill_grace=0.5
        )
        try:
            await executor.start()
            runner = HierarchicalTaskPoolRunner(
                "hung",
                [functools.partial(tasks.identity, 1), functools.partial(tasks.identity, 2)],
                capacity,
                executor=executor,
                timeout=0.3,
            )
            ends = _terminal(await collect(runner.run_tasks()))
            assert sorted(ends) == [0, 1]
            for envelope in ends.values():
                assert envelope.type is EnvelopeType.ERROR
                assert isinstance(envelope.error, TaskTimeoutError)
            assert capacity.in_use == 0 and executor.capacity.in_use == 0

            with pytest.raises(asyncio.TimeoutError):  # not TimeoutError before 3.11
                await asyncio.wait_for(executor.run(tasks.identity, 3), 0.3)
            assert executor.statistics().pending == 0

            # The consumer leaving ends a task that never started, too.
            stream = HierarchicalTaskPoolRunner(
                "left", [functools.partial(tasks.identity, 4)], capacity, executor=executor
            ).run_tasks()
            first = asyncio.ensure_future(stream.__anext__())
            await asyncio.sleep(0.2)
            first.cancel()
            await asyncio.gather(first, return_exceptions=True)
            await asyncio.wait_for(stream.aclose(), 5)
            assert capacity.in_use == 0 and executor.statistics().pending == 0
        finally:
            await asyncio.wait_for(executor.aclose(), 10)


@pytest.mark.timeout(60)
async def test_a_capacity_of_zero_over_the_process_executor_warns() -> None:
    capacity = CapacitySource(0)
    async with assert_no_leaks(), ProcessExecutor(1) as executor:
        runner = HierarchicalTaskPoolRunner(
            "zero", [functools.partial(tasks.identity, 1)], capacity, executor=executor
        )
        runner.stall_warning = 0.05
        stream = runner.run_tasks()
        first = asyncio.ensure_future(stream.__anext__())
        with pytest.warns(RuntimeWarning, match=r"runner 'zero' .* has limit 0"):
            await asyncio.sleep(0.3)
        assert not first.done()
        capacity.set_limit(1)
        envelope = await asyncio.wait_for(first, 10)
        assert envelope.type is EnvelopeType.FINAL and envelope.value == 1
        assert [e async for e in stream] == []
        assert capacity.in_use == 0
