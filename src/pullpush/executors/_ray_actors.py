"""The Ray executor's actors: one Ray actor per executor slot, each running its
calls in order -- the process executor's model on Ray, and the capacity hand-off.

Decisions:

* **Which tasks.** A plain or coroutine runner (not streamed) whose Ray options are
  the defaults -- no ``cost``, or one :func:`ray_resources` maps to one CPU and
  nothing else -- and, unless it is a successor, not big (a big one keeps its
  normal Ray task, pickled on a thread): a call to an actor. A big successor is
  pickled on a thread too, the calls sent to its actor after it held back
  meanwhile (order kept). Anything else keeps its normal (or streaming) Ray task,
  with the resources its cost maps to. Streams keep Ray's streaming-generator tasks:
  their values are batched already, and one stream's many objects gain nothing
  from an actor.
* **Actors.** As many as the executor has CPUs (``num_cpus``, or the cluster's,
  polled), created when a call finds none free, killed when the CPUs drop (once
  idle) and on ``aclose()``. Each asks Ray for one CPU to be placed and holds none
  while it lives (Ray's default for actors): idle actors never keep the normal
  tasks that a cost sends to Ray from running (pullpush's slots bound what runs).
  A new actor goes to the alive node with the most CPUs not taken by the
  executor's actors (``ray.nodes()``, read at start and with each poll; a soft
  node affinity: Ray places it elsewhere if that node is gone). (``"SPREAD"``
  alone put both actors of a 2-node cluster on one node: actors that hold no CPU
  do not count as load.) Ray never restarts them nor retries their calls
  (``max_restarts=0``): the executor replaces a dead one, knowing which calls
  never ran.
* **Placement.** A call goes to an actor with no call, else (a standalone
  ``run()`` beyond the CPUs, or a ``prefetch``) a new actor while there are fewer
  than the CPUs, else the actor with the fewest calls, queued in Ray behind them.
  A call starts (``TaskEvents.task_started``) when it is sent to an idle actor
  that is up, when the call ahead of it ended, as the driver learns it, or when
  its new actor is up (so its ``timeout`` clock may start a little late, never
  early, and does not count an actor's start-up).
* **Functions.** A ``functools.partial`` travels as its function and arguments. A
  function (or a whole runner) submitted a second time gets a key; each actor is
  sent it once with its first call there, and its key alone after that (at most
  ``_FUNCTIONS_PER_ACTOR`` per actor; the oldest is dropped, told with the next
  call). So a runner submitted again is not pickled per call.
* **Hand-off** (``submit(after=)``, see :mod:`pullpush.runners._handoff`): a
  successor is sent to its predecessor's actor at once, which runs it once the
  predecessor ended (Ray runs one caller's calls to one sync actor in submission
  order), holding no capacity until then. :meth:`successor_room`: one queued call
  per actor always; more while the calls are short, about ``_QUEUED_WORK_S``
  seconds of work per actor by the executor's measured time per task, at most
  ``_QUEUED_MAX``.
* **Cancel.** Not ``ray.cancel``: cancelling an actor call that has not reached
  its actor yet leaves a gap in the call order that stalls the actor's queue (30 s
  in Ray 2.60). The actor has a second concurrency group, ``"control"`` (one
  thread, beside the calls' one), and :meth:`SlotActor.cancel` there drops a call
  that has not started: the task ends once the actor answered so (it will not
  run). A running call gets ``KeyboardInterrupt`` in its thread (Ray itself does
  not interrupt a sync actor's call), as ``ray.cancel`` does in a Ray task: Python
  code stops at its next bytecode, an async runner at once, and the call returns
  ``Dropped``; the actor lives on. One blocked in C (``time.sleep``, a lock) is
  still running ``cancel_grace`` later (at once with ``force_cancel``): its actor
  is killed (``ray.kill``); the call ends with its cancel error once Ray says the
  actor died; the calls queued behind it never ran and go, in order, to a
  replacement actor, keeping what they inherited. A timeout is a cancel.
* **Death** (:mod:`._ray_deaths`). Each actor has a death watch, a call that
  fails only when it dies, so an actor that dies idle is found and replaced at
  once. One that dies (its process killed, ``os._exit``, its node lost) fails the
  call it ran with :class:`~pullpush.WorkerCrashedError` (Ray's error as its
  ``__cause__``); the calls behind it go to a replacement. An actor unreachable
  (``ActorUnavailableError``) is stopped and killed, and its calls settled only
  once Ray says it is dead, none sent again unless proven never started.
"""

from __future__ import annotations

import asyncio
import functools
import importlib
import time
import weakref
from collections import OrderedDict, deque
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ._ray_deaths import Answer, DeathsMixin
from ._ray_options import ray_resources
from ._ray_worker import SlotActor

if TYPE_CHECKING:
    from ._ray_task import RayTask

__all__ = ["ActorSlot", "ActorsMixin", "Answer"]

_FUNCTIONS_PER_ACTOR = 256
_KEYS_KEPT = 1024  # runners and functions whose keys the driver remembers (LRU)
_QUEUED_WORK_S = 0.02  # seconds of queued work per actor the hand-off aims at
_QUEUED_MAX = 64


class ActorSlot:
    """One actor and the calls sent to it, not ended, in the order it runs them:
    ``calls[0]`` runs (or is about to). ``defined``: the function keys it keeps
    (LRU). ``killed``: it takes no new task but successors, which go with the
    others to its replacement (``kill_sent``: ``ray.kill`` was sent). ``unsure``:
    it was unreachable (``started``: the last call it said it started); ``up``: it
    answered its first question (it came up); ``dead``:
    Ray said it died, its calls are settled (see :mod:`._ray_deaths`)."""

    __slots__ = (
        "actor",
        "calls",
        "dead",
        "defined",
        "held",
        "kill_sent",
        "killed",
        "node",
        "ready",
        "started",
        "unsure",
        "up",
    )

    def __init__(self, actor: Any, node: str | None = None) -> None:
        self.actor = actor
        self.node = node  # the node asked for (None: Ray's choice)
        self.calls: deque[RayTask] = deque()
        self.defined: OrderedDict[int, None] = OrderedDict()
        self.killed = self.kill_sent = self.unsure = self.dead = False
        self.started: int | None = None
        self.ready = False  # the actor answered (it is placed and constructed)
        self.up = False  # it answered without an error
        # While a big call is pickled on a thread: the calls to send after it.
        self.held: list[tuple[RayTask, tuple[Any, ...]]] | None = None

    def __repr__(self) -> str:
        return f"<ActorSlot calls={len(self.calls)} killed={self.killed}>"


class ActorsMixin(DeathsMixin):
    """The executor's actors (see the module's docstring)."""

    if TYPE_CHECKING:  # what this room uses of the executor
        _ray: Any
        _cpus: int
        _closed: bool
        _known: Mapping[str, float]
        _mean_s: float | None
        _normal: int
        _delivered_at: float | None
        cancel_grace: float
        force_cancel: bool
        streaming: bool | None

        def _follow(self, task: RayTask, ref: Any) -> None: ...
        def _pickler(self) -> Any: ...

    def _init_actors(self) -> None:
        self._slots_live: list[ActorSlot] = []
        self._actor_class: Any = None
        # Keys of functions submitted (id -> (weak reference, key or None: seen once)).
        self._keys: OrderedDict[int, tuple[Any, int | None]] = OrderedDict()
        self._next_key = 0
        self._nodes: dict[str, int] = {}  # alive nodes' CPUs, by node id
        self._next_call = 0  # call ids: growing, so growing from one call to the next of an actor

    def _start_actors(self) -> None:
        self._actor_class = self._ray.remote(
            max_restarts=0,
            max_task_retries=0,
            concurrency_groups={"control": 1, "watch": 1},
        )(SlotActor)

    @property
    def actors(self) -> int:
        """How many actors the executor has now (killed ones not yet gone included)."""
        return len(self._slots_live)

    def _for_actor(self, cost: Mapping[str, float] | None) -> bool:
        """Whether a (not streamed, not big) task of ``cost`` runs in an actor."""
        return not cost or ray_resources(cost, self._known) == {"num_cpus": 1}

    def _measure(self, outcomes: list[tuple[RayTask, BaseException | None, Any, Any]]) -> None:
        """Estimate a task's time per CPU, Ray's handling included (the hand-off's
        depth and the auto prefetch follow it): while
        more tasks than CPUs were in Ray since the last delivery, the time since
        then per task and CPU; else the time from submit to end of a task that
        found a CPU free (none: no estimate)."""
        now = time.monotonic()
        ended = len(outcomes)
        last, self._delivered_at = self._delivered_at, now
        if last is not None and self._normal - ended >= self._cpus:
            sample = (now - last) * self._cpus / ended
        else:
            unqueued = [t.submitted for t, _, _, _ in outcomes if t.ahead < self._cpus]
            if not unqueued:
                return
            sample = now - max(unqueued)
        mean = self._mean_s
        self._mean_s = sample if mean is None else mean + 0.3 * (sample - mean)

    def _read_nodes(self) -> None:
        """Read the alive nodes' CPUs (``ray.nodes()``), where actors go (a thread
        may call it: it replaces the mapping at once)."""
        nodes = {}
        for node in self._ray.nodes():
            cpus = int(node.get("Resources", {}).get("CPU", 0))
            if node.get("Alive") and cpus > 0:
                nodes[node["NodeID"]] = cpus
        self._nodes = nodes

    # -- sending -------------------------------------------------------------------------

    def _send_to_actor(
        self, task: RayTask, runner: Any, after: RayTask | None, big: bool = False
    ) -> None:
        """Send ``task`` to an actor: behind ``after`` (a successor), else where the
        module's docstring says. ``big``: pickle it on a thread."""
        task.call = (None, runner, None, True) if big else self._encode(runner)
        if after is not None:
            slot = after.slot
            assert slot is not None
            task.after, after.successor = after, task
            self._send(slot, task)
            return
        live = [s for s in self._slots_live if not s.killed]
        slot = next((s for s in live if not s.calls), None)
        if slot is None and len(live) < self._cpus:
            slot = self._new_slot()
        elif slot is None:
            slot = min(live, key=lambda s: len(s.calls))
        idle = not slot.calls
        self._send(slot, task)
        if idle and slot.ready:
            task.events.task_started(task.task_id)
        if not task.ended:
            task.events.task_placed(task.task_id)  # a successor may go behind it now

    def _new_slot(self) -> ActorSlot:
        """A new actor; its first call starts (its clock starts) once the actor is
        up: its start-up is Ray's alone (placing it, starting a worker process:
        about a second), which ends, or fails its calls."""
        node = self._place()
        actor_class = self._actor_class
        if node is not None:
            strategies = importlib.import_module("ray.util.scheduling_strategies")
            actor_class = actor_class.options(
                scheduling_strategy=strategies.NodeAffinitySchedulingStrategy(node, soft=True)
            )
        slot = ActorSlot(actor_class.remote(), node)
        self._slots_live.append(slot)
        try:
            ref = slot.actor.statistics.options(concurrency_group="control").remote()
        except Exception:  # Ray is gone: its calls fail
            slot.ready = True
        else:
            self._follow_answer(Answer(lambda error, _: self._actor_ready(slot, error)), ref)
            self._watch(slot)
        return slot

    def _place(self) -> str | None:
        """The node for a new actor: the alive one with the most CPUs not taken by
        this executor's actors (``None``: no node known, Ray chooses)."""
        nodes = self._nodes
        if not nodes:
            return None
        taken = dict.fromkeys(nodes, 0)
        for slot in self._slots_live:
            if slot.node in taken and not slot.killed:
                taken[slot.node] += 1
        return max(nodes, key=lambda node: nodes[node] - taken[node])

    def _actor_ready(self, slot: ActorSlot, error: BaseException | None) -> None:
        """``slot``'s actor is up (or failed to start: its calls fail with it)."""
        slot.ready = True
        slot.up = error is None
        if error is None and slot.calls and not (head := slot.calls[0]).ended:
            head.events.task_started(head.task_id)  # its clock starts now

    def _encode(self, runner: Any) -> tuple[int | None, Any, Any, bool]:
        """``(key, function, args, big)``: a partial's function and arguments, the
        key of the function if it was submitted before (else ``None``)."""
        function, args = runner, None
        if type(runner) is functools.partial:
            function, args = runner.func, (runner.args, runner.keywords)
        return self._key_for(function), function, args, False

    def _key_for(self, function: Any) -> int | None:
        ident = id(function)
        entry = self._keys.get(ident)
        if entry is not None and entry[0]() is function:
            self._keys.move_to_end(ident)
            key = entry[1]
            if key is None:  # the second time: it gets a key
                key = self._next_key
                self._next_key += 1
                self._keys[ident] = (entry[0], key)
            return key
        try:
            self._keys[ident] = (weakref.ref(function), None)
        except TypeError:  # takes no weak reference: never kept
            return None
        if len(self._keys) > _KEYS_KEPT:
            self._keys.popitem(last=False)
        return None

    def _send(self, slot: ActorSlot, task: RayTask) -> None:
        """Send ``task``'s call to ``slot``'s actor, behind its calls; follow it."""
        task.slot = slot
        task.outcome = None
        slot.calls.append(task)
        self._dispatch(slot, task)

    def _dispatch(self, slot: ActorSlot, task: RayTask) -> None:
        """Send the call of ``task`` (in ``slot.calls`` already): now, or, while a
        big call ahead is pickled, once it is sent; a big one, once pickled."""
        if slot.held is not None:
            slot.held.append((task, ()))
            return
        key, function, args, big = task.call
        if big:
            slot.held = []
            future = self._pickler().submit(_dumps, function)
            loop = asyncio.get_running_loop()

            def pickled(done: Any) -> None:
                try:
                    loop.call_soon_threadsafe(self._pickled, slot, task, done)
                except RuntimeError:  # the loop is closed
                    pass

            future.add_done_callback(pickled)
            return
        forget = None
        if key is not None:
            defined = slot.defined
            if key in defined:
                defined.move_to_end(key)
                function = None
            else:
                defined[key] = None
                if len(defined) > _FUNCTIONS_PER_ACTOR:
                    forget, _ = defined.popitem(last=False)
        self._remote(slot, task, key, function, args, forget)

    def _remote(
        self, slot: ActorSlot, task: RayTask, key: Any, function: Any, args: Any, forget: Any
    ) -> None:
        task.call_id = call_id = self._next_call
        self._next_call += 1
        ref = slot.actor.call.remote(call_id, key, function, args, forget)
        task.ref = ref
        self._follow(task, ref)

    def _pickled(self, slot: ActorSlot, task: RayTask, done: Any) -> None:
        """A big call is pickled (on the loop): send it, then the calls held behind
        it; one that cannot be pickled ends with that error."""
        if task.slot is not slot:
            return  # ended, or sent again elsewhere (its actor died): stale
        held, slot.held = slot.held or [], None
        try:
            blob = done.result()
        except Exception as failed:
            self._drop(slot, task, failed)  # (not a Ray error: reported as it is)
        else:
            self._remote(slot, task, None, blob, None, None)
        for waiting, _ in held:
            if waiting.slot is slot and waiting.ref is None:
                self._dispatch(slot, waiting)

    def successor_room(self, handle: Any) -> bool:
        """Whether a task submitted now with ``after=handle`` is sent at once behind
        ``handle``'s call, in its actor (the capacity hand-off): ``handle`` is an
        actor call not ended and with no successor, and its actor holds fewer queued
        calls than the depth: one, or while tasks are short, about
        ``_QUEUED_WORK_S`` seconds of them by the measured time per task (at most
        ``_QUEUED_MAX``). Never behind a task of its own (a cost, a stream)."""
        slot = getattr(handle, "slot", None)
        if slot is None or handle.ended or handle.successor is not None or slot.killed:
            return False
        mean = self._mean_s
        depth = 1 if mean is None else max(1, min(_QUEUED_MAX, int(_QUEUED_WORK_S / mean)))
        return len(slot.calls) - 1 < depth

    def _drop(self, slot: ActorSlot, task: RayTask, error: BaseException | None) -> None:
        """End ``task``, never sent to ``slot``'s actor, with ``error`` (after a
        cancel: the cancel's); if it was first, the next one starts."""
        first = slot.calls[0] is task
        slot.calls.remove(task)
        task.slot = None
        task.report_end(error)
        if first and slot.ready and slot.calls and not (head := slot.calls[0]).ended:
            head.events.task_started(head.task_id)

    # -- outcomes ------------------------------------------------------------------------

    def _call_ended(self, task: RayTask, error: BaseException | None, result: Any) -> None:
        """An actor call's outcome (the waiter's, current): end it in its actor's
        order; an actor's death ends its running call and sends the others again."""
        slot = task.slot
        assert slot is not None
        if error is not None and self._call_failed(slot, task, error):
            return  # its actor died (or is unreachable): see _ray_deaths
        if self._stop_dropped(task, result):
            return  # it never ran: it goes elsewhere once its actor is dead
        task.outcome = (error, result)  # (a Dropped result: cancelled, it did not run)
        if task is slot.calls[0]:
            self._advance(slot)
        # else: the calls ahead of it ended too (an actor runs them in order); it
        # ends once their outcomes came.

    def _advance(self, slot: ActorSlot) -> None:
        """End the calls at the head of ``slot`` whose outcomes came, in order; the
        next one starts (its predecessor's capacity is its own now)."""
        calls = slot.calls
        while calls and (outcome := calls[0].outcome) is not None:
            task = calls.popleft()
            task.slot = None
            task.finish(*outcome)
        if calls:
            head = calls[0]
            if not head.ended and slot.ready:
                head.events.task_started(head.task_id)
        elif not slot.killed and len([s for s in self._slots_live if not s.killed]) > self._cpus:
            self._kill_slot(slot)  # fewer CPUs now: one actor less
            self._slots_live.remove(slot)

    # -- cancel and escalation -----------------------------------------------------------

    def _cancel_call(self, task: RayTask) -> None:
        """Stop an actor call: one not started is dropped by its actor (see
        :meth:`_cancel_answered`), a running one interrupted there; one still
        running ``cancel_grace`` later (at once with ``force_cancel``) ends by its
        actor's death, see :meth:`_escalate`."""
        slot = task.slot
        if slot is None:
            return
        if task.ref is None:  # not sent yet (held behind a big call): it never ran
            self._drop(slot, task, None)
            return
        if self.force_cancel and task is slot.calls[0]:
            self._kill_slot(slot)
            return
        try:
            control = slot.actor.cancel.options(concurrency_group="control")
            ref = control.remote(task.call_id)
        except Exception:  # Ray is gone: the call ends anyway
            pass
        else:
            # The waiter thread follows the answer (ObjectRef.future() calls back
            # only about half a second later).
            call_id = task.call_id
            self._follow_answer(
                Answer(lambda error, dropped: self._cancel_answered(slot, task, call_id, dropped)),
                ref,
            )
        if task.escalation is None:
            task.escalation = asyncio.get_running_loop().call_later(
                self.cancel_grace, self._escalate, task
            )

    def _cancel_answered(self, slot: ActorSlot, task: RayTask, call_id: int, dropped: Any) -> None:
        """The actor's answer to a cancel: dropped (the call will not run: it ends
        now), or started (the escalation goes on); none (an error: the actor died):
        its calls end (or move) all the same."""
        if task.ended or task.slot is not slot or task.call_id != call_id:
            return
        if dropped is True:
            self._drop(slot, task, None)

    def _escalate(self, task: RayTask) -> None:
        """A cancelled call still there after the grace: kill its actor if it runs
        there; if still queued (Ray cancels it soon), look again later."""
        task.escalation = None
        slot = task.slot
        if task.ended or slot is None:
            return
        if task is slot.calls[0]:
            self._kill_slot(slot)
        else:
            task.escalation = asyncio.get_running_loop().call_later(
                self.cancel_grace, self._escalate, task
            )

    def _trim_actors(self) -> None:
        """The CPUs dropped: kill idle actors beyond them (busy ones go when idle)."""
        live = [s for s in self._slots_live if not s.killed]
        for slot in live[self._cpus :]:
            if not slot.calls:
                self._kill_slot(slot)
                self._slots_live.remove(slot)

    def _kill_actors(self) -> None:
        """Closing: kill every actor (their calls end as they die)."""
        for slot in list(self._slots_live):
            self._kill_slot(slot)
            if not slot.calls:
                self._slots_live.remove(slot)

    def _unlink(self, task: RayTask) -> None:
        """``task`` ended: its successor waits for its predecessor now, if any."""
        after, successor = task.after, task.successor
        if after is not None:
            after.successor = successor
        if successor is not None:
            successor.after = after
        task.after = task.successor = None
        slot = task.slot
        if slot is not None:
            task.slot = None
            try:
                slot.calls.remove(task)
            except ValueError:
                pass


def _dumps(runner: Any) -> bytes:
    import cloudpickle

    return cloudpickle.dumps(runner)  # type: ignore[no-any-return]
