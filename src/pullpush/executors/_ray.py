"""The Ray executor: task runners run as Ray tasks, on a local Ray or a cluster.

Data flow, with C the caller's loop::

    C  submit ──> _remote_call.remote(runner)      a plain or coroutine function: a
                                                   normal Ray task, one result
              or  _remote_stream.remote(runner)    a generator function: a Ray
                                                   streaming-generator task
                  + one asyncio task on C awaiting the result, or reading the
                  task's ObjectRefGenerator
    Ray worker: calls the runner; a stream's values go out in batches (bounded by
                count and bytes, flushed once a batch is ``flush_s`` old when the next
                value comes, or at once when the stream pauses on an async await)
    C  each batch ──> credits ──> TaskEvents
    C  cancel ──> ray.cancel(task); after ``cancel_grace``, ray.cancel(force=True);
                  the end is reported once the Ray task has ended

Which kind of Ray task a runner gets is decided in the driver from the function
(``functools.partial`` unwrapped): generator and async generator functions stream;
anything else runs as a normal task, which is several times cheaper. A function that
*returns* a stream (not a generator function itself) then still works, but its
values arrive together when it ends: pass ``streaming=True`` to stream every runner.

Ray's lifetime: a local Ray that pullpush starts is shared by every
:class:`RayExecutor` in the process (and the runners they serve), reference-counted:
it starts with the first executor to start and stops when the last one closes
(``_SharedRay``). A Ray this process connected itself (``ray.init``) is used as it
is and never shut down.

``ray`` is imported only when a :class:`RayExecutor` is created (extra
``pullpush[ray]``). On a cluster, ``pullpush`` must be importable on the workers.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import importlib
import inspect
import re
import sys
import threading
import time
from collections.abc import Callable, Generator, Mapping
from types import GeneratorType
from typing import Any

from .._exceptions import RemoteTraceback, WorkerCrashedError
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

__all__ = ["RayExecutor", "ray_resources"]

# What a streaming Ray task yields: (kind, payload): a batch (a list) of INTERMEDIATE
# values, or the FINAL value.
_BATCH, _FINAL = EnvelopeType.INTERMEDIATE, EnvelopeType.FINAL

_ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")

_INSTALL_HINT = "RayExecutor needs Ray: pip install 'pullpush[ray]'"

# Ray's exceptions that mean the task's worker or node is gone.
_CRASHES = ("WorkerCrashedError", "NodeDiedError", "LocalRayletDiedError", "OutOfMemoryError")


def _import_ray() -> Any:
    try:
        return importlib.import_module("ray")
    except ImportError as missing:
        raise ImportError(_INSTALL_HINT) from missing


# -- in the Ray worker ------------------------------------------------------------------------


def _remote_call(runner: TaskRunner) -> tuple[list[Any] | None, Any]:
    """Ray worker, a normal task: call ``runner``; return ``(values, final)``.

    ``values`` is ``None`` for a plain result, else the values of the stream the
    runner returned (it is not a generator function, so it was not streamed), all
    of them, driven to the end here.
    """
    finished, result = run_sync_step(runner)
    if finished:
        return None, result
    values: list[Any] = []
    if type(result) is GeneratorType:
        final = _drain_sync(result, values)
        return values, final
    from ._thread import _new_loop

    loop = _new_loop()
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
        leftovers = asyncio.all_tasks(loop)
        for leftover in leftovers:
            leftover.cancel()
        if leftovers:
            loop.run_until_complete(asyncio.gather(*leftovers, return_exceptions=True))
        loop.run_until_complete(loop.shutdown_asyncgens())
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


def _remote_stream(
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
    from ._thread import _new_loop

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
    import ctypes

    if thread.ident is not None:
        ctypes.pythonapi.PyThreadState_SetAsyncExc(
            ctypes.c_ulong(thread.ident), ctypes.py_object(KeyboardInterrupt)
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


# -- the Ray this process started ----------------------------------------------------------


class _SharedRay:
    """The local Ray (or cluster connection) that pullpush started, shared by every
    :class:`RayExecutor` of the process, and the thread that hosts it.

    Ray starts its processes with ``PR_SET_PDEATHSIG``, which Linux ties to the
    *thread* that started them: if that thread ended, the Ray processes would be
    killed. So ``ray.init`` runs on a thread of its own (no caller's loop is blocked
    for the seconds it takes) that then waits until the last user is gone, runs
    ``ray.shutdown`` and ends.

    Module state, guarded by ``_LOCK`` (a ``threading.Lock``, held only for
    bookkeeping, never across an await): ``_CURRENT`` is the Ray pullpush started
    and not yet began stopping, with its user count; ``_STOPPING`` the one being
    shut down, which a new start waits for. Futures are ``concurrent.futures``, so
    executors on any loop or thread may wait for them.
    """

    def __init__(self, ray: Any, init_kwargs: dict[str, Any]) -> None:
        self.ray = ray
        self.init_kwargs = init_kwargs
        self.users = 1
        self.started: concurrent.futures.Future[None] = concurrent.futures.Future()
        self.stopped: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._main, name="pullpush-ray", daemon=True)
        self.thread.start()

    def _main(self) -> None:
        global _CURRENT
        try:
            self.ray.init(**self.init_kwargs)
        except BaseException as error:
            with _LOCK:
                if _CURRENT is self:
                    _CURRENT = None
            self.started.set_exception(error)
            self.stopped.set_result(None)
            return
        self.started.set_result(None)
        self._stop.wait()
        try:
            self.ray.shutdown()
        except BaseException as error:
            self.stopped.set_exception(error)
        else:
            self.stopped.set_result(None)

    def stop(self) -> None:
        self._stop.set()


_LOCK = threading.Lock()
_CURRENT: _SharedRay | None = None
_STOPPING: _SharedRay | None = None


def _differences(have: Mapping[str, Any], want: Mapping[str, Any]) -> list[str]:
    return [key for key in sorted(want) if key not in have or have[key] != want[key]]


async def _acquire_ray(ray: Any, init_kwargs: dict[str, Any]) -> _SharedRay | None:
    """Make sure Ray is up for one more executor; return the :class:`_SharedRay` it
    now holds a share of, or ``None`` when this process connected to Ray itself.

    Raises ``ValueError`` when ``init_kwargs`` cannot apply to the Ray that is up.
    """
    global _CURRENT
    while True:
        with _LOCK:
            stopping = _STOPPING
            shared = _CURRENT
            if stopping is None or shared is not None:
                if shared is not None:
                    differ = _differences(shared.init_kwargs, init_kwargs)
                    if differ:
                        raise ValueError(
                            f"Ray is already running for another RayExecutor of this "
                            f"process, started with {shared.init_kwargs!r}; "
                            f"{', '.join(differ)}={{...}} cannot apply to it: give every "
                            "RayExecutor of a process the same Ray options, or none"
                        )
                    shared.users += 1
                elif ray.is_initialized():
                    _check_foreign_ray(ray, init_kwargs)
                    return None
                else:
                    shared = _CURRENT = _SharedRay(ray, init_kwargs)
                break
        # A Ray pullpush started is shutting down: start afresh once it is gone.
        await asyncio.wrap_future(stopping.stopped)
        with _LOCK:
            if _STOPPING is stopping:
                _clear_stopping(stopping)
    try:
        await asyncio.shield(asyncio.wrap_future(shared.started))
    except BaseException:
        await _release_ray(shared)
        raise
    return shared


def _clear_stopping(stopping: _SharedRay) -> None:
    global _STOPPING
    if _STOPPING is stopping:
        _STOPPING = None


def _check_foreign_ray(ray: Any, init_kwargs: Mapping[str, Any]) -> None:
    """This process connected to Ray itself: only options that match it may be given."""
    context = ray.get_runtime_context()
    problems = []
    address = init_kwargs.get("address")
    if address is not None and address != "auto" and address != context.gcs_address:
        problems.append(f"address={address!r} (connected to {context.gcs_address!r})")
    runtime_env = init_kwargs.get("runtime_env")
    if runtime_env is not None and dict(runtime_env) != dict(context.runtime_env or {}):
        problems.append(f"runtime_env={runtime_env!r} (the job has {context.runtime_env!r})")
    others = sorted(set(init_kwargs) - {"address", "runtime_env", "num_cpus"})
    if others:
        problems.append(f"{', '.join(others)} (options of ray.init)")
    if problems:
        raise ValueError(
            "this process is already connected to Ray (ray.init ran outside pullpush), "
            f"so these RayExecutor options cannot apply: {'; '.join(problems)}. Pass none "
            "of them to use that Ray as it is, or ray.shutdown() first"
        )


async def _release_ray(shared: _SharedRay) -> None:
    """One executor is done with ``shared``; the last one stops it and waits until
    Ray is down and its host thread ended."""
    global _CURRENT, _STOPPING
    with _LOCK:
        shared.users -= 1
        if shared.users > 0:
            return
        if _CURRENT is shared:
            _CURRENT = None
        _STOPPING = shared
        shared.stop()
    try:
        await asyncio.shield(asyncio.wrap_future(shared.stopped))
    finally:
        while shared.thread.is_alive():  # noqa: ASYNC110 - a thread has no awaitable end
            await asyncio.sleep(0.001)
        shared.thread.join()
        with _LOCK:
            _clear_stopping(shared)


def ray_resources(cost: Mapping[str, float] | None, known: Mapping[str, float]) -> dict[str, Any]:
    """The Ray task options for a task's ``cost`` (a :class:`ScheduledTask` cost).

    * ``cpu`` -> ``num_cpus`` (default 1), ``gpu`` -> ``num_gpus``,
      ``memory_mb`` -> ``memory`` (bytes);
    * any other key the cluster has as a resource (``known``, Ray's
      ``cluster_resources()``; e.g. ``licence`` for ``ray start --resources``) -> that
      custom resource;
    * other keys (``capacity``, pullpush's own units) are pullpush's alone: not asked
      of Ray, which could never grant a resource no node has.
    """
    options: dict[str, Any] = {"num_cpus": 1}
    if not cost:
        return options
    custom: dict[str, float] = {}
    for key, amount in cost.items():
        if key == "cpu":
            options["num_cpus"] = amount
        elif key == "gpu":
            options["num_gpus"] = amount
        elif key == "memory_mb":
            options["memory"] = int(amount * 1024 * 1024)
        elif key in known and key not in ("CPU", "GPU", "memory"):
            custom[key] = amount
    if custom:
        options["resources"] = custom
    return options


# -- on the caller's loop ------------------------------------------------------------------


def _streams(runner: Any) -> bool:
    """Whether ``runner`` is a generator function (``functools.partial`` unwrapped),
    so that it runs as a streaming Ray task."""
    while isinstance(runner, functools.partial):
        runner = runner.func
    return inspect.isgeneratorfunction(runner) or inspect.isasyncgenfunction(runner)


class RayExecutor(Executor):
    """Run task runners as Ray tasks, streaming their envelopes back while they run.

    Every runner is cloudpickled (closures and lambdas work). A generator or async
    generator function runs as a Ray streaming-generator task, its values sent back
    in batches while it runs (at most ``batch_size`` values or about ``batch_bytes``
    bytes each; a batch older than ``flush_s`` goes out with the next value, and an
    async stream's pending values go out ``flush_s`` after the first of them even
    if no other comes); anything else -- a plain or coroutine function -- runs as a
    normal Ray task (cheaper), its result read once it ends (a stream it returns is
    driven to its end in the worker and its values arrive together; ``streaming=True``
    streams every runner). Async runners run on a private event loop in the worker.

    Ordering: a task's envelopes arrive in the order it produced them, the terminal
    one last.

    Backpressure: the driver reads a task's stream only while the task has fewer
    than ``credit_window`` envelopes unread by the consumer, and the Ray task is
    started with ``_generator_backpressure_num_objects`` set so that Ray pauses the
    generator when about ``credit_window`` values wait unread. Nothing is dropped.

    Cancellation and timeouts: ``ray.cancel``, which raises ``KeyboardInterrupt`` in
    the task -- an async runner is cancelled at once, Python code at its next
    bytecode, but a call blocked in C (``time.sleep``, a lock) only when it returns --
    or drops the task if it has not started. A task still running ``cancel_grace``
    seconds later is cancelled with ``force=True``: Ray kills its worker process
    (and starts another). ``force_cancel=True`` forces at once. Either way the task's
    cancellation or timeout error is reported once the Ray task has ended, never
    while it still runs.

    Errors: an exception raised by the runner keeps its type (the original, not
    Ray's wrapper), with the worker's traceback chained as ``__cause__``
    (:class:`~pullpush.RemoteTraceback`). A worker that died, a node lost, a raylet
    gone: :class:`~pullpush.WorkerCrashedError`, Ray's exception as its
    ``__cause__``. Any other Ray failure (an object lost, a value the driver cannot
    unpickle) is reported as Ray raised it, after the Ray task was stopped and has
    ended. Ray's task retries are off (``max_retries=0``): a streaming task replayed
    after a crash would repeat values already delivered. A runner that cannot be
    pickled is rejected by ``submit`` (the pool runners turn that into an ERROR).

    Costs: a task submitted with a ``cost`` (the :class:`ScheduledTaskPoolRunner`
    passes each :class:`ScheduledTask`'s) asks Ray for the resources
    :func:`ray_resources` maps it to: ``cpu`` -> ``num_cpus``, ``gpu`` ->
    ``num_gpus``, ``memory_mb`` -> ``memory``, a key the cluster has as a custom
    resource -> that resource. Other tasks ask for one CPU.

    Capacity: ``num_cpus`` tasks at once, or else the cluster's CPUs, polled every
    ``poll_interval`` seconds (``ray.cluster_resources()``), so nodes that join or
    leave change what the runners admit.

    Args:
        address: the cluster to connect to (``ray.init(address=...)``, e.g.
            ``"auto"`` or ``"10.0.0.1:6379"``); ``None`` starts a local Ray, unless
            this process is already connected to one, which is then used as it is.
            Ray Client addresses (``ray://``) are refused: Ray Client cannot run
            streaming tasks; run the driver on a node of the cluster instead.
        num_cpus: the executor's capacity, i.e. how many tasks run at once (default:
            the cluster's CPUs, polled); also the CPUs of a local Ray started here.
        credit_window: INTERMEDIATE envelopes a task may have unread (>= 1).
        force_cancel: cancel by killing the task's worker process at once.
        cancel_grace: seconds a cancelled task gets before the forced cancel.
        streaming: ``True``: every runner runs as a streaming task; ``None``
            (default): generator functions only.
        batch_size, batch_bytes, flush_s: the batching of a stream's values.
        poll_interval: seconds between reads of the cluster's CPUs.
        **ray_init_kwargs: more arguments for ``ray.init`` (``runtime_env``...).

    Raises:
        ImportError: Ray is not installed (``pip install 'pullpush[ray]'``).
        ValueError: a ``ray://`` address; at :meth:`start`, options that cannot
            apply to the Ray already up (another executor's, or one this process
            connected itself) with different ``address``, ``runtime_env`` or other
            ``ray.init`` options.

    Lifetime: a local Ray started by pullpush is shared by all executors of the
    process and shut down when the last of them closes; :meth:`start` waits (off
    the loop) for it, :meth:`aclose` cancels what runs, waits for it, and gives the
    executor's share back.
    """

    name = "ray"
    takes_costs = True

    def __init__(
        self,
        address: str | None = None,
        *,
        num_cpus: int | None = None,
        credit_window: int = 256,
        force_cancel: bool = False,
        cancel_grace: float = 1.0,
        streaming: bool | None = None,
        batch_size: int = 256,
        batch_bytes: int = 1 << 20,
        flush_s: float = 0.005,
        poll_interval: float = 1.0,
        **ray_init_kwargs: Any,
    ) -> None:
        super().__init__()
        if address is not None and not isinstance(address, str):
            raise TypeError(f"address must be a str or None, got {type(address).__name__}")
        if address is not None and address.startswith("ray://"):
            raise ValueError(
                f"address={address!r}: Ray Client (ray://) cannot run the streaming "
                "tasks RayExecutor uses; run the driver on a node of the cluster and "
                "pass address='auto' (or the head's GCS address, host:6379)"
            )
        if num_cpus is not None:
            check_int("num_cpus", num_cpus, minimum=1)
        self.credit_window = check_int("credit_window", credit_window, minimum=1)
        if not isinstance(force_cancel, bool):
            raise TypeError(f"force_cancel must be a bool, got {type(force_cancel).__name__}")
        if streaming not in (None, True):
            raise ValueError(f"streaming must be None or True, got {streaming!r}")
        self.batch_size = check_int("batch_size", batch_size, minimum=1)
        self.batch_bytes = check_int("batch_bytes", batch_bytes, minimum=1)
        for what, seconds in (
            ("cancel_grace", cancel_grace),
            ("flush_s", flush_s),
            ("poll_interval", poll_interval),
        ):
            if not isinstance(seconds, (int, float)) or not 0 <= seconds < float("inf"):
                raise ValueError(f"{what} must be a finite number of seconds >= 0")
        self.force_cancel = force_cancel
        self.cancel_grace = float(cancel_grace)
        self.streaming = streaming
        self.flush_s = float(flush_s)
        self.poll_interval = float(poll_interval)
        self.address = address
        self.num_cpus = num_cpus
        self.ray_init_kwargs = ray_init_kwargs
        self._ray = _import_ray()
        self._call: Any = None
        self._stream: Any = None
        self._shared: _SharedRay | None = None  # this executor's share of pullpush's Ray
        self._capacity: CapacitySource | None = None
        self._poller: asyncio.Task[None] | None = None
        self._known: Mapping[str, float] = {}
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
        if _ray_client_connected(ray):
            raise ValueError(
                "this process is connected to Ray through Ray Client (ray://), which "
                "cannot run the streaming tasks RayExecutor uses"
            )
        kwargs = dict(self.ray_init_kwargs)
        if self.address is not None:
            kwargs["address"] = self.address
        elif self.num_cpus is not None:
            kwargs.setdefault("num_cpus", self.num_cpus)
        self._shared = await _acquire_ray(ray, kwargs)
        try:
            self._known = ray.cluster_resources()
            self._capacity = CapacitySource(self.num_cpus or _cpus(self._known))
            if self.num_cpus is None and self.poll_interval > 0:
                self._poller = asyncio.get_running_loop().create_task(self._poll())
        except BaseException:
            shared, self._shared = self._shared, None
            if shared is not None:
                await _release_ray(shared)
            raise
        # Ray pauses the generator when this many of its objects wait unread; each
        # holds a batch, so credit_window values in batches of batch_size.
        window = max(1, -(-self.credit_window // self.batch_size))
        self._options: dict[bool, dict[str, Any]] = {
            False: {"num_cpus": 1, "max_retries": 0},
            True: {
                "num_returns": "streaming",
                "num_cpus": 1,
                "max_retries": 0,
                "_generator_backpressure_num_objects": window,
            },
        }
        self._functions: dict[bool, Any] = {
            False: ray.remote(_remote_call),
            True: ray.remote(_remote_stream),
        }
        self._call = self._functions[False].options(**self._options[False])
        self._stream = self._functions[True].options(**self._options[True])
        self._batching = (
            min(self.batch_size, self.credit_window),
            self.batch_bytes,
            self.flush_s,
        )

    async def _poll(self) -> None:
        """Follow the cluster's CPUs: nodes may join or leave."""
        ray = self._ray
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.poll_interval)
            try:
                known = await loop.run_in_executor(None, ray.cluster_resources)
            except Exception:
                continue  # Ray is briefly unreachable: keep the last limit
            self._known = known
            capacity = self._capacity
            if capacity is not None and capacity.limit != _cpus(known):
                capacity.set_limit(_cpus(known))

    def submit(
        self,
        task_id: int,
        runner: TaskRunner,
        events: TaskEvents,
        *,
        cost: Mapping[str, float] | None = None,
    ) -> TaskHandle:
        """Start ``runner`` as a Ray task (Ray queues it until its resources are
        free); ``cost`` (optional) is mapped to Ray resources (:func:`ray_resources`)."""
        if self._closed:
            raise ExecutorClosedError("RayExecutor is closed")
        if self._call is None:
            raise RuntimeError(
                "RayExecutor is not started: await executor.start() or use "
                "'async with RayExecutor() as executor'"
            )
        streaming = bool(self.streaming) or _streams(runner)
        remote = self._stream if streaming else self._call
        if cost:
            options = {**self._options[streaming], **ray_resources(cost, self._known)}
            remote = self._functions[streaming].options(**options)
        # Submitted now, so Ray sees the tasks in submit order.
        ref = remote.remote(runner, self._batching) if streaming else remote.remote(runner)
        task = _RayTask(
            task_id,
            as_task_events(events),
            self._tasks.discard,
            ref,
            streaming,
            self,
        )
        self._tasks.add(task)
        return task

    async def _aclose(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
            await asyncio.gather(self._poller, return_exceptions=True)
        error = ExecutorClosedError("RayExecutor closed while the task ran")
        tasks = [t.consumer for t in self._tasks]
        for task in list(self._tasks):
            task.cancel(error)
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        shared, self._shared = self._shared, None
        if shared is not None:
            await _release_ray(shared)


def _cpus(resources: Mapping[str, float]) -> int:
    return max(1, int(resources.get("CPU", 1)))


def _ray_client_connected(ray: Any) -> bool:
    try:
        client = importlib.import_module("ray.util.client")
        return bool(client.ray.is_connected())
    except Exception:
        return False


class _RayTask(BaseTaskHandle):
    """One Ray task, awaited (a normal task) or read (a streaming one) by one asyncio
    task on the caller's loop: a TaskHandle.

    Everything here lives on the caller's loop (Ray's client calls are thread-safe
    and do not block for long: ``.remote()`` submits, ``ray.cancel`` sends a request).
    """

    __slots__ = ("consumer", "credits", "escalation", "executor", "ref", "streaming")

    def __init__(
        self,
        task_id: int,
        events: TaskEvents,
        forget: Callable[[_RayTask], None],
        ref: Any,
        streaming: bool,
        executor: RayExecutor,
    ) -> None:
        super().__init__(task_id, events, forget)
        self.credits = Credits(executor.credit_window)
        self.ref = ref
        self.streaming = streaming
        self.executor = executor
        self.escalation: asyncio.TimerHandle | None = None
        consume = self._consume_stream() if streaming else self._consume_call()
        self.consumer = asyncio.get_running_loop().create_task(consume)

    async def _consume_call(self) -> None:
        """Await the normal task's result; report its values, then its end."""
        error: BaseException | None = None
        final: Any = None
        try:
            values, final = await self.ref
        except asyncio.CancelledError:
            self.cancel()  # our loop is shutting down: stop the Ray task too
            raise
        except Exception as failed:
            error = self._translate(failed)
        else:
            if values and not self.cancel_requested:
                self.events.task_intermediates(self.task_id, values)
        self._end(error, final)

    async def _consume_stream(self) -> None:
        """Read the task's stream to its end; report the values, then the end.

        A failure to read it (a value the driver cannot unpickle) stops the Ray task
        and is reported only once its stream has ended."""
        events, task_id, credits = self.events, self.task_id, self.credits
        final: Any = None
        error: BaseException | None = None
        generator = self.ref
        try:
            async for ref in generator:
                try:
                    kind, value = await ref
                except Exception as failed:
                    error = self._translate(failed)
                    self._stop_remote()
                    break
                if kind is _FINAL:
                    final = value
                elif not self.cancel_requested:
                    # A batch goes when the window has room (it may overshoot by
                    # less than a batch: batches are at most credit_window long).
                    await credits.wait_for_room()
                    credits.outstanding += len(value)
                    if not self.cancel_requested:
                        events.task_intermediates(task_id, value)
            if error is not None:
                await _drain(generator)
        except asyncio.CancelledError:
            self.cancel()  # our loop is shutting down: stop the Ray task too
            raise
        except Exception as failed:
            error = self._translate(failed)
            self._stop_remote()
            await _drain(generator)
        self._end(error, final)

    def _translate(self, failed: BaseException) -> BaseException:
        """What the task's end reports for ``failed``, Ray's exception."""
        ray = self.executor._ray
        if isinstance(failed, ray.exceptions.RayTaskError):
            cause = getattr(failed, "cause", None)
            if not isinstance(cause, tuple(_crash_types(ray))):
                return _unwrap(failed)
            failed = cause  # type: ignore[assignment]
        if isinstance(failed, tuple(_crash_types(ray))):
            crashed = WorkerCrashedError(
                self.task_id,
                None,
                None,
                None,
                message=(
                    f"Ray lost the worker running task {self.task_id} "
                    f"({type(failed).__name__}): {_first_line(failed)}"
                ),
            )
            crashed.__cause__ = failed
            return crashed
        return failed

    def _end(self, error: BaseException | None, final: Any) -> None:
        if self.escalation is not None:
            self.escalation.cancel()
            self.escalation = None
        self.report_end(error, final)

    def cancel(self, error: BaseException | None = None) -> None:
        if not self.request_cancel(error):
            return
        # Wake a read paused by flow control: nothing more is reported but the end.
        self.credits.ack(self.credits.outstanding)
        self._stop_remote()

    def _stop_remote(self) -> None:
        """Cancel the Ray task; force it after the grace if it still runs."""
        executor = self.executor
        force = executor.force_cancel
        try:
            executor._ray.cancel(self.ref, force=force)
        except Exception:  # already finished, or Ray is gone: the task ends anyway
            return
        if not force and self.escalation is None and not self.ended:
            self.escalation = asyncio.get_running_loop().call_later(
                executor.cancel_grace, self._force
            )

    def _force(self) -> None:
        self.escalation = None
        if self.ended:
            return
        try:
            self.executor._ray.cancel(self.ref, force=True)
        except Exception:
            pass

    def ack(self, count: int = 1) -> None:
        self.credits.ack(count)


async def _drain(generator: Any) -> None:
    """Read a stopped stream to its end (the Ray task's end), ignoring its values."""
    while True:
        try:
            await generator.__anext__()
        except StopAsyncIteration:  # noqa: PERF203 - a stopped stream has few left
            return
        except Exception:
            continue


def _crash_types(ray: Any) -> list[type[BaseException]]:
    exceptions = ray.exceptions
    return [getattr(exceptions, name) for name in _CRASHES if hasattr(exceptions, name)]


def _first_line(error: BaseException) -> str:
    text = _ANSI_ESCAPE.sub("", str(error)).strip()
    return text.splitlines()[0] if text else ""


def _unwrap(failed: Any) -> BaseException:
    """The runner's own exception from Ray's wrapper, with the worker's traceback."""
    cause = getattr(failed, "cause", None)
    if not isinstance(cause, BaseException):
        return failed  # type: ignore[no-any-return]
    if not isinstance(cause.__cause__, RemoteTraceback):
        text = str(getattr(failed, "traceback_str", failed))
        cause.__cause__ = RemoteTraceback(_ANSI_ESCAPE.sub("", text))  # Ray colours names
    return cause
