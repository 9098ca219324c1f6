"""One worker process: its own uvloop event loop, reading calls from the call pipe,
running task runners, writing envelopes back on the result pipe.

How one call runs:

1. Its slot in the shared ``running`` array is set to its task id (so the parent can
   tell, should this process die, which task was running), and the shared ``started``
   value to the call's arrival number (so the parent can tell which calls it sent had
   started: one that started and is no longer running lost its result, if any).
   Calls start in arrival order, but for one that waits for another to end (``AFTER``,
   the capacity hand-off's successors with ``tasks_per_worker > 1``): the calls behind
   it may start first (``started`` stays the highest number started).
2. The runner is rebuilt from the message (cached function + arguments).
3. A plain function runs right away on the loop; a coroutine, generator or async
   iterable runs as an asyncio task, sending INTERMEDIATEs within its credit window.
4. The FINAL or ERROR message is queued, then the slot is cleared.

Whatever a task raises, ``sys.exit`` included, at whatever stage (its call being
unpickled, run, its result or exception being pickled), ends that task with an ERROR
and this worker goes on; only dying (``os._exit``, a signal) loses the worker.

Output is flushed once per turn of the loop in which something was queued (so at the
end of each read of the call pipe and when a task finishes), while many calls start
in a row every ``FLUSH_AFTER`` seconds, and at least every ``YIELD_EVERY`` seconds
while a CPU-bound generator runs (it gives the loop a turn then; see ``drive``). A
generator's values leave in runs, one message per run.

The worker exits when the parent says STOP (after its work is done), when the call
pipe reaches EOF (the parent died), or when its parent dies (``PR_SET_PDEATHSIG``,
and a watchdog thread that sees the call pipe hang up even while a task keeps the
loop busy). A forkserver worker's parent is the forkserver: the worker closes its copy
of the forkserver's "alive" pipe at once, so that the server exits when the
executor's process dies, and the kernel then kills the worker, whatever it runs
(even C code holding the GIL, which the watchdog thread would wait for).
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing.sharedctypes  # noqa: F401 - preloaded with this module (see below)
import os
import signal
import sys
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import cloudpickle
import uvloop

from ...runners._waitable import Waitable
from .._drive import Credits, drive, needs_driving
from . import _shm
from ._child import PEAK, die_with_parent, keep_freed_memory, rss_bytes, watch_parent
from ._mailbox import _Inbox
from ._output import _OutputMixin
from ._pickling import (
    error_text,
    loads_args,
    loads_blob,
)
from ._protocol import (
    AFTER,
    CALL,
    CALL_ARGS,
    CALL_BLOB,
    CANCEL,
    CREDIT,
    DEFINE,
    FORGET,
    INIT_FAILED,
    MESSAGE,
    MESSAGE_BLOB,
    READY,
    RESUME,
    RETIRE,
    STARTED,
    STOP,
    WATCH,
    FrameReader,
    FrameWriter,
    set_pipe_size,
)
from ._report import format_error, type_name, unpickling_error

__all__ = ["main"]

# multiprocessing.sharedctypes is imported above only so that it comes preloaded with
# this module in the forkserver: a worker unpickles its running array with it.

FLUSH_AFTER = 0.002
"""Seconds queued output may wait while the worker starts one call after another."""
YIELD_EVERY = 0.002
"""Seconds a sync generator may run before the loop gets a turn: its progress is
flushed then, and CANCEL and CREDIT messages are read."""
MEMORY_CHECK_EVERY = 0.1
"""Seconds between two checks of this process's memory against its limit."""


def main(call_conn: Any, result_conn: Any, running: Any, options: dict[str, Any]) -> None:
    """Entry point of a worker process (``multiprocessing.Process`` target)."""
    die_with_parent(options.get("parent_pid"))
    keep_freed_memory()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's business
    call_fd, result_fd = call_conn.fileno(), result_conn.fileno()
    watch_parent(call_fd)
    os.set_blocking(call_fd, False)
    set_pipe_size(result_fd)
    try:
        _shm.attach(options.get("arena"))
    except OSError:
        pass  # unreachable in practice: then a placed call fails its own task only
    initializer = options.get("initializer")
    if initializer is not None:
        try:
            function, args = cloudpickle.loads(initializer)
            function(*args)
        except BaseException as error:
            _write_blocking(
                result_fd,
                [(INIT_FAILED, type_name(error), error_text(error), format_error(error))],
            )
            sys.exit(3)
    os.set_blocking(result_fd, False)
    loop = _new_loop()
    worker = _Worker(loop, call_fd, result_fd, running, options)
    try:
        loop.run_until_complete(worker.serve())
    finally:
        worker.flush_blocking()
        loop.close()
        # The connections own the fds; keep them alive until here.
        del call_conn, result_conn


def _new_loop() -> asyncio.AbstractEventLoop:
    return uvloop.new_event_loop()


def _write_blocking(fd: int, messages: list[Any]) -> None:
    writer = FrameWriter(fd)
    for message in messages:
        writer.send(message)
    os.set_blocking(fd, True)
    with contextlib.suppress(OSError):
        writer.flush()


class _BadFunction:
    """Stands in for a function that could not be unpickled: calling it raises."""

    def __init__(self, error: BaseException) -> None:
        self.error = error

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise self.error


class _Task:
    """An asynchronous task running in this worker."""

    __slots__ = ("credits", "result", "slot", "started", "streamed", "task")

    def __init__(self, slot: int, credits: Credits, result: Any) -> None:
        self.slot = slot
        self.credits = credits
        self.result = result  # what the runner returned, to be driven
        self.task: asyncio.Task[None] | None = None
        # Invariant: set by run_async's first step; until then its finally cannot run.
        self.started = False
        self.streamed = False  # whether it emitted INTERMEDIATE values


class _Worker(_OutputMixin):
    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        call_fd: int,
        result_fd: int,
        running: Any,
        options: dict[str, Any],
    ) -> None:
        self.loop = loop
        self.reader = FrameReader(call_fd)
        self.writer = FrameWriter(result_fd)
        self.running = running
        # The arrival number (0, 1, ...) of the last call started, shared with the
        # parent; calls_received numbers them, arrivals holds those not started.
        self.started: Any = options.get("started")
        self.calls_received = 0
        self.arrivals: dict[int, int] = {}
        self.credit_window: int = options["credit_window"]
        self.max_memory: int | None = options.get("max_memory")
        self.measure_memory: bool = bool(options.get("measure_memory")) and PEAK.available()
        self.functions: dict[int, Callable[..., Any]] = {}
        # Invariant: calls received and not started, in arrival order.
        self.queue: deque[tuple[Any, ...]] = deque()
        # Invariant: the slots of ``running`` not used by a started task. Waiting tasks
        # (parked in receive()) keep theirs; ``active`` counts the others, at most
        # ``tasks_per_worker`` of them (a resumed task may exceed it for a while: the
        # parent's capacity holds a slot for it).
        self.free_slots: list[int] = list(range(len(running)))[::-1]
        self.tasks_per_worker: int = options.get("tasks_per_worker", len(running))
        self.max_waiting: int = options.get("max_waiting", 0)
        self.active = 0
        self.waiting = 0
        self.inboxes: dict[int, _Inbox] = {}
        self.tasks: dict[int, _Task] = {}
        # Tasks whose start the parent wants to hear about (WATCH), not started yet.
        self.watched: set[int] = set()
        # The capacity hand-off (AFTER): a queued task that must not start before
        # another ended (waits: task -> the one it waits for; blocks: the reverse).
        self.waits: dict[int, int] = {}
        self.blocks: dict[int, int] = {}
        # Invariant: unflushed counts the messages and values queued since the last
        # flush; a flush is scheduled (flush_scheduled) while it is not zero.
        self.unflushed = 0
        self.flush_scheduled = False
        self.writer_waiting = False
        self.stopping = False
        self.retiring = False
        self.last_memory_check = 0.0
        self.finished: asyncio.Future[None] = loop.create_future()

    # -- the loop's callbacks ------------------------------------------------------------

    async def serve(self) -> None:
        self.writer.send((READY, os.getpid()))
        self.flush()
        self.loop.add_reader(self.reader.fd, self.on_readable)
        try:
            await self.finished
        finally:
            self.loop.remove_reader(self.reader.fd)
            for task in list(self.tasks.values()):
                if task.task is not None:
                    task.task.cancel()
            pending = [t.task for t in self.tasks.values() if t.task is not None]
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)

    def on_readable(self) -> None:
        frames, eof = self.reader.read()
        for frame in frames:
            for message in frame:
                self.handle(message)
        if eof:
            # The parent is gone (or closed the pipe): nothing more will be read.
            self.queue.clear()
            self.end()
            return
        self.start_queued()
        self.flush()

    def handle(self, message: tuple[Any, ...]) -> None:
        kind = message[0]
        if kind in (CALL, CALL_ARGS, CALL_BLOB):
            self.arrivals[message[1]] = self.calls_received
            self.calls_received += 1
            self.queue.append(message)
        elif kind == DEFINE:
            try:
                self.functions[message[1]] = loads_blob(message[2])
            except BaseException as error:
                self.functions[message[1]] = _BadFunction(unpickling_error("function", error))
        elif kind == FORGET:
            self.functions.pop(message[1], None)
        elif kind == CREDIT:
            task = self.tasks.get(message[1])
            if task is not None:
                task.credits.ack(message[2])
        elif kind == CANCEL:
            self.cancel(message[1])
        elif kind == STOP:
            self.stopping = True
            self.end_if_idle()
        elif kind == WATCH:
            self.watched.add(message[1])
        elif kind == AFTER:
            before = message[2]
            # Unless that one ended already (queued calls wait in arrivals; started
            # async ones in tasks; a sync one ended before this message was read).
            if before in self.arrivals or before in self.tasks:
                self.waits[message[1]] = before
                self.blocks[before] = message[1]
        elif kind in (MESSAGE, MESSAGE_BLOB):
            self.inbox(message[1]).put(kind, message[2])
        elif kind == RESUME:
            inbox = self.inboxes.get(message[1])
            if inbox is not None:
                inbox.resume()

    def inbox(self, wire_id: int, task_id: int | None = None) -> _Inbox:
        """The inbox of task ``wire_id`` (made on its first message or at its start)."""
        inbox = self.inboxes.get(wire_id)
        if inbox is None:
            inbox = self.inboxes[wire_id] = _Inbox(self, wire_id, wire_id)
        if task_id is not None:
            inbox.task_id = task_id
        return inbox

    def cancel(self, task_id: int) -> None:
        task = self.tasks.get(task_id)
        if task is not None:
            if task.task is not None:
                task.task.cancel()
                if not task.started:
                    # Interleaving: cancelled before its first step, run_async never
                    # runs (not even its finally), so the task ends here.
                    self.abandon(task_id, task)
            return
        for message in self.queue:
            if message[1] == task_id:
                self.queue.remove(message)
                self.arrivals.pop(task_id, None)
                self.inboxes.pop(task_id, None)
                self.watched.discard(task_id)
                if self.waits or self.blocks:
                    # Its own successor now waits for what it waited for (if anything).
                    before = self.waits.pop(task_id, None)
                    after = self.blocks.pop(task_id, None)
                    if after is not None:
                        if before is not None:
                            self.waits[after] = before
                            self.blocks[before] = after
                        else:
                            del self.waits[after]
                self.send_error(task_id, asyncio.CancelledError())
                return

    # -- running tasks ---------------------------------------------------------------------

    def start_queued(self) -> None:
        queue, free = self.queue, self.free_slots
        started = time.perf_counter()
        while queue and free and self.active < self.tasks_per_worker:
            if self.waits:
                # Skip the calls waiting for another to end (in arrival order otherwise).
                waits = self.waits
                message = next((m for m in queue if m[1] not in waits), None)
                if message is None:
                    break
                queue.remove(message)
            else:
                message = queue.popleft()
            self.start(message, free.pop())
            if self.unflushed and time.perf_counter() - started > FLUSH_AFTER:
                self.flush()
                started = time.perf_counter()
        self.end_if_idle()

    def ended(self, task_id: int) -> None:
        """``task_id`` ended: the call waiting for it (AFTER), if any, may start."""
        after = self.blocks.pop(task_id, None)
        if after is not None:
            del self.waits[after]

    def start(self, message: tuple[Any, ...], slot: int) -> None:
        task_id = message[1]
        self.running[slot] = task_id
        self.active += 1
        arrival = self.arrivals.pop(task_id, None)
        if arrival is not None and self.started is not None and arrival > self.started.value:
            # The highest: calls start in arrival order, but for one waiting (AFTER).
            self.started.value = arrival
        if self.watched and task_id in self.watched:
            # Out at once: the parent starts the task's timeout clock with it, and a
            # sync task keeps this loop (and the next flush) busy until it ends.
            self.watched.discard(task_id)
            self.writer.send((STARTED, task_id))
            self.flush()
        try:
            function, args, kwargs = self.build(message)
        except BaseException as error:
            self.send_error(task_id, error)
            self.release(slot)
            return
        if function.__class__ is Waitable and message[0] == CALL_BLOB:
            waitable: Any = function
            function = waitable.bind(self.inbox(task_id, waitable.task_id))
        if self.measure_memory:
            PEAK.reset()
        started = time.perf_counter()
        try:
            # run_sync_step, inlined: a plain call is this worker's hot path.
            result = function(*args) if kwargs is None else function(*args, **kwargs)
            finished = not needs_driving(result)
        except BaseException as error:  # sys.exit included: the task's error
            self.send_error(task_id, error)
            self.release(slot)
            return
        if finished:
            self.send_final(task_id, result, time.perf_counter() - started)
            self.release(slot)
            return
        task = _Task(slot, Credits(self.credit_window), result)
        self.tasks[task_id] = task
        task.task = self.loop.create_task(self.run_async(task_id, task, started))

    def build(
        self, message: tuple[Any, ...]
    ) -> tuple[Callable[..., Any], Any, dict[str, Any] | None]:
        """What a call runs: ``(function, args, kwargs)``, ``kwargs`` ``None`` if none
        (a CALL_BLOB: its runner, no arguments)."""
        kind = message[0]
        if kind == CALL_BLOB:
            try:
                runner: Callable[[], Any] = loads_blob(message[2])
            except BaseException as error:
                raise unpickling_error("task runner", error) from error
            return runner, (), None
        function = self.functions[message[2]]
        if kind == CALL:
            return function, message[3], None
        try:
            args, kwargs = loads_args(message[3])
        except BaseException as error:
            raise unpickling_error("task arguments", error) from error
        return function, args, kwargs

    def abandon(self, task_id: int, task: _Task) -> None:
        """End a task cancelled before its first step: report it, free its slot, and
        close what it never drove (so a coroutine does not warn it was not awaited)."""
        del self.tasks[task_id]
        self.send_error(task_id, asyncio.CancelledError())
        close = getattr(task.result, "close", None)
        if close is not None and not hasattr(task.result, "__aiter__"):
            close()
        task.result = None
        self.release(task.slot)
        self.start_queued()
        self.schedule_flush()

    async def run_async(self, task_id: int, task: _Task, started: float) -> None:
        task.started = True
        result, task.result = task.result, None
        emit = self.emitter(task_id, task)
        try:
            value = await drive(result, emit, task.credits, yield_every=YIELD_EVERY)
        except asyncio.CancelledError as cancelled:
            self.send_error(task_id, cancelled)
        except BaseException as error:  # sys.exit included: the task's error
            self.send_error(task_id, error)
        else:
            self.send_final(task_id, value, time.perf_counter() - started)
        finally:
            del self.tasks[task_id]
            self.release(task.slot)
            if task.streamed:
                # Out before the next call starts: should that one kill this process,
                # the parent has this task's end (it streamed, so it cannot be rerun).
                self.flush()
            self.start_queued()
            self.schedule_flush()

    def release(self, slot: int) -> None:
        running = self.running
        if self.inboxes:
            self.inboxes.pop(running[slot], None)
        running[slot] = -1
        self.free_slots.append(slot)
        self.active -= 1
        if self.max_memory is not None:
            self.check_memory()

    def check_memory(self) -> None:
        now = time.monotonic()
        if self.retiring or now - self.last_memory_check < MEMORY_CHECK_EVERY:
            return
        self.last_memory_check = now
        rss = rss_bytes()
        if rss is not None and self.max_memory is not None and rss > self.max_memory:
            self.retiring = True
            self.writer.send((RETIRE, f"resident memory {rss} bytes > {self.max_memory}"))
            self.note_output()

    # -- ending ------------------------------------------------------------------------------

    def end_if_idle(self) -> None:
        if self.stopping and not self.queue and not self.tasks:
            self.end()

    def end(self) -> None:
        if not self.finished.done():
            self.finished.set_result(None)
