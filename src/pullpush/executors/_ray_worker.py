"""The Ray executor's side in the Ray worker: the functions that run a task runner
as a normal Ray task (:func:`remote_call`) or a streaming one (:func:`remote_stream`),
the actor class of the executor's slots (:class:`SlotActor`), and the batching of a
stream's values. Imported in every Ray worker that runs a task:
it imports nothing of Ray."""

from __future__ import annotations

import asyncio
import functools
import os
import pickle
import sys
import threading
import time
from collections.abc import Generator
from types import GeneratorType
from typing import Any

from ..runners._envelope import EnvelopeType
from ._base import TaskRunner
from ._drive import Credits, drive, needs_driving, run_sync_step
from ._thread_worker import wind_down

__all__ = [
    "BATCH",
    "FINAL",
    "Drained",
    "Dropped",
    "SlotActor",
    "remote_call",
    "remote_stream",
]

# What a streaming Ray task yields: (kind, payload): a batch (a list) of INTERMEDIATE
# values, or the FINAL value.
BATCH, FINAL = EnvelopeType.INTERMEDIATE, EnvelopeType.FINAL
_BATCH, _FINAL = BATCH, FINAL


class Drained:
    """What a normal task returns when its runner returned a stream (not being a
    generator function itself): the stream's values, driven to its end in the
    worker, and its final value. Any other result travels as it is."""

    __slots__ = ("final", "values")

    def __init__(self, values: list[Any], final: Any) -> None:
        self.values, self.final = values, final

    def __reduce__(self) -> tuple[Any, ...]:
        return (Drained, (self.values, self.final))


def remote_call(runner: TaskRunner, loops: list[Any] | None = None) -> Any:
    """Ray worker, a normal task: call ``runner``; return its result, or a
    :class:`Drained` if it returned a stream (all its values, driven to the end).
    ``loops``: gets the private event loop, if one is made (to wake it)."""
    values, final = _call(runner, loops)
    return final if values is None else Drained(values, final)


class Dropped:
    """What :meth:`SlotActor.call` returns for a call cancelled: before it started
    (it did not run), or interrupted while it ran."""

    __slots__ = ()

    def __reduce__(self) -> tuple[Any, ...]:
        return (Dropped, ())


class SlotActor:
    """Ray worker: the actor behind one executor slot (see :mod:`._ray_actors`). Its
    calls run one at a time, in the order the driver sent them (Ray's default
    concurrency group, one thread); :meth:`cancel` and :meth:`stop` run beside them
    (the ``"control"`` group), so that a queued call can be dropped and a running one
    interrupted (``KeyboardInterrupt`` raised in its thread, as ``ray.cancel`` does
    in a Ray task: Python code stops at its next bytecode, a call blocked in C when
    it returns); :meth:`watch` (the ``"watch"`` group, a thread of its own) never
    returns: its call fails when the actor dies, which tells the driver of a death
    with no call pending.

    It keeps the functions the driver defined in it (by key, so that a runner
    submitted again travels as an int): :meth:`call` with a function *and* a key
    defines it, with the key alone uses it, with no key runs the function sent;
    ``forget`` drops a key first (the driver bounds what each actor keeps). Call ids
    grow from one call to the next of an actor."""

    def __init__(self) -> None:
        self.functions: dict[int, Any] = {}
        self.defined = 0  # functions defined (kept), for tests and statistics
        self.calls = 0
        self.lock = threading.Lock()
        self.started = -1  # the id of the last call started
        self.cancelled: set[int] = set()  # calls to drop when they come
        # The call running (its id, None between calls), its thread, and the call
        # interrupted (KeyboardInterrupt sent): all under ``lock``.
        self.running: int | None = None
        self.thread = 0
        self.loops: list[Any] = []  # the running call's private event loop, if any
        self.interrupted: int | None = None
        self.stopped = False  # stop() came: no call starts any more

    def call(
        self,
        call_id: int,
        key: int | None,
        function: Any,
        args: tuple[tuple[Any, ...], dict[str, Any]] | None,
        forget: int | None,
    ) -> Any:
        """Run one task: ``function`` (or the one defined under ``key``), given
        ``args`` (a ``functools.partial``'s arguments) if any, as :func:`remote_call`;
        a :class:`Dropped` if it was cancelled before."""
        if forget is not None:
            self.functions.pop(forget, None)
        if function is None:
            function = self.functions[key]  # type: ignore[index]
        elif type(function) is bytes:  # a big runner, pickled by the driver on a thread
            function = pickle.loads(function)
        elif key is not None:
            self.functions[key] = function
            self.defined += 1
        runner = function if args is None else functools.partial(function, *args[0], **args[1])
        with self.lock:
            if call_id in self.cancelled or self.stopped:
                self.cancelled.discard(call_id)
                return Dropped()
            self.started = self.running = call_id
            self.thread = threading.get_ident()
        self.calls += 1
        try:
            try:
                return remote_call(runner, self.loops)
            finally:
                with self.lock:
                    self.running = None
                    self.loops.clear()
                    # No interrupt may land after this (in Ray's code): clear one
                    # sent that has not fired yet.
                    _async_raise(self.thread, None)
        except KeyboardInterrupt:
            self.running = None
            if self.interrupted == call_id:
                return Dropped()
            raise

    def cancel(self, call_id: int) -> bool:
        """(The ``"control"`` group.) Drop call ``call_id`` if it has not started:
        true then (it will not run); else false, and if it runs, interrupt it."""
        with self.lock:
            if call_id <= self.started:
                if self.running == call_id and self.interrupted != call_id:
                    self.interrupted = call_id
                    _async_raise(self.thread, KeyboardInterrupt)
                    for loop in self.loops:  # waiting in its selector: wake it
                        try:
                            loop.call_soon_threadsafe(_nothing)
                        except RuntimeError:  # noqa: PERF203 - closed meanwhile (one loop)
                            pass
                return False
            self.cancelled.add(call_id)
            return True

    def stop(self) -> int:
        """(The ``"control"`` group.) Start no call any more (each returns
        :class:`Dropped`); return the id of the last call started (-1: none), so
        that the driver knows which of the calls it sent never ran."""
        with self.lock:
            self.stopped = True
            return self.started

    def watch(self) -> None:
        """(The ``"watch"`` group.) Block until the actor's process ends: the call
        fails then (Ray's ``ActorDiedError``), telling the driver at once."""
        threading.Event().wait()

    def statistics(self) -> dict[str, int]:
        """What the actor did: ``defined`` functions, ``calls`` run, ``kept``
        functions now, and its process id."""
        return {
            "defined": self.defined,
            "calls": self.calls,
            "kept": len(self.functions),
            "pid": os.getpid(),
        }


def _call(runner: TaskRunner, loops: list[Any] | None) -> tuple[list[Any] | None, Any]:
    finished, result = run_sync_step(runner)
    if finished:
        return None, result
    values: list[Any] = []
    if type(result) is GeneratorType:
        final = _drain_sync(result, values)
        return values, final
    from ._thread_worker import _new_loop

    loop = _new_loop()
    if loops is not None:
        loops.append(loop)
    try:
        if hasattr(type(result), "__await__"):
            result = loop.run_until_complete(result)
            if type(result) is GeneratorType:
                return values, _drain_sync(result, values)
            if not needs_driving(result):
                return None, result
        final = loop.run_until_complete(drive(result, values.extend))
        return values, final
    finally:
        _close_loop(loop)


def _drain_sync(generator: Generator[Any, Any, Any], into: list[Any]) -> Any:
    try:
        while True:
            try:
                into.append(next(generator))
            except StopIteration as stop:  # noqa: PERF203 - once per stream
                return stop.value
    finally:
        generator.close()


def _close_loop(loop: asyncio.AbstractEventLoop) -> None:
    """Cancel what still runs on the worker's private ``loop`` and close it."""
    try:
        wind_down(loop)
    finally:
        loop.close()


class _Batcher:
    """Ray worker: groups a stream's values into batches, bounded by ``count``
    values and ``size`` bytes (``sys.getsizeof``, shallow), and ``age`` seconds: a
    batch older than that goes out when the next value comes."""

    __slots__ = ("age", "batch", "born", "bytes", "count", "size")

    def __init__(self, count: int, size: int, age: float) -> None:
        self.count, self.size, self.age = count, size, age
        self.batch: list[Any] = []
        self.bytes = 0
        self.born = 0.0

    def add(self, value: Any) -> list[Any] | None:
        """Add ``value``; return the batch if it is due."""
        batch = self.batch
        if not batch:
            self.born = time.monotonic()
        batch.append(value)
        self.bytes += sys.getsizeof(value)
        if (
            len(batch) >= self.count
            or self.bytes >= self.size
            or time.monotonic() - self.born >= self.age
        ):
            return self.take()
        return None

    def take(self) -> list[Any]:
        batch, self.batch, self.bytes = self.batch, [], 0
        return batch


def remote_stream(
    runner: TaskRunner, batching: tuple[int, int, float]
) -> Generator[tuple[EnvelopeType, Any], None, None]:
    """Ray worker, a streaming task: call ``runner``; yield ``(_BATCH, values)`` as
    values come (see :class:`_Batcher`), then ``(_FINAL, value)``. An error
    propagates (Ray wraps it).

    A sync generator is iterated directly; an awaitable is awaited, and an async
    iterable driven by :func:`drive`, on a private event loop that runs only until
    the next values are out. Ray's ``ray.cancel`` raises ``KeyboardInterrupt`` here;
    the ``finally`` cancels what still runs on the private loop and closes it.
    """
    batcher = _Batcher(*batching)
    finished, result = run_sync_step(runner)
    if finished:
        yield (_FINAL, result)
        return
    if type(result) is GeneratorType:
        yield from _sync_stream(result, batcher)
        return
    from ._thread_worker import _new_loop

    loop = _new_loop()
    try:
        if hasattr(type(result), "__await__"):
            result = loop.run_until_complete(result)
            if type(result) is GeneratorType:
                yield from _sync_stream(result, batcher)
                return
            if not needs_driving(result):
                yield (_FINAL, result)
                return
        yield from _async_stream(loop, result, batcher)
    finally:
        _close_loop(loop)


def _sync_stream(
    generator: Generator[Any, Any, Any], batcher: _Batcher
) -> Generator[tuple[EnvelopeType, Any], None, None]:
    """Ray worker: a sync generator's values in batches, then its return value.

    The generator runs on a thread of its own, at most one batch ahead, so that a
    batch goes out ``age`` seconds after its first value even while the generator
    blocks. Cancelled (Ray raises ``KeyboardInterrupt`` here), the thread gets a
    ``KeyboardInterrupt`` too, and the task ends only once the thread has.
    """
    cond = threading.Condition()
    pending: list[Any] = []
    outcome: list[Any] = []  # [final] or [final, error], set when the thread ends
    size = [0]
    stop = [False]

    def produce() -> None:
        final: Any = None
        error: BaseException | None = None
        try:
            while True:
                try:
                    item = next(generator)
                except StopIteration as ended:
                    final = ended.value
                    break
                with cond:
                    while (len(pending) >= batcher.count or size[0] >= batcher.size) and not stop[
                        0
                    ]:
                        cond.wait(0.05)
                    if stop[0]:
                        break
                    pending.append(item)
                    size[0] += sys.getsizeof(item)
                    if len(pending) == 1 or len(pending) >= batcher.count:
                        cond.notify_all()
        except BaseException as failed:
            error = failed
        finally:
            generator.close()
            with cond:
                outcome[:] = [final, error]
                cond.notify_all()

    thread = threading.Thread(target=produce, name="pullpush-ray-stream", daemon=True)
    thread.start()
    try:
        while True:
            with cond:
                while not pending and not outcome:
                    cond.wait(0.05)  # in slices: ray.cancel interrupts between them
                deadline = time.monotonic() + batcher.age
                while (
                    not outcome
                    and len(pending) < batcher.count
                    and size[0] < batcher.size
                    and (left := deadline - time.monotonic()) > 0
                ):
                    cond.wait(left)
                batch = pending[:]
                pending.clear()
                size[0] = 0
                ended = list(outcome)
                cond.notify_all()
            if batch:
                yield (_BATCH, batch)
            if ended:
                final, error = ended
                if error is not None:
                    raise error
                yield (_FINAL, final)
                return
    finally:
        with cond:
            stop[0] = True
            cond.notify_all()
        if thread.is_alive():
            _interrupt(thread)
        thread.join()


def _interrupt(thread: threading.Thread) -> None:
    """Raise ``KeyboardInterrupt`` in ``thread`` (as ``ray.cancel`` does in a task)."""
    if thread.ident is not None:
        _async_raise(thread.ident, KeyboardInterrupt)


def _nothing() -> None:
    pass


def _async_raise(ident: int, error: type[BaseException] | None) -> None:
    """Raise ``error`` in thread ``ident`` at its next bytecode (``None``: clear one
    raised so that has not fired yet)."""
    import ctypes

    ctypes.pythonapi.PyThreadState_SetAsyncExc(
        ctypes.c_ulong(ident), None if error is None else ctypes.py_object(error)
    )


def _async_stream(
    loop: asyncio.AbstractEventLoop, stream: Any, batcher: _Batcher
) -> Generator[tuple[EnvelopeType, Any], None, None]:
    """Ray worker: drive an async iterable on ``loop``.

    The loop runs until :func:`drive` has emitted a batch's worth of values, or a
    batch waited ``age`` seconds, or the stream ended; then what it emitted goes out
    (a window of ``count`` credits parks the stream meanwhile).
    """
    ready: list[Any] = []
    credits = Credits(batcher.count)
    wake: asyncio.Future[None] | None = None
    timer: asyncio.TimerHandle | None = None

    def wake_up() -> None:
        if wake is not None and not wake.done():
            wake.set_result(None)

    def emit(values: list[Any]) -> None:
        nonlocal timer
        if not ready and timer is None:
            timer = loop.call_later(batcher.age, wake_up)
        ready.extend(values)
        if len(ready) >= batcher.count:
            wake_up()

    task = loop.create_task(drive(stream, emit, credits))
    task.add_done_callback(lambda _: wake_up())
    while True:
        if not task.done():
            wake = loop.create_future()
            loop.run_until_complete(wake)
            wake = None
        if timer is not None:
            timer.cancel()
            timer = None
        if ready:
            batch = ready[:]
            ready.clear()
            yield (_BATCH, batch)
            credits.ack(len(batch))
        if task.done():
            yield (_FINAL, task.result())
            return
