"""The Ray executor: task runners run in Ray, on a local Ray or a cluster.

Data flow, with C the caller's loop and W the executor's waiter thread::

    C  submit ──> actor.call.remote(key, fn, args) a plain or coroutine function, Ray's
                                                   default options: a call to one of
                                                   the executor's actors, one per CPU,
                                                   each running its calls in order
                                                   (:mod:`._ray_actors`; the runner's
                                                   successors queue there)
              or  remote_call.remote(runner)       the same with a cost that asks Ray
                                                   for more, or a big runner: a
                                                   normal Ray task, one result
              or  remote_stream.remote(runner)     a generator function: a Ray
                                                   streaming-generator task, read by
                                                   one asyncio task on C
    W  ray.wait(the calls and normal tasks) ──> ray.get(those that ended, together)
              ──> C, one call_soon_threadsafe per batch ──> TaskEvents (an actor's
                  calls end in its order; a dead actor's queued calls go to another)
    Ray worker: calls the runner; a stream's values go out in batches (bounded by
                count and bytes, flushed once a batch is ``flush_s`` old when the next
                value comes, or at once when the stream pauses on an async await)
    C  each batch ──> credits ──> TaskEvents
    C  cancel ──> ray.cancel(task); after ``cancel_grace``, ray.cancel(force=True)
                  (an actor call: actor.cancel, in its "control" group, drops it
                  or interrupts it; after the grace, ray.kill(actor) and a
                  replacement); the end is reported once the Ray task has ended

Which kind of Ray task a runner gets is decided in the driver from the function
(``functools.partial`` unwrapped): generator and async generator functions stream;
anything else runs as an actor call (or a normal task), several times cheaper. A function that
*returns* a stream (not a generator function itself) then still works, but its
values arrive together when it ends: pass ``streaming=True`` to stream every runner.
The worker side is :mod:`._ray_worker`.

Ray's lifetime (:mod:`._ray_lifecycle`): a local Ray that pullpush starts is shared
by every :class:`RayExecutor` in the process (and the runners they serve),
reference-counted: it starts with the first executor to start and stops when the
last one closes, or ``keep_alive`` seconds later (``executor="ray"``: 300 s). A Ray
this process connected itself (``ray.init``) is used as it is and never shut down.

``ray`` is imported only when a :class:`RayExecutor` is created (extra
``pullpush[ray]``). On a cluster, ``pullpush`` must be importable on the workers.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import importlib
import time
from collections.abc import Mapping
from typing import Any, Literal

from .._util import check_int
from ..capacity import CapacitySource
from ._base import (
    Executor,
    ExecutorClosedError,
    TaskEvents,
    TaskHandle,
    TaskRunner,
    as_task_events,
)
from ._ray_actors import ActorsMixin, Answer
from ._ray_lifecycle import SharedRay, acquire_ray, release_ray, stop_idle_ray
from ._ray_options import (
    BIG_RUNNER,
    captured_bytes,
    cluster_cpus,
    ray_client_connected,
    ray_resources,
    streams,
)
from ._ray_task import RayTask
from ._ray_waiter import Waiter
from ._ray_worker import remote_call, remote_stream

__all__ = ["NAMED_KEEP_ALIVE", "RayExecutor", "named_ray_executor", "ray_resources"]

NAMED_KEEP_ALIVE = 300.0
"""Seconds a local Ray started for ``executor="ray"`` stays up after its run, so
that the next run finds it (see :meth:`RayExecutor.stop_idle_ray`)."""

_INSTALL_HINT = "RayExecutor needs Ray: pip install 'pullpush[ray]'"


def _import_ray() -> Any:
    try:
        return importlib.import_module("ray")
    except ImportError as missing:
        raise ImportError(_INSTALL_HINT) from missing


class RayExecutor(ActorsMixin, Executor):
    """Run task runners in Ray, streaming their envelopes back while they run.

    Every runner is cloudpickled (closures and lambdas work). A generator or async
    generator function runs as a Ray streaming-generator task, its values sent back
    in batches while it runs (at most ``batch_size`` values or about ``batch_bytes``
    bytes each; a batch older than ``flush_s`` goes out with the next value, and an
    async stream's pending values go out ``flush_s`` after the first of them even
    if no other comes); anything else -- a plain or coroutine function -- runs as a
    call to one of the executor's Ray actors (one per CPU, each running its calls
    in order, see :mod:`pullpush.executors._ray_actors`), or, when its cost asks Ray
    for anything but one CPU or it is big (unless it is a successor), as a normal
    Ray task; its result is read
    once it ends (a stream it returns is driven to its end in the worker and its
    values arrive together; ``streaming=True`` streams every runner). Async runners
    run on a private event loop in the worker.

    Ordering: a task's envelopes arrive in the order it produced them, the terminal
    one last.

    Backpressure: the driver reads a task's stream only while the task has fewer
    than ``credit_window`` envelopes unread by the consumer, and the Ray task is
    started with ``_generator_backpressure_num_objects`` set so that Ray pauses the
    generator when about ``credit_window`` values wait unread. Nothing is dropped.

    Cancellation and timeouts: a Ray task gets ``ray.cancel``, which raises
    ``KeyboardInterrupt`` in it -- an async runner is cancelled at once, Python code
    at its next bytecode, but a call blocked in C (``time.sleep``, a lock) only when
    it returns -- or drops it if it has not started; still running ``cancel_grace``
    seconds later, it is cancelled with ``force=True``: Ray kills its worker process
    (and starts another). An actor call not started yet is dropped by its actor
    (asked through a second concurrency group; not ``ray.cancel``, which stalls an
    actor's queue when the call has not reached it); a running one gets
    ``KeyboardInterrupt`` from its actor, with the same effect as in a Ray task;
    still running after ``cancel_grace``, its actor is killed and replaced, the
    calls queued behind it sent to the replacement.
    ``force_cancel=True`` forces (kills) at once. Either way the task's
    cancellation or timeout error is reported once it has ended in Ray, never while
    it still runs.

    Errors: an exception raised by the runner keeps its type (the original, not
    Ray's wrapper), with the worker's traceback chained as ``__cause__``
    (:class:`~pullpush.RemoteTraceback`). A worker or actor that died, a node lost,
    a raylet gone: :class:`~pullpush.WorkerCrashedError`, Ray's exception as its
    ``__cause__`` (a dead actor fails the call it ran; those queued behind it run in
    a replacement). Any other Ray failure (an object lost, a value the driver cannot
    unpickle) is reported as Ray raised it, after the Ray task was stopped and has
    ended. Ray's task retries are off (``max_retries=0``): a streaming task replayed
    after a crash would repeat values already delivered. A runner that cannot be
    pickled is rejected by ``submit`` (the pool runners turn that into an ERROR); a
    big one, pickled on a thread, ends with that error instead.

    Costs: a task submitted with a ``cost`` (the :class:`ScheduledTaskPoolRunner`
    passes each :class:`ScheduledTask`'s) asks Ray for the resources
    :func:`ray_resources` maps it to: ``cpu`` -> ``num_cpus``, ``gpu`` ->
    ``num_gpus``, ``memory_mb`` -> ``memory``, a key the cluster has as a custom
    resource -> that resource. Other tasks (no cost, or one that maps to one CPU
    alone) run in the executor's actors, each placed with one CPU and holding none
    while it lives (Ray's default for actors: idle actors never block the tasks a
    cost sends to Ray), spread over the nodes by their CPUs; the executor's slots
    bound how many tasks run.

    Capacity: one slot per CPU -- ``num_cpus``, or else the cluster's CPUs, polled
    every ``poll_interval`` seconds (``ray.cluster_resources()``), so nodes that
    join or leave change what the runners admit (and how many actors there are).
    Every submitted task runs (SPEC 3: a task holds its user capacity only while it
    runs), yet an actor need not wait for the driver between two tasks: a pool
    runner queues its next task in an actor behind one of its running tasks of the
    same cost, holding nothing, and the running task's slot and unit pass to it
    when it ends (the capacity hand-off, as in the process executor:
    :attr:`queues_successors`, :meth:`successor_room`, ``submit(after=)``). A
    task's ``timeout`` clock starts when it starts (:attr:`reports_starts`).
    ``prefetch`` (opt-in) adds slots per CPU for tasks queued in Ray behind the
    running ones, which hold their user capacity while they wait there; ``"auto"``
    starts at none and adapts to the tasks' durations, as the driver sees them:
    about 20 ms of queued work per CPU, at least one task and at most 64.

    Throughput: an actor keeps the functions it was sent (a ``functools.partial``
    travels as its function and arguments): a runner or function submitted again
    (the same object, e.g. ``[f] * n``) is pickled once per actor, then referred to
    by a key (the 256 most recent per actor); other runners are pickled with each
    task, as Ray does for arguments. A runner that captures big values (over
    1 MiB at a shallow look: closure, defaults, ``functools.partial`` arguments) is
    pickled on a thread, never on the caller's loop (a big successor too, the calls
    sent to its actor after it waiting meanwhile); still, each task pickles it
    again: put a big value in Ray's object store once (``ref = ray.put(value)``) and
    let the runner capture ``ref`` and call ``ray.get(ref)`` in the worker.

    Args:
        address: the cluster to connect to (``ray.init(address=...)``, e.g.
            ``"auto"`` or ``"10.0.0.1:6379"``); ``None`` starts a local Ray, unless
            this process is already connected to one, which is then used as it is.
            Ray Client addresses (``ray://``) are refused: Ray Client cannot run
            streaming tasks; run the driver on a node of the cluster instead.
        num_cpus: the executor's capacity, i.e. how many tasks run at once (default:
            the cluster's CPUs, polled); also the CPUs of a local Ray started here.
        credit_window: INTERMEDIATE envelopes a task may have unread (>= 1).
        force_cancel: cancel by killing the task's worker process (an actor call
            that runs: its actor) at once.
        cancel_grace: seconds a cancelled task gets before the forced cancel.
        streaming: ``True``: every runner runs as a streaming task; ``None``
            (default): generator functions only.
        batch_size, batch_bytes, flush_s: the batching of a stream's values.
        poll_interval: seconds between reads of the cluster's CPUs.
        prefetch: slots per CPU beyond the running tasks (``int`` >= 0, or
            ``"auto"``, see Capacity).
        keep_alive: seconds a local Ray that pullpush started stays up after the
            last executor using it closed (``None``: until :meth:`stop_idle_ray` or
            the interpreter's exit), so that the next executor finds it up.
        **ray_init_kwargs: more arguments for ``ray.init`` (``runtime_env``...).

    Raises:
        ImportError: Ray is not installed (``pip install 'pullpush[ray]'``).
        ValueError: a ``ray://`` address; at :meth:`start`, options that cannot
            apply to the Ray already up (another executor's, or one this process
            connected itself) with different ``address``, ``runtime_env`` or other
            ``ray.init`` options.

    Lifetime: a local Ray started by pullpush is shared by all executors of the
    process and shut down when the last of them closes (after ``keep_alive``, if
    any; at the interpreter's exit at the latest); :meth:`start` waits (off the
    loop) for it, :meth:`aclose` cancels what runs, waits for it, and gives the
    executor's share back. ``executor="ray"`` builds a RayExecutor with
    ``keep_alive=300``: a second run within 5 minutes skips Ray's start.
    """

    name = "ray"
    takes_costs = True
    reports_starts = True
    queues_successors = True

    def __init__(
        self,
        address: str | None = None,
        *,
        num_cpus: int | None = None,
        prefetch: int | Literal["auto"] = 0,
        credit_window: int = 256,
        force_cancel: bool = False,
        cancel_grace: float = 1.0,
        streaming: bool | None = None,
        batch_size: int = 256,
        batch_bytes: int = 1 << 20,
        flush_s: float = 0.005,
        poll_interval: float = 1.0,
        keep_alive: float | None = 0.0,
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
        if prefetch != "auto":
            check_int("prefetch", prefetch, minimum=0)
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
            ("keep_alive", 0.0 if keep_alive is None else keep_alive),
        ):
            if not isinstance(seconds, (int, float)) or not 0 <= seconds < float("inf"):
                raise ValueError(f"{what} must be a finite number of seconds >= 0")
        self.force_cancel = force_cancel
        self.cancel_grace = float(cancel_grace)
        self.streaming = streaming
        self.flush_s = float(flush_s)
        self.poll_interval = float(poll_interval)
        self.keep_alive = None if keep_alive is None else float(keep_alive)
        self.address = address
        self.num_cpus = num_cpus
        self.prefetch = prefetch
        self.ray_init_kwargs = ray_init_kwargs
        self._ray = _import_ray()
        self._call: Any = None
        self._stream: Any = None
        self._shared: SharedRay | None = None  # this executor's share of pullpush's Ray
        self._capacity: CapacitySource | None = None
        self._poller: asyncio.Task[None] | None = None
        self._known: Mapping[str, float] = {}
        self._cpus = 1
        # A normal task's time per CPU (EWMA), the normal tasks not yet delivered,
        # and when the last of them were (see _deliver).
        self._mean_s: float | None = None
        self._normal = 0
        self._delivered_at: float | None = None
        # Caller's loop only. Invariant: every task submitted whose terminal event has
        # not been delivered yet.
        self._tasks: set[RayTask] = set()
        self._all_ended: asyncio.Future[None] | None = None
        self._init_actors()
        # Submissions that pickle a big runner go through one thread, in order; while
        # one is pending, so do all others (Ray sees the tasks in submit order).
        self._submitter: concurrent.futures.ThreadPoolExecutor | None = None
        self._in_thread = 0
        self._waiter: Waiter | None = None  # follows the normal tasks
        self._loop: asyncio.AbstractEventLoop | None = None

    def __repr__(self) -> str:
        state = "closed" if self._closed else "started" if self._started else "new"
        limit = None if self._capacity is None else self._capacity.limit
        return f"<RayExecutor {state} cpus={self._cpus} slots={limit} running={len(self._tasks)}>"

    @property
    def capacity(self) -> CapacitySource | None:
        """One unit per task that may be submitted at once: the CPUs plus the
        prefetch (known once started)."""
        return self._capacity

    @property
    def running(self) -> int:
        """Tasks submitted and not yet reported ended."""
        return len(self._tasks)

    @staticmethod
    def stop_idle_ray(timeout: float | None = 60.0) -> bool:
        """Stop the local Ray that pullpush started and keeps up idle (``keep_alive``;
        ``executor="ray"`` keeps it up for :data:`NAMED_KEEP_ALIVE` seconds), blocking
        until it is down; return whether one was stopped. One in use is left alone."""
        return stop_idle_ray(timeout)

    async def _start(self) -> None:
        ray = self._ray
        if ray_client_connected(ray):
            raise ValueError(
                "this process is connected to Ray through Ray Client (ray://), which "
                "cannot run the streaming tasks RayExecutor uses"
            )
        kwargs = dict(self.ray_init_kwargs)
        if self.address is not None:
            kwargs["address"] = self.address
        elif self.num_cpus is not None:
            kwargs.setdefault("num_cpus", self.num_cpus)
        self._loop = asyncio.get_running_loop()
        self._shared = await acquire_ray(ray, kwargs)
        try:
            self._known = ray.cluster_resources()
            self._read_nodes()
            self._cpus = self.num_cpus or cluster_cpus(self._known)
            self._capacity = CapacitySource(self._slots())
            if self.num_cpus is None and self.poll_interval > 0:
                self._poller = self._loop.create_task(self._poll())
        except BaseException:
            shared, self._shared = self._shared, None
            if shared is not None:
                await release_ray(shared, 0.0)
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
            False: ray.remote(remote_call),
            True: ray.remote(remote_stream),
        }
        self._start_actors()
        self._call = self._functions[False].options(**self._options[False])
        self._stream = self._functions[True].options(**self._options[True])
        self._batching = (
            min(self.batch_size, self.credit_window),
            self.batch_bytes,
            self.flush_s,
        )

    def _slots(self) -> int:
        """The capacity: one slot per CPU, plus the tasks queued in Ray ahead of them."""
        if self.prefetch != "auto":
            return self._cpus * (1 + self.prefetch)
        mean = self._mean_s
        per_cpu = 0 if mean is None else max(1, int(_PREFETCH_WORK_S / mean))
        return self._cpus * (1 + min(_PREFETCH_MAX, per_cpu))

    def _resize(self) -> None:
        capacity = self._capacity
        if capacity is not None and capacity.limit != (slots := self._slots()):
            capacity.set_limit(slots)

    async def _poll(self) -> None:
        """Follow the cluster's CPUs: nodes may join or leave."""
        ray = self._ray
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.poll_interval)
            try:
                known = await loop.run_in_executor(None, ray.cluster_resources)
                await loop.run_in_executor(None, self._read_nodes)
            except Exception:
                continue  # Ray is briefly unreachable: keep the last limit
            self._known = known
            self._cpus = cluster_cpus(known)
            self._resize()
            self._trim_actors()

    def submit(
        self,
        task_id: int,
        runner: TaskRunner,
        events: TaskEvents,
        *,
        cost: Mapping[str, float] | None = None,
        after: Any = None,
    ) -> TaskHandle:
        """Start ``runner`` as an actor call or a Ray task (Ray queues it until its
        resources are free); ``cost`` (optional) is mapped to Ray resources
        (:func:`ray_resources`).

        ``after``: a handle this executor returned for an actor call, not ended and
        with no successor yet (``ValueError`` otherwise): the task goes behind it, in
        its actor, and starts once it ended (the capacity hand-off;
        :meth:`successor_room` says whether there is room behind it now). It runs
        as its predecessor does (same cost).

        A runner that captures big values (over 1 MiB by a shallow look at its
        closure, defaults and ``functools.partial`` arguments) is pickled on a
        thread, not on the loop; then a failure to pickle it ends the task with an
        error instead of raising here."""
        if self._closed:
            raise ExecutorClosedError("RayExecutor is closed")
        if self._call is None:
            raise RuntimeError(
                "RayExecutor is not started: await executor.start() or use "
                "'async with RayExecutor() as executor'"
            )
        if after is not None and (
            not isinstance(after, RayTask)
            or after.slot is None
            or after.ended
            or after.successor is not None
        ):
            raise ValueError(
                "after= must be an actor call of a RayExecutor, not ended, with no successor"
            )
        streaming = bool(self.streaming) or streams(runner)
        big = not streaming and captured_bytes(runner) >= BIG_RUNNER
        events = as_task_events(events)
        task = RayTask(task_id, events, self._forget, streaming, self)
        self._tasks.add(task)
        try:
            if after is not None or (not streaming and not big and self._for_actor(cost)):
                self._send_to_actor(task, runner, after, big)
                return task
            args = (runner, self._batching) if streaming else (runner,)
            if cost:
                options = {**self._options[streaming], **ray_resources(cost, self._known)}
                remote = self._functions[streaming].options(**options)
            else:
                remote = self._stream if streaming else self._call
            events.task_started(task_id)  # Ray does not tell when a task starts
            if big or self._in_thread:
                self._submit_in_thread(task, remote, args)
            else:
                task.attach(remote.remote(*args))  # now: Ray sees them in submit order
        except BaseException:
            if not task.ended:
                self._tasks.discard(task)
                self._unlink(task)
            raise
        return task

    def _pickler(self) -> concurrent.futures.ThreadPoolExecutor:
        """The thread that pickles big runners (and submits their Ray tasks)."""
        if self._submitter is None:
            self._submitter = concurrent.futures.ThreadPoolExecutor(
                1, thread_name_prefix="pullpush-ray-submit"
            )
        return self._submitter

    def _submit_in_thread(self, task: RayTask, remote: Any, args: tuple[Any, ...]) -> None:
        self._in_thread += 1
        future = self._pickler().submit(remote.remote, *args)
        loop = asyncio.get_running_loop()

        def submitted(done: concurrent.futures.Future[Any]) -> None:
            try:
                loop.call_soon_threadsafe(self._submitted, task, done)
            except RuntimeError:  # the loop is closed
                pass

        future.add_done_callback(submitted)

    def _submitted(self, task: RayTask, done: concurrent.futures.Future[Any]) -> None:
        self._in_thread -= 1
        try:
            ref = done.result()
        except Exception as failed:
            task._end(failed, None)
            return
        task.attach(ref)

    def _forget(self, task: RayTask) -> None:
        self._tasks.discard(task)
        if task.after is not None or task.successor is not None or task.slot is not None:
            self._unlink(task)
        waiter = self._all_ended
        if not self._tasks and waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _follow(self, task: RayTask, ref: Any) -> None:
        """Hand a normal task's ref to the waiter thread (started with the first)."""
        task.submitted = time.monotonic()
        task.ahead = self._normal
        self._normal += 1
        if self._waiter is None:
            assert self._loop is not None
            self._waiter = Waiter(self._ray, self._loop, self._deliver)
        self._waiter.follow(task, ref)

    def _follow_answer(self, answer: Answer, ref: Any, watch: bool = False) -> None:
        """Hand the ref of an actor's answer (to a cancel, or "up?"; ``watch``: its
        death watch) to the waiter thread."""
        if self._waiter is None:
            assert self._loop is not None
            self._waiter = Waiter(self._ray, self._loop, self._deliver)
        if watch:
            self._waiter.watch(answer, ref)
        else:
            self._waiter.follow(answer, ref)  # type: ignore[arg-type]

    def _deliver(self, outcomes: list[tuple[RayTask, BaseException | None, Any, Any]]) -> None:
        answers: list[Any] = [o for o in outcomes if isinstance(o[0], Answer)]
        if answers:  # (the waiter follows the actors' answers to cancels too)
            outcomes = [o for o in outcomes if not isinstance(o[0], Answer)]
            self._answer(answers, last=False)
            if not outcomes:
                self._answer(answers, last=True)
                return
        self._measure(outcomes)
        self._normal -= len(outcomes)
        for task, error, result, ref in outcomes:
            if ref is not task.ref or task.ended:
                continue  # an actor call sent again, or ended meanwhile
            if task.slot is not None:
                self._call_ended(task, error, result)
            else:
                task.finish(error, result)
        if self.prefetch == "auto":
            self._resize()
        if answers:  # death watches: once the calls' outcomes that came are in
            self._answer(answers, last=True)

    async def _aclose(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
            await asyncio.gather(self._poller, return_exceptions=True)
        error = ExecutorClosedError("RayExecutor closed while the task ran")
        for task in list(self._tasks):
            task.cancel(error)
        self._kill_actors()  # no grace: their calls end as they die
        if self._tasks:
            self._all_ended = asyncio.get_running_loop().create_future()
            await self._all_ended
        if self._submitter is not None:
            self._submitter.shutdown(wait=False)
        if self._waiter is not None:
            await asyncio.get_running_loop().run_in_executor(None, self._waiter.stop)
        self._keys.clear()
        shared, self._shared = self._shared, None
        if shared is not None:
            await release_ray(shared, self.keep_alive)


# How many seconds of work the auto prefetch queues in Ray per CPU, and the most
# tasks it queues per CPU.
_PREFETCH_WORK_S = 0.02
_PREFETCH_MAX = 64


def named_ray_executor() -> RayExecutor:
    """The executor ``executor="ray"`` builds: defaults, but a local Ray it starts is
    kept up :data:`NAMED_KEEP_ALIVE` seconds after the run (and stopped at the
    interpreter's exit at the latest), so that a second run does not pay Ray's
    start (seconds) again."""
    return RayExecutor(keep_alive=NAMED_KEEP_ALIVE)
