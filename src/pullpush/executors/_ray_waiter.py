"""The Ray executor's waiter thread: it follows the normal Ray tasks and actor calls
of one executor with ``ray.wait`` and hands their results to the executor's loop in
batches."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from queue import Empty, SimpleQueue
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._ray_task import RayTask

__all__ = ["Waiter"]

_WAIT_S = 0.002  # the longest one wait of the waiter thread lasts
_WATCH_S = 0.05  # with only watches pending: how often the thread looks at them

Outcome = tuple["RayTask", BaseException | None, Any, Any]


class Waiter:
    """One thread waiting for many Ray tasks at once: ``follow(task, ref)`` (on the
    loop) adds one; ``deliver(outcomes)`` is called on ``loop`` with the ``(task,
    Ray's error or None, result, ref)`` of those that ended (an actor call sent
    again has a new ``ref``: the old one's outcome is stale); ``watch(answer, ref)``
    follows a ref that ends only when its actor dies (an actor's death watch, see
    :mod:`._ray_actors`): looked at with every wait, and every ``_WATCH_S`` seconds
    while nothing else is pending; ``stop()`` ends the thread (blocking: call it off
    the loop)."""

    def __init__(
        self,
        ray: Any,
        loop: asyncio.AbstractEventLoop,
        deliver: Callable[[list[Outcome]], None],
    ) -> None:
        self.ray, self.loop, self.deliver = ray, loop, deliver
        # (task or answer, ref, a watch?); None: stop
        self.queue: SimpleQueue[tuple[Any, Any, bool] | None] = SimpleQueue()
        self.thread = threading.Thread(target=self._run, name="pullpush-ray-waiter", daemon=True)
        self.thread.start()

    def follow(self, task: RayTask, ref: Any) -> None:
        self.queue.put((task, ref, False))

    def watch(self, answer: Any, ref: Any) -> None:
        self.queue.put((answer, ref, True))

    def stop(self) -> None:
        self.queue.put(None)
        self.thread.join()

    def _run(self) -> None:
        """The waiter thread: wait for many normal tasks at once (``ray.wait``), get
        the results of those that ended together, hand them to the loop in one call.

        Each wait returns once a quarter of the pending tasks ended, or after
        ``_WAIT_S`` with those that did (so an ended task waits at most that long
        for company: fewer, bigger batches cost Ray and the loop less). New tasks
        join the wait after at most ``_WAIT_S`` (``ray.wait`` cannot be
        interrupted); with none pending, the thread sleeps on its queue, waking
        every ``_WATCH_S`` to look at the death watches, if any (a death watch is
        looked at with every wait too, which it never holds up). If
        ``ray.wait`` fails (Ray shut down meanwhile), every pending task ends with
        that error."""
        ray, loop, queue, deliver = self.ray, self.loop, self.queue, self.deliver
        tasks: dict[Any, RayTask] = {}
        pending: list[Any] = []
        watches: list[Any] = []  # death watches: pending until their actor dies
        while True:
            while True:
                try:
                    if pending:
                        item = queue.get(block=False)
                    else:  # idle: sleep on the queue, looking at the watches at times
                        item = queue.get(timeout=_WATCH_S if watches else None)
                except Empty:
                    break
                if item is None:
                    return
                tasks[item[1]] = item[0]
                (watches if item[2] else pending).append(item[1])
            try:
                if pending:
                    refs = pending + watches if watches else pending
                    ready, rest = ray.wait(
                        refs,
                        num_returns=max(1, len(pending) // 4),
                        timeout=_WAIT_S,
                        fetch_local=False,
                    )
                    if not ready:
                        continue
                    if rest:
                        more, rest = ray.wait(
                            rest, num_returns=len(rest), timeout=0, fetch_local=False
                        )
                        ready.extend(more)
                else:
                    ready, rest = ray.wait(
                        watches, num_returns=len(watches), timeout=0, fetch_local=False
                    )
                    if not ready:
                        continue
                if watches:
                    watching = set(watches)
                    pending = [r for r in rest if r not in watching]
                    watches = [r for r in rest if r in watching]
                else:
                    pending = rest
            except Exception as failed:  # Ray is gone (shut down under us): end them all
                outcomes: list[Outcome] = [(task, failed, None, r) for r, task in tasks.items()]
                tasks.clear()
                pending, watches = [], []
            else:
                try:
                    results = ray.get(ready)  # ended: no wait, one call for them all
                except Exception:  # one failed: take them one by one
                    outcomes = [(tasks.pop(ref), *_get(ray, ref), ref) for ref in ready]
                else:
                    outcomes = [
                        (tasks.pop(ref), None, r, ref)
                        for ref, r in zip(ready, results, strict=True)
                    ]
            try:
                loop.call_soon_threadsafe(deliver, outcomes)
            except RuntimeError:  # the loop is closed: nobody waits any more
                return


def _get(ray: Any, ref: Any) -> tuple[BaseException | None, Any]:
    """Waiter thread: ``(None, result)`` of an ended task, or ``(Ray's error, None)``."""
    try:
        return None, ray.get(ref)
    except Exception as failed:
        return failed, None
