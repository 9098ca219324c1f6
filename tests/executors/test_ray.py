"""RayExecutor on a real local Ray (skipped when ray is not installed; it is not in
the ``dev`` extra). One Ray instance serves the whole module, started once: Ray
takes seconds to start. Runners are closures, so cloudpickle ships them by value."""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from collections.abc import AsyncGenerator, Generator, Iterator
from pathlib import Path
from typing import Any

import pytest

from pullpush import (
    CapacitySource,
    EnvelopeType,
    Final,
    HierarchicalTaskPoolRunner,
    RayExecutor,
    TaskProgressEnvelope,
    TaskTimeoutError,
)
from pullpush.testing import collect


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[Any]:
    """A local Ray with 2 CPUs for the module, started on the main thread."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
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
        assert await wait_for_file(progress) <= 4 * window + 2
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
