"""HierarchicalTaskPoolRunner on the inline executor."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncGenerator, Generator
from typing import Any

import pytest

from pullpush import (
    BufferMode,
    CapacitySource,
    EnvelopeType,
    Executor,
    Final,
    HierarchicalTaskPoolRunner,
    PushPullBufferObj,
    RunnerStatistics,
    SourceBufferObj,
    SourceFromIterable,
    TaskProgressEnvelope,
    TaskTimeoutError,
)
from pullpush.testing import collect, settle


def finals(envelopes: list[TaskProgressEnvelope]) -> list[Any]:
    return [e.value for e in envelopes if e.type is EnvelopeType.FINAL]


async def test_seed_example_runs_every_task_within_capacity() -> None:
    capacity = CapacitySource(3)
    peak = 0
    running = 0

    def task(i: int) -> Any:
        async def run() -> int:
            nonlocal peak, running
            running += 1
            peak = max(peak, running)
            await asyncio.sleep(0.001 * (i % 4))
            running -= 1
            return i * i

        return run

    source = SourceBufferObj([task(i) for i in range(20)], True, BufferMode.FIFO)
    runner = HierarchicalTaskPoolRunner("docs", source, capacity)
    envelopes = await collect(runner.run_tasks())
    assert sorted(finals(envelopes)) == sorted(i * i for i in range(20))
    assert peak == 3
    assert capacity.available == 3
    assert all(e.type == "FINAL" for e in envelopes)
    assert sorted(e.task_id for e in envelopes) == list(range(20))


async def test_every_task_runner_kind_gives_its_envelopes() -> None:
    def plain() -> str:
        return "plain"

    async def coroutine() -> str:
        return "coroutine"

    def generator() -> Generator[int, None, str]:
        yield 1
        yield 2
        return "generator"

    async def async_generator() -> AsyncGenerator[Any, None]:
        yield 1
        yield Final("async generator")

    async def resolves_to_stream() -> AsyncGenerator[Any, None]:
        return async_generator()  # type: ignore[return-value]

    class Countdown:
        """An async iterable that is not an async generator."""

        def __init__(self, n: int) -> None:
            self.n = n

        def __aiter__(self) -> Countdown:
            return self

        async def __anext__(self) -> Any:
            self.n -= 1
            if self.n < 0:
                raise StopAsyncIteration
            return self.n if self.n else Final("lift-off")

    def a_future() -> asyncio.Future[str]:
        """An awaitable that is not a coroutine."""
        future = asyncio.get_running_loop().create_future()
        asyncio.get_running_loop().call_soon(future.set_result, "future")
        return future

    runners = [
        plain,
        coroutine,
        generator,
        async_generator,
        resolves_to_stream,
        lambda: Countdown(3),
        a_future,
    ]
    runner = HierarchicalTaskPoolRunner("kinds", runners, CapacitySource(1))
    envelopes = await collect(runner.run_tasks())
    by_task: dict[int, list[tuple[str, Any]]] = {}
    for e in envelopes:
        by_task.setdefault(e.task_id, []).append((e.type.value, e.value))
    assert by_task == {
        0: [("FINAL", "plain")],
        1: [("FINAL", "coroutine")],
        2: [("INTERMEDIATE", 1), ("INTERMEDIATE", 2), ("FINAL", "generator")],
        3: [("INTERMEDIATE", 1), ("FINAL", "async generator")],
        4: [("INTERMEDIATE", 1), ("FINAL", "async generator")],
        5: [("INTERMEDIATE", 2), ("INTERMEDIATE", 1), ("FINAL", "lift-off")],
        6: [("FINAL", "future")],
    }


async def test_results_arrive_in_completion_order_and_ids_in_start_order() -> None:
    def sleeper(delay: float, name: str) -> Any:
        async def run() -> str:
            await asyncio.sleep(delay)
            return name

        return run

    runner = HierarchicalTaskPoolRunner(
        "order", [sleeper(0.05, "slow"), sleeper(0.001, "fast")], CapacitySource(2)
    )
    envelopes = await collect(runner.run_tasks())
    assert [(e.task_id, e.value) for e in envelopes] == [(1, "fast"), (0, "slow")]


async def test_errors_are_isolated_and_the_pool_goes_on() -> None:
    def task(i: int) -> Any:
        def run() -> int:
            if i == 2:
                raise ValueError(f"task {i} failed")
            return i

        return run

    runner = HierarchicalTaskPoolRunner("errors", [task(i) for i in range(5)], CapacitySource(2))
    envelopes = await collect(runner.run_tasks())
    errors = [e for e in envelopes if e.type is EnvelopeType.ERROR]
    assert len(errors) == 1 and isinstance(errors[0].error, ValueError)
    assert errors[0].task_id == 2
    assert sorted(finals(envelopes)) == [0, 1, 3, 4]
    assert runner.statistics().failed == 1


async def test_statistics_is_a_frozen_snapshot_issue14() -> None:
    runner = HierarchicalTaskPoolRunner("stats", [lambda: 1, lambda: 2], CapacitySource(1))
    before = runner.statistics()
    await collect(runner.run_tasks())
    after = runner.statistics()
    assert before == RunnerStatistics(0, 0, 0, 0, 0)
    assert after == RunnerStatistics(started=2, running=0, completed=2, failed=0, envelopes=2)
    assert repr(after) == (
        "RunnerStatistics(started=2, running=0, completed=2, failed=0, envelopes=2)"
    )
    with pytest.raises(dataclasses.FrozenInstanceError):
        after.completed = 3  # type: ignore[misc]


async def test_stop_on_error_cancels_the_rest_and_raises() -> None:
    started, cancelled = [], []

    async def slow() -> None:
        started.append(True)
        try:
            await asyncio.sleep(10)
        finally:
            cancelled.append(True)

    def bad() -> None:
        raise KeyError("bad")

    capacity = CapacitySource(4)
    runner = HierarchicalTaskPoolRunner("stop", [slow, slow, bad, slow], capacity)
    with pytest.raises(KeyError):
        async for _ in runner.run_tasks(stop_on_error=True):
            pass
    assert len(started) >= 2 and cancelled == started
    assert capacity.available == 4


async def test_breaking_out_cancels_tasks_in_flight_and_returns_capacity() -> None:
    capacity = CapacitySource(3)

    async def forever() -> None:
        await asyncio.sleep(60)

    def quick() -> str:
        return "done"

    runner = HierarchicalTaskPoolRunner("break", [quick, forever, forever, forever], capacity)
    async with contextlib.aclosing(runner.run_tasks()) as envelopes:
        async for envelope in envelopes:
            assert envelope.value == "done"
            break
    assert capacity.available == 3
    assert runner.running == 0


async def test_a_plain_break_cleans_up_when_the_generator_is_finalized() -> None:
    capacity = CapacitySource(2)

    async def forever() -> None:
        await asyncio.sleep(60)

    runner = HierarchicalTaskPoolRunner("break", [lambda: 1, forever, forever], capacity)
    async for _ in runner.run_tasks():
        break
    await settle(20)
    assert capacity.available == 2


async def test_per_task_timeout_gives_an_error_envelope() -> None:
    async def slow() -> None:
        await asyncio.sleep(10)

    async def fast() -> str:
        return "ok"

    runner = HierarchicalTaskPoolRunner("timeout", [slow, fast], CapacitySource(2), timeout=0.01)
    envelopes = await collect(runner.run_tasks())
    errors = [e for e in envelopes if e.type is EnvelopeType.ERROR]
    assert len(errors) == 1 and isinstance(errors[0].error, TaskTimeoutError)
    assert finals(envelopes) == ["ok"]


async def test_hierarchical_capacity_is_shared_with_a_parent() -> None:
    global_capacity = CapacitySource(3)
    peak = {"a": 0, "b": 0, "all": 0}
    running = {"a": 0, "b": 0, "all": 0}

    def task(pool: str) -> Any:
        async def run() -> None:
            running[pool] += 1
            running["all"] += 1
            peak[pool] = max(peak[pool], running[pool])
            peak["all"] = max(peak["all"], running["all"])
            await asyncio.sleep(0.002)
            running[pool] -= 1
            running["all"] -= 1

        return run

    a = HierarchicalTaskPoolRunner("a", [task("a")] * 10, CapacitySource(2, global_capacity))
    b = HierarchicalTaskPoolRunner("b", [task("b")] * 10, CapacitySource(2, global_capacity))
    await asyncio.gather(collect(a.run_tasks()), collect(b.run_tasks()))
    assert peak["all"] == 3 and peak["a"] <= 2 and peak["b"] <= 2
    assert global_capacity.available == 3


async def test_pipelined_async_generator_source() -> None:
    chunked: list[int] = []

    async def chunker() -> AsyncGenerator[Any, None]:
        for i in range(6):
            chunked.append(i)
            await asyncio.sleep(0)

            async def analyse(i: int = i) -> int:
                return i * 10

            yield analyse

    runner = HierarchicalTaskPoolRunner("pipe", chunker(), CapacitySource(2))
    envelopes = await collect(runner.run_tasks())
    assert sorted(finals(envelopes)) == [0, 10, 20, 30, 40, 50]
    runner2 = HierarchicalTaskPoolRunner("pipe2", SourceFromIterable(chunker()), CapacitySource(2))
    assert len(await collect(runner2.run_tasks())) == 6


async def test_dynamic_injection_through_a_push_pull_buffer() -> None:
    queue: PushPullBufferObj[Any] = PushPullBufferObj()
    runner = HierarchicalTaskPoolRunner("dynamic", queue.source, CapacitySource(5))

    async def produce() -> None:
        for i in range(10):

            async def sub(i: int = i) -> int:
                return i

            await queue.sink.asend(sub)
            await asyncio.sleep(0.001)
        await queue.sink.aclose()

    producer = asyncio.create_task(produce())
    envelopes = await collect(runner.run_tasks())
    await producer
    assert sorted(finals(envelopes)) == list(range(10))


async def test_bad_tasks_get_error_envelopes_and_the_runner_goes_on() -> None:
    runner = HierarchicalTaskPoolRunner("bad", [42, lambda: "ok"], CapacitySource(1))
    envelopes = await collect(runner.run_tasks())
    assert [e.type for e in envelopes] == [EnvelopeType.ERROR, EnvelopeType.FINAL]
    assert "must be callable" in str(envelopes[0].error)
    assert [e.task_id for e in envelopes] == [0, 1]


def recording_tasks(started: list[int], n: int) -> list[Any]:
    """``n`` task runners that note their index in ``started`` when they run."""

    def task(i: int) -> Any:
        def run() -> int:
            started.append(i)
            return i

        return run

    return [task(i) for i in range(n)]


async def test_a_slow_consumer_stops_the_runner_starting_tasks() -> None:
    started: list[int] = []
    runner = HierarchicalTaskPoolRunner(
        "eager", recording_tasks(started, 100), CapacitySource(50), max_unread=5
    )
    stream = runner.run_tasks()
    await stream.__anext__()
    await settle(20)
    assert len(started) <= 7  # max_unread waiting, plus the one taken, plus one pulled
    await stream.aclose()


async def test_a_streaming_task_is_paused_by_an_idle_consumer() -> None:
    produced = 0

    async def stream() -> AsyncGenerator[int, None]:
        nonlocal produced
        for i in range(100_000):
            produced += 1
            yield i

    runner = HierarchicalTaskPoolRunner("flow", [stream], CapacitySource(1), max_unread=10)
    envelopes = runner.run_tasks()
    await envelopes.__anext__()
    await settle(50)
    assert produced < 1000
    await envelopes.aclose()


def test_bad_arguments() -> None:
    with pytest.raises(TypeError, match="capacity must be a CapacitySource or an int"):
        HierarchicalTaskPoolRunner("x", [], 2.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="capacity must be >= 1"):
        HierarchicalTaskPoolRunner("x", [], 0)
    with pytest.raises(ValueError, match="workers= sizes the executor built for"):
        HierarchicalTaskPoolRunner("x", [], 1, workers=2)
    with pytest.raises(TypeError, match="source must be an iterable"):
        HierarchicalTaskPoolRunner("x", 5, CapacitySource(1))
    with pytest.raises(ValueError, match="executor must be"):
        HierarchicalTaskPoolRunner("x", [], CapacitySource(1), executor="gpu")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="timeout must be > 0"):
        HierarchicalTaskPoolRunner("x", [], CapacitySource(1), timeout=0)
    with pytest.raises(ValueError, match="max_unread must be >= 1"):
        HierarchicalTaskPoolRunner("x", [], CapacitySource(1), max_unread=0)


class _BatchingExecutor(Executor):
    """Reports each task's values as one batch through ``task_intermediates``, as the
    process executor does; a task ends once its whole batch was acknowledged."""

    name = "batching"

    def __init__(self, values: list[int]) -> None:
        super().__init__()
        self.values = values
        self.acks: list[int] = []

    def submit(self, task_id: int, runner: Any, events: Any) -> Any:
        executor = self
        result = runner()

        class Handle:
            acked = 0

            def cancel(self, error: BaseException | None = None) -> None:
                events.task_error(task_id, error or asyncio.CancelledError())

            def ack(self, count: int = 1) -> None:
                executor.acks.append(count)
                self.acked += count
                if self.acked == len(executor.values):
                    events.task_final(task_id, result)

        events.task_intermediates(task_id, list(self.values))
        return Handle()


async def test_a_batch_of_intermediates_is_yielded_in_order_then_acknowledged() -> None:
    executor = _BatchingExecutor([10, 11, 12])
    runner = HierarchicalTaskPoolRunner(
        "batches", [lambda: "a", lambda: "b"], CapacitySource(2), executor=executor
    )
    envelopes = await collect(runner.run_tasks())
    by_task: dict[int, list[tuple[str, Any]]] = {}
    for envelope in envelopes:
        by_task.setdefault(envelope.task_id, []).append((envelope.type.value, envelope.value))
    assert by_task == {
        0: [("INTERMEDIATE", 10), ("INTERMEDIATE", 11), ("INTERMEDIATE", 12), ("FINAL", "a")],
        1: [("INTERMEDIATE", 10), ("INTERMEDIATE", 11), ("INTERMEDIATE", 12), ("FINAL", "b")],
    }
    assert all(isinstance(e, TaskProgressEnvelope) for e in envelopes)
    assert executor.acks == [3, 3]  # each batch acknowledged once it was consumed
    assert runner.statistics().envelopes == 8
    assert executor.capacity is None and runner.capacity.available == 2


async def test_max_unread_counts_the_envelopes_of_batches() -> None:
    started: list[int] = []
    # Each task reports 4 envelopes in one batch: with max_unread=10, at most three
    # batches may wait unread before the runner stops starting tasks.
    runner = HierarchicalTaskPoolRunner(
        "eager",
        recording_tasks(started, 50),
        CapacitySource(50),
        executor=_BatchingExecutor([0, 1, 2, 3]),
        max_unread=10,
    )
    stream = runner.run_tasks()
    await stream.__anext__()
    await settle(20)
    assert 2 <= len(started) <= 4
    await stream.aclose()
