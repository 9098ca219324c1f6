"""The Ray that pullpush starts: shared by the executors of the process, shut down
when the last closes (skipped when ray is not installed, unless PULLPUSH_REQUIRE_RAY
is set). Sync tests on one loop: starting Ray takes seconds."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
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


@pytest.fixture(autouse=True)
def no_ray_kept_after_the_test() -> Generator[None, None, None]:
    """A Ray kept up idle by a test is stopped after it (other modules start their own)."""
    yield
    RayExecutor.stop_idle_ray()


@pytest.mark.timeout(90)
def test_runs_with_executor_ray_share_one_ray_kept_up_between_runs() -> None:
    """Two runs with executor="ray" started together share one Ray; it stays up
    after them (keep_alive), a later run takes it again instead of starting another,
    and stop_idle_ray stops it, leaving no Ray process of ours."""
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
        assert ray.is_initialized()  # kept up for the next run
        node = ray.get_runtime_context().get_node_id()
        assert await one_run("c") == ["c"]
        assert ray.get_runtime_context().get_node_id() == node  # the same Ray
        assert RayExecutor.stop_idle_ray() is True
        assert not ray.is_initialized()
        assert RayExecutor.stop_idle_ray() is False  # nothing left to stop

    run(scenario(), loop="uvloop")
    assert raylets() == []


@pytest.mark.timeout(90)
def test_a_kept_ray_stops_after_its_keep_alive_unless_taken_again() -> None:
    ray = need_ray()
    if ray.is_initialized():
        pytest.skip("this process is already connected to Ray")

    async def scenario() -> None:
        async with RayExecutor(num_cpus=1, keep_alive=0.5, **INIT) as executor:
            assert await executor.run(lambda: 1) == 1
        assert ray.is_initialized()
        # Taken again within keep_alive: in use, it is not stopped meanwhile.
        async with RayExecutor(num_cpus=1, keep_alive=0.5, **INIT) as executor:
            await asyncio.sleep(1.0)
            assert ray.is_initialized()
            assert await executor.run(lambda: 2) == 2
        while ray.is_initialized():
            await asyncio.sleep(0.05)

    run(scenario(), loop="uvloop")
    deadline = time.monotonic() + 30
    while raylets() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert raylets() == []


@pytest.mark.timeout(120)
def test_a_ray_kept_up_idle_makes_way_for_other_options() -> None:
    """A Ray kept up idle is restarted for an executor with other Ray options (not
    refused as one in use would be)."""
    ray = need_ray()
    if ray.is_initialized():
        pytest.skip("this process is already connected to Ray")

    async def scenario() -> None:
        async with RayExecutor(num_cpus=2, keep_alive=None, **INIT) as executor:
            assert await executor.run(lambda: 1) == 1
        assert ray.is_initialized() and ray.cluster_resources()["CPU"] == 2
        async with RayExecutor(num_cpus=1, **INIT) as executor:
            assert ray.cluster_resources()["CPU"] == 1
            assert await executor.run(lambda: 2) == 2
        assert not ray.is_initialized()

    run(scenario(), loop="uvloop")
    assert raylets() == []


@pytest.mark.timeout(120)
def test_the_interpreter_exit_stops_a_ray_kept_up(tmp_path: Path) -> None:
    """A Ray kept up by executor="ray" does not outlive the interpreter."""
    need_ray()
    script = tmp_path / "kept.py"
    script.write_text(
        textwrap.dedent(
            """
            import os, psutil
            from pullpush import CapacitySource, HierarchicalTaskPoolRunner
            from pullpush.testing import collect, run

            async def main():
                runner = HierarchicalTaskPoolRunner(
                    "x", [lambda: 1], CapacitySource(1), executor="ray"
                )
                assert [e.value for e in await collect(runner.run_tasks())] == [1]

            run(main())
            def is_ray(kid):
                try:  # (a zombie: an actor's worker killed at the close, not reaped yet)
                    return "ray" in " ".join(kid.cmdline())
                except psutil.Error:
                    return False

            kids = psutil.Process().children(recursive=True)
            print(" ".join(str(k.pid) for k in kids if is_ray(k)))
            """
        )
    )
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=100, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    pids = [int(pid) for pid in done.stdout.split()]
    assert pids  # Ray was still up when the script ended
    deadline = time.monotonic() + 30
    while (left := [p for p in pids if _alive(p)]) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert left == []


def _alive(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False
