"""Waitable tasks in a pool runner: :meth:`PoolRunner.send` and ``send_nowait``,
parking and resuming, and the **resumer**.

A task parked in ``receive()`` gives back its capacity and executor slot (a WAITING
envelope); :meth:`PoolRunner.send` queues its message and the task in the resume
queue; the resumer, one asyncio task started when needed, re-acquires each queued
task's slot and capacity in queue order, hands it its messages and lets it go on (a
RESUMED envelope). Resuming tasks go ahead of new ones: while a task waits in the
resume queue the dispatcher starts no new task, and a dispatcher already waiting for
capacity steps back (:class:`_Preempted`; its task stays first in line for after the
resumes)."""

from __future__ import annotations

import asyncio
import warnings
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .._exceptions import MessageNotReceivedError, NotWaitableError, UnknownTaskError
from .._sync import ParkingLot
from ._envelope import EnvelopeType, TaskProgressEnvelope, make_envelope
from ._task import Mail, Running, release_slot

if TYPE_CHECKING:
    from ..capacity import CapacitySource

_WAITING = EnvelopeType.WAITING
_RESUMED = EnvelopeType.RESUMED


class _Preempted(Exception):
    """The dispatcher stepped back from a capacity wait for a resuming task."""


class _WaitingMixin:
    """The runner's waitable tasks: messages, parking, the resume queue."""

    if TYPE_CHECKING:  # what this room uses of the runner
        name: str
        _running: dict[int, Running]
        _next_id: int
        _closing: bool
        _resumes: deque[Running]
        _resumer: asyncio.Task[None] | None
        _resume_gate: ParkingLot
        _by_key: dict[Any, int]
        _parked: int
        _preempt: asyncio.Future[None] | None

        def _release(self, record: Running) -> None: ...
        async def _reacquire(self, record: Running) -> None: ...
        async def _acquire_slot(self) -> CapacitySource | None: ...
        def _emit(self, envelope: TaskProgressEnvelope) -> None: ...
        def _time_out(self, task_id: int, timeout: float) -> None: ...

    @property
    def accepts_messages(self) -> bool:
        return True

    def task_parked(self, task_id: int, received: int, timeout: float | None) -> None:
        """A waitable task waits in ``receive()``: give back what it holds (a WAITING
        envelope), unless a message is on its way to it already (then it goes on at
        once, holding on to its capacity)."""
        record = self._running.get(task_id)
        if record is None or record.mail is None or record.handle is None:
            return
        mail = record.mail
        self.task_received(task_id, received)
        if mail.forwarded > received:
            record.handle.resume()  # type: ignore[attr-defined]
            return
        if self._closing:
            return  # it is being cancelled; it gives back what it holds as it ends
        mail.parked = True
        self._parked += 1
        loop = asyncio.get_running_loop()
        timer = record.timer
        if timer is not None:  # the timeout counts active time only: stop its clock
            timer.cancel()
            record.timer = None
            mail.left = max(0.0, timer.when() - loop.time())
        else:
            mail.left = None
        self._release(record)
        record.slots = None
        if timeout is not None:
            mail.receive_timer = loop.call_later(timeout, self._receive_timed_out, record)
        self._emit(make_envelope(_WAITING, task_id, record.key, None))

    def task_received(self, task_id: int, received: int) -> None:
        record = self._running.get(task_id)
        if record is None or record.mail is None:
            return
        mail = record.mail
        mail.received = received
        waiters = mail.waiters
        while waiters and waiters[0][0] <= received:
            future = waiters.popleft()[1]
            if not future.done():
                future.set_result(None)

    def send_nowait(self, task: Any, message: Any) -> None:
        """Send ``message`` to the running waitable task ``task`` (its id, or its
        :class:`ScheduledTask` key: a key shadows an equal id); it receives it after
        the messages sent to it before, exactly once.

        A task parked in ``receive()`` is queued to resume: the runner re-acquires its
        capacity and slot, ahead of new tasks, then hands it the message. A message
        the task never takes (it ends first) is reported: ``await send`` raises
        :class:`~pullpush.MessageNotReceivedError`, and ``send_nowait``'s messages
        get a ``RuntimeWarning`` when the task ends (not when the run is being closed).

        Raises:
            UnknownTaskError: no task of this runner runs under that id or key now
                (never started, or ended).
            NotWaitableError: the task's runner is not :func:`~pullpush.waitable`.
        """
        self._deliver(self._find(task), message)

    async def send(self, task: Any, message: Any) -> None:
        """Send ``message`` to the running waitable task ``task``, as
        :meth:`send_nowait` does, and wait until the task has taken it from its
        inbox; :class:`~pullpush.MessageNotReceivedError` if it ends first.

        Awaiting is optional in effect: the message is queued before the first
        ``await``; the wait only tells when (and whether) the task took it. Do not
        await it from the loop that reads ``run_tasks()`` if the task cannot resume
        until more envelopes are read (``max_unread``)."""
        record = self._find(task)
        mail = self._deliver(record, message)
        if mail.received >= mail.sent:
            return
        future = asyncio.get_running_loop().create_future()
        mail.waiters.append((mail.sent, future))
        await future

    def _find(self, task: Any) -> Running:
        task_id = self._by_key.get(task) if task is not None else None
        if task_id is None:
            task_id = task if isinstance(task, int) and not isinstance(task, bool) else None
        record = self._running.get(task_id) if task_id is not None else None
        if record is None:
            if isinstance(task_id, int) and 0 <= task_id < self._next_id:
                raise UnknownTaskError(f"task {task_id} of runner {self.name!r} has ended")
            raise UnknownTaskError(f"runner {self.name!r} runs no task {task!r}")
        if record.mail is None:
            raise NotWaitableError(
                f"task {record.task_id} of runner {self.name!r} is not waitable: wrap its "
                "runner with pullpush.waitable() to send it messages"
            )
        return record

    def _deliver(self, record: Running, message: Any) -> Mail:
        mail = record.mail
        assert mail is not None
        mail.sent += 1
        if mail.parked or record.handle is None:
            mail.held.append(message)
            if mail.parked and not mail.queued:
                self._queue_resume(record)
        else:
            mail.forwarded += 1
            record.handle.send(message)  # type: ignore[attr-defined]
        return mail

    def _receive_timed_out(self, record: Running) -> None:
        mail = record.mail
        assert mail is not None
        mail.receive_timer = None
        if mail.parked and record.task_id in self._running:
            mail.timed_out = True
            if not mail.queued:
                self._queue_resume(record)

    def _queue_resume(self, record: Running) -> None:
        if self._closing:
            return  # every task is being cancelled: none resumes
        assert record.mail is not None
        record.mail.queued = True
        self._resumes.append(record)
        preempt = self._preempt
        if preempt is not None and not preempt.done():
            preempt.set_result(None)
        if self._resumer is None or self._resumer.done():
            self._resumer = asyncio.ensure_future(self._resume_queued())

    async def _resume_queued(self) -> None:
        """The resumer: re-acquire the queued tasks' slots and capacity, in order,
        and let them go on."""
        resumes, running = self._resumes, self._running
        try:
            while resumes:
                record = resumes[0]
                if running.get(record.task_id) is not record:
                    resumes.popleft()  # it ended while parked (cancelled)
                    continue
                slots = await self._acquire_slot()
                try:
                    await self._reacquire(record)
                except BaseException:
                    release_slot(slots)
                    raise
                if resumes and resumes[0] is record:
                    resumes.popleft()
                record.slots = slots
                if running.get(record.task_id) is not record or self._closing:
                    self._release(record)  # it ended meanwhile: give back, unused
                    record.slots = None
                    continue
                self._resume(record)
        finally:
            self._resume_gate.unpark_all()

    def _resume(self, record: Running) -> None:
        """Hand a parked task, its capacity held again, its messages; let it go on."""
        mail = record.mail
        handle: Any = record.handle
        assert mail is not None and handle is not None
        mail.parked = mail.queued = False
        self._parked -= 1
        if mail.receive_timer is not None:
            mail.receive_timer.cancel()
            mail.receive_timer = None
        timed_out = mail.timed_out and not mail.held
        mail.timed_out = False
        while mail.held:
            mail.forwarded += 1
            handle.send(mail.held.popleft())
        if mail.left is not None and record.timeout is not None:
            record.timer = asyncio.get_running_loop().call_later(
                mail.left, self._time_out, record.task_id, record.timeout
            )
        self._emit(make_envelope(_RESUMED, record.task_id, record.key, None))
        handle.resume(timed_out)

    def _close_mail(self, record: Running, mail: Mail) -> None:
        """A waitable task ended: give back what it holds (nothing if parked) and
        settle its messages."""
        if mail.parked:
            self._parked -= 1
        else:
            self._release(record)
        if mail.receive_timer is not None:
            mail.receive_timer.cancel()
        key = record.key
        if key is not None and self._by_key.get(key) == record.task_id:
            del self._by_key[key]
        missed = mail.sent - mail.received
        if not missed:
            return
        awaited = 0
        for number, future in mail.waiters:
            awaited += 1
            if not future.done():
                future.set_exception(
                    MessageNotReceivedError(
                        f"task {record.task_id} ended before it received message {number} "
                        f"of the {mail.sent} sent to it"
                    )
                )
        mail.waiters.clear()
        if missed > awaited and not self._closing:
            message = (
                f"task {record.task_id} of runner {self.name!r} ended with {missed} "
                f"message{'s' if missed != 1 else ''} sent to it that it never received"
            )
            try:
                warnings.warn(message, RuntimeWarning, stacklevel=1)
            except Warning as error:  # -W error: not raised into the executor's report
                asyncio.get_running_loop().call_exception_handler(
                    {"message": message, "exception": error}
                )

    async def _preemptible(self, acquire: Any, give_back: Callable[[Any], None]) -> Any:
        """Await ``acquire`` unless a resume is queued first: then what it acquired
        after all goes back through ``give_back`` and :class:`_Preempted` is raised."""
        if self._resumes:
            acquire.close()
            raise _Preempted
        loop = asyncio.get_running_loop()
        task = asyncio.ensure_future(acquire)
        preempt = self._preempt = loop.create_future()
        try:
            await asyncio.wait((task, preempt), return_when=asyncio.FIRST_COMPLETED)
        except BaseException:  # the dispatcher is cancelled
            self._preempt = None
            await _abandon(task, give_back)
            raise
        self._preempt = None
        if not task.done():
            await _abandon(task, give_back)
            raise _Preempted
        return task.result()


async def _abandon(task: asyncio.Task[Any], give_back: Callable[[Any], None]) -> None:
    """Cancel a capacity acquire; give back what it acquired if it won the race."""
    task.cancel()
    outcomes: Any = await asyncio.gather(task, return_exceptions=True)
    if not isinstance(outcomes[0], BaseException):
        give_back(outcomes[0])


# ----8<----
