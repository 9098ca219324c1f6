"""Seeded fault injection for stress tests, and the check that every task ended in
exactly one terminal envelope with the error its fault calls for."""

from __future__ import annotations

import functools
import os
import random
import signal
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from .._exceptions import TaskTimeoutError, WorkerCrashedError
from ..runners._envelope import EnvelopeType, TaskProgressEnvelope

__all__ = ["FaultPlan", "InjectedFault", "assert_one_terminal_per_task"]

FAULTS = ("ok", "raise", "kill", "hang")


class InjectedFault(Exception):
    """The exception a :class:`FaultPlan` raises in a task (its own type, so it cannot
    come from anywhere else)."""


def _faulty(fault: str, planner: int, hang: float, fn: Callable[..., Any], *args: Any) -> Any:
    """A task with its fault: module level, so it pickles by reference."""
    if fault == "raise":
        raise InjectedFault(f"injected into a task of {getattr(fn, '__qualname__', fn)}")
    if fault == "kill":
        if os.getpid() == planner:  # never kill the test process itself
            raise RuntimeError("a kill fault runs only in a worker process")
        os.kill(os.getpid(), signal.SIGKILL)
    if fault == "hang":
        time.sleep(hang)
    return fn(*args)


class FaultPlan:
    """Which task gets which fault, decided by ``seed`` and the task's index alone, so
    a failing run is replayed by its seed.

    Example::

        plan = FaultPlan(seed, raises=0.1, kills=0.02, hangs=0.02)
        tasks = [plan.task(i, work, i) for i in range(200)]
        runner = HierarchicalTaskPoolRunner("s", tasks, 4, executor=ex, timeout=1.0)
        envelopes = [e async for e in runner.run_tasks()]
        plan.check(envelopes, len(tasks))

    Args:
        seed: the seed (any int or str).
        raises: the share of tasks that raise :class:`InjectedFault`.
        kills: the share whose worker process kills itself with SIGKILL (they end in
            :class:`WorkerCrashedError`; process executors only -- anywhere else the
            task raises ``RuntimeError`` instead of killing the test process).
        hangs: the share that block for ``hang_seconds`` first (run them under a
            runner ``timeout`` shorter than that: they end in
            :class:`TaskTimeoutError`).
        hang_seconds: how long a hanging task blocks.
    """

    def __init__(
        self,
        seed: int | str,
        *,
        raises: float = 0.1,
        kills: float = 0.0,
        hangs: float = 0.0,
        hang_seconds: float = 30.0,
    ) -> None:
        shares = {"raises": raises, "kills": kills, "hangs": hangs}
        for name, share in shares.items():
            if not 0 <= share <= 1:
                raise ValueError(f"{name} must be between 0 and 1, got {share}")
        if raises + kills + hangs > 1:
            raise ValueError("raises + kills + hangs must be at most 1")
        self.seed = seed
        self.raises, self.kills, self.hangs = raises, kills, hangs
        self.hang_seconds = hang_seconds
        self._planner = os.getpid()

    def __repr__(self) -> str:
        return (
            f"FaultPlan(seed={self.seed!r}, raises={self.raises}, kills={self.kills}, "
            f"hangs={self.hangs})"
        )

    def fault(self, index: int) -> str:
        """``"ok"``, ``"raise"``, ``"kill"`` or ``"hang"`` for task ``index``."""
        draw = random.Random(f"{self.seed}:{index}").random()
        if draw < self.raises:
            return "raise"
        if draw < self.raises + self.kills:
            return "kill"
        if draw < self.raises + self.kills + self.hangs:
            return "hang"
        return "ok"

    def task(self, index: int, fn: Callable[..., Any], *args: Any) -> Callable[[], Any]:
        """Task ``index``: ``fn(*args)`` with its fault (picklable when ``fn`` and
        ``args`` are)."""
        return functools.partial(
            _faulty, self.fault(index), self._planner, self.hang_seconds, fn, *args
        )

    def check(
        self,
        envelopes: Iterable[TaskProgressEnvelope],
        count: int,
        expected: Callable[[int], Any] | None = None,
    ) -> dict[str, int]:
        """Assert the run's contract: exactly one terminal envelope per task (task ids
        ``0 .. count - 1``, which a :class:`HierarchicalTaskPoolRunner` gives its
        source's tasks in order), nothing after it, an ERROR with the fault's error
        for each faulty task and a FINAL (of value ``expected(index)``, when given)
        for the others. Returns how many tasks had each fault."""
        terminal = assert_one_terminal_per_task(envelopes, range(count))
        errors: Mapping[str, type[BaseException]] = {
            "raise": InjectedFault,
            "kill": WorkerCrashedError,
            "hang": TaskTimeoutError,
        }
        tally = dict.fromkeys(FAULTS, 0)
        for index in range(count):
            fault = self.fault(index)
            tally[fault] += 1
            envelope = terminal[index]
            if fault == "ok":
                assert envelope.type is EnvelopeType.FINAL, (
                    f"task {index} had no fault but ended in {envelope!r} ({self!r})"
                )
                if expected is not None:
                    assert envelope.value == expected(index), (
                        f"task {index}: {envelope.value!r} != {expected(index)!r}"
                    )
            else:
                assert envelope.type is EnvelopeType.ERROR and isinstance(
                    envelope.error, errors[fault]
                ), f"task {index} had fault {fault!r} but ended in {envelope!r} ({self!r})"
        return tally


def assert_one_terminal_per_task(
    envelopes: Iterable[TaskProgressEnvelope], task_ids: Iterable[int] | None = None
) -> dict[int, TaskProgressEnvelope]:
    """Assert that every task of ``task_ids`` (and no other) ended in exactly one FINAL
    or ERROR envelope, and that none of its envelopes came after that; return the
    terminal envelope of each task. Without ``task_ids``: every task seen in
    ``envelopes`` (a task none of whose envelopes is there cannot be checked)."""
    terminal: dict[int, TaskProgressEnvelope] = {}
    seen: set[int] = set()
    for envelope in envelopes:
        seen.add(envelope.task_id)
        assert envelope.task_id not in terminal, (
            f"{envelope!r} came after task {envelope.task_id}'s terminal envelope "
            f"{terminal[envelope.task_id]!r}"
        )
        if envelope.type is not EnvelopeType.INTERMEDIATE:
            terminal[envelope.task_id] = envelope
    wanted = set(task_ids) if task_ids is not None else seen
    missing = sorted(wanted - terminal.keys())
    extra = sorted(terminal.keys() - wanted)
    assert not missing, f"tasks without a terminal envelope: {missing[:20]}"
    assert not extra, f"terminal envelopes of unknown tasks: {extra[:20]}"
    return terminal
