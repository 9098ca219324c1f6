"""Leak checks: pending asyncio tasks, child processes and open file descriptors."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import psutil

__all__ = ["LeakReport", "assert_no_leaks", "assert_no_pending_tasks", "settle"]


async def settle(iterations: int = 5) -> None:
    """Let the event loop run a few iterations, so scheduled closes complete."""
    for _ in range(iterations):
        await asyncio.sleep(0)


async def assert_no_pending_tasks(iterations: int = 20) -> None:
    """Assert that no asyncio task besides the current one is left on the loop."""
    current = asyncio.current_task()
    pending: set[asyncio.Task[object]] = set()
    for _ in range(iterations):
        pending = {t for t in asyncio.all_tasks() if t is not current and not t.done()}
        if not pending:
            return
        await asyncio.sleep(0)
    raise AssertionError(f"{len(pending)} asyncio task(s) left pending: {pending!r}")


@dataclasses.dataclass(frozen=True)
class LeakReport:
    """What :func:`assert_no_leaks` saw: new child processes and file descriptors."""

    children: tuple[int, ...]
    fds: int


def _children() -> set[int]:
    """Live descendants of this process, but multiprocessing's own shared helpers
    (the forkserver, the resource tracker), which may stay as they do for the
    standard library (SPEC 6). They are told apart by pid, not by command line: every
    process the forkserver starts carries the forkserver's command line."""
    shared = _shared_pids()
    pids = set()
    for child in psutil.Process().children(recursive=True):
        if child.pid in shared:
            continue
        try:
            if child.status() == psutil.STATUS_ZOMBIE:
                continue
        except psutil.NoSuchProcess:
            continue
        pids.add(child.pid)
    return pids


def _shared(forkserver_attribute: str, tracker_attribute: str) -> set[int]:
    """An attribute (a pid, an fd) of multiprocessing's shared forkserver and resource
    tracker, for those running: they outlive any pool, as for the standard library."""
    import sys

    values = set()
    forkserver = sys.modules.get("multiprocessing.forkserver")
    if forkserver is not None:
        values.add(getattr(forkserver._forkserver, forkserver_attribute, None))
    tracker = sys.modules.get("multiprocessing.resource_tracker")
    if tracker is not None:
        values.add(getattr(tracker._resource_tracker, tracker_attribute, None))
    return {value for value in values if isinstance(value, int)}


def _shared_pids() -> set[int]:
    """The pids of the forkserver and the resource tracker."""
    return _shared("_forkserver_pid", "_pid")


def _shared_fds() -> set[int]:
    """The parent's ends of the forkserver's and the resource tracker's pipes."""
    return _shared("_forkserver_alive_fd", "_fd")


def _fd_count() -> int:
    """Open fds, minus multiprocessing's shared helpers and its shared-memory heap
    (``/dev/shm/pym-*`` arenas, kept for reuse by every later allocation)."""
    if not os.path.isdir("/proc/self/fd"):
        return 0
    shared = _shared_fds()
    count = 0
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd in shared:
            continue
        try:
            target = os.readlink(f"/proc/self/fd/{name}")
        except OSError:
            continue
        if target.startswith("/dev/shm/pym-"):
            continue
        count += 1
    return count


@asynccontextmanager
async def assert_no_leaks(grace: float = 5.0) -> AsyncIterator[None]:
    """Assert that the block leaves no pending task, child process or file descriptor.

    Children and descriptors get up to ``grace`` seconds to go away.
    """
    children_before = _children()
    fds_before = _fd_count()
    yield
    await assert_no_pending_tasks()
    deadline = time.monotonic() + grace
    while True:
        new_children = _children() - children_before
        extra_fds = _fd_count() - fds_before
        if not new_children and extra_fds <= 0:
            return
        if time.monotonic() > deadline:
            raise AssertionError(
                f"leaked: child processes {sorted(new_children)}, {max(extra_fds, 0)} fds "
                f"({LeakReport(tuple(sorted(new_children)), extra_fds)})"
            )
        await asyncio.sleep(0.05)
