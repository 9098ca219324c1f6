"""Library bugs the stress suite found and that are not fixed yet: each test fails
while its bug is open (``xfail(strict=True)``), so fixing the bug makes it XPASS and
asks for the marker to go."""

from __future__ import annotations

import functools
from collections import Counter
from pathlib import Path

import _stress_tasks as tasks
import pytest

from pullpush import CapacitySource, EnvelopeType, HierarchicalTaskPoolRunner, ProcessExecutor
from pullpush.testing import collect

pytestmark = pytest.mark.stress


@pytest.mark.xfail(
    strict=True,
    reason="process executor: a task that finished in a worker runs again when the next "
    "task kills that worker before its output was flushed (its slot is already clear, "
    "so the parent re-queues it as not started)",
)
@pytest.mark.timeout(60)
@pytest.mark.parametrize("loop_kind", ["asyncio"])
async def test_a_task_that_finished_is_not_run_again_when_the_next_kills_its_worker(
    loop_kind: str, tmp_path: Path
) -> None:
    path = tmp_path / "runs"
    runners = [
        functools.partial(tasks.record_run, str(path), "plain"),
        functools.partial(tasks.kill, "os._exit"),
        functools.partial(tasks.record_stream, str(path), "stream"),
        functools.partial(tasks.kill, "os._exit"),
    ]
    async with ProcessExecutor(1, prefetch=4) as pool:
        runner = HierarchicalTaskPoolRunner("rerun", runners, CapacitySource(4), executor=pool)
        envelopes = await collect(runner.run_tasks())
    runs = Counter(path.read_text().split())
    intermediate = [e.value for e in envelopes if e.type is EnvelopeType.INTERMEDIATE]
    assert intermediate == [0, 1, 2]  # one per yield
    assert runs == {"plain": 1, "stream": 1}  # each task ran once
