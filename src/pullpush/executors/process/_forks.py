"""Starting worker processes cleanly: the threads that start them, the fork lock and
the record of the workers' fds (a child forked from this process closes every one
but its own), pidfds, and the forkserver's preload list."""

from __future__ import annotations

import concurrent.futures
import contextlib
import multiprocessing
import multiprocessing.process
import os
import threading
import weakref
from typing import Any

from . import _worker

_starter_pool: concurrent.futures.ThreadPoolExecutor | None = None
_starter_lock = threading.Lock()


def starters() -> concurrent.futures.ThreadPoolExecutor:
    """The threads that start workers: this module's own, which live as long as the
    process. ``PR_SET_PDEATHSIG`` fires when the *thread* that forked a worker ends,
    and a loop's default executor ends with its loop (``asyncio.run``): its workers
    would die with it, and the executor, still open, would start replacements."""
    global _starter_pool
    with _starter_lock:
        if _starter_pool is None:
            _starter_pool = concurrent.futures.ThreadPoolExecutor(
                min(32, usable_cpus() + 4), thread_name_prefix="pullpush-start"
            )
        return _starter_pool


def start_process(
    process: Any, child_ends: list[Any], fork: bool, keep: tuple[int, ...] = ()
) -> None:
    """Start a worker's process (on a thread: it blocks for the fork), close the
    child's ends of its pipes here, then take it out of multiprocessing's list of
    children.

    ``fork``: the child is a copy of this process, with every fd open here. The start
    holds ``_fork_lock``, so no other worker's fd is being opened or closed meanwhile
    and the child closes all of them (:func:`_after_fork_in_child`) but its own ends
    and ``keep`` (its payload arena's fd, see ``_shm.py``).

    ``Process.start()`` first polls every child in that list (``_cleanup``), from the
    thread it runs on. With the forkserver, polling reads the child's exit status from
    a pipe, and two polls of one dying worker at once (a replacement starting on a
    thread while the loop reaps the dead one) split the read: one of them sees EOF and
    records exit code 255 (seen in the stress suite, about 1 kill in 250). The executor
    reaps its own workers, on its loop only, and kills them at exit (``_kill_all``).
    """
    try:
        if fork:
            with _fork_lock:
                _forking.keep = {connection.fileno() for connection in child_ends} | set(keep)
                try:
                    process.start()
                finally:
                    _forking.keep = ()
        else:
            process.start()
    finally:
        for connection in child_ends:
            close_connection(connection)
    multiprocessing.process._children.discard(process)  # type: ignore[attr-defined]


# -- the workers' fds, and forks ---------------------------------------------------------------

_fork_lock = threading.Lock()
"""Held while a ``fork`` worker starts, and while a worker's fd is opened (and recorded)
or closed (and forgotten): a child forked from this process knows exactly which of its
fds are the workers'."""
_worker_fds: dict[int, weakref.ref[Any]] = {}
"""The fds this process holds for its workers (pipe ends, pidfds), each with its owner
(a ``Connection`` or a :class:`PidFd`, which close it), held weakly: an executor
dropped unclosed closes its fds as before."""
_forking = threading.local()
"""``keep``: the fds that the worker being forked on this thread keeps (its own ends)."""


def usable_cpus() -> int:
    """The CPUs this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def worker_pipes(context: Any) -> tuple[Any, Any, Any, Any]:
    """A worker's two pipes, their fds recorded as the workers': ``(call_reader,
    call_writer, result_reader, result_writer)``."""
    with _fork_lock:  # a child forked meanwhile knows these fds are the workers'
        call_reader, call_writer = context.Pipe(duplex=False)
        result_reader, result_writer = context.Pipe(duplex=False)
        for connection in (call_writer, result_reader, call_reader, result_writer):
            _worker_fds[connection.fileno()] = weakref.ref(connection)
    return call_reader, call_writer, result_reader, result_writer


def close_connection(connection: Any) -> None:
    """Close a worker's pipe end (a ``Connection``), forgetting its fd first."""
    with _fork_lock:
        if not connection.closed:
            _worker_fds.pop(connection.fileno(), None)
            connection.close()


class PidFd:
    """A process's pidfd (Linux >= 5.3): readable once the process has exited."""

    __slots__ = ("__weakref__", "fd")

    def __init__(self, fd: int) -> None:
        self.fd = fd

    @classmethod
    def open(cls, pid: int) -> PidFd | None:
        """``pid``'s pidfd, or ``None`` where there is none (not Linux >= 5.3), or
        the process is gone already (its sentinel says so)."""
        pidfd_open = getattr(os, "pidfd_open", None)
        if pidfd_open is None:
            return None
        with _fork_lock:
            try:
                pidfd = cls(pidfd_open(pid))
            except OSError:
                return None
            _worker_fds[pidfd.fd] = weakref.ref(pidfd)
        return pidfd

    def close(self) -> None:
        with _fork_lock:
            self._close()

    def _close(self) -> None:
        fd, self.fd = self.fd, -1
        if fd >= 0:
            _worker_fds.pop(fd, None)
            os.close(fd)

    def __del__(self) -> None:
        # Dropped unclosed (its executor was): no lock here, it may be held by the
        # thread this runs on. At worst a child forked meanwhile keeps a copy.
        with contextlib.suppress(OSError):
            self._close()


def _after_fork_in_child() -> None:
    """In any child forked from this process: close every fd of the workers but the
    ends of the worker being forked (a worker holding another's pipes or pidfd would
    keep its sibling's ends open), forget the executors (the child must not kill its
    parent's workers at its exit), and take fresh locks (a thread of the parent may
    have held them) and starter threads."""
    global _fork_lock, _starter_lock, _starter_pool
    _fork_lock = threading.Lock()
    _starter_lock = threading.Lock()
    _starter_pool = None  # its threads are the parent's
    keep = getattr(_forking, "keep", ())
    for fd, owner in list(_worker_fds.items()):
        held = owner()
        if fd not in keep and held is not None:
            with contextlib.suppress(OSError):
                if isinstance(held, PidFd):
                    held._close()
                else:
                    held.close()
    _worker_fds.clear()


def preload_forkserver() -> None:
    """Have the forkserver import the worker side before it forks any worker (when it
    starts; a server already running keeps its list), added to the list already set
    rather than replacing it (by default ``["__main__"]``)."""
    from multiprocessing import forkserver

    server = getattr(forkserver, "_forkserver", None)
    current = list(getattr(server, "_preload_modules", ["__main__"]))
    if _worker.__name__ not in current:
        forkserver.set_forkserver_preload([*current, _worker.__name__])


os.register_at_fork(after_in_child=_after_fork_in_child)
