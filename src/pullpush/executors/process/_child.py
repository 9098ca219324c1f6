"""A worker process's hygiene: it dies with the executor's process, returns no freed
memory it will need again, and measures its own memory."""

from __future__ import annotations

import contextlib
import ctypes
import os
import select
import signal
import sys
import threading

__all__ = [
    "PEAK",
    "PeakMemory",
    "die_with_parent",
    "keep_freed_memory",
    "rss_bytes",
    "watch_parent",
]


def die_with_parent(parent_pid: int | None) -> None:
    """Ask Linux to SIGKILL this process when its parent dies, and make sure that
    happens when the executor's process (``parent_pid``) dies.

    The parent is the executor's process, or with the forkserver the forkserver. The
    forkserver exits once every holder of its "alive" pipe is gone: the executor's
    process and, unless they close it, every worker (each gets a copy). So a worker
    closes its copy; then the executor's death ends the forkserver, which ends the
    worker through the kernel, even while a task holds the GIL.
    """
    if not sys.platform.startswith("linux"):
        return
    parent = os.getppid()
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)
    if parent != parent_pid and not leave_forkserver():
        os._exit(1)  # neither the executor's process nor a forkserver: a reaper


MMAP_THRESHOLD = 32 * 2**20
"""Bytes from which glibc's malloc maps a block of its own in a worker (see
:func:`keep_freed_memory`)."""
TRIM_THRESHOLD = 64 * 2**20
"""Bytes of freed memory a worker's glibc malloc keeps for reuse before returning it."""


def keep_freed_memory() -> None:
    """Make glibc's malloc reuse the memory of a freed large buffer rather than map
    and fault in fresh pages for the next one (Linux).

    A worker receiving chunks allocates a few MiB per call (the frame, the ``bytes``
    built from it) and frees them when the call ends. By default glibc returns such
    blocks to the kernel (``munmap``, or trimming the heap) and the next call faults
    every page in again: measured, that doubled a worker's CPU time per GiB received
    (1.27 s instead of 0.55). Blocks up to :data:`MMAP_THRESHOLD` now come from the
    heap, and up to :data:`TRIM_THRESHOLD` bytes of freed heap stay resident for reuse.
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return
    m_trim_threshold, m_mmap_threshold = -1, -3
    mallopt(m_mmap_threshold, MMAP_THRESHOLD)
    mallopt(m_trim_threshold, TRIM_THRESHOLD)


def leave_forkserver() -> bool:
    """If this process is a forkserver's child, close its copy of the forkserver's
    "alive" fd (see :func:`die_with_parent`) and return ``True``.

    A forkserver's child has the fd but not the server's pid (it never launched it);
    so a task here that starts forkserver processes gets a forkserver of its own."""
    from multiprocessing import forkserver

    server = getattr(forkserver, "_forkserver", None)
    fd = getattr(server, "_forkserver_alive_fd", None)
    if server is None or fd is None or getattr(server, "_forkserver_pid", None) is not None:
        return False
    with contextlib.suppress(OSError):
        os.close(fd)
    server._forkserver_alive_fd = None
    return True


def watch_parent(call_fd: int) -> None:
    """Exit as soon as the parent is gone, even while a task keeps this process busy.

    ``PR_SET_PDEATHSIG`` fires when the *parent process* dies, and a forkserver
    worker's parent is the forkserver, which outlives the executor's process. The
    loop sees the call pipe's end only when it gets a turn, which a task stuck in
    CPU-bound or blocking code never gives it. So a daemon thread waits in ``poll()``
    for the pipe's hang-up (asking for no event reads nothing: POLLHUP is always
    reported) and ends the process at once. The parent closes its end only when the
    worker is done with, or when the parent itself dies.
    """

    def watch() -> None:
        poller = select.poll()
        poller.register(call_fd, 0)
        while True:
            for _, event in poller.poll():
                if event & select.POLLNVAL:
                    return  # this process closed the pipe: it is exiting anyway
                if event & (select.POLLHUP | select.POLLERR):
                    os._exit(1)

    threading.Thread(target=watch, name="pullpush-parent-watch", daemon=True).start()


class PeakMemory:
    """Peak resident memory of this process over a window (Linux: reset the kernel's
    high-water mark through ``/proc/self/clear_refs``, read ``VmHWM``)."""

    def available(self) -> bool:
        try:
            self.reset()
            return self.read_mib() is not None
        except OSError:
            return False

    def reset(self) -> None:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")

    def read_mib(self) -> float | None:
        with open("/proc/self/status", "rb") as status:
            for line in status:
                if line.startswith(b"VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
        return None


PEAK = PeakMemory()


def rss_bytes() -> int | None:
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        try:
            import psutil

            return int(psutil.Process().memory_info().rss)
        except Exception:
            return None
