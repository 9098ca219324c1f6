"""The Ray executor: task runners run as Ray tasks, on a local Ray or a cluster.

Data flow, with C the caller's loop::

    C  submit ──> _remote_stream.remote(runner)  (cloudpickled; Ray queues the task)
                  + one asyncio task on C reading the task's ObjectRefGenerator
    Ray worker: _remote_stream calls the runner; iterates a sync generator, or awaits /
                drives (drive()) what must be, on a private event loop; yields
                (kind, value) pairs as they exist
    C  async for ref in the generator: await ref ──> credits ──> TaskEvents
    C  cancel ──> ray.cancel(generator); the end is reported once the stream has ended

Every runner runs as one Ray streaming-generator task (``num_returns="streaming"``),
because what a runner returns -- a value, an awaitable, a stream -- is known only once
it is called, in the worker: INTERMEDIATE envelopes arrive while the task runs, and a
plain function's task yields a single FINAL pair.

``ray`` is imported only when a :class:`RayExecutor` is created (extra
``pullpush[ray]``). On a cluster, ``pullpush`` must be importable on the workers.
"""

from __future__ import annotations

import asyncio
import functools
import importlib
import re
import threading
from collections import deque
from collections.abc import Callable, Generator
from types import GeneratorType
from typing import Any

from .._exceptions import RemoteTraceback
from .._util import check_int
from ..capacity import CapacitySource
from ..runners._envelope import EnvelopeType
from ._base import (
    BaseTaskHandle,
    Executor,
    ExecutorClosedError,
    TaskEvents,
    TaskHandle,
    TaskRunner,
    as_task_events,
)
from ._drive import Credits, drive, needs_driving, run_sync_step

__all__ = ["RayExecutor"]

# What the Ray task yields: (kind, value), the kind in the envelopes' vocabulary.
_INTERMEDIATE, _FINAL = EnvelopeType.INTERMEDIATE, EnvelopeType.FINAL

_ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")

_INSTALL_HINT = "RayExecutor needs Ray: pip install 'pullpush[ray]'"


def _import_ray() -> Any:
    try:
        return importlib.import_module("ray")
    except ImportError as missing:
        raise ImportError(_INSTALL_HINT) from missing


# -- in the Ray worker ------------------------------------------------------------------------


def _remote_stream(runner: TaskRunner) -> Generator[tuple[EnvelopeType, Any], None, None]:
    """Ray worker: call ``runner``; yield ``(_INTERMEDIATE, value)`` per value it
    produces, then ``(_FINAL, value)``. An error propagates (Ray wraps it).

    Each value is yielded to Ray as soon as it exists: a sync generator is iterated
    directly; an awaitable is awaited, and an async iterable driven by
    :func:`drive`, on a private event loop that runs only until the next value is
    out. Ray's ``ray.cancel`` raises ``KeyboardInterrupt`` here; the ``finally``
    cancels what still runs on the private loop and closes it.
    """
    finished, result = run_sync_step(runner)
    if finished:
        yield (_FINAL, result)
        return
    if type(result) is GeneratorType:
        yield from _sync_stream(result)
        return
    from ._thread import _new_loop

    loop = _new_loop()
    try:
        if hasattr(type(result), "__await__"):
            result = loop.run_until_complete(result)
            if type(result) is GeneratorType:
                yield from _sync_stream(result)
                return
            if not needs_driving(result):
                yield (_FINAL, result)
                return
        yield from _async_stream(loop, result)
    finally:
        try:
            leftovers = asyncio.all_tasks(loop)
            for leftover in leftovers:
                leftover.cancel()
            if leftovers:
                loop.run_until_complete(asyncio.gather(*leftovers, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            loop.close()


def _sync_stream(
    generator: Generator[Any, Any, Any],
) -> Generator[tuple[EnvelopeType, Any], None, None]:
    """Ray worker: each value of a sync generator, then its return value as FINAL."""
    try:
        while True:
            try:
                item = next(generator)
            except StopIteration as stop:
                yield (_FINAL, stop.value)
                return
            yield (_INTERMEDIATE, item)
    finally:
        generator.close()


def _async_stream(
    loop: asyncio.AbstractEventLoop, stream: Any
) -> Generator[tuple[EnvelopeType, Any], None, None]:
    """Ray worker: drive an async iterable on ``loop``, one value at a time.

    The loop runs until :func:`drive` emits a value or ends; a window of one credit
    parks it before it emits again, so each value is yielded to Ray as soon as the
    iterable produced it (at most one more is computed meanwhile).
    """
    ready: deque[Any] = deque()
    credits = Credits(1)
    wake: asyncio.Future[None] | None = None

    def wake_up() -> None:
        if wake is not None and not wake.done():
            wake.set_result(None)

    def emit(values: list[Any]) -> None:
        ready.extend(values)
        wake_up()

    task = loop.create_task(drive(stream, emit, credits))
    task.add_done_callback(lambda _: wake_up())
    while True:
        if not ready and not task.done():
            wake = loop.create_future()
            loop.run_until_complete(wake)
            wake = None
        while ready:
            yield (_INTERMEDIATE, ready.popleft())
            credits.ack(1)
        if task.done():
            yield (_FINAL, task.result())
            return


# -- on the caller's loop ------------------------------------------------------------------


class _RayHost:
    """The thread that starts a local Ray and lives until it shuts Ray down.

    Ray starts its processes with ``PR_SET_PDEATHSIG``, which Linux ties to the
    *thread* that started them: if that thread ended, the Ray processes would be
    killed. So ``ray.init`` runs on a thread of its own (the caller's loop is not
    blocked for the seconds it takes) that then waits for :meth:`stop`, runs
    ``ray.shutdown`` and ends. Futures cross back to the caller's loop through
    ``call_soon_threadsafe``; ``_stop`` is the only state the thread reads.
    """

    def __init__(self, ray: Any, init_kwargs: dict[str, Any]) -> None:
        loop = asyncio.get_running_loop()
        self._loop = loop
        self.started: asyncio.Future[None] = loop.create_future()
        self.stopped: asyncio.Future[None] = loop.create_future()
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._main, args=(ray, init_kwargs), name="pullpush-ray", daemon=True
        )

    def _post(self, future: asyncio.Future[None], error: BaseException | None) -> None:
        def settle() -> None:
            if future.done():
                return
            if error is None:
                future.set_result(None)
            else:
                future.set_exception(error)

        try:
            self._loop.call_soon_threadsafe(settle)
        except RuntimeError:
            pass  # the caller's loop is closed: nobody is waiting any more

    def _main(self, ray: Any, init_kwargs: dict[str, Any]) -> None:
        """The host thread: init, wait, shut down."""
        try:
            ray.init(**init_kwargs)
        except BaseException as error:
            self._post(self.started, error)
            self._post(self.stopped, None)
            return
        self._post(self.started, None)
        self._stop.wait()
        try:
            ray.shutdown()
        except BaseException as error:
            self._post(self.stopped, error)
        else:
            self._post(self.stopped, None)

    async def start(self) -> None:
        """Start Ray; return once it is up (raise what ``ray.init`` raised)."""
        self._thread.start()
        try:
            await asyncio.shield(self.started)
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        """Shut Ray down and join the thread, without blocking the loop."""
        self._stop.set()
        try:
            await asyncio.shield(self.stopped)
        finally:
            while self._thread.is_alive():  # noqa: ASYNC110 - a thread has no awaitable end
                await asyncio.sleep(0.001)
            self._thread.join()


class RayExecutor(Executor):
    """Run task runners as Ray tasks, streaming their envelopes back while they run.

    Every runner is cloudpickled (closures and lambdas work) and runs as one Ray
    streaming-generator task with one CPU: a plain function yields its result, a sync
    or async generator (or an awaitable resolving to a stream) yields each value as
    it is produced, so INTERMEDIATE envelopes arrive while the task runs. Async
    runners run on a private event loop in the Ray worker.

    Ordering: a task's envelopes arrive in the order it produced them, the terminal
    one last.

    Backpressure: the driver reads a task's stream only while the task has fewer
    than ``credit_window`` envelopes unread by the consumer, and the Ray task is
    started with ``_generator_backpressure_num_objects=credit_window``, so Ray pauses
    the generator when that many values wait unread. Nothing is dropped.

    Cancellation: ``ray.cancel``. Not forced (the default), Ray raises
    ``KeyboardInterrupt`` in the task -- an async runner is cancelled at once, Python
    code at its next bytecode, but a call blocked in C (``time.sleep``, a lock) only
    when it returns -- or drops the task if it has not started. ``force_cancel=True``
    kills the worker process instead (Ray starts another). Either way the task's
    cancellation or timeout error is reported once its stream has ended, never while
    it still runs; once ``cancel()`` was called, the task ends with that error.

    Errors: an exception raised by the runner keeps its type (the original, not
    Ray's wrapper), with the worker's traceback chained as ``__cause__``; Ray's own
    failures (``WorkerCrashedError``, ``ObjectLostError``...) are reported as they are.
    Ray's task retries are off (``max_retries=0``): a streaming task replayed after a
    crash would repeat values already delivered. A runner that cannot be pickled is
    rejected by ``submit`` (the pool runners turn that into an ERROR envelope).

    Args:
        address: the cluster to connect to (``ray.init(address=...)``); ``None``
            starts a local Ray, unless this process is already connected to one,
            which is then used as it is.
        num_cpus: the executor's capacity, i.e. how many tasks run at once (default:
            the cluster's CPUs); also the CPUs of a local Ray this executor starts.
        credit_window: INTERMEDIATE envelopes a task may have unread (>= 1).
        force_cancel: cancel by killing the task's worker process (see above).
        **ray_init_kwargs: more arguments for ``ray.init``.

    Raises:
        ImportError: Ray is not installed (``pip install 'pullpush[ray]'``).

    :meth:`start` connects (``ray.init`` runs in a thread that lives as long as the
    Ray it started, so the loop is not blocked); :meth:`aclose` cancels what runs,
    waits for it, and shuts Ray down only if this executor started it.
    """

    name = "ray"

    def __init__(
        self,
        address: str | None = None,
        *,
        num_cpus: int | None = None,
        credit_window: int = 256,
        force_cancel: bool = False,
        **ray_init_kwargs: Any,
    ) -> None:
        super().__init__()
        if address is not None and not isinstance(address, str):
            raise TypeError(f"address must be a str or None, got {type(address).__name__}")
        if num_cpus is not None:
            check_int("num_cpus", num_cpus, minimum=1)
        self.credit_window = check_int("credit_window", credit_window, minimum=1)
        if not isinstance(force_cancel, bool):
            raise TypeError(f"force_cancel must be a bool, got {type(force_cancel).__name__}")
        self.force_cancel = force_cancel
        self.address = address
        self.num_cpus = num_cpus
        self.ray_init_kwargs = ray_init_kwargs
        self._ray = _import_ray()
        self._remote: Any = None
        self._host: _RayHost | None = None  # set when this executor started Ray
        self._capacity: CapacitySource | None = None
        # Caller's loop only. Invariant: every task submitted whose terminal event has
        # not been delivered yet.
        self._tasks: set[_RayTask] = set()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "started" if self._started else "new"
        limit = None if self._capacity is None else self._capacity.limit
        return f"<RayExecutor {state} cpus={limit} running={len(self._tasks)}>"

    @property
    def capacity(self) -> CapacitySource | None:
        """One unit per task that may run at once (known once started)."""
        return self._capacity

    @property
    def running(self) -> int:
        """Tasks submitted and not yet reported ended."""
        return len(self._tasks)

    async def _start(self) -> None:
        ray = self._ray
        if not ray.is_initialized():
            kwargs = dict(self.ray_init_kwargs)
            if self.address is not None:
                kwargs["address"] = self.address
            elif self.num_cpus is not None:
                kwargs.setdefault("num_cpus", self.num_cpus)
            host = _RayHost(ray, kwargs)
            await host.start()
            self._host = host
        cpus = self.num_cpus
        if cpus is None:
            cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
        self._capacity = CapacitySource(cpus)
        self._remote = ray.remote(_remote_stream).options(
            num_returns="streaming",
            num_cpus=1,
            max_retries=0,
            _generator_backpressure_num_objects=self.credit_window,
        )

    def submit(self, task_id: int, runner: TaskRunner, events: TaskEvents) -> TaskHandle:
        """Start ``runner`` as a Ray task (Ray queues it until a CPU is free)."""
        if self._closed:
            raise ExecutorClosedError("RayExecutor is closed")
        if self._remote is None:
            raise RuntimeError(
                "RayExecutor is not started: await executor.start() or use "
                "'async with RayExecutor() as executor'"
            )
        ray = self._ray
        task = _RayTask(
            task_id,
            as_task_events(events),
            self._tasks.discard,
            # Submitted now, so Ray sees the tasks in submit order.
            self._remote.remote(runner),
            self.credit_window,
            ray.exceptions.RayTaskError,
            functools.partial(ray.cancel, force=self.force_cancel),
        )
        self._tasks.add(task)
        return task

    async def _aclose(self) -> None:
        error = ExecutorClosedError("RayExecutor closed while the task ran")
        tasks = [t.consumer for t in self._tasks]
        for task in list(self._tasks):
            task.cancel(error)
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        host, self._host = self._host, None
        if host is not None:
            await host.stop()


class _RayTask(BaseTaskHandle):
    """One Ray task, read by one asyncio task on the caller's loop: a TaskHandle.

    Everything here lives on the caller's loop (Ray's client calls are thread-safe
    and do not block for long: ``.remote()`` submits, ``ray.cancel`` sends a request).
    """

    __slots__ = ("cancel_remote", "consumer", "credits", "generator", "task_error_type")

    def __init__(
        self,
        task_id: int,
        events: TaskEvents,
        forget: Callable[[_RayTask], None],
        generator: Any,
        credit_window: int,
        task_error_type: type[BaseException],
        cancel_remote: Callable[[Any], object],
    ) -> None:
        super().__init__(task_id, events, forget)
        self.credits = Credits(credit_window)
        self.generator = generator
        self.task_error_type = task_error_type
        self.cancel_remote = cancel_remote
        self.consumer = asyncio.get_running_loop().create_task(self._consume())

    async def _consume(self) -> None:
        """Read the task's stream to its end; report the values, then the end."""
        events, task_id, credits = self.events, self.task_id, self.credits
        final: Any = None
        error: BaseException | None = None
        try:
            async for ref in self.generator:
                kind, value = await ref
                if kind is _FINAL:
                    final = value
                elif not self.cancel_requested:
                    await credits.take()
                    if not self.cancel_requested:
                        events.task_intermediate(task_id, value)
        except self.task_error_type as failed:
            error = _unwrap(failed)
        except asyncio.CancelledError:
            # Interleaving: this reader was cancelled from outside (its loop is
            # shutting down) before the stream ended: stop the Ray task too.
            self.cancel()
            raise
        except Exception as failed:  # Ray's own failures: a crashed worker, a lost object
            error = failed
        self.report_end(error, final)

    def cancel(self, error: BaseException | None = None) -> None:
        if not self.request_cancel(error):
            return
        # Wake a read paused by flow control: nothing more is reported but the end.
        self.credits.ack(self.credits.outstanding)
        try:
            self.cancel_remote(self.generator)
        except Exception:  # already finished, or Ray is gone: the stream ends anyway
            pass

    def ack(self, count: int = 1) -> None:
        self.credits.ack(count)


def _unwrap(failed: Any) -> BaseException:
    """The runner's own exception from Ray's wrapper, with the worker's traceback."""
    cause = getattr(failed, "cause", None)
    if not isinstance(cause, BaseException):
        return failed  # type: ignore[no-any-return]
    if cause.__cause__ is None:
        text = str(getattr(failed, "traceback_str", failed))
        cause.__cause__ = RemoteTraceback(_ANSI_ESCAPE.sub("", text))  # Ray colours names
    return cause
