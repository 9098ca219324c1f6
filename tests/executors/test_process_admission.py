"""The process executor and the runners' admission: when a task's timeout clock
starts, a worker whose initializer never returns, a capacity that admits nothing,
and the capacity hand-off (a task queued in a worker holds no capacity)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
from typing import Any

import _process_tasks as tasks
import _waitable_tasks as waitable_tasks
import cloudpickle
import pytest
from _recording import RecordingEvents, WatchedRunner

from pullpush import (
    CapacitySource,
    EnvelopeType,
    HierarchicalTaskPoolRunner,
    ProcessExecutor,
    TaskTimeoutError,
    WorkerCrashedError,
    waitable,
)
from pullpush.testing import assert_no_leaks, assert_one_terminal_per_task, collect


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
        ends = assert_one_terminal_per_task(await collect(runner.run_tasks()))
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
        ends = assert_one_terminal_per_task(await collect(runner.run_tasks()))
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
            ends = assert_one_terminal_per_task(await collect(runner.run_tasks()))
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


class _Watched(WatchedRunner):
    """A runner that records, at every event its executor reports, the units of its
    capacity in use, and the tasks its executor holds in workers."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.in_flight: list[int] = []

    def _look(self) -> None:
        super()._look()
        executor = self.executor
        if isinstance(executor, ProcessExecutor):
            self.in_flight.append(executor.statistics().in_flight)


@pytest.mark.timeout(60)
async def test_one_worker_holds_one_unit_of_capacity_while_tasks_queue_in_it() -> None:
    """ProcessExecutor(1) + CapacitySource(4): one task runs at a time, so one unit is
    held, while the next task already waits in the worker (the capacity hand-off)."""
    capacity = CapacitySource(4)
    async with assert_no_leaks(), ProcessExecutor(1) as executor:
        source = [functools.partial(tasks.doze, i, 0.02) for i in range(8)]
        runner = _Watched("one", source, capacity, executor=executor, timeout=30.0)
        envelopes, queued = [], []
        async for envelope in runner.run_tasks():
            envelopes.append(envelope)
            # Seen by the consumer (the loop had its turns since the task's end): the
            # task after the running one waits in the worker already.
            queued.append(executor.statistics().in_flight)
        ends = assert_one_terminal_per_task(envelopes)
        assert [ends[i].value for i in range(8)] == list(range(8))
        assert max(runner.units) == 1, runner.units
        assert max(queued) >= 2, queued  # a task was queued behind the running one
        assert capacity.in_use == 0 and executor.capacity.in_use == 0


@pytest.mark.timeout(60)
async def test_a_crash_sends_the_queued_successors_again() -> None:
    """The running task kills its worker while three tasks wait behind it: it fails
    alone; the first successor inherits its unit and the three run in a new worker."""
    capacity = CapacitySource(4)
    async with assert_no_leaks(), ProcessExecutor(1, prefetch=4) as executor:
        source = [functools.partial(tasks.die, "os._exit")]
        source += [functools.partial(tasks.identity, i) for i in range(1, 4)]
        runner = _Watched("crash", source, capacity, executor=executor)
        ends = assert_one_terminal_per_task(await collect(runner.run_tasks()))
        assert isinstance(ends[0].error, WorkerCrashedError)
        assert "task 0" in str(ends[0].error)
        assert [ends[i].value for i in range(1, 4)] == [1, 2, 3]
        assert max(runner.in_flight) >= 3  # they were queued behind it
        assert max(runner.units) == 1
        assert capacity.in_use == 0 and executor.capacity.in_use == 0
        assert await executor.run(tasks.identity, 7) == 7


@pytest.mark.timeout(60)
async def test_a_queued_successor_cancelled_leaves_its_own_successor_behind_its_predecessor() -> (
    None
):
    async with assert_no_leaks(), ProcessExecutor(1, prefetch=4) as executor:
        events = RecordingEvents()
        first = executor.submit(0, functools.partial(tasks.where_and_when, 0.3), events)
        while 0 not in events.placed:  # the worker may still be starting
            await asyncio.sleep(0.01)
        assert executor.successor_room(first)
        second = executor.submit(1, functools.partial(tasks.identity, 1), events, after=first)
        executor.submit(2, functools.partial(tasks.where_and_when, 0), events, after=second)
        with pytest.raises(ValueError, match="no successor"):
            executor.submit(3, functools.partial(tasks.identity, 3), events, after=first)
        second.cancel()
        while len(events.ends) < 3:
            events.done.clear()
            await events.done.wait()
        assert [task_id for task_id, _ in events.ends] == [1, 0, 2]
        assert isinstance(events.ends[0][1], asyncio.CancelledError)
        (_, _, _, first_end), (_, _, third_start, _) = events.ends[1][1], events.ends[2][1]
        assert third_start >= first_end  # it started once its predecessor ended
        assert executor.statistics().in_flight == 0


@pytest.mark.timeout(60)
async def test_leaving_early_cancels_queued_successors_and_returns_all_capacity() -> None:
    capacity = CapacitySource(4)
    async with assert_no_leaks(), ProcessExecutor(1, prefetch=4) as executor:
        source = [tasks.started_then_waits] + [
            functools.partial(tasks.identity, i) for i in range(1, 6)
        ]
        runner = _Watched("early", source, capacity, executor=executor)
        async with contextlib.aclosing(runner.run_tasks()) as stream:
            async for envelope in stream:
                assert envelope.value == "started"
                break
        assert max(runner.in_flight) >= 2
        assert capacity.in_use == 0 and executor.capacity.in_use == 0
        assert executor.statistics().in_flight == 0
        assert await executor.run(tasks.identity, 7) == 7


@pytest.mark.timeout(60)
async def test_with_two_tasks_per_worker_a_successor_waits_for_its_own_predecessor() -> None:
    """Two tasks run at once; the one queued behind the long one starts when that one
    ended, not when the short one beside it did (the worker is told: AFTER)."""
    async with assert_no_leaks(), ProcessExecutor(1, tasks_per_worker=2, prefetch=4) as executor:
        events = RecordingEvents()
        long = executor.submit(0, functools.partial(tasks.where_and_when, 0.4), events)
        while 0 not in events.placed:
            await asyncio.sleep(0.01)
        executor.submit(1, functools.partial(tasks.where_and_when, 0.05), events)
        executor.submit(2, functools.partial(tasks.where_and_when, 0), events, after=long)
        while len(events.ends) < 3:
            events.done.clear()
            await events.done.wait()
        ends = dict(events.ends)
        assert ends[1][3] < ends[0][3]  # the short one ended first
        assert ends[2][2] >= ends[0][3]  # the successor started after the long one ended
        assert executor.statistics().in_flight == 0


@pytest.mark.timeout(60)
async def test_two_tasks_per_worker_hold_at_most_two_units() -> None:
    capacity = CapacitySource(8)
    async with assert_no_leaks(), ProcessExecutor(1, tasks_per_worker=2) as executor:
        source = [functools.partial(tasks.where_and_when, 0.01 * (i % 4)) for i in range(24)]
        runner = _Watched("two", source, capacity, executor=executor, timeout=30.0)
        ends = assert_one_terminal_per_task(await collect(runner.run_tasks()))
        assert all(e.type is EnvelopeType.FINAL for e in ends.values()) and len(ends) == 24
        assert max(runner.units) <= 2, runner.units
        assert max(runner.in_flight) >= 3  # a task was queued behind the running two
        assert capacity.in_use == 0 and executor.capacity.in_use == 0


class _Links(_Watched):
    """Also checks, at every event, that no waitable task is in a hand-off chain."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.linked = False
        self.breaches: list[int] = []

    def _look(self) -> None:
        super()._look()
        for record in self._running.values():
            if record.after is not None:
                self.linked = True
                if record.mail is not None or record.after.mail is not None:
                    self.breaches.append(record.task_id)  # (raising here: the executor's)


@pytest.mark.timeout(60)
async def test_waitable_tasks_take_no_part_in_the_hand_off() -> None:
    """Plain tasks are queued behind plain ones; waitable ones (they give their
    capacity back while they wait) are never queued behind, nor queued."""
    cloudpickle.register_pickle_by_value(waitable_tasks)
    capacity = CapacitySource(4)
    async with assert_no_leaks(), ProcessExecutor(1) as executor:
        source: list[Any] = []
        for i in range(12):
            source.append(functools.partial(tasks.doze, i, 0.01))
            if i % 3 == 0:
                source.append(waitable(waitable_tasks.receive_once))
        runner = _Links("mixed", source, capacity, executor=executor, timeout=30.0)
        ends: list[Any] = []
        async for envelope in runner.run_tasks():
            if envelope.type is EnvelopeType.WAITING:
                runner.send_nowait(envelope.task_id, "hello")
            elif envelope.type in (EnvelopeType.FINAL, EnvelopeType.ERROR):
                ends.append(envelope)
        assert sorted(e.task_id for e in ends) == list(range(len(source)))
        assert all(e.type is EnvelopeType.FINAL for e in ends)
        assert sorted(e.value for e in ends if e.value == "hello") == ["hello"] * 4
        assert runner.linked and not runner.breaches and max(runner.in_flight) >= 2
        assert capacity.in_use == 0 and executor.capacity.in_use == 0
