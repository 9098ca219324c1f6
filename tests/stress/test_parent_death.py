"""Parent death: a process running a pool (its workers busy spinning, blocked in a
system call, awaiting, streaming to a consumer that stopped reading, or running C code
that holds the GIL) is SIGKILLed; its workers must be gone within 2 s."""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import sys
import textwrap
import time

import psutil
import pytest
from _stress_support import TALLY, leak_found

pytestmark = pytest.mark.stress

HERE = os.path.dirname(os.path.abspath(__file__))

PARENT = textwrap.dedent(
    """
    import asyncio, functools, sys
    import _stress_tasks as tasks
    from pullpush import CapacitySource, HierarchicalTaskPoolRunner, ProcessExecutor

    async def main(mode, start_method):
        # prefetch=0: one task per worker, so both get busy at once.
        pool = ProcessExecutor(2, start_method=start_method, credit_window=4, prefetch=0)
        runner_of = functools.partial(tasks.occupy, mode)
        if mode == "awaiting":
            runner_of = tasks.aoccupy
        runner = HierarchicalTaskPoolRunner(
            "doomed", [runner_of] * 2, CapacitySource(2), executor=pool
        )
        pids = {}
        async for envelope in runner.run_tasks():
            pids.setdefault(envelope.task_id, envelope.value)  # each task's first: its pid
            if len(pids) == 2:
                print(" ".join(map(str, sorted(pids.values()))), flush=True)
                await asyncio.sleep(3600)  # the run goes on; nobody reads its envelopes

    if __name__ == "__main__":
        asyncio.run(main(sys.argv[1], sys.argv[2]))
    """
)


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def kill_all(pids: list[int]) -> None:
    """Kill the workers (their forkserver, if any, then exits by itself)."""
    for pid in pids:
        with contextlib.suppress(psutil.NoSuchProcess):
            psutil.Process(pid).kill()


MODES = ["spinning", "blocked", "awaiting", "streaming", "holding the GIL"]
CASES = [(mode, method) for method in ("forkserver", "spawn", "fork") for mode in MODES]
"""Regression (issue 13): forkserver workers "holding the GIL" outlived their parent
(their forkserver never exited, as each of them held its "alive" pipe, and the
watchdog thread never got the GIL)."""


@pytest.mark.timeout(60)
@pytest.mark.parametrize(("mode", "start_method"), CASES)
def test_workers_are_gone_within_two_seconds_of_a_sigkill_of_their_parent(
    mode: str, start_method: str
) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([HERE, *sys.path])}
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT, mode, start_method],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    pids: list[int] = []
    try:
        assert parent.stdout is not None
        ready, _, _ = select.select([parent.stdout], [], [], 30)
        assert ready, "the parent did not get its workers busy in 30 s"
        pids = [int(pid) for pid in parent.stdout.readline().split()]
        assert len(pids) == 2 and all(alive(pid) for pid in pids), pids
        if mode == "holding the GIL":
            time.sleep(0.5)  # past the first values (50 ms), deep in the C code
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        killed = time.monotonic()
        while any(alive(pid) for pid in pids) and time.monotonic() - killed < 2.0:
            time.sleep(0.01)
        survivors = [pid for pid in pids if alive(pid)]
        TALLY.add(tasks=2, injected=1, observed=0 if survivors else 1)
        if survivors:
            raise leak_found(f"workers {survivors} outlived their SIGKILLed parent by 2 s")
    finally:
        parent.kill()
        parent.wait()
        if parent.stdout is not None:
            parent.stdout.close()
        kill_all(pids)  # whatever happened, leave nothing behind
