"""Sending tasks to workers: the least loaded ready worker with room, the adaptive
prefetch, and the call pipes' flushes (once per loop turn)."""

from __future__ import annotations

import asyncio
from collections import deque
from typing import TYPE_CHECKING, Any

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

        A successor (``submit(after=)``) goes to its predecessor's worker only; it
        waits here, holding up the tasks behind it, until its predecessor is in a
        ready worker (after a crash) or ended (then it is a task like any other).
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
            size = task.size
            estimate = durations.get(task.kind) if timed else 0.0
            after = task.after
            if after is not None:
                # A successor goes behind its predecessor, in its worker, once that
                # one is there (in order: it was queued here after it).
                best = after.worker
                if best is not None and (best.state != _READY or best.isolating is not None):
                    best = None
            else:
                # A task run again after a crash lost its result goes to an idle worker.
                best_load = room if not task.crashes else 1
                for worker in workers:
                    # Ready only: a task waits for a worker's start-up (its initializer)
                    # here, where cancelling it ends it at once. Its load: the tasks
                    # it runs or will run before this one (not the successors waiting
                    # for one of them to end, nor the waitable tasks waiting for a
                    # message).
                    if worker.state == _READY and worker.isolating is None:
                        load = len(worker.tasks) - worker.successors - worker.waiting
                        if load == best_load and best is not None and worker.waiting < best.waiting:
                            # As loaded: the one hosting fewer waiting tasks, so that
                            # waiting tasks spread over the workers.
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

    def _place(self, worker: _Worker, task: _ProcTask) -> None:
        """Send ``task`` to ``worker`` now, with the prefetch's bookkeeping (a
        successor submitted while nothing is pending: no dispatch to do)."""
        estimate = self._durations.get(task.kind) if self._adaptive else 0.0
        task.estimate = estimate
        worker.bytes += task.size
        if estimate is None:
            worker.unknown += 1
        else:
            worker.seconds += estimate
        self._send(worker, task)

    def successor_room(self, handle: Any) -> bool:
        """Whether a task submitted now with ``after=handle`` is sent at once behind
        ``handle``'s task, in its worker: the capacity hand-off (see
        :mod:`pullpush.runners._handoff`). With one task per worker, a worker runs its
        calls in order, so the successor starts only once its predecessor ended; with
        more, an ``AFTER`` message tells the worker to wait for it.

        Room: one ahead always (with ``prefetch="auto"`` even for long tasks: a
        queued successor holds no capacity, and the worker goes from one task to the
        next with no round trip); beyond that, up to ``prefetch`` queued in all,
        while the worker's calls stay within ``_PREFETCH_BYTES`` and, with
        ``"auto"``, its queued work within ``_PREFETCH_TARGET`` seconds by known
        durations (the successors a worker holds count, whatever task they wait
        for). None while tasks wait in the parent (they go first), or behind a
        worker that is not ready or runs a task alone (after a crash).
        """
        worker = handle.worker
        if (
            worker is None
            or handle.ended
            or handle.successor is not None
            or worker.state != _READY
            or worker.isolating is not None
            or self._pending
        ):
            return False
        timed = self._adaptive
        depth = self._prefetch or (1 if timed else 0)
        queued = worker.successors
        if queued >= depth:
            return False
        return queued == 0 or (
            worker.bytes <= _PREFETCH_BYTES
            and (not timed or (not worker.unknown and worker.seconds <= _PREFETCH_TARGET))
        )

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
        if task.after is not None:
            worker.successors += 1
            if self.tasks_per_worker > 1:
                worker.writer.send((wire.AFTER, task.wire_id, task.after.wire_id))
        if task.starts is not None:
            if task.after is None and len(worker.tasks) - worker.successors < (
                self.tasks_per_worker
            ):
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
        if task.after is None and not task.ended:
            # A task may be queued behind it now (the capacity hand-off). (Not said of
            # a successor: its submitter placed it, or it follows one that was.)
            task.events.task_placed(task.task_id)

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
        dominate); tasks longer than the target get none in the parent's dispatch (a
        task queued behind a long one could sit there while another worker goes
        idle), but a runner's successor still goes one ahead (see
        :meth:`successor_room`): it holds no capacity while it waits. The executor's
        slots (:attr:`capacity`) do not depend on the prefetch.
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
