"""The process executor: runner kinds, errors, the function cache, flow control,
cancellation, worker replacement and lifecycle."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import pickle
import sys
from typing import Any

import _process_tasks as tasks
import cloudpickle
import psutil
import pytest

from pullpush import (
    BrokenExecutorError,
    CapacitySource,
    EnvelopeType,
    HierarchicalTaskPoolRunner,
    ProcessExecutor,
    RemoteTraceback,
    TaskPicklingError,
    TaskTimeoutError,
)
from pullpush.testing import assert_no_leaks, collect

cloudpickle.register_pickle_by_value(tasks)
cloudpickle.register_pickle_by_value(sys.modules[__name__])

pytestmark = pytest.mark.timeout(60)


async def test_every_runner_kind_in_a_worker() -> None:
    async with assert_no_leaks(), ProcessExecutor(2) as executor:
        assert await executor.run(tasks.identity, 41) == 41
        assert await executor.run(tasks.async_double, 21) == 42
        streamed = await collect(executor.stream(tasks.count, 3))
        assert [e.value for e in streamed] == [0, 1, 2, "counted 3"]
        streamed = await collect(executor.stream(tasks.acount, 2))
        assert [(e.type.value, e.value) for e in streamed] == [
            ("INTERMEDIATE", 0),
            ("INTERMEDIATE", 1),
            ("FINAL", "counted 2"),
        ]
        assert await executor.run(lambda: sum(range(10))) == 45
        offset = 100
        assert await executor.run(lambda: offset + 1) == 101
        assert await executor.run(tasks.pid) != os.getpid()


async def test_errors_keep_their_type_and_carry_the_remote_traceback() -> None:
    async with assert_no_leaks(), ProcessExecutor(1) as executor:
        with pytest.raises(ValueError, match="bad input") as raised:
            await executor.run(tasks.fail, "bad input")
        cause = raised.value.__cause__
        assert isinstance(cause, RemoteTraceback)
        assert "in fail" in cause.text and "bad input" in cause.text


async def test_values_of_any_picklable_type_come_back() -> None:
    value = {"nested": [(1, 2.5), {"set": {3}}], "bytes": b"x" * 10}
    async with ProcessExecutor(1) as executor:
        assert await executor.run(tasks.returns, value) == value
        big = "y" * (5 * 1024 * 1024)
        assert await executor.run(tasks.returns, big) == big


async def test_a_partial_sends_its_function_once_per_worker() -> None:
    async with ProcessExecutor(2) as executor:
        runner = HierarchicalTaskPoolRunner(
            "cache",
            [functools.partial(tasks.identity, i) for i in range(200)],
            CapacitySource(50),
            executor=executor,
        )
        values = [e.value async for e in runner.run_tasks()]
        assert sorted(values) == list(range(200))
        assert executor.statistics().functions_cached == 1


async def test_the_runner_on_the_process_executor() -> None:
    async with assert_no_leaks():
        runner = HierarchicalTaskPoolRunner(
            "process",
            [functools.partial(tasks.count, 2), functools.partial(tasks.fail, "x"), tasks.pid],
            CapacitySource(2),
            executor="process",
        )
        envelopes = await collect(runner.run_tasks())
    kinds = sorted((e.task_id, e.type.value) for e in envelopes)
    assert kinds == [
        (0, "FINAL"),
        (0, "INTERMEDIATE"),
        (0, "INTERMEDIATE"),
        (1, "ERROR"),
        (2, "FINAL"),
    ]


async def test_two_runners_share_one_executor() -> None:
    async with ProcessExecutor(2) as executor:
        runners = [
            HierarchicalTaskPoolRunner(
                name,
                [functools.partial(tasks.identity, (name, i)) for i in range(30)],
                CapacitySource(4),
                executor=executor,
            )
            for name in ("a", "b")
        ]
        results = await asyncio.gather(*(collect(r.run_tasks()) for r in runners))
    assert [sorted(e.value[1] for e in r) for r in results] == [list(range(30))] * 2
    assert executor.capacity.available == executor.capacity.limit


async def test_a_slow_consumer_pauses_a_streaming_task() -> None:
    window = 64
    async with ProcessExecutor(1, credit_window=window) as executor:
        collector = _Collector()
        handle = executor.submit(0, functools.partial(tasks.count, 1_000_000), collector)
        await asyncio.sleep(0.5)  # the consumer reads nothing meanwhile
        assert window <= len(collector.values) <= window
        handle.ack(len(collector.values))
        await asyncio.sleep(0.3)
        assert len(collector.values) <= 2 * window
        handle.cancel()
        while not collector.ended:
            await asyncio.sleep(0.01)


@pytest.mark.parametrize("kind", ["bytes", "blob"])
async def test_large_values_take_credits_by_their_size(kind: str) -> None:
    """A task streaming 1 MiB values to a consumer that reads nothing pauses after a
    few of them (about 16 MiB and one batch), not after a window of 1024 values."""
    async with ProcessExecutor(1) as executor:
        assert executor.credit_window == 1024
        collector = _Collector()
        handle = executor.submit(
            0, functools.partial(tasks.big_values, 300, 2**20, kind), collector
        )
        await asyncio.sleep(1.0)  # the consumer reads nothing meanwhile
        held = len(collector.values)
        assert 1 <= held <= 64, held  # 16 charged at most, plus the overshooting batch
        # Reading them lets the task go on; every value arrives, in order.
        read = 0
        while not collector.ended:
            unread = len(collector.values) - read
            if unread:
                handle.ack(unread)
                read += unread
            await asyncio.sleep(0.01)
        assert collector.error is None
        assert len(collector.values) == 300
        first_bytes = [v[0] if kind == "bytes" else v["data"][0] for v in collector.values]
        assert first_bytes == [i % 256 for i in range(300)]


class _Collector:
    def __init__(self) -> None:
        self.values: list[Any] = []
        self.ended = False
        self.error: BaseException | None = None

    def task_intermediate(self, task_id: int, value: Any) -> None:
        self.values.append(value)

    def task_final(self, task_id: int, value: Any) -> None:
        self.ended = True

    def task_error(self, task_id: int, error: BaseException) -> None:
        self.ended, self.error = True, error


async def test_a_million_envelopes_arrive_in_order_with_bounded_memory() -> None:
    async with ProcessExecutor(1, credit_window=256) as executor:
        expected = 0
        async for envelope in executor.stream(tasks.count, 200_000):
            if envelope.type is EnvelopeType.INTERMEDIATE:
                assert envelope.value == expected
                expected += 1
                if expected % 50_000 == 0:
                    await asyncio.sleep(0.05)  # a consumer that stalls now and then
        assert expected == 200_000


async def test_cancelling_an_async_task_cancels_it_inside_its_worker() -> None:
    async with assert_no_leaks(), ProcessExecutor(1, cancel_grace=30) as executor:
        worker_pid = await executor.run(tasks.pid)
        collector = _Collector()
        handle = executor.submit(0, tasks.sleep_forever, collector)
        await asyncio.sleep(0.2)
        handle.cancel()
        for _ in range(200):
            if collector.ended:
                break
            await asyncio.sleep(0.01)
        assert isinstance(collector.error, asyncio.CancelledError)
        # Cancelled inside the worker, not by killing it (the grace is 30 s).
        assert executor.pids == [worker_pid]


async def test_a_worker_stuck_in_cpu_bound_code_is_terminated_and_replaced() -> None:
    async with assert_no_leaks(), ProcessExecutor(1, cancel_grace=0.1, kill_grace=0.5) as executor:
        first = await executor.run(tasks.pid)
        runner = HierarchicalTaskPoolRunner(
            "stuck",
            [functools.partial(tasks.spin, 60), tasks.pid],
            CapacitySource(1),
            executor=executor,
            timeout=0.3,
        )
        envelopes = await collect(runner.run_tasks())
        assert isinstance(envelopes[0].error, TaskTimeoutError)
        assert envelopes[1].type is EnvelopeType.FINAL and envelopes[1].value != first
        assert executor.statistics().workers_lost == 1


async def test_stop_on_error_cancels_the_tasks_in_workers() -> None:
    async with assert_no_leaks(), ProcessExecutor(2) as executor:
        runner = HierarchicalTaskPoolRunner(
            "stop",
            [tasks.sleep_forever, functools.partial(tasks.fail, "stop here"), tasks.sleep_forever],
            CapacitySource(3),
            executor=executor,
        )
        with pytest.raises(ValueError, match="stop here"):
            async for _ in runner.run_tasks(stop_on_error=True):
                pass
        assert executor.statistics().in_flight == 0


async def test_an_unpicklable_runner_fails_its_task_only() -> None:
    import threading

    lock = threading.Lock()
    async with ProcessExecutor(1) as executor:
        with pytest.raises(TaskPicklingError, match="could not be pickled"):
            await executor.run(functools.partial(tasks.identity, lock))
        assert await executor.run(tasks.identity, 1) == 1


async def test_max_tasks_per_worker_replaces_workers() -> None:
    async with (
        assert_no_leaks(),
        ProcessExecutor(1, max_tasks_per_worker=3, prefetch=0) as executor,
    ):
        pids = [await executor.run(tasks.pid) for _ in range(7)]
        assert len(set(pids)) == 3
        assert executor.statistics().workers_started == 3


async def test_max_worker_memory_replaces_a_bloated_worker() -> None:
    limit = 200 * 1024 * 1024
    async with ProcessExecutor(1, max_worker_memory=limit, prefetch=0) as executor:
        before = await executor.run(tasks.pid)
        await executor.run(tasks.leak, 300)
        await asyncio.sleep(0.2)
        after = await executor.run(tasks.pid)
        assert after != before


async def test_initializer_runs_in_every_worker() -> None:
    async with ProcessExecutor(2, initializer=tasks.set_marker, initargs=("ready",)) as executor:
        assert await executor.run(tasks.read_marker) == "ready"


async def test_a_failing_initializer_breaks_the_executor_with_a_clear_error() -> None:
    async with assert_no_leaks():
        executor = ProcessExecutor(1, initializer=tasks.failing_initializer)
        try:
            await executor.start()
            with pytest.raises(BrokenExecutorError, match="initializer refused"):
                await asyncio.wait_for(executor.run(tasks.identity, 1), 30)
        finally:
            await executor.aclose()


@pytest.mark.parametrize("method", ["spawn", "fork"])
async def test_other_start_methods(method: str) -> None:
    async with assert_no_leaks(), ProcessExecutor(1, start_method=method) as executor:
        assert await executor.run(tasks.async_double, 4) == 8


async def test_closing_leaves_no_process_and_refuses_work() -> None:
    async with assert_no_leaks():
        executor = ProcessExecutor(2)
        await executor.start()
        pids = executor.pids
        await executor.aclose()
    import psutil

    assert not any(psutil.pid_exists(p) and psutil.Process(p).status() != "zombie" for p in pids)
    from pullpush import ExecutorClosedError

    with pytest.raises(ExecutorClosedError):
        await executor.run(tasks.identity, 1)


async def test_closing_with_tasks_in_flight_ends_them() -> None:
    executor = ProcessExecutor(1)
    await executor.start()
    collector = _Collector()
    executor.submit(0, tasks.sleep_forever, collector)
    await asyncio.sleep(0.1)
    await executor.aclose()
    assert collector.ended
    from pullpush import ExecutorClosedError

    assert isinstance(collector.error, ExecutorClosedError)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="max_workers must be >= 1"):
        ProcessExecutor(0)
    with pytest.raises(ValueError, match="start_method must be one of"):
        ProcessExecutor(start_method="teleport")
    with pytest.raises(ValueError, match="tasks_per_worker must be >= 1"):
        ProcessExecutor(tasks_per_worker=0)
    with pytest.raises(ValueError, match="prefetch must be"):
        ProcessExecutor(prefetch="lots")
    with pytest.raises(TypeError, match="initializer must be callable"):
        ProcessExecutor(initializer=3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="initargs must be a tuple"):
        ProcessExecutor(initargs=[1])  # type: ignore[arg-type]
    for grace in ("cancel_grace", "kill_grace"):
        with pytest.raises(ValueError, match=f"{grace} must be a finite number of seconds"):
            ProcessExecutor(**{grace: float("inf")})
    with pytest.raises(ValueError, match="cancel_grace must be >= 0 seconds"):
        ProcessExecutor(cancel_grace=-1)
    with pytest.raises(TypeError, match="measure_memory must be a bool, got str"):
        ProcessExecutor(measure_memory="yes")  # type: ignore[arg-type]


def test_statistics_and_repr() -> None:
    executor = ProcessExecutor(3, prefetch=1)
    assert executor.capacity.limit == 3  # the running slots: the prefetch holds none
    assert "workers=0/3" in repr(executor)
    with contextlib.suppress(Exception):
        pickle.dumps(executor.statistics())


async def test_measured_memory_reconciles_a_scheduled_tasks_cost() -> None:
    from pullpush import (
        DefaultCapacityMetricsCollector,
        ResourceCapacitySource,
        ScheduledTask,
        ScheduledTaskPoolRunner,
    )

    reconciled: list[Any] = []

    class Collector(DefaultCapacityMetricsCollector):
        def on_reconcile(self, event: Any) -> None:
            reconciled.append(event)

    capacity = ResourceCapacitySource({"memory_mb": 4000}, metrics=Collector())
    async with ProcessExecutor(1, measure_memory=True) as executor:
        tasks_ = [
            ScheduledTask("hog", functools.partial(tasks.memory_hog, 120), {"memory_mb": 1000}),
            ScheduledTask("tiny", functools.partial(tasks.identity, 1), {"memory_mb": 1000}),
        ]
        runner = ScheduledTaskPoolRunner("memory", tasks_, capacity, executor=executor)
        envelopes = await collect(runner.run_tasks())
    assert [e.type.value for e in envelopes] == ["FINAL", "FINAL"]
    # "tiny" was queued behind "hog" (the capacity hand-off): it inherited hog's
    # measured cost, reconciled back to its own estimate (1000) then.
    measured = [e for e in reconciled if e.estimated == {"memory_mb": 1000}]
    assert len(measured) == 2
    hog = measured[0].actual["memory_mb"]
    tiny = measured[1].actual["memory_mb"]
    assert hog >= 120 > tiny  # the worker's peak includes its ~20 MiB baseline
    assert capacity.available == {"memory_mb": 4000}


async def test_a_worker_ignoring_sigterm_is_killed_after_the_grace() -> None:
    async with (
        assert_no_leaks(),
        ProcessExecutor(1, cancel_grace=0.1, kill_grace=0.3) as executor,
    ):
        collector = _Collector()
        handle = executor.submit(0, functools.partial(tasks.spin_ignoring_sigterm, 60), collector)
        await asyncio.sleep(0.3)  # it runs, and has set SIGTERM to be ignored
        handle.cancel(TaskTimeoutError("enough"))
        while not collector.ended:
            await asyncio.sleep(0.01)
        assert isinstance(collector.error, TaskTimeoutError)  # the cancel's error, not a crash
        assert await executor.run(tasks.identity, "after") == "after"
        stats = executor.statistics()
        assert (stats.workers_lost, stats.workers_started) == (1, 2)  # SIGKILLed and replaced


async def test_async_tasks_share_a_worker_and_its_uvloop() -> None:
    async with ProcessExecutor(1, tasks_per_worker=4, prefetch=0) as executor:
        runner = HierarchicalTaskPoolRunner(
            "shared",
            [functools.partial(tasks.where_and_when, 0.3) for _ in range(4)],
            CapacitySource(4),
            executor=executor,
        )
        results = [e.value for e in await collect(runner.run_tasks())]
    assert len({pid for pid, _, _, _ in results}) == 1
    assert {module for _, module, _, _ in results} == {"uvloop"}
    # All four ran at once in that one worker: every interval overlaps every other.
    latest_start = max(start for _, _, start, _ in results)
    earliest_end = min(end for _, _, _, end in results)
    assert latest_start < earliest_end


async def test_leaving_the_stream_early_cancels_tasks_in_their_workers() -> None:
    capacity = CapacitySource(4)
    async with assert_no_leaks(), ProcessExecutor(2, cancel_grace=30) as executor:
        pids = set(executor.pids)
        runner = HierarchicalTaskPoolRunner(
            "early", [tasks.started_then_waits] * 4, capacity, executor=executor
        )
        stream = runner.run_tasks()
        async for envelope in stream:
            assert envelope.value == "started"
            break  # leave while every task waits in its worker
        await stream.aclose()
        assert capacity.available == 4 and executor.capacity.in_use == 0
        assert executor.statistics().in_flight == 0
        assert set(executor.pids) == pids  # cancelled inside the workers, none killed
        # And with aclose() straight away, before reading anything:
        stream = runner.run_tasks()
        await stream.aclose()
        assert capacity.available == 4


async def test_a_million_envelopes_while_the_consumer_sleeps() -> None:
    """Flow control: the consumer sleeps while the task could stream a million values;
    the task pauses at its window, the parent's memory stays flat, nothing is lost."""
    window = 256
    async with ProcessExecutor(1, credit_window=window) as executor:
        runner = HierarchicalTaskPoolRunner(
            "million",
            [functools.partial(tasks.count, 1_000_000)],
            CapacitySource(1),
            executor=executor,
        )
        stream = runner.run_tasks()
        first = await stream.__anext__()
        assert first.value == 0
        rss_before = psutil.Process().memory_info().rss
        await asyncio.sleep(1.0)  # a consumer that does not read
        assert runner.statistics().envelopes <= window  # the task waits, it did not run on
        expected = 1
        intermediate = EnvelopeType.INTERMEDIATE
        async for envelope in stream:
            if envelope.type is intermediate:
                assert envelope.value == expected
                expected += 1
                if expected % 250_000 == 0:
                    assert psutil.Process().memory_info().rss - rss_before < 64 * 2**20
                    await asyncio.sleep(0.2)  # and stalls now and then
            else:
                assert envelope.value == "counted 1000000"
        assert expected == 1_000_000


async def test_a_task_waiting_for_a_worker_holds_no_user_capacity() -> None:
    user = CapacitySource(10)
    async with ProcessExecutor(2, prefetch=0) as executor:
        runner = HierarchicalTaskPoolRunner(
            "exact", [tasks.started_then_waits] * 6, user, executor=executor
        )
        stream = runner.run_tasks()
        seen = 0
        async for _ in stream:
            seen += 1
            if seen == 2:
                break
        await asyncio.sleep(0.2)
        # Two tasks run (one per worker); the other four wait for a worker slot and
        # hold none of the user's capacity meanwhile.
        assert user.in_use == 2 and executor.capacity.in_use == 2
        await stream.aclose()
        assert user.in_use == 0


async def test_a_worker_whose_call_pipe_closes_exits() -> None:
    """Pipe EOF alone ends a worker (the path that also covers a parent that died
    where no parent-death signal exists)."""
    async with assert_no_leaks(), ProcessExecutor(1) as executor:
        await executor.run(tasks.identity, 1)
        worker = executor._workers[0]
        process = psutil.Process(worker.pid)
        worker.connections[0].close()  # the call pipe's write end: what a dead parent closes
        await asyncio.get_running_loop().run_in_executor(None, process.wait, 2)  # or raises
        assert await executor.run(tasks.identity, 2) == 2  # replaced
        assert executor.statistics().workers_lost == 1
