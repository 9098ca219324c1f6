"""An executor started and dropped without aclose() warns with ResourceWarning (as
asyncio's transports do) and lets go of its threads or worker processes."""

from __future__ import annotations

import gc
import time

import psutil
import pytest

from pullpush import InlineExecutor, ProcessExecutor, ThreadExecutor
from pullpush.testing import run


@pytest.mark.timeout(30)
def test_a_thread_executor_dropped_unclosed_warns_and_stops_its_threads() -> None:
    async def start_and_drop() -> list[object]:
        executor = ThreadExecutor(2)
        await executor.start()
        assert await executor.run(sum, [1, 2]) == 3
        return [w.thread for w in executor._workers]

    with pytest.warns(ResourceWarning, match="unclosed executor <ThreadExecutor"):
        threads = run(start_and_drop())
        gc.collect()
    for thread in threads:
        thread.join(5)  # type: ignore[attr-defined]
        assert not thread.is_alive()  # type: ignore[attr-defined]


@pytest.mark.timeout(30)
def test_a_process_executor_dropped_unclosed_warns_and_kills_its_workers() -> None:
    async def start_and_drop() -> list[int]:
        executor = ProcessExecutor(1)
        await executor.start()
        assert await executor.run(sum, [1, 2]) == 3
        return executor.pids

    with pytest.warns(ResourceWarning, match="unclosed executor <ProcessExecutor"):
        pids = run(start_and_drop())
        gc.collect()
    deadline = time.monotonic() + 5
    while any(psutil.pid_exists(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not any(psutil.pid_exists(p) for p in pids)


def test_closed_never_started_and_inline_executors_do_not_warn() -> None:
    async def use() -> None:
        async with ThreadExecutor(1) as executor:
            await executor.run(sum, [1])
        inline = InlineExecutor()
        await inline.start()  # nothing to leak: no warning

    run(use())
    ThreadExecutor(1)  # never started
    ProcessExecutor(1)
    gc.collect()  # filterwarnings=error turns any warning into a failure
