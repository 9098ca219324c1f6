"""A RayExecutor that starts its own local Ray shuts it down when closed (skipped
when ray is not installed). Sync test on one loop: starting Ray takes seconds."""

from __future__ import annotations

import threading

import pytest

from pullpush import RayExecutor
from pullpush.testing import run


def test_an_executor_starts_a_local_ray_and_shuts_down_only_its_own() -> None:
    ray = pytest.importorskip("ray")
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
