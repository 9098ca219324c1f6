"""Worker process lifecycle, the parent's side: start a worker, watch for its end,
reap it, escalate a stuck task's cancel (SIGTERM, then SIGKILL), replace a worker
that died and re-queue or fail its tasks."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections import OrderedDict, deque
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from ..._exceptions import (
    BrokenExecutorError,
    WorkerCrashedError,
)
from . import _forks, _shm, _worker
from . import _protocol as wire

if TYPE_CHECKING:
    from ._handle import _ProcTask


_INIT_FAILURES_ALLOWED = 3

# Worker states.
_STARTING, _READY, _RETIRING, _STOPPING, _DEAD = range(5)


class _Worker:
    """The parent's side of one worker process."""

    def __init__(self, index: int, credit_window: int) -> None:
        self.index = index
        self.credit_batch = max(1, credit_window // 4)
        self.state = _STARTING
        self.state_before_exit = _STARTING
        self.process: Any = None
        self.pid: int | None = None
        self.writer: wire.FrameWriter
        self.reader: wire.FrameReader
        self.connections: list[Any] = []
        self.running: Any = None
        # Shared with the process: the number (seq) of the last call it started.
        self.started: Any = None
        # A task run again after a crash lost its result (see _after_exit) runs alone:
        # no other task is sent to its worker until it ended.
        self.isolating: _ProcTask | None = None
        # Invariant: the tasks sent to this worker and not ended, by wire id, in send order.
        self.tasks: dict[int, _ProcTask] = {}
        # Invariant: how many of ``tasks`` are parked in receive() (they do not count
        # against its running slots).
        self.waiting = 0
        # Invariant: the function ids this worker has cached (least recent first).
        self.defined: OrderedDict[int, None] = OrderedDict()
        self.sent = 0
        # Invariant: over the tasks in ``tasks``: the bytes of their calls, the sum of
        # their known estimates, and how many had none.
        self.bytes = 0
        self.seconds = 0.0
        self.unknown = 0
        # Invariant: how many of ``tasks`` wait behind another of them (successors of
        # the capacity hand-off, whose predecessor is here and has not ended).
        self.successors = 0
        self.flush_scheduled = False
        self.writer_waiting = False
        self.reading = False
        self.sentinel: int | None = None
        self.pidfd: _forks.PidFd | None = None
        # Whether _on_exit is registered for the process's end; whether it ran.
        self.watching = False
        self.exit_seen = False
        # Ids of tasks whose cancellation led to terminating this worker.
        self.terminating_for: set[int] = set()
        self.kill_timer: asyncio.TimerHandle | None = None
        self.exited: asyncio.Future[None] | None = None

    def __repr__(self) -> str:
        state = ["starting", "ready", "retiring", "stopping", "dead"][self.state]
        return f"<worker {self.index} pid={self.pid} {state} tasks={len(self.tasks)}>"


class _SpawnMixin:
    """The executor's worker processes."""

    if TYPE_CHECKING:  # what this room uses of the executor
        start_method: str
        tasks_per_worker: int
        max_waiting: int
        credit_window: int
        cancel_grace: float
        kill_grace: float
        max_crash_retries: int
        max_worker_memory: int | None
        measure_memory: bool
        _closed: bool
        _arena: _shm.Arena | None
        _broken: BaseException | None
        _context: Any
        _early_deaths: int
        _initializer: bytes | None
        _loop: asyncio.AbstractEventLoop | None
        _pending: deque[_ProcTask]
        _spawning: set[asyncio.Task[None]]
        _unstarting: bool
        _workers: list[_Worker]
        _workers_lost: int
        _workers_started: int

        def _break(self, error: BaseException) -> None: ...
        def _dispatch(self) -> None: ...
        def _fail(self, task: _ProcTask, error: BaseException | None) -> None: ...
        def _flush(self, worker: _Worker) -> None: ...
        def _on_readable(self, worker: _Worker) -> None: ...
        def _schedule_flush(self, worker: _Worker) -> None: ...

    def _prepare(self, worker: _Worker) -> None:
        """Create ``worker``'s pipes and process object; tasks are sent to it once it
        says READY."""
        context = self._context
        call_reader, call_writer, result_reader, result_writer = _forks.worker_pipes(context)
        # A slot per running task, and per waiting one (it stays resident: a crash of its
        # worker fails it).
        slots = self.tasks_per_worker + self.max_waiting
        worker.running = context.RawArray("q", [-1] * slots)
        worker.started = context.RawValue("q", -1)
        options = {
            "tasks_per_worker": self.tasks_per_worker,
            "max_waiting": self.max_waiting,
            "started": worker.started,
            "credit_window": self.credit_window,
            "max_memory": self.max_worker_memory,
            "measure_memory": self.measure_memory,
            "initializer": self._initializer,
            "parent_pid": os.getpid(),
            "arena": None if self._arena is None else self._arena.handle(),
        }
        worker.process = context.Process(
            target=_worker.main,
            args=(call_reader, result_writer, worker.running, options),
            name=f"pullpush-worker-{worker.index}",
        )
        call_fd, result_fd = call_writer.fileno(), result_reader.fileno()
        os.set_blocking(call_fd, False)
        os.set_blocking(result_fd, False)
        wire.set_pipe_size(call_fd)
        # The parent's ends, then the child's ends (closed once the child has them).
        worker.connections = [call_writer, result_reader, call_reader, result_writer]
        worker.writer = wire.FrameWriter(call_fd)
        worker.reader = wire.FrameReader(result_fd)
        assert self._loop is not None
        worker.exited = self._loop.create_future()

    async def _spawn(self, worker: _Worker) -> None:
        """Start ``worker``'s process (prepared by :meth:`_prepare`)."""
        loop = self._loop
        assert loop is not None
        # The child's ends: the thread that starts the process closes them after.
        child_ends = worker.connections[2:]
        try:
            started = loop.run_in_executor(
                _forks.starters(),
                _forks.start_process,
                worker.process,
                child_ends,
                self.start_method == "fork",
                () if self._arena is None else (self._arena.fd,),
            )
        except BaseException:  # no thread to start it (the loop or interpreter is ending)
            self._release(worker)
            if worker.exited is not None and not worker.exited.done():
                worker.exited.set_result(None)
            raise
        del worker.connections[2:]
        try:
            await asyncio.shield(started)
        except BaseException:
            # Failed or cancelled: the start goes on in its thread all the same. Once
            # it is done, kill and reap what it started, whatever happens meanwhile.
            await _to_the_end(self._abandon_start(worker, started))
            raise
        self._workers_started += 1
        worker.pid = worker.process.pid
        worker.sentinel = worker.process.sentinel
        if worker.state == _DEAD:  # closed while starting
            return
        loop.add_reader(worker.reader.fd, self._on_readable, worker)
        worker.reading = True
        self._watch_exit(worker)
        self._schedule_flush(worker)
        self._dispatch()

    async def _abandon_start(self, worker: _Worker, started: asyncio.Future[None]) -> None:
        """``worker``'s start failed or was cancelled: once the thread starting it is
        done, kill its process if it started, reap it, and close its fds."""
        await asyncio.wait([started])
        process = worker.process
        if not started.cancelled() and started.exception() is None and process is not None:
            process.kill()
            await _wait_for_exits([process])
        self._release(worker)
        if worker.exited is not None and not worker.exited.done():
            worker.exited.set_result(None)

    def _watch_exit(self, worker: _Worker) -> None:
        """Have :meth:`_on_exit` called when ``worker``'s process ends.

        Its pidfd (Linux >= 5.3) says so whatever other processes hold: a sentinel is
        a pipe or socket whose far end another process may hold open (a ``fork``
        worker started at the same time as another inherits its fds). The sentinel is
        watched too, where there is no pidfd; and a process sent SIGKILL is looked at
        until it is gone (:meth:`_confirm_exit`)."""
        loop = self._loop
        assert loop is not None and worker.pid is not None and worker.sentinel is not None
        worker.pidfd = _forks.PidFd.open(worker.pid)
        if worker.pidfd is not None:
            loop.add_reader(worker.pidfd.fd, self._on_exit, worker)
        loop.add_reader(worker.sentinel, self._on_exit, worker)
        worker.watching = True

    def _unwatch_exit(self, worker: _Worker) -> None:
        loop = self._loop
        if worker.watching and loop is not None:
            worker.watching = False
            if worker.pidfd is not None:
                loop.remove_reader(worker.pidfd.fd)
            if worker.sentinel is not None:
                loop.remove_reader(worker.sentinel)

    def _respawn(self, index: int) -> None:
        if self._closed or self._broken is not None or self._unstarting:
            return
        worker = _Worker(index, self.credit_window)
        self._workers[index] = worker
        self._prepare(worker)
        task = asyncio.ensure_future(self._spawn(worker))
        self._spawning.add(task)
        task.add_done_callback(self._spawned)

    def _spawned(self, task: asyncio.Task[None]) -> None:
        self._spawning.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self._break(task.exception())  # type: ignore[arg-type]

    def _release(self, worker: _Worker) -> None:
        """Forget a worker's fds and reap its process."""
        loop = self._loop
        if loop is not None:
            if worker.reading:
                loop.remove_reader(worker.reader.fd)
                worker.reading = False
            if worker.writer_waiting:
                loop.remove_writer(worker.writer.fd)
                worker.writer_waiting = False
        self._unwatch_exit(worker)
        if worker.kill_timer is not None:
            worker.kill_timer.cancel()
            worker.kill_timer = None
        for connection in worker.connections:
            _forks.close_connection(connection)
        worker.connections = []
        if worker.pidfd is not None:
            worker.pidfd.close()
            worker.pidfd = None
        process, worker.process = worker.process, None
        if process is not None:
            with contextlib.suppress(ValueError):
                if process.exitcode is not None:
                    process.join(0)
                    process.close()
        worker.state = _DEAD

    def _retire_if_idle(self, worker: _Worker) -> None:
        if worker.state == _RETIRING and not worker.tasks:
            worker.state = _STOPPING
            worker.writer.send((wire.STOP,))
            self._flush(worker)

    def _escalate(self, task: _ProcTask) -> None:
        """A cancelled task did not end in time: if it has run all along, its worker is
        stuck in it. Terminate that worker. A task that had not started (queued behind
        another in its worker, or in a worker still starting) is never a reason to
        kill the worker: it is dropped when the worker reads the CANCEL, or, if it
        started meanwhile, gets a whole grace from then; so look again later."""
        task.escalation = None
        worker = task.worker
        if task.ended or worker is None or worker.state == _DEAD or worker.process is None:
            return
        running = task.wire_id in worker.running[:]
        if not (running and task.seen_running):
            task.seen_running = running
            if self._loop is not None:
                task.escalation = self._loop.call_later(self.cancel_grace, self._escalate, task)
            return
        worker.terminating_for.add(task.wire_id)
        worker.process.terminate()
        if worker.kill_timer is None and self._loop is not None:
            worker.kill_timer = self._loop.call_later(self.kill_grace, self._kill, worker)

    def _kill(self, worker: _Worker) -> None:
        worker.kill_timer = None
        if worker.state != _DEAD and worker.process is not None:
            worker.process.kill()
            self._confirm_exit(worker)

    def _confirm_exit(self, worker: _Worker) -> None:
        """``worker`` was sent SIGKILL: should neither its pidfd nor its sentinel say
        it ended (no pidfd, and the sentinel held open by another process), see for
        ourselves until it has, so that whatever waits for it (a cancelled task, a
        closing executor) always ends."""
        if worker.exit_seen or worker.state == _DEAD or worker.process is None:
            return
        if worker.process.exitcode is not None:
            self._on_exit(worker)
        elif self._loop is not None:
            self._loop.call_later(0.05, self._confirm_exit, worker)

    # -- a worker exits ----------------------------------------------------------------------------

    def _on_exit(self, worker: _Worker) -> None:
        if worker.exit_seen:  # its pidfd and its sentinel both said so
            return
        worker.exit_seen = True
        self._unwatch_exit(worker)
        worker.state_before_exit = worker.state
        worker.state = _STOPPING  # no new task goes to it
        self._workers_lost += 1
        if worker.reading:
            self._on_readable(worker)  # what it wrote before dying is still valid
        self._reap(worker, 0)

    def _reap(self, worker: _Worker, attempts: int) -> None:
        """Collect the exit status; the sentinel can fire an instant before the kernel
        lets the parent reap the process, and a forkserver worker's pidfd before the
        forkserver has reaped it and sent its status: retry (2 ms apart for 0.5 s, then
        20 ms apart up to 10 s in all) rather than block."""
        process = worker.process
        if process is None:  # released meanwhile (by an undone start)
            return
        process.join(0)
        if process.exitcode is None and attempts < 725 and self._loop is not None:
            delay = 0.002 if attempts < 250 else 0.02
            self._loop.call_later(delay, self._reap, worker, attempts + 1)
            return
        self._after_exit(worker)

    def _after_exit(self, worker: _Worker) -> None:
        process = worker.process
        code = process.exitcode
        signal = -code if code is not None and code < 0 else None
        exitcode = None if signal is not None else code
        running = {worker.running[i] for i in range(len(worker.running))} - {-1}
        # The calls it started are those numbered up to this (they start in order).
        started = -1 if worker.started is None else worker.started.value
        # Successors that cannot have started (the capacity hand-off): waiting for a
        # task that was running, or that had not started itself. With
        # tasks_per_worker > 1 calls behind them may have started first, so a number
        # up to ``started`` does not say they ran. (In send order: predecessors first.)
        waited: set[int] = set()
        if worker.successors:
            for task in worker.tasks.values():
                before = task.after
                if before is not None and (
                    before.wire_id in running or before.wire_id in waited or before.seq > started
                ):
                    waited.add(task.wire_id)
        orphans = []
        for task in list(worker.tasks.values()):
            # Started: running now, or streamed and then lost its end with the worker.
            # Any other task is sent again: it never started, or it finished and its
            # result was lost unsent (then it runs twice: at least once on a crash,
            # up to max_crash_retries times).
            if task.wire_id in running or task.streamed:
                # A cancelled task's cancel error wins (the crash as its context).
                self._fail(task, WorkerCrashedError(task.task_id, worker.pid, exitcode, signal))
            else:
                orphans.append(task)
        worker.tasks.clear()
        self._release(worker)
        if worker.exited is not None and not worker.exited.done():
            worker.exited.set_result(None)
        if (
            worker.state_before_exit == _STARTING
            and not self._closed
            and not worker.terminating_for
        ):
            # It died before it could say it was ready (and not because it was told to).
            self._early_deaths += 1
            if self._early_deaths >= _INIT_FAILURES_ALLOWED:
                how = f"exit code {code}" if code is None or code >= 0 else f"signal {-code}"
                self._break(
                    RuntimeError(
                        f"{self._early_deaths} worker processes in a row died before they "
                        f"were ready ({how}); see their output above"
                    )
                )
        for task in reversed(orphans):
            # Sent but not started, or run but its result lost: another worker runs it.
            task.worker = None
            if task.cancel_requested:
                self._fail(task, None)
                continue
            if task.seq <= started and task.wire_id not in waited:
                # It ran, and its result was lost. Maybe the worker died of it, maybe of
                # a task that ran after it before their results were sent: it runs
                # again alone (see _dispatch), so a crash then is its own.
                task.crashes += 1
                if task.crashes > self.max_crash_retries:
                    retries = self.max_crash_retries
                    self._fail(
                        task,
                        WorkerCrashedError(task.task_id, worker.pid, exitcode, signal, retries),
                    )
                    continue
            self._pending.appendleft(task)
        if not self._closed:
            self._respawn(worker.index)
        if self._broken is not None:
            while self._pending:
                self._fail(self._pending.popleft(), BrokenExecutorError(str(self._broken)))
        self._dispatch()

    # -- interpreter exit --------------------------------------------------------------------------

    def _kill_all(self) -> None:
        """At interpreter exit: make sure no worker outlives this process."""
        for worker in self._workers:
            for connection in worker.connections:
                with contextlib.suppress(OSError):
                    _forks.close_connection(connection)
            if worker.process is not None and worker.state != _DEAD:
                with contextlib.suppress(Exception):
                    worker.process.kill()
                    worker.process.join(1.0)


async def _to_the_end(coroutine: Coroutine[Any, Any, None]) -> None:
    """Run ``coroutine`` to its end even if the caller is cancelled meanwhile; the
    cancellation is raised once it is done."""
    task = asyncio.ensure_future(coroutine)
    cancelled: asyncio.CancelledError | None = None
    while True:
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError as error:
            if task.done():
                raise
            cancelled = error
            continue
        break
    if cancelled is not None:
        raise cancelled


async def _wait_for_exits(processes: list[Any], timeout: float = 5.0) -> None:
    """Wait (polling, the loop free) until ``processes``, sent SIGKILL, have exited and
    their exit status was collected; at most ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while any(p.exitcode is None for p in processes) and time.monotonic() < deadline:  # noqa: ASYNC110 - a process has no awaitable end here
        await asyncio.sleep(0.005)
