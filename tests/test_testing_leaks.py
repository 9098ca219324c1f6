"""pullpush.testing.assert_no_leaks: child processes and file descriptors left behind."""

from __future__ import annotations

import multiprocessing
import time

import pytest

from pullpush.testing import assert_no_leaks

pytestmark = pytest.mark.timeout(60)


@pytest.mark.parametrize("start_method", ["forkserver", "spawn"])
async def test_fix_a_child_started_by_the_forkserver_is_seen_as_a_leak(start_method: str) -> None:
    # Forkserver children carry the forkserver's command line, which the check used
    # to skip, so it never saw a worker left behind by the default start method.
    process = multiprocessing.get_context(start_method).Process(target=time.sleep, args=(60,))
    try:
        with pytest.raises(AssertionError, match=r"leaked: child processes \[\d+\]"):
            async with assert_no_leaks(grace=0.2):
                process.start()
    finally:
        process.kill()
        process.join()
        process.close()


async def test_the_shared_forkserver_and_resource_tracker_are_not_leaks() -> None:
    context = multiprocessing.get_context("forkserver")
    async with assert_no_leaks(grace=0.2):
        # Starting the first forkserver child starts the forkserver and the resource
        # tracker too; both may stay (SPEC 6), the child may not.
        process = context.Process(target=time.sleep, args=(0,))
        process.start()
        process.join()
        process.close()
