"""``RunnerMetricsCollector``: what a task pool runner is doing, for ``metrics=``."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

from .._clock import Clock, resolve_clock
from ..runners._envelope import EnvelopeType, TaskProgressEnvelope
from ._duration import Duration
from ._window import RollingWindow, RollingWindowStats

__all__ = ["RunnerMetricsCollector", "RunnerMetricsSnapshot"]

_FINAL = EnvelopeType.FINAL
_ERROR = EnvelopeType.ERROR


@dataclasses.dataclass(frozen=True)
class RunnerMetricsSnapshot:
    """A :class:`RunnerMetricsCollector`'s view at one moment."""

    captured_at: float
    """When, in seconds of the collector's clock."""
    queued: int
    """Tasks taken from the source and not started (waiting for capacity or an
    executor slot, or held for backfilling)."""
    running: int
    """Tasks started and not ended."""
    started: int
    """Tasks started in total."""
    completed: int
    """FINAL envelopes."""
    failed: int
    """ERROR envelopes (failed attempts, tasks rejected before running included)."""
    rejected: int
    """Tasks rejected before running (not callable, impossible cost...)."""
    envelopes: int
    """Envelopes produced, of every type."""
    envelopes_per_sec: RollingWindowStats
    """Envelopes produced in the last window (``.rate`` is per second)."""
    task_duration: RollingWindowStats
    """Seconds from start to end of the tasks that ended in the last window."""


class RunnerMetricsCollector:
    """Measure a task pool runner; pass it as ``metrics=`` to the runner.

    The runner calls one hook per event, synchronously on the event loop (with
    ``metrics=None``, the default, it calls nothing):

    ==========================  =================================================
    ``on_task_pulled()``        a task was taken from the source
    ``on_task_started(id)``     a task was handed to the executor
    ``on_task_rejected()``      a task taken from the source was refused unrun
    ``on_task_ended(id)``       a started task ended (any way, cancellation too)
    ``on_envelope(envelope)``   an envelope was produced (FINAL: completed,
                                ERROR: failed)
    ==========================  =================================================

    Override the hooks in a subclass to forward events elsewhere (call ``super()``
    to keep the numbers). Use one collector per runner: task ids are per runner.

    Example::

        metrics = RunnerMetricsCollector(window=60.0)
        runner = HierarchicalTaskPoolRunner("jobs", tasks, CapacitySource(8), metrics=metrics)
        async for envelope in runner.run_tasks():
            ...
        metrics.snapshot().task_duration.avg

    Args:
        window: seconds over which the envelope rate and task durations are kept.
        clock: where time is read; default :func:`time.monotonic`.
    """

    def __init__(self, window: float = 60.0, clock: Clock | None = None) -> None:
        self._clock = resolve_clock(clock)
        self.task_duration = Duration(window, clock=self._clock)
        """The tasks' durations (start to end), in seconds."""
        self._envelope_rate = RollingWindow(window, clock=self._clock)
        # Invariant: started task id -> start time, for the tasks not yet ended.
        self._starts: dict[int, float] = {}
        self._pulled = self._started = self._rejected = 0
        self._completed = self._failed = self._envelopes = 0

    # -- the hooks the runner calls -------------------------------------------------------

    def on_task_pulled(self) -> None:
        """A task was taken from the source."""
        self._pulled += 1

    def on_task_started(self, task_id: int) -> None:
        """A task was handed to the executor."""
        self._started += 1
        self._starts[task_id] = self._clock()

    def on_task_rejected(self) -> None:
        """A task taken from the source was refused before it ran."""
        self._rejected += 1

    def on_task_ended(self, task_id: int) -> None:
        """A started task ended (its FINAL/ERROR follows, unless the run is closing)."""
        began = self._starts.pop(task_id, None)
        if began is not None:
            self.task_duration.record(max(0.0, self._clock() - began))

    def on_envelope(self, envelope: TaskProgressEnvelope) -> None:
        """An envelope was produced."""
        self._envelopes += 1
        kind = envelope.type
        if kind == _FINAL:
            self._completed += 1
        elif kind == _ERROR:
            self._failed += 1
        self._envelope_rate.observe(1)

    # -- reading --------------------------------------------------------------------------

    def snapshot(self, now: float | None = None) -> RunnerMetricsSnapshot:
        """Return the counts, the envelope rate and the task durations at ``now``."""
        now = self._clock() if now is None else now
        return RunnerMetricsSnapshot(
            captured_at=now,
            queued=max(0, self._pulled - self._started - self._rejected),
            running=len(self._starts),
            started=self._started,
            completed=self._completed,
            failed=self._failed,
            rejected=self._rejected,
            envelopes=self._envelopes,
            envelopes_per_sec=self._envelope_rate.stats(now),
            task_duration=self.task_duration.stats(now),
        )

    def _duration_windows(self) -> Iterator[tuple[str, dict[str, str], RollingWindow]]:
        """Every window of durations, for exporters that forward each value."""
        yield "runner.task.duration", {}, self.task_duration._window

    def __repr__(self) -> str:
        return (
            f"<RunnerMetricsCollector running={len(self._starts)} "
            f"completed={self._completed} failed={self._failed}>"
        )
