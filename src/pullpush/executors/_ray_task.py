"""One Ray task as the driver follows it: the :class:`TaskHandle` of the Ray
executor, and how Ray's errors become pullpush's."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .._exceptions import RemoteTraceback, WorkerCrashedError
from ._base import BaseTaskHandle, TaskEvents
from ._drive import Credits
from ._ray_worker import FINAL, Drained

if TYPE_CHECKING:
    from ._ray import RayExecutor

_FINAL = FINAL

_ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")

# Ray's exceptions that mean the task's worker or node is gone.
_CRASHES = (
    "WorkerCrashedError",
    "NodeDiedError",
    "LocalRayletDiedError",
    "OutOfMemoryError",
    "RayActorError",  # an actor of the executor's slots died (ActorDiedError...)
)


class RayTask(BaseTaskHandle):
    """One Ray task: a normal one, or a call to one of the executor's actors (see
    :mod:`._ray_actors`), ends through its result, which the waiter thread reads and
    the executor delivers on the loop; a streaming one is read by one asyncio task
    on the caller's loop. A TaskHandle.

    Everything here lives on the caller's loop (Ray's client calls are thread-safe
    and do not block for long: ``.remote()`` submits, ``ray.cancel`` sends a request).
    ``ref`` is ``None`` until the task is submitted (a big runner is pickled on a
    thread first).
    """

    __slots__ = (
        "after",
        "ahead",
        "call",
        "call_id",
        "consumer",
        "credits",
        "escalation",
        "executor",
        "outcome",
        "ref",
        "slot",
        "streaming",
        "submitted",
        "successor",
    )

    def __init__(
        self,
        task_id: int,
        events: TaskEvents,
        forget: Callable[[RayTask], None],
        streaming: bool,
        executor: RayExecutor,
    ) -> None:
        super().__init__(task_id, events, forget)
        # Flow control, for a stream only (a normal task's values come at its end).
        self.credits = Credits(executor.credit_window if streaming else 1)
        self.ref: Any = None
        self.streaming = streaming
        self.executor = executor
        self.escalation: asyncio.TimerHandle | None = None
        self.consumer: asyncio.Task[None] | None = None
        # A normal task: when it was handed to Ray (time.monotonic()), and how many
        # normal tasks of the executor were in Ray then.
        self.submitted = 0.0
        self.ahead = 0
        # An actor call (see _ray_actors): its slot (None: a Ray task of its own, or
        # ended), what it sends (kept to send it again to a replacement actor), its
        # outcome when it came before the end of the calls ahead of it, and the
        # capacity hand-off's links (submit(after=)).
        self.slot: Any = None
        self.call: Any = None
        self.call_id = -1
        self.outcome: tuple[BaseException | None, Any] | None = None
        self.after: RayTask | None = None
        self.successor: RayTask | None = None

    def attach(self, ref: Any) -> None:
        """The Ray task is submitted: follow it (and stop it if cancelled meanwhile)."""
        self.ref = ref
        if self.streaming:
            self.consumer = asyncio.get_running_loop().create_task(self._consume_stream())
        else:
            self.executor._follow(self, ref)
        if self.cancel_requested:
            self._stop_remote()

    def finish(self, failed: BaseException | None, result: Any) -> None:
        """A normal task ended (Ray's error, or its result): report its values, then
        its end."""
        error: BaseException | None = None
        final: Any = None
        if failed is not None:
            error = self._translate(failed)
        else:
            values, final = (
                (result.values, result.final) if type(result) is Drained else (None, result)
            )
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
        """Cancel the Ray task; force it after the grace if it still runs (an actor
        call: see :meth:`RayExecutor._cancel_call`)."""
        executor = self.executor
        if self.slot is not None:
            executor._cancel_call(self)
            return
        force = executor.force_cancel
        if self.ref is None:
            return  # not submitted yet: attach() stops it
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
