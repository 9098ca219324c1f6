"""``MetricsPump``: push collectors' snapshots to a ``MetricsSink`` on an interval."""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable
from types import TracebackType
from typing import Any

from .._clock import Clock, resolve_clock
from .._util import check_seconds
from ._capacity import CapacityMetricsSnapshot, DefaultCapacityMetricsCollector
from ._chain import ChainMetricsSnapshot, DefaultChainMetricsCollector
from ._points import snapshot_points
from ._runner_metrics import RunnerMetricsCollector, RunnerMetricsSnapshot
from ._sink import MetricAttrs, MetricsSink, MetricsSnapshot
from ._window import RollingWindow

__all__ = ["MetricsPump"]

_log = logging.getLogger("pullpush.metrics")

_KINDS: tuple[tuple[type, str], ...] = (
    (DefaultCapacityMetricsCollector, "capacity"),
    (DefaultChainMetricsCollector, "chain"),
    (RunnerMetricsCollector, "runner"),
)


def _default_name(source: object) -> str:
    for kind, name in _KINDS:
        if isinstance(source, kind):
            return name
    return type(source).__name__


class MetricsPump:
    """Every ``interval`` seconds, read the collectors and push the numbers to a sink.

    One tick: take each source's ``snapshot()``, gather them in a
    :class:`MetricsSnapshot`, then call the sink:

    1. ``sink.snapshot(snap)``, if the sink has it;
    2. ``sink.counter(name, delta, attrs)`` for every total that grew since the
       previous tick (the first tick sends the totals so far), and
       ``sink.gauge(name, value, attrs)`` for every level, rate and windowed
       duration statistic (names as in :func:`render_prometheus`, dotted and
       prefixed: ``"pullpush.runner.running"``);
    3. ``sink.duration(name, seconds, attrs)`` for every duration a collector
       recorded since the previous tick (task durations, section durations, stage
       latencies), so a histogram sink sees each one (durations older than the
       collector's window at tick time are gone: keep ``interval`` below it);
    4. ``sink.flush()``, if the sink has it.

    Sink methods may be sync or async; what they raise is logged (logger
    ``pullpush.metrics``, once per tick) and ignored. Ticks never overlap: a slow
    sink delays the next tick. Each source's points carry ``{"source": name}``.

    Sources: collectors (anything with ``snapshot(now=None)``), each either alone
    or as a ``(name, collector)`` pair. Unnamed ones are named after their kind
    (``"capacity"``, ``"chain"``, ``"runner"``, else the class name); names must be
    unique.

    Example::

        async with MetricsPump(OpenTelemetrySink(), ("jobs", runner_metrics),
                               capacity_metrics, interval=10.0):
            async for envelope in runner.run_tasks():
                ...

    Sampling runs on the event loop from :meth:`start` (or ``async with``) to
    :meth:`aclose`, which pushes one last tick (``final_tick=False`` skips it).
    :meth:`tick` pushes one now (for tests, with a ``ManualClock``).

    Args:
        sink: where the numbers go (a :class:`MetricsSink`).
        *sources: collectors, or ``(name, collector)`` pairs.
        interval: seconds between ticks (> 0).
        clock: where ``captured_at`` is read; default :func:`time.monotonic`.
        prefix: prepended to every metric name, with a dot (``""``: none).
        final_tick: whether :meth:`aclose` pushes one last tick.

    Raises:
        TypeError: a source has no ``snapshot`` method.
        ValueError: two sources have the same name, or ``interval`` is not > 0.
    """

    def __init__(
        self,
        sink: MetricsSink,
        *sources: object,
        interval: float = 10.0,
        clock: Clock | None = None,
        prefix: str = "pullpush",
        final_tick: bool = True,
    ) -> None:
        self.sink = sink
        self.interval: float = check_seconds("interval", interval, positive=True)
        self._clock = resolve_clock(clock)
        self._prefix = f"{prefix}." if prefix else ""
        self._final_tick = final_tick
        self._sources: dict[str, Any] = {}
        for source in sources:
            if isinstance(source, tuple) and len(source) == 2 and isinstance(source[0], str):
                name, collector = source
            else:
                name, collector = _default_name(source), source
            if not callable(getattr(collector, "snapshot", None)):
                raise TypeError(f"a metrics source needs a snapshot() method, got {collector!r}")
            if name in self._sources:
                raise ValueError(f"two metrics sources are named {name!r}: name them apart")
            self._sources[name] = collector
        # Invariant: the last total sent per counter (name, attrs), for deltas.
        self._totals: dict[tuple[str, tuple[tuple[str, Any], ...]], float] = {}
        # Invariant: per duration window, the cursor of the last value forwarded.
        self._cursors: dict[tuple[str, str, tuple[tuple[str, Any], ...]], int] = {}
        self._task: asyncio.Task[None] | None = None
        self._errors: list[str] = []

    @property
    def running(self) -> bool:
        """Whether the pump's task runs (between :meth:`start` and :meth:`aclose`)."""
        return self._task is not None

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        """Start ticking on the running event loop (idempotent while running).

        Raises:
            RuntimeError: no event loop is running.
        """
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            await self.tick()

    async def aclose(self) -> None:
        """Stop ticking, then push one last tick (unless ``final_tick=False``)."""
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        # Our own cancel ends the task (gather returns it as a result); a cancel of
        # the caller while waiting here still propagates.
        await asyncio.gather(task, return_exceptions=True)
        if self._final_tick:
            await self.tick()

    async def __aenter__(self) -> MetricsPump:
        self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # -- one tick -------------------------------------------------------------------------

    def snapshot(self) -> MetricsSnapshot:
        """Read every source now (a source that raises is logged and left out)."""
        groups: dict[str, dict[str, Any]] = {"capacity": {}, "chain": {}, "runner": {}, "other": {}}
        for name, source in self._sources.items():
            try:
                snap = source.snapshot()
            except Exception:
                _log.exception("metrics source %r failed in snapshot()", name)
                continue
            if isinstance(snap, CapacityMetricsSnapshot):
                groups["capacity"][name] = snap
            elif isinstance(snap, ChainMetricsSnapshot):
                groups["chain"][name] = snap
            elif isinstance(snap, RunnerMetricsSnapshot):
                groups["runner"][name] = snap
            else:
                groups["other"][name] = snap
        return MetricsSnapshot(self._clock(), **groups)

    async def tick(self) -> MetricsSnapshot:
        """Push one snapshot to the sink now; return it."""
        snap = self.snapshot()
        sink = self.sink
        self._errors = []
        hook = getattr(sink, "snapshot", None)
        if callable(hook):
            await self._call("snapshot", hook, snap)
        prefix = self._prefix
        for point in snapshot_points(snap):
            name = prefix + point.name
            if point.kind == "gauge":
                await self._call("gauge", sink.gauge, name, point.value, point.attrs)
                continue
            key = (name, tuple(sorted(point.attrs.items())))
            last = self._totals.get(key, 0)
            delta = point.value - last if point.value >= last else point.value  # reset: restart
            self._totals[key] = point.value
            if delta > 0:
                await self._call("counter", sink.counter, name, delta, point.attrs)
        for source_name, source in self._sources.items():
            windows = getattr(source, "_duration_windows", None)
            if windows is None:
                continue
            for metric, extra, window in windows():
                await self._forward(source_name, prefix + metric, extra, window)
        flush = getattr(sink, "flush", None)
        if callable(flush):
            await self._call("flush", flush)
        if self._errors:
            _log.error(
                "metrics sink %r failed %d time(s) this tick; first: %s",
                sink,
                len(self._errors),
                self._errors[0],
            )
        return snap

    async def _forward(
        self, source: str, name: str, extra: MetricAttrs, window: RollingWindow
    ) -> None:
        attrs: MetricAttrs = {"source": source, **extra}
        key = (source, name, tuple(sorted(extra.items())))
        cursor, values = window._since(self._cursors.get(key, 0))
        self._cursors[key] = cursor
        duration = self.sink.duration
        for seconds in values:
            await self._call("duration", duration, name, seconds, attrs)

    async def _call(self, what: str, method: Callable[..., Any], *args: Any) -> None:
        try:
            result = method(*args)
            if inspect.isawaitable(result):
                await result
        except Exception as error:
            # Fire-and-forget: a failing sink never affects the library.
            self._errors.append(f"{what}: {error!r}")

    def __repr__(self) -> str:
        state = "running" if self._task is not None else "stopped"
        return f"<MetricsPump {state} interval={self.interval} sources={list(self._sources)}>"
