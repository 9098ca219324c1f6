"""RayExecutor on a real local Ray (skipped when ray is not installed, unless
PULLPUSH_REQUIRE_RAY is set, as in CI's main run: ``./scripts/test --with-ray``). One
Ray instance, started by the test (so "this process connected to Ray itself"), serves
the whole module: Ray takes seconds to start. Runners are closures, so cloudpickle
ships them by value."""

from __future__ import annotations

import asyncio
import functools
import sys
import threading
import time
from collections.abc import AsyncGenerator, Generator, Iterator
from pathlib import Path
from typing import Any

import pytest
from _ray_support import need_ray

from pullpush import (
    CapacitySource,
    EnvelopeType,
    Final,
    HierarchicalTaskPoolRunner,
    RayExecutor,
    RemoteTraceback,
    ResourceCapacitySource,
    ScheduledTask,
    ScheduledTaskPoolRunner,
    TaskProgressEnvelope,
    TaskTimeoutError,
    WorkerCrashedError,
)
from pullpush.executors._ray import ray_resources
from pullpush.testing import collect

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[Any]:
    """A local Ray with 2 CPUs for the module, started on the main thread."""
    ray = need_ray()
    ray.init(num_cpus=2, resources={"licence": 1}, include_dashboard=False, log_to_driver=False)
    try:
        yield ray
    finally:
        ray.shutdown()


def by_task(envelopes: list[TaskProgressEnvelope]) -> dict[int, list[tuple[str, Any]]]:
    grouped: dict[int, list[tuple[str, Any]]] = {}
    for e in envelopes:
        grouped.setdefault(e.task_id, []).append((e.type.value, e.value))
    return grouped


def read_count(path: Path) -> int:
    try:
        return int(path.read_text() or 0)
    except FileNotFoundError:
        return 0


async def wait_for_file(path: Path) -> int:
    """Poll until a Ray task has written a count to ``path``; return it."""
    while not (count := read_count(path)):
        await asyncio.sleep(0.01)
    return count


async def test_every_task_runner_kind_runs_as_a_ray_task(ray_cluster: Any) -> None:
    def plain() -> str:
        return "plain"

    async def coroutine() -> str:
        await asyncio.sleep(0)
        return "coroutine"

    def generator() -> Generator[int, None, str]:
        yield 1
        yield 2
        return "generator"

    async def async_generator() -> AsyncGenerator[Any, None]:
        yield 1
        await asyncio.sleep(0)
        yield Final("async generator")

    async def resolves_to_stream() -> AsyncGenerator[Any, None]:
        return async_generator()  # type: ignore[return-value]

    runners = [plain, coroutine, generator, async_generator, resolves_to_stream]
    runner = HierarchicalTaskPoolRunner("kinds", runners, CapacitySource(5), executor="ray")
    envelopes = await collect(runner.run_tasks())
    assert by_task(envelopes) == {
        0: [("FINAL", "plain")],
        1: [("FINAL", "coroutine")],
        2: [("INTERMEDIATE", 1), ("INTERMEDIATE", 2), ("FINAL", "generator")],
        3: [("INTERMEDIATE", 1), ("FINAL", "async generator")],
        4: [("INTERMEDIATE", 1), ("FINAL", "async generator")],
    }
    assert ray_cluster.is_initialized()  # the runner's executor used Ray, left it up


async def test_intermediate_envelopes_arrive_while_the_task_runs(
    ray_cluster: Any, tmp_path: Path
) -> None:
    go_on = tmp_path / "go-on"

    def waits_for_the_driver() -> Generator[str, None, str]:
        yield "first"
        while not go_on.exists():  # only the driver, having read "first", creates it
            time.sleep(0.01)
        yield "second"
        return "done"

    async with RayExecutor() as executor:
        stream = executor.stream(waits_for_the_driver)
        first = await stream.__anext__()
        assert (first.type, first.value) == (EnvelopeType.INTERMEDIATE, "first")
        go_on.touch()
        rest = [(e.type.value, e.value) async for e in stream]
    assert rest == [("INTERMEDIATE", "second"), ("FINAL", "done")]


async def test_errors_keep_their_type_with_the_worker_traceback(ray_cluster: Any) -> None:
    class ChunkError(LookupError):
        pass

    def fails() -> None:
        raise ChunkError("chunk 7 is missing")

    async def fails_later() -> AsyncGenerator[int, None]:
        yield 1
        raise KeyError("late")

    async with RayExecutor() as executor:
        with pytest.raises(ChunkError, match="chunk 7") as info:
            await executor.run(fails)
        assert isinstance(info.value.__cause__, RemoteTraceback)  # the public one
        assert "fails" in str(info.value.__cause__)  # the remote traceback
        assert "\x1b[" not in str(info.value.__cause__)
        with pytest.raises(KeyError, match="late"):
            await executor.run(fails_later)


async def test_a_timeout_cancels_async_and_busy_ray_tasks(ray_cluster: Any) -> None:
    async def sleeps() -> None:
        await asyncio.sleep(3600)

    def spins() -> None:
        while True:
            pass

    async with RayExecutor() as executor:
        runner = HierarchicalTaskPoolRunner(
            "timeout",
            [sleeps, spins, lambda: "ok"],
            CapacitySource(3),
            executor=executor,
            timeout=0.5,
        )
        envelopes = await collect(runner.run_tasks())
        assert executor.running == 0
    outcome = {e.task_id: (e.type, type(e.error)) for e in envelopes}
    assert outcome == {
        0: (EnvelopeType.ERROR, TaskTimeoutError),
        1: (EnvelopeType.ERROR, TaskTimeoutError),
        2: (EnvelopeType.FINAL, type(None)),
    }


async def test_an_idle_consumer_pauses_a_ray_generator(ray_cluster: Any, tmp_path: Path) -> None:
    window = 8
    progress = tmp_path / "produced"

    def many() -> Generator[int, None, None]:
        for i in range(100_000):
            progress.write_text(str(i + 1))
            yield i

    async with RayExecutor(credit_window=window) as executor:
        runner = HierarchicalTaskPoolRunner("flow", [many], CapacitySource(1), executor=executor)
        envelopes = runner.run_tasks()
        assert (await envelopes.__anext__()).value == 0
        await wait_for_file(progress)
        for _ in range(50):
            await asyncio.sleep(0.01)
        # Values travel in batches of at most `window`: unread by the consumer
        # (window), a batch held by the driver, a batch queued by Ray's generator
        # backpressure, a batch the worker's stream thread computed ahead, one being
        # computed, plus the one read.
        # Ray counts a batch as consumed once the driver fetched it, so one more batch
        # may be in flight (seen under load: 36, 38); without backpressure: 100,000.
        assert await wait_for_file(progress) <= 5 * window + 2
        await envelopes.aclose()  # cancels the paused Ray task
        assert executor.running == 0


async def test_capacity_is_num_cpus_or_the_cluster_cpus(ray_cluster: Any) -> None:
    async with RayExecutor(num_cpus=1) as one:
        assert isinstance(one.capacity, CapacitySource) and one.capacity.limit == 1
    async with RayExecutor() as cluster:
        assert cluster.capacity is not None and cluster.capacity.limit == 2
    assert ray_cluster.is_initialized()  # neither executor started Ray: none shut it


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="num_cpus must be >= 1"):
        RayExecutor(num_cpus=0)
    with pytest.raises(TypeError, match="address must be a str"):
        RayExecutor(5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="credit_window must be >= 1"):
        RayExecutor(credit_window=0)
    with pytest.raises(TypeError, match="force_cancel must be a bool"):
        RayExecutor(force_cancel="yes")  # type: ignore[arg-type]


def test_a_missing_ray_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # makes `import ray` fail
    with pytest.raises(ImportError, match=r"pip install 'pullpush\[ray\]'"):
        RayExecutor()


async def test_an_unpicklable_runner_gets_an_error_envelope(ray_cluster: Any) -> None:
    lock = threading.Lock()

    def holds_a_lock() -> bool:
        return lock.locked()

    async with RayExecutor() as executor:
        runner = HierarchicalTaskPoolRunner(
            "pickle", [holds_a_lock, lambda: "ok"], CapacitySource(2), executor=executor
        )
        envelopes = await collect(runner.run_tasks())
    outcome = {e.task_id: e.type for e in envelopes}
    assert outcome == {0: EnvelopeType.ERROR, 1: EnvelopeType.FINAL}
    (error,) = [e.error for e in envelopes if e.task_id == 0]
    assert isinstance(error, TypeError) and "lock" in str(error)


async def test_an_unreadable_value_is_reported_once_the_ray_task_ended(
    ray_cluster: Any, tmp_path: Path
) -> None:
    ended = tmp_path / "ended"

    def explode() -> None:
        raise RuntimeError("this value cannot be rebuilt in the driver")

    class Unrebuildable:
        """Pickles fine in the Ray worker; unpickling it (in the driver) raises.
        Local, so that cloudpickle ships it by value."""

        def __reduce__(self) -> tuple[Any, ...]:
            return (explode, ())

    def streams_a_bad_value() -> Generator[Any, None, None]:
        try:
            yield Unrebuildable()
            for _ in range(300):  # runs on for 3 s unless cancelled
                time.sleep(0.01)
            yield 1
        finally:
            ended.write_text("1")

    async with RayExecutor(cancel_grace=0.5) as executor:
        runner = HierarchicalTaskPoolRunner(
            "bad", [streams_a_bad_value, lambda: "ok"], CapacitySource(2), executor=executor
        )
        envelopes = await collect(runner.run_tasks())
        # The ERROR came after the Ray task was stopped and had ended.
        assert ended.exists()
        assert executor.running == 0
        assert await executor.run(lambda: "again") == "again"
    outcome = {e.task_id: e.type for e in envelopes}
    assert outcome == {0: EnvelopeType.ERROR, 1: EnvelopeType.FINAL}
    (error,) = [e.error for e in envelopes if e.task_id == 0]
    assert "cannot be rebuilt" in repr(error) + repr(error.__cause__) + str(error)


@pytest.mark.timeout(15)  # without escalation the task would end after 20 s
async def test_a_timeout_escalates_to_a_forced_cancel_of_blocking_code(
    ray_cluster: Any,
) -> None:
    def blocks() -> None:
        time.sleep(20)  # blocked in C: KeyboardInterrupt waits until it returns

    async with RayExecutor(cancel_grace=0.5) as executor:
        runner = HierarchicalTaskPoolRunner(
            "stuck", [blocks], CapacitySource(2), executor=executor, timeout=0.5
        )
        envelopes = await collect(runner.run_tasks())
        assert executor.running == 0
        assert await executor.run(lambda: "again") == "again"
    outcome = {e.task_id: (e.type, type(e.error)) for e in envelopes}
    assert outcome == {0: (EnvelopeType.ERROR, TaskTimeoutError)}


async def test_a_crashed_worker_is_a_worker_crashed_error(ray_cluster: Any) -> None:
    import os
    import signal

    def dies() -> None:
        os.kill(os.getpid(), signal.SIGKILL)

    def dies_streaming() -> Generator[int, None, None]:
        yield 1
        os.kill(os.getpid(), signal.SIGKILL)
        yield 2

    async with RayExecutor() as executor:
        runner = HierarchicalTaskPoolRunner(
            "crash",
            [dies, dies_streaming, lambda: "ok"],
            CapacitySource(3),
            executor=executor,
        )
        envelopes = await collect(runner.run_tasks())
        assert executor.running == 0
        assert await executor.run(lambda: "again") == "again"
    terminal = {e.task_id: e for e in envelopes if e.type is not EnvelopeType.INTERMEDIATE}
    assert terminal[2].type is EnvelopeType.FINAL
    for task_id in (0, 1):
        error = terminal[task_id].error
        assert isinstance(error, WorkerCrashedError), error
        assert f"task {task_id}" in str(error)
        assert isinstance(error.__cause__, ray_cluster.exceptions.RayError)


async def test_options_that_cannot_apply_to_a_running_ray_are_refused(
    ray_cluster: Any,
) -> None:
    with pytest.raises(ValueError, match="runtime_env"):
        async with RayExecutor(runtime_env={"env_vars": {"PULLPUSH_X": "1"}}):
            pass
    with pytest.raises(ValueError, match=r"address='10\.255\.0\.1:6379'"):
        async with RayExecutor("10.255.0.1:6379"):
            pass
    async with RayExecutor("auto") as executor:  # the Ray this process is connected to
        assert await executor.run(lambda: 1) == 1
    assert ray_cluster.is_initialized()


def test_ray_client_addresses_are_refused_at_construction() -> None:
    pytest.importorskip("ray")
    with pytest.raises(ValueError, match="Ray Client"):
        RayExecutor("ray://head:10001")


def test_costs_map_to_ray_resources() -> None:
    known = {"CPU": 4.0, "GPU": 1.0, "memory": 1e9, "licence": 2.0}
    assert ray_resources(None, known) == {"num_cpus": 1}
    assert ray_resources({"cpu": 2, "gpu": 1, "memory_mb": 500, "licence": 1}, known) == {
        "num_cpus": 2,
        "num_gpus": 1,
        "memory": 500 * 1024 * 1024,
        "resources": {"licence": 1},
    }
    # pullpush's own units (and keys no node has) are not asked of Ray.
    assert ray_resources({"capacity": 1, "io": 3}, known) == {"num_cpus": 1}


async def test_a_scheduled_tasks_cost_reaches_ray(ray_cluster: Any) -> None:
    def assigned() -> dict[str, float]:
        import ray

        return dict(ray.get_runtime_context().get_assigned_resources())

    tasks = [
        ScheduledTask("licensed", assigned, cost={"cpu": 1, "licence": 1}),
        ScheduledTask("two-cpus", assigned, cost={"cpu": 2}),
    ]
    async with RayExecutor() as executor:
        runner = ScheduledTaskPoolRunner(
            "costs",
            tasks,
            ResourceCapacitySource({"cpu": 2, "licence": 1}),
            executor=executor,
        )
        envelopes = await collect(runner.run_tasks())
    assert [e.error for e in envelopes if e.error] == []
    finals = {e.key: e.value for e in envelopes if e.type is EnvelopeType.FINAL}
    assert finals == {
        "licensed": {"CPU": 1.0, "licence": 1.0},
        "two-cpus": {"CPU": 2.0},
    }


async def test_a_captured_value_put_once_travels_as_a_reference(ray_cluster: Any) -> None:
    """The documented pattern for big inputs: ``ray.put`` once, close over the ref
    (a few bytes to pickle per task); the worker resolves it from the object store."""
    big = bytes(8 * 1024 * 1024)
    ref = ray_cluster.put(big)

    def size_of() -> int:
        import ray

        return len(ray.get(ref))

    async with RayExecutor() as executor:
        runner = HierarchicalTaskPoolRunner(
            "put", [size_of] * 4, CapacitySource(2), executor=executor
        )
        envelopes = await collect(runner.run_tasks())
    assert [e.value for e in envelopes] == [len(big)] * 4
    import cloudpickle

    assert len(cloudpickle.dumps(size_of)) < 10_000  # the ref, not the 8 MiB


async def test_a_stream_of_many_values_arrives_whole_and_in_order(ray_cluster: Any) -> None:
    def counts() -> Generator[int, None, str]:
        yield from range(5000)
        return "done"

    async with RayExecutor() as executor:
        values = [e.value async for e in executor.stream(counts)]
    assert values == [*range(5000), "done"]


class Pickled:
    """Counts (in the driver) how often it is pickled, and on which thread; claims
    ``size`` bytes to ``sys.getsizeof``. It arrives in the worker as a ``str``
    (its class is not importable there)."""

    pickles: list[str] = []  # noqa: RUF012 - shared by the test and the runner's copy

    def __init__(self, size: int = 0, fails: bool = False) -> None:
        self.size, self.fails = size, fails

    def __sizeof__(self) -> int:
        return self.size

    def __reduce__(self) -> tuple[Any, ...]:
        Pickled.pickles.append(threading.current_thread().name)
        if self.fails:
            raise TypeError("this Pickled refuses to be pickled")
        return (str, (f"pickled {self.size}",))


async def test_a_repeated_runner_is_pickled_once_not_per_task(ray_cluster: Any) -> None:
    """The same runner submitted again is defined once in each actor, then sent as
    a key: ten tasks on two actors pickle it at most three times (the first task's
    argument, then once per actor), while ten distinct runners are pickled ten
    times."""
    captured = Pickled()

    def same() -> str:
        return str(captured)

    Pickled.pickles.clear()
    async with RayExecutor() as executor:
        runner = HierarchicalTaskPoolRunner(
            "same", [same] * 10, CapacitySource(10), executor=executor
        )
        assert [e.value for e in await collect(runner.run_tasks())] == ["pickled 0"] * 10
        assert len(Pickled.pickles) <= 1 + executor.actors
        Pickled.pickles.clear()
        of_one = [functools.partial(same) for _ in range(10)]  # one function: kept too
        runner = HierarchicalTaskPoolRunner(
            "partials", of_one, CapacitySource(10), executor=executor
        )
        assert [e.value for e in await collect(runner.run_tasks())] == ["pickled 0"] * 10
        assert len(Pickled.pickles) <= 1 + executor.actors
        Pickled.pickles.clear()
        distinct = [(lambda: str(captured)) for _ in range(10)]
        runner = HierarchicalTaskPoolRunner(
            "distinct", distinct, CapacitySource(10), executor=executor
        )
        assert [e.value for e in await collect(runner.run_tasks())] == ["pickled 0"] * 10
        assert len(Pickled.pickles) == 10


async def test_a_big_runner_is_pickled_off_the_loop(ray_cluster: Any) -> None:
    """A runner capturing a big value is pickled on a thread, never on the caller's
    loop, and its tasks keep their submit order with the small ones around them; one
    that cannot be pickled ends with that error and the executor runs on."""
    big = Pickled(size=64 * 1024 * 1024)
    refuses = Pickled(size=64 * 1024 * 1024, fails=True)

    def uses_big() -> str:
        return str(big)

    def uses_refuses() -> str:
        return str(refuses)

    Pickled.pickles.clear()
    loop_thread = threading.current_thread().name
    async with RayExecutor(num_cpus=1, prefetch=0) as executor:
        runners = [lambda: "before", uses_big, lambda: "after", uses_refuses, lambda: "last"]
        runner = HierarchicalTaskPoolRunner("big", runners, CapacitySource(5), executor=executor)
        envelopes = await collect(runner.run_tasks())
        assert await executor.run(lambda: "again") == "again"
        assert executor.running == 0
    outcome = {e.task_id: (e.value if e.error is None else e.error) for e in envelopes}
    assert [outcome[i] for i in (0, 1, 2, 4)] == ["before", f"pickled {big.size}", "after", "last"]
    assert isinstance(outcome[3], TypeError) and "refuses" in str(outcome[3])
    assert Pickled.pickles and loop_thread not in Pickled.pickles


async def test_capacity_follows_the_cluster_resources(
    ray_cluster: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nodes joining and leaving (Ray's ``cluster_resources``, polled) change the
    executor's capacity, so what a runner admits; ``prefetch=0``: one slot a CPU."""
    cpus = [2.0]
    monkeypatch.setattr(ray_cluster, "cluster_resources", lambda: {"CPU": cpus[0]})

    async def limit_becomes(n: int) -> None:
        while executor.capacity is None or executor.capacity.limit != n:
            await asyncio.sleep(0.01)

    async with RayExecutor(prefetch=0, poll_interval=0.02) as executor:
        await limit_becomes(2)
        cpus[0] = 5.0  # three 1-CPU nodes join
        await limit_becomes(5)
        cpus[0] = 1.0  # four leave
        await limit_becomes(1)
        most = 0

        async def watch() -> None:
            nonlocal most
            while True:
                most = max(most, units.in_use)
                await asyncio.sleep(0.002)

        units = CapacitySource(4)
        watcher = asyncio.create_task(watch())
        naps = [functools.partial(time.sleep, 0.05)] * 4
        runner = HierarchicalTaskPoolRunner("one", naps, units, executor=executor)
        assert len(await collect(runner.run_tasks())) == 4
        watcher.cancel()
        assert most == 1  # the runner admitted one task at a time
        cpus[0] = 0.0  # a head with num_cpus=0 and no worker node: still one slot
        await asyncio.sleep(0.1)
        assert executor.capacity.limit == 1


async def test_auto_prefetch_queues_more_short_tasks_than_long_ones(ray_cluster: Any) -> None:
    """``prefetch="auto"``: no task queued in Ray before one ended, then about 20 ms
    of work per CPU: many short tasks, one long one; a fixed prefetch is kept."""
    async with RayExecutor(num_cpus=2) as exact:  # the default: every task submitted runs
        assert exact.prefetch == 0
        assert exact.capacity is not None and exact.capacity.limit == 2
    async with RayExecutor(num_cpus=2, prefetch="auto") as executor:
        assert executor.capacity is not None and executor.capacity.limit == 2  # nothing seen
        runner = HierarchicalTaskPoolRunner(
            "short", [int] * 200, CapacitySource(200), executor=executor
        )
        await collect(runner.run_tasks())
        # Grown from what it measured: how far depends on the times this machine gives
        # (a loaded one may measure ~10 ms for ``int``); the rule itself, exactly:
        assert executor.capacity.limit >= 4
        for mean, per_cpu in ((0.001, 20), (0.0001, 64), (0.015, 1), (0.5, 1)):
            executor._mean_s = mean
            assert executor._slots() == 2 * (1 + per_cpu), mean
        naps = [functools.partial(time.sleep, 0.2)] * 6
        runner = HierarchicalTaskPoolRunner("long", naps, CapacitySource(6), executor=executor)
        await collect(runner.run_tasks())
        assert executor.capacity.limit == 4  # one queued per CPU
    async with RayExecutor(num_cpus=2, prefetch=3) as fixed:
        assert fixed.capacity is not None and fixed.capacity.limit == 8
