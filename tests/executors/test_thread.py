"""ThreadExecutor: runner kinds in threads with their own loops, errors, cancellation,
flow control, closing, the pool runners on it, and its arguments."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import os
import threading
from collections.abc import AsyncGenerator, Callable, Generator
from typing import Any

import pytest

from pullpush import (
    CapacitySource,
    EnvelopeType,
    ExecutorClosedError,
    Final,
    HierarchicalTaskPoolRunner,
    ResourceCapacitySource,
    ScheduledTask,
    ScheduledTaskPoolRunner,
    TaskProgressEnvelope,
    TaskTimeoutError,
    ThreadExecutor,
)
from pullpush._exceptions import FinalNotLastError
from pullpush.executors import TaskHandle, TaskRunner, make_executor
from pullpush.testing import collect, settle

PREFIX = "pullpush-test"


def threads_named(prefix: str = PREFIX) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith(prefix)]


def signal(loop: asyncio.AbstractEventLoop, future: asyncio.Future[None]) -> None:
    """From a worker thread: resolve ``future`` on the test's loop."""

    def resolve() -> None:
        if not future.done():
            future.set_result(None)

    loop.call_soon_threadsafe(resolve)


class Recorder:
    """A TaskEvents that records what one executor reports."""

    def __init__(self) -> None:
        self.events: list[tuple[str, int, Any]] = []
        self.ended: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.on_end: Callable[[], None] = lambda: None

    def task_intermediate(self, task_id: int, value: Any) -> None:
        self.events.append(("INTERMEDIATE", task_id, value))

    def task_final(self, task_id: int, value: Any) -> None:
        self.on_end()
        self.events.append(("FINAL", task_id, value))
        self.ended.set_result(None)

    def task_error(self, task_id: int, error: BaseException) -> None:
        self.on_end()
        self.events.append(("ERROR", task_id, error))
        self.ended.set_result(None)


def by_task(envelopes: list[TaskProgressEnvelope]) -> dict[int, list[tuple[str, Any]]]:
    grouped: dict[int, list[tuple[str, Any]]] = {}
    for e in envelopes:
        grouped.setdefault(e.task_id, []).append((e.type.value, e.value))
    return grouped


# -- task runner kinds ---------------------------------------------------------------------


async def test_every_task_runner_kind_runs_in_a_worker_thread() -> None:
    caller = threading.get_ident()
    seen: list[tuple[int, str]] = []

    def where() -> None:
        seen.append((threading.get_ident(), threading.current_thread().name))

    def plain() -> str:
        where()
        return "plain"

    async def coroutine() -> str:
        where()
        await asyncio.sleep(0)
        return "coroutine"

    def generator() -> Generator[int, None, str]:
        where()
        yield 1
        yield 2
        return "generator"

    async def async_generator() -> AsyncGenerator[Any, None]:
        where()
        yield 1
        await asyncio.sleep(0)
        yield Final("async generator")

    async def resolves_to_stream() -> AsyncGenerator[Any, None]:
        return async_generator()  # type: ignore[return-value]

    runners = [plain, coroutine, generator, async_generator, resolves_to_stream]
    async with ThreadExecutor(2, thread_name_prefix=PREFIX) as executor:
        runner = HierarchicalTaskPoolRunner("kinds", runners, CapacitySource(5), executor=executor)
        envelopes = await collect(runner.run_tasks())
    assert by_task(envelopes) == {
        0: [("FINAL", "plain")],
        1: [("FINAL", "coroutine")],
        2: [("INTERMEDIATE", 1), ("INTERMEDIATE", 2), ("FINAL", "generator")],
        3: [("INTERMEDIATE", 1), ("FINAL", "async generator")],
        4: [("INTERMEDIATE", 1), ("FINAL", "async generator")],
    }
    assert len(seen) == 5
    assert all(ident != caller and name.startswith(PREFIX) for ident, name in seen)


async def test_async_runners_run_on_the_threads_own_uvloop() -> None:
    caller = asyncio.get_running_loop()

    async def loop_of_runner() -> asyncio.AbstractEventLoop:
        return asyncio.get_running_loop()

    async with ThreadExecutor(1) as executor:
        first = await executor.run(loop_of_runner)
        second = await executor.run(loop_of_runner)
    assert first is not caller and first is second  # one loop per thread, forever
    assert type(first).__module__.startswith("uvloop")


async def test_runners_see_the_submitters_context_variables() -> None:
    request: contextvars.ContextVar[str] = contextvars.ContextVar("request", default="none")
    request.set("r-42")

    async def read_async() -> str:
        return request.get()

    async with ThreadExecutor(1) as executor:
        assert await executor.run(request.get) == "r-42"
        assert await executor.run(read_async) == "r-42"


async def test_final_must_be_the_last_item_in_a_thread_too() -> None:
    async def wrong() -> AsyncGenerator[Any, None]:
        yield Final(1)
        yield 2

    async with ThreadExecutor(1) as executor:
        with pytest.raises(FinalNotLastError, match="Final must be last"):
            await executor.run(wrong)


# -- errors ---------------------------------------------------------------------------------


class CustomError(Exception):
    pass


@pytest.mark.parametrize("kind", ["plain", "coroutine", "generator", "async generator"])
async def test_errors_keep_their_type_and_identity(kind: str) -> None:
    raised: list[BaseException] = []

    def fail() -> None:
        error = CustomError(kind)
        raised.append(error)
        raise error

    def plain() -> None:
        fail()

    async def coroutine() -> None:
        await asyncio.sleep(0)
        fail()

    def generator() -> Generator[int, None, None]:
        yield 1
        fail()

    async def async_generator() -> AsyncGenerator[int, None]:
        yield 1
        fail()

    runners: dict[str, TaskRunner] = {
        "plain": plain,
        "coroutine": coroutine,
        "generator": generator,
        "async generator": async_generator,
    }
    async with ThreadExecutor(1) as executor:
        with pytest.raises(CustomError, match=kind) as info:
            await executor.run(runners[kind])
    assert info.value is raised[0]


async def test_system_exit_and_keyboard_interrupt_fail_only_the_task() -> None:
    def exits() -> None:
        raise SystemExit(3)

    async def interrupted() -> None:
        raise KeyboardInterrupt

    async with ThreadExecutor(1, thread_name_prefix=PREFIX) as executor:
        runner = HierarchicalTaskPoolRunner(
            "exits", [exits, interrupted, lambda: "alive"], CapacitySource(1), executor=executor
        )
        envelopes = await collect(runner.run_tasks())
        assert len(threads_named()) == 1
    kinds = [(e.type, type(e.error)) for e in envelopes]
    assert kinds == [
        (EnvelopeType.ERROR, SystemExit),
        (EnvelopeType.ERROR, KeyboardInterrupt),
        (EnvelopeType.FINAL, type(None)),
    ]
    assert envelopes[2].value == "alive"


# -- cancellation ----------------------------------------------------------------------------


async def test_cancelling_an_async_runner_cancels_it_in_its_thread() -> None:
    loop = asyncio.get_running_loop()
    running = loop.create_future()
    cleanup: list[str] = []

    async def waits_forever() -> None:
        signal(loop, running)
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cleanup.append(threading.current_thread().name)
            raise

    async with ThreadExecutor(1, thread_name_prefix=PREFIX) as executor:
        recorder = Recorder()
        handle = executor.submit(0, waits_forever, recorder)
        await running
        handle.cancel()
        await recorder.ended
        assert cleanup == [f"{PREFIX}-0"]  # ran in the worker, before the end was reported
        ((kind, task_id, error),) = recorder.events
        assert (kind, task_id) == ("ERROR", 0) and isinstance(error, asyncio.CancelledError)
        # The thread is free again.
        assert await executor.run(lambda: "next") == "next"


@pytest.mark.timeout(10)
async def test_cancel_wins_keeping_the_tasks_own_error_as_context_issue14() -> None:
    """Regression (issue 14): a plain function cancelled while it runs, which then
    fails, ends with the cancel's error, its own error kept as ``__context__`` (the
    thread executor dropped it; inline and process kept it)."""
    loop = asyncio.get_running_loop()
    running = loop.create_future()
    release = threading.Event()

    def fails_when_released() -> None:
        signal(loop, running)
        release.wait(5)
        raise ValueError("own failure")

    async with ThreadExecutor(1, thread_name_prefix=PREFIX) as executor:
        recorder = Recorder()
        handle = executor.submit(0, fails_when_released, recorder)
        await running
        handle.cancel(TaskTimeoutError("timed out"))
        release.set()
        await recorder.ended
        ((kind, _, error),) = recorder.events
        assert kind == "ERROR" and isinstance(error, TaskTimeoutError)
        assert isinstance(error.__context__, ValueError)
        assert str(error.__context__) == "own failure"
        assert await executor.run(lambda: "next") == "next"


async def test_leaving_a_stream_early_cancels_the_thread_task() -> None:
    finished = threading.Event()

    async def endless() -> AsyncGenerator[int, None]:
        try:
            i = 0
            while True:
                yield i
                i += 1
                await asyncio.sleep(0)
        finally:
            finished.set()

    async with ThreadExecutor(1) as executor:
        stream = executor.stream(endless)
        assert (await stream.__anext__()).value == 0
        await stream.aclose()
        assert finished.is_set()  # aclose waited for the task's end


async def test_a_sync_generator_is_stopped_at_its_next_batch() -> None:
    """A sync generator's values leave in batches (drive()); a cancellation stops it
    when the batch being filled is delivered: within ``credit_window`` values."""
    loop = asyncio.get_running_loop()
    first = loop.create_future()
    resume = threading.Event()
    produced: list[int] = []
    closed = threading.Event()

    def counting() -> Generator[int, None, None]:
        try:
            for i in range(1_000_000):
                produced.append(i)
                yield i
                if i == 0:
                    signal(loop, first)
                    resume.wait()
        finally:
            closed.set()

    window = 8
    async with ThreadExecutor(1, credit_window=window) as executor:
        recorder = Recorder()
        handle = executor.submit(0, counting, recorder)
        await first
        handle.cancel(TaskTimeoutError("stop"))
        resume.set()
        await recorder.ended
    assert closed.is_set()
    assert len(produced) <= window + 1  # stopped at the first batch after the request
    kind, _, error = recorder.events[-1]
    assert kind == "ERROR" and isinstance(error, TaskTimeoutError)


async def test_a_cancelled_sync_function_is_reported_only_when_it_returns() -> None:
    loop = asyncio.get_running_loop()
    running = loop.create_future()
    release = threading.Event()
    returned: list[bool] = []

    def blocking() -> str:
        signal(loop, running)
        release.wait()
        returned.append(True)
        return "too late"

    async with ThreadExecutor(1) as executor:
        recorder = Recorder()
        handle = executor.submit(0, blocking, recorder)
        recorder.on_end = lambda: returned.append(False)  # records when the end arrives
        await running
        handle.cancel(TaskTimeoutError("timed out"))
        await settle(20)
        assert not recorder.ended.done() and executor.running == 1
        release.set()
        await recorder.ended
    assert returned == [True, False]  # it returned, then its end was reported
    ((kind, _, error),) = recorder.events
    assert kind == "ERROR" and isinstance(error, TaskTimeoutError)


class SpyExecutor(ThreadExecutor):
    """A ThreadExecutor whose handles call ``on_cancel`` after forwarding a cancel."""

    def __init__(self, on_cancel: Callable[[BaseException | None], None], **kwargs: Any):
        super().__init__(**kwargs)
        self.on_cancel = on_cancel

    def submit(self, task_id: int, runner: TaskRunner, events: Any) -> TaskHandle:
        inner = super().submit(task_id, runner, events)
        spy = self

        class Handle:
            def cancel(self, error: BaseException | None = None) -> None:
                inner.cancel(error)
                spy.on_cancel(error)

            def ack(self, count: int = 1) -> None:
                inner.ack(count)

        return Handle()


async def test_a_sync_function_timeout_is_reported_after_it_returns_and_holds_capacity() -> None:
    release = threading.Event()
    at_timeout: list[tuple[str, int]] = []
    capacity = CapacitySource(1)

    def on_cancel(error: BaseException | None) -> None:
        # The runner timed the task out: nothing was reported ended, so the task's
        # capacity and the thread's slot are still held.
        at_timeout.append((type(error).__name__, capacity.available))
        release.set()

    def blocking() -> str:
        release.wait()
        return "late"

    async with SpyExecutor(on_cancel, max_workers=1) as executor:
        runner = HierarchicalTaskPoolRunner(
            "timeout", [blocking, lambda: "next"], capacity, executor=executor, timeout=0.01
        )
        envelopes = await collect(runner.run_tasks())
        assert executor.capacity.available == 1
    assert at_timeout == [("TaskTimeoutError", 0)]
    assert [(e.task_id, e.type) for e in envelopes] == [
        (0, EnvelopeType.ERROR),
        (1, EnvelopeType.FINAL),
    ]
    assert isinstance(envelopes[0].error, TaskTimeoutError)
    assert capacity.available == 1


async def test_tasks_beyond_the_threads_queue_in_order_and_a_queued_one_cancels_at_once() -> None:
    loop = asyncio.get_running_loop()
    running = loop.create_future()
    release = threading.Event()
    order: list[int] = []

    def blocker() -> None:
        signal(loop, running)
        release.wait()

    def task(i: int) -> Callable[[], int]:
        def run() -> int:
            order.append(i)
            return i

        return run

    async with ThreadExecutor(1) as executor:
        first = Recorder()
        executor.submit(0, blocker, first)
        await running
        recorders = [Recorder() for _ in range(4)]
        handles = [executor.submit(i + 1, task(i), r) for i, r in enumerate(recorders)]
        handles[1].cancel(LookupError("dropped"))
        assert recorders[1].ended.done()  # a queued task ends at once...
        release.set()
        await asyncio.gather(first.ended, *(r.ended for r in recorders))
    assert order == [0, 2, 3]  # ...and never runs; the others run in submit order
    assert isinstance(recorders[1].events[0][2], LookupError)


# -- flow control ----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_an_idle_consumer_pauses_a_streaming_task_at_the_credit_window(kind: str) -> None:
    window = 16
    produced = 0

    def sync_stream() -> Generator[int, None, str]:
        nonlocal produced
        for i in range(100_000):
            produced += 1
            yield i
        return "done"

    async def async_stream() -> AsyncGenerator[Any, None]:
        nonlocal produced
        for i in range(100_000):
            produced += 1
            yield i
        yield Final("done")

    stream = sync_stream if kind == "sync" else async_stream
    async with ThreadExecutor(1, credit_window=window) as executor:
        runner = HierarchicalTaskPoolRunner("flow", [stream], CapacitySource(1), executor=executor)
        envelopes = runner.run_tasks()
        first = await envelopes.__anext__()
        assert first.value == 0
        while produced < window:  # the thread runs on while the consumer sleeps...
            await asyncio.sleep(0.001)
        for _ in range(20):
            await asyncio.sleep(0.001)
        # ...but stops once `window` envelopes are unread (plus the one it holds).
        assert window <= produced <= window + 2
        values = [e.value async for e in envelopes]
    assert produced == 100_000
    assert values == [*range(1, 100_000), "done"]


# -- closing -----------------------------------------------------------------------------------


async def test_closing_leaves_no_thread_behind() -> None:
    before = set(threading.enumerate())
    executor = ThreadExecutor(3, thread_name_prefix=PREFIX)
    await executor.start()
    assert len(threads_named()) == 3
    assert await executor.run(lambda: 1) == 1
    await executor.aclose()
    await executor.aclose()  # idempotent
    assert threads_named() == []
    # No thread of ours is left (a foreign thread seen before may have ended meanwhile).
    assert set(threading.enumerate()) - before == set()
    with pytest.raises(ExecutorClosedError):
        await executor.start()
    with pytest.raises(ExecutorClosedError):
        executor.submit(0, print, Recorder())


async def test_closing_an_executor_that_never_started() -> None:
    executor = ThreadExecutor(2, thread_name_prefix=PREFIX)
    await executor.aclose()
    assert executor.closed and threads_named() == []


async def test_closing_cancels_async_tasks_and_waits_for_sync_functions() -> None:
    loop = asyncio.get_running_loop()
    running = loop.create_future()
    release = threading.Event()

    def blocking() -> str:
        signal(loop, running)
        release.wait()
        return "done"

    async def sleeper() -> None:
        await asyncio.sleep(3600)

    executor = ThreadExecutor(2, thread_name_prefix=PREFIX)
    await executor.start()
    sync_recorder, async_recorder, queued = Recorder(), Recorder(), Recorder()
    executor.submit(0, blocking, sync_recorder)
    executor.submit(1, sleeper, async_recorder)
    executor.submit(2, sleeper, queued)
    await running
    closing = asyncio.ensure_future(executor.aclose())
    await async_recorder.ended
    await queued.ended
    await settle(20)
    assert not closing.done() and not sync_recorder.ended.done()
    release.set()
    await closing
    for recorder in (sync_recorder, async_recorder, queued):
        ((kind, _, error),) = recorder.events
        assert kind == "ERROR" and isinstance(error, ExecutorClosedError)
    assert threads_named() == []


async def test_closing_cancels_what_the_runners_spawned_on_the_thread_loops() -> None:
    cancelled = threading.Event()

    async def spawns() -> str:
        async def background() -> None:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                cancelled.set()
                raise

        spawns.task = asyncio.get_running_loop().create_task(background())  # type: ignore[attr-defined]
        return "spawned"

    async with ThreadExecutor(1, thread_name_prefix=PREFIX) as executor:
        assert await executor.run(spawns) == "spawned"
    assert cancelled.is_set() and threads_named() == []


# -- the pool runners on threads -----------------------------------------------------------


async def test_the_runner_builds_and_closes_a_thread_executor_by_name() -> None:
    executor, owned = make_executor("thread")
    assert isinstance(executor, ThreadExecutor) and owned
    before = set(threading.enumerate())

    def square(i: int) -> Callable[[], int]:
        return lambda: i * i

    runner = HierarchicalTaskPoolRunner(
        "named", [square(i) for i in range(20)], CapacitySource(8), executor="thread"
    )
    envelopes = await collect(runner.run_tasks())
    assert sorted(e.value for e in envelopes) == [i * i for i in range(20)]
    assert set(threading.enumerate()) == before


async def test_a_shared_executor_bounds_two_runners_by_its_threads() -> None:
    lock = threading.Lock()
    running = 0
    peak = 0
    gate = threading.Barrier(2)

    def task(i: int) -> Callable[[], int]:
        def run() -> int:
            nonlocal running, peak
            with lock:
                running += 1
                peak = max(peak, running)
            if i == 0:
                gate.wait()  # two tasks really do run at the same time
            with lock:
                running -= 1
            return i

        return run

    async with ThreadExecutor(2, thread_name_prefix=PREFIX) as executor:
        a = HierarchicalTaskPoolRunner(
            "a", [task(i) for i in range(30)], CapacitySource(10), executor=executor
        )
        b = HierarchicalTaskPoolRunner(
            "b", [task(0)] + [task(i) for i in range(1, 30)], CapacitySource(10), executor=executor
        )
        results = await asyncio.gather(collect(a.run_tasks()), collect(b.run_tasks()))
        assert not executor.closed  # the runners leave a given executor open
        assert executor.capacity.available == 2
    for envelopes in results:
        assert sorted(e.value for e in envelopes) == list(range(30))
    assert peak == 2
    assert threads_named() == []


async def test_scheduled_runner_on_threads_with_callbacks() -> None:
    completed: list[tuple[str, Any]] = []

    def work(n: int) -> Callable[[], int]:
        return lambda: sum(range(n))

    tasks = [
        ScheduledTask(
            f"t{n}", work(n), {"cpu": 1}, on_complete=lambda k, v: completed.append((k, v))
        )
        for n in range(6)
    ]
    runner = ScheduledTaskPoolRunner(
        "scheduled", tasks, ResourceCapacitySource({"cpu": 2}), executor="thread"
    )
    envelopes = await collect(runner.run_tasks())
    assert {e.key: e.value for e in envelopes} == {f"t{n}": sum(range(n)) for n in range(6)}
    assert sorted(completed) == sorted((f"t{n}", sum(range(n))) for n in range(6))


async def test_breaking_out_of_a_runner_cancels_thread_tasks_and_returns_capacity() -> None:
    capacity = CapacitySource(3)

    async def forever() -> None:
        await asyncio.sleep(3600)

    async with ThreadExecutor(3) as executor:
        runner = HierarchicalTaskPoolRunner(
            "break", [lambda: "done", forever, forever, forever], capacity, executor=executor
        )
        async with contextlib.aclosing(runner.run_tasks()) as envelopes:
            async for envelope in envelopes:
                assert envelope.value == "done"
                break
        assert capacity.available == 3 and executor.capacity.available == 3
        assert executor.running == 0


# -- arguments --------------------------------------------------------------------------------


def test_default_max_workers_is_the_usable_cpus() -> None:
    executor = ThreadExecutor()
    assert executor.max_workers == max(1, len(os.sched_getaffinity(0)))
    assert executor.capacity.limit == executor.max_workers
    assert "max_workers" in repr(executor)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="max_workers must be >= 1"):
        ThreadExecutor(0)
    with pytest.raises(TypeError, match="max_workers must be an int"):
        ThreadExecutor("2")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="max_workers must be an int"):
        ThreadExecutor(True)
    with pytest.raises(ValueError, match="credit_window must be >= 1"):
        ThreadExecutor(1, credit_window=0)
    with pytest.raises(TypeError, match="credit_window must be an int"):
        ThreadExecutor(1, credit_window=1.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="thread_name_prefix must be a str"):
        ThreadExecutor(1, thread_name_prefix=3)  # type: ignore[arg-type]


async def test_submit_needs_a_started_executor_on_its_loop() -> None:
    executor = ThreadExecutor(1)
    with pytest.raises(RuntimeError, match="not started"):
        executor.submit(0, print, Recorder())
    await executor.aclose()


async def test_cancelling_aclose_does_not_leave_threads_behind() -> None:
    loop = asyncio.get_running_loop()
    running = loop.create_future()
    release = threading.Event()

    def blocking() -> None:
        signal(loop, running)
        release.wait()

    executor = ThreadExecutor(2, thread_name_prefix=PREFIX)
    await executor.start()
    recorder = Recorder()
    executor.submit(0, blocking, recorder)
    await running
    closing = asyncio.ensure_future(executor.aclose())
    await settle(5)
    closing.cancel()
    with pytest.raises(asyncio.CancelledError):
        await closing
    release.set()
    await executor.aclose()  # waits for the closing that went on
    assert threads_named() == [] and recorder.ended.done()


async def test_tasks_submitted_while_the_threads_start_run_once_they_are_up() -> None:
    executor = ThreadExecutor(2)
    starting = asyncio.ensure_future(executor.start())
    await asyncio.sleep(0)  # start() has created the threads, not yet seen them ready
    recorders = [Recorder() for _ in range(3)]
    for i, recorder in enumerate(recorders):
        executor.submit(i, lambda i=i: i * 10, recorder)  # type: ignore[misc]
    await starting
    await asyncio.gather(*(r.ended for r in recorders))
    assert [r.events for r in recorders] == [[("FINAL", i, i * 10)] for i in range(3)]
    await executor.aclose()
