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
    # multiprocessing's own shared helpers (forkserver, resource tracker) may stay,
    # as they do for the standard library (SPEC 6).
    pids = set()
    for child in psutil.Process().children(recursive=True):
        try:
            cmdline = " ".join(child.cmdline())
        except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
            continue
        if "forkserver" in cmdline or "resource_tracker" in cmdline:
            continue
        pids.add(child.pid)
    return pids


def _fd_count() -> int:
    return len(os.listdir(f"/proc/{os.getpid()}/fd")) if os.path.isdir("/proc/self/fd") else 0


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
