"""The Ray that pullpush starts: shared by the executors of the process, shut down
when the last closes (skipped when ray is not installed, unless PULLPUSH_REQUIRE_RAY
is set). Sync tests on one loop: starting Ray takes seconds."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest
from _ray_support import need_ray, raylets

from pullpush import CapacitySource, HierarchicalTaskPoolRunner, RayExecutor
from pullpush.testing import collect, run


def test_an_executor_starts_a_local_ray_and_shuts_down_only_its_own() -> None:
    ray = need_ray()
    if ray.is_initialized():
        pytest.skip("this process is already connected to Ray")
    threads_before = set(threading.enumerate())

    async def scenario() -> None:
        async with RayExecutor(num_cpus=1, include_dashboard=False, log_to_driver=False) as ex:
            assert ray.is_initialized()
            assert ex.capacity is not None and ex.capacity.limit == 1
            assert await ex.run(lambda: 6 * 7) == 42
        assert not ray.is_initialized()

    run(scenario(), loop="uvloop")
    # The thread that hosted Ray (it must outlive ray.init, see _RayHost) is gone.
    assert not [t for t in set(threading.enumerate()) - threads_before if t.name == "pullpush-ray"]


INIT = {"include_dashboard": False, "log_to_driver": False}


@pytest.mark.timeout(90)
def test_overlapping_runs_share_one_ray_and_the_last_to_close_stops_it(
    tmp_path: Path,
) -> None:
    """Two runs with executor="ray" start at the same moment (starts are serialised:
    one Ray), the one that started Ray ends first without disturbing the other,
    whose task still ends; a third executor with other Ray options is refused; after
    the last closes, Ray is down and no raylet of ours is left."""
    ray = need_ray()
    if ray.is_initialized():
        pytest.skip("this process is already connected to Ray")
    go_on = tmp_path / "go-on"

    def quick() -> str:
        return "quick"

    def waits() -> Generator[str, None, str]:
        yield "started"
        while not go_on.exists():
            time.sleep(0.01)
        return "slow"

    async def scenario() -> None:
        first = RayExecutor(num_cpus=2, **INIT)
        second = RayExecutor(num_cpus=2, **INIT)
        await asyncio.gather(first.start(), second.start())  # one ray.init
        assert ray.is_initialized()
        with pytest.raises(ValueError, match="runtime_env"):
            await RayExecutor(num_cpus=2, runtime_env={"env_vars": {"X": "1"}}, **INIT).start()
        slow = second.stream(waits)
        assert (await slow.__anext__()).value == "started"
        assert await first.run(quick) == "quick"
        await first.aclose()  # the executor that started Ray closes first
        assert ray.is_initialized()
        go_on.touch()
        assert [e.value async for e in slow] == ["slow"]
        assert await second.run(quick) == "quick"
        await second.aclose()
        assert not ray.is_initialized()

    run(scenario(), loop="uvloop")
    assert raylets() == []  # no Ray process of ours is left


@pytest.mark.timeout(90)
def test_runs_with_executor_ray_started_together_share_one_ray() -> None:
    ray = need_ray()
    if ray.is_initialized():
        pytest.skip("this process is already connected to Ray")

    async def one_run(label: str) -> list[Any]:
        runner = HierarchicalTaskPoolRunner(
            label, [lambda: label], CapacitySource(1), executor="ray"
        )
        return [e.value for e in await collect(runner.run_tasks())]

    async def scenario() -> None:
        results = await asyncio.gather(one_run("a"), one_run("b"))
        assert results == [["a"], ["b"]]
        assert not ray.is_initialized()

    run(scenario(), loop="uvloop")
    assert raylets() == []
