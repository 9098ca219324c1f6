"""Sending tasks to workers: the least loaded ready worker with room, the adaptive
prefetch, and the call pipes' flushes (once per loop turn)."""

from __future__ import annotations

import asyncio
from collections import deque
from typing import TYPE_CHECKING

from ...capacity import CapacitySource
from . import _pickling as pickling
from . import _protocol as wire
from . import _shm
from ._handle import send_message
from ._spawn import _DEAD, _READY, _RETIRING, _STARTING

if TYPE_CHECKING:
    from ._handle import _ProcTask
    from ._spawn import _Worker


_FUNCTIONS_PER_WORKER = 512
_PREFETCH_MAX = 256
_PREFETCH_TARGET = 0.004  # seconds of queued work per worker the adaptive prefetch aims at
_PREFETCH_BYTES = 4 * 2**20
"""Bytes of calls a worker holds (running and queued) beyond which it is sent no more
but its running ones and one ahead (see ``ProcessExecutor._dispatch``)."""
_KINDS_KEPT = 4096  # task kinds whose durations the adaptive prefetch remembers


class _DispatchMixin:
    """The executor's dispatch and adaptive prefetch."""

    if TYPE_CHECKING:  # what this room uses of the executor
        tasks_per_worker: int
        max_tasks_per_worker: int | None
        _adaptive: bool
        _arena: _shm.Arena | None
        _capacity: CapacitySource
        _durations: dict[int, float]
        _loop: asyncio.AbstractEventLoop | None
        _pending: deque[_ProcTask]
        _prefetch: int
        _seconds_per_task: float | None
        _workers: list[_Worker]

        def _slots(self) -> int: ...

    def _report_start(self, task: _ProcTask) -> None:
        """Tell the submitter the task started (once)."""
        starts, task.starts = task.starts, None
        if starts is not None and not task.ended:
            starts(task.task_id)

    def _dispatch(self) -> None:
        """Send pending tasks to the least loaded ready workers that have room.

        A worker has room for ``tasks_per_worker`` running tasks and ``prefetch`` queued
        ones. The first queued one (one ahead, when ``prefetch`` allows any) always
        goes; each further one only
        while the calls the worker holds stay within ``_PREFETCH_BYTES`` with it, and,
        with ``prefetch="auto"``, while the work it holds is expected to take at most
        ``_PREFETCH_TARGET`` seconds -- by the durations of each kind of task (its
        function), so that a prefetch learned on short tasks does not queue a long or
        new kind of task behind others: a worker busy with a task of a kind never seen
        to end is sent none beyond one ahead.
        """
        pending = self._pending
        if not pending:
            return
        workers = self._workers
        # While a worker is starting, ready ones take no prefetch: the tasks it will
        # take wait here rather than pile up behind the first ready worker's work.
        starting = any(w.state == _STARTING for w in workers)
        room = self.tasks_per_worker + (0 if starting else self._prefetch)
        ahead = self.tasks_per_worker + 1
        timed = self._adaptive
        durations = self._durations
        while pending:
            task = pending[0]
            best: _Worker | None = None
            # A task run again after a crash lost its result goes to an idle worker.
            best_load = room if not task.crashes else 1
            size = task.size
            estimate = durations.get(task.kind) if timed else 0.0
            for worker in workers:
                # Ready only: a task waits for a worker's start-up (its initializer)
                # here, where cancelling it ends it at once.
                if worker.state == _READY and worker.isolating is None:
                    load = len(worker.tasks) - worker.waiting
                    if load == best_load and best is not None and worker.waiting < best.waiting:
                        # As loaded (waiting tasks do not count): the one hosting fewer
                        # waiting tasks, so that waiting tasks spread over the workers.
                        best = worker
                    elif load < best_load and (
                        load < ahead
                        or (
                            worker.bytes + size <= _PREFETCH_BYTES
                            and (
                                not timed
                                or (
                                    estimate is not None
                                    and not worker.unknown
                                    and worker.seconds <= _PREFETCH_TARGET
                                )
                            )
                        )
                    ):
                        best, best_load = worker, load
            if best is None:
                return
            pending.popleft()
            task.estimate = estimate
            best.bytes += size
            if estimate is None:
                best.unknown += 1
            else:
                best.seconds += estimate
            self._send(best, task)

    def _send(self, worker: _Worker, task: _ProcTask) -> None:
        assert task.call is not None
        message, fn_id, fn_blob = task.call
        arena = self._arena
        if task.region is None and arena is not None and message[0] != wire.CALL:
            placed = arena.place(message[-1])
            if placed is not None:
                # Its buffers are in the arena now; a call sent again (its worker died
                # before starting it) finds them there (see _shm.py).
                blob, offset, size = placed
                message = (*message[:-1], blob)
                task.call = message, fn_id, fn_blob
                task.region = offset, size
        if fn_id is not None:
            defined = worker.defined
            if fn_id in defined:
                defined.move_to_end(fn_id)
            else:
                assert fn_blob is not None
                if pickling.is_large(fn_blob):
                    worker.writer.send_alone((wire.DEFINE, fn_id, fn_blob))
                else:
                    worker.writer.send((wire.DEFINE, fn_id, fn_blob))
                defined[fn_id] = None
                if len(defined) > _FUNCTIONS_PER_WORKER:
                    old, _ = defined.popitem(last=False)
                    worker.writer.send((wire.FORGET, old))
        if task.starts is not None:
            if len(worker.tasks) < self.tasks_per_worker:
                self._report_start(task)  # a slot is free: it starts on arrival
            else:
                if task.early:
                    task.events.task_waiting(task.task_id)
                worker.writer.send((wire.WATCH, task.wire_id))  # queued: the worker says
        if message[0] != wire.CALL and pickling.is_large(message[-1]):  # alone in its frame
            worker.writer.send_alone(message)
        else:
            worker.writer.send(message)
        if task.messages:  # a waitable task's messages so far, after its call
            for encoded in task.messages:
                send_message(worker, encoded)
        task.worker = worker
        worker.tasks[task.wire_id] = task
        task.seq = worker.sent
        if task.crashes:
            worker.isolating = task
        worker.sent += 1
        if self.max_tasks_per_worker is not None and worker.sent >= self.max_tasks_per_worker:
            worker.state = _RETIRING
        self._schedule_flush(worker)

    def _schedule_flush(self, worker: _Worker) -> None:
        if not worker.flush_scheduled and self._loop is not None:
            worker.flush_scheduled = True
            self._loop.call_soon(self._flush, worker)

    def _flush(self, worker: _Worker) -> None:
        worker.flush_scheduled = False
        if worker.state == _DEAD or not worker.connections:
            return
        try:
            done = worker.writer.flush()
        except OSError:
            return  # the worker died; _on_exit deals with its tasks
        if not done and not worker.writer_waiting and self._loop is not None:
            worker.writer_waiting = True
            self._loop.add_writer(worker.writer.fd, self._on_writable, worker)

    def _on_writable(self, worker: _Worker) -> None:
        try:
            done = worker.writer.write_pending()
        except OSError:
            done = True
        if done and self._loop is not None:
            worker.writer_waiting = False
            self._loop.remove_writer(worker.writer.fd)

    def _learn(self, task: _ProcTask, seconds: float) -> None:
        """Adapt the prefetch to how long tasks take (``prefetch="auto"`` only): the
        durations of ``task``'s kind (see :meth:`_dispatch`), and the count.

        Short tasks get a deep queue per worker (the pipe round trip would otherwise
        dominate); tasks longer than the target get none: a queued task holds user
        capacity while it waits (SPEC 3 wants capacity held only by running tasks), and
        a task queued behind a long one could sit there while another worker goes idle.
        """
        durations = self._durations
        known = durations.get(task.kind)
        if known is None and len(durations) >= _KINDS_KEPT:
            durations.clear()
        durations[task.kind] = seconds if known is None else 0.7 * known + 0.3 * seconds
        average = self._seconds_per_task
        average = seconds if average is None else 0.9 * average + 0.1 * seconds
        self._seconds_per_task = average
        wanted = min(_PREFETCH_MAX, int(_PREFETCH_TARGET / max(average, 1e-9)))
        current = self._prefetch
        if wanted > 2 * current or wanted < current // 2 or (wanted == 0 < current):
            self._prefetch = wanted
            self._capacity.set_limit(self._slots())
