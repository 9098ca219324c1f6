"""The Ray executor's actors: how their deaths are found and what becomes of their
calls (a room of :mod:`._ray_actors`).

Decisions:

* **Death watch.** Each actor gets, at its creation, one call that never returns,
  :meth:`SlotActor.watch`, in a concurrency group of its own (``"watch"``, one
  thread): the waiter thread looks at it with every wait, and every ``_WATCH_S``
  (50 ms) while nothing else is pending, so an actor that dies idle (its process
  killed, its node lost) is found at once, as the process executor's sentinel
  does: it is dropped, replaced if it had come up (while the executor has fewer
  actors than CPUs), and no later call is sent to it. A death found by a call's
  error is the same.
* **Which calls ran.** An actor runs its calls in order, so at its death the calls
  whose outcomes came end with them; the first call with none may have run and
  fails with :class:`~pullpush.WorkerCrashedError` (Ray's error as its
  ``__cause__``); the calls behind it never ran (it had not ended) and go, in
  order, to a replacement (or end, if cancelled or the executor is closed), as
  does a call never sent (held behind a big one being pickled). So a call sent
  to an idle actor in the instant it died (before Ray told the driver) fails
  too: the driver cannot prove it never started (Ray does not say whether a call
  reached its actor, and a start acknowledged per call would cost every call a
  message); it is never run twice. (Still possible, as before: an actor that
  ended a call and started the next, then died before the first one's answer
  left, fails the first although it ended, and the next, taken for never
  started, runs again in the replacement. Ray gives no way to tell.)
* **Unavailable.** ``ActorUnavailableError`` (the actor unreachable: its node lost
  or cut off) does not mean dead: the actor may still run the calls queued in it.
  Then the actor takes no new call, and is asked (``"control"`` group,
  :meth:`SlotActor.stop`) to start no call any more and say which it started
  last; once it answered (or the question failed) it is killed
  (``ray.kill(no_restart=True)``); its calls end only once Ray says it is dead
  (``ActorDiedError``, from any of its calls or a new watch). The calls it
  answered it never started go to a replacement; those it started, and, if it
  never answered, every call sent to it with no outcome (any may have run while
  it was cut off), fail with ``WorkerCrashedError``: never run twice, at the cost
  of failing calls that may not have run. Still possible: an actor on a node cut
  off from the cluster runs on until its raylet stops it, after Ray said it died
  (Ray's own limit): only calls it started, none sent again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ._ray_worker import Dropped

if TYPE_CHECKING:
    from ._ray_actors import ActorSlot
    from ._ray_task import RayTask

__all__ = ["Answer", "DeathsMixin", "deaths"]

_REWATCH_S = 0.2  # after a watch answered "unavailable": the next watch


class Answer:
    """What the waiter thread follows for a question asked of an actor's
    ``"control"`` group (``RayExecutor._deliver`` tells it from a task by its
    class): its ``deliver(error, value)`` takes the answer, on the loop. ``last``:
    delivered after the calls' outcomes that came with it (a death watch: a death
    ends the calls whose outcomes came with their outcomes)."""

    __slots__ = ("deliver", "last")

    def __init__(
        self, deliver: Callable[[BaseException | None, Any], None], last: bool = False
    ) -> None:
        self.deliver = deliver
        self.last = last


class DeathsMixin:
    """The actors' deaths (see the module's docstring)."""

    if TYPE_CHECKING:  # what this room uses of the executor
        _ray: Any
        _cpus: int
        _closed: bool
        _slots_live: list[ActorSlot]

        def _follow_answer(self, answer: Answer, ref: Any, watch: bool = False) -> None: ...
        def _new_slot(self) -> ActorSlot: ...
        def _send(self, slot: ActorSlot, task: RayTask) -> None: ...
        def _advance(self, slot: ActorSlot) -> None: ...

    @staticmethod
    def _answer(answers: list[Any], last: bool) -> None:
        """Deliver the answers that come ``last`` (death watches) or the others."""
        for answer, error, value, _ in answers:
            if answer.last is last:
                answer.deliver(error, value)

    def _watch(self, slot: ActorSlot) -> None:
        """Send ``slot``'s actor its death watch; follow it."""
        if slot.dead or self._closed:
            return
        try:
            ref = slot.actor.watch.options(concurrency_group="watch").remote()
        except Exception:  # Ray is gone: its calls fail
            return
        answer = Answer(lambda error, _: self._watch_ended(slot, error), last=True)
        self._follow_answer(answer, ref, watch=True)

    def _watch_ended(self, slot: ActorSlot, error: BaseException | None) -> None:
        """A death watch ended: the actor died, or is unreachable (watched again)."""
        ray = self._ray
        if error is None or slot.dead or not isinstance(error, deaths(ray)):
            return  # (not a death: Ray itself is gone; the calls end with that)
        unavailable = getattr(ray.exceptions, "ActorUnavailableError", ())
        if isinstance(error, unavailable):
            self._slot_unsure(slot, error)
            asyncio.get_running_loop().call_later(_REWATCH_S, self._watch, slot)
        else:
            self._slot_died(slot, error)

    def _call_failed(self, slot: ActorSlot, task: RayTask, error: BaseException) -> bool:
        """A call's error: whether it tells of its actor's end (handled here)."""
        ray = self._ray
        if not isinstance(error, deaths(ray)):
            return False
        if isinstance(error, getattr(ray.exceptions, "ActorUnavailableError", ())):
            self._slot_unsure(slot, error)  # it may have run: its outcome stays unknown
        else:
            self._slot_died(slot, error)
        return True

    @staticmethod
    def _stop_dropped(task: RayTask, result: Any) -> bool:
        """Whether ``result`` is a call dropped by :meth:`SlotActor.stop` (not by its
        cancel): it never ran, and goes elsewhere once its actor is dead."""
        return type(result) is Dropped and not task.cancel_requested

    def _slot_unsure(self, slot: ActorSlot, error: BaseException) -> None:
        """``slot``'s actor is unreachable: it takes no new call; ask it to start
        none and to say which it started; then kill it (see the module)."""
        if slot.unsure or slot.dead:
            return
        slot.unsure = True
        slot.killed = True  # no new call; ray.kill once it answered
        try:
            ref = slot.actor.stop.options(concurrency_group="control").remote()
        except Exception:  # Ray is gone
            self._kill_slot(slot)
            return
        self._follow_answer(Answer(lambda failed, last: self._stopped(slot, failed, last)), ref)

    def _stopped(self, slot: ActorSlot, error: BaseException | None, started: Any) -> None:
        """The actor's answer to :meth:`SlotActor.stop`: the last call it started."""
        if error is None and not slot.dead:
            slot.started = started
        self._kill_slot(slot)

    def _kill_slot(self, slot: ActorSlot) -> None:
        """Kill ``slot``'s actor; its calls end (or move) once Ray says it died."""
        if slot.kill_sent:
            return
        slot.killed = slot.kill_sent = True
        try:
            self._ray.kill(slot.actor, no_restart=True)
        except Exception:  # gone already
            pass

    def _slot_died(self, slot: ActorSlot, error: BaseException) -> None:
        """``slot``'s actor is gone (Ray said so): the calls whose outcomes came end
        with them, in order; those that may have run fail with ``error``
        (translated: WorkerCrashedError); the others -- they never ran -- go to a
        replacement actor in the same order (or end, if cancelled or the executor
        is closed). An actor that died unasked, once up, is replaced even if idle
        (not one that never came up: that would go on forever)."""
        if slot.dead:
            return
        slot.dead = True
        unasked = (not slot.killed or slot.unsure) and slot.up
        if slot in self._slots_live:
            self._slots_live.remove(slot)
        self._kill_slot(slot)
        slot.held = None
        calls = list(slot.calls)
        slot.calls.clear()
        started, unsure = slot.started, slot.unsure
        first = True  # no call that may have run seen yet
        replacement: ActorSlot | None = None
        for task in calls:
            task.slot = None
            if task.ended:
                continue
            if task.outcome is not None:
                task.finish(*task.outcome)
                continue
            if task.ref is None:  # never sent
                ran = False
            elif started is not None:
                ran = task.call_id <= started
            else:
                ran = unsure or first
                first = False
            if ran:
                task.finish(error, None)
            elif task.cancel_requested or self._closed:
                task.report_end(None)  # never ran: its cancel (or the close) ends it
            else:
                if replacement is None:
                    replacement = self._new_slot()
                task.ref = None
                self._send(replacement, task)
        if replacement is None and unasked and not self._closed:
            live = [s for s in self._slots_live if not s.killed]
            if len(live) < self._cpus:
                try:
                    self._new_slot()
                except Exception:  # Ray is gone: a call makes one if it can
                    pass


def deaths(ray: Any) -> tuple[type[BaseException], ...]:
    """Ray's errors that mean an actor (its process, its node) is gone, or
    unreachable (``ActorUnavailableError``, a ``RayActorError``)."""
    exceptions = ray.exceptions
    names = ("RayActorError", "WorkerCrashedError", "NodeDiedError", "LocalRayletDiedError")
    return tuple(getattr(exceptions, n) for n in names if hasattr(exceptions, n))
