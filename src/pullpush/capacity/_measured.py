"""Measured capacity: sources whose limits follow live psutil samples.

Two levels, both :class:`~pullpush.ResourceCapacitySource` subclasses, so they sit
anywhere in a hierarchy (as a root, under another resource source, or as the parent
of a runner's ``CapacitySource(8, parent=..., cost={"memory_mb": 500})``):

* :class:`MemoryCapacitySource` tracks ``memory_mb``. Its limit follows the system's
  available memory, less a reserve::

      limit = in_use + max(0, available - reserve_mb)

  Why ``in_use +``: the memory that admitted tasks consume is already missing from
  ``available``, so the headroom for *new* work is ``available - reserve_mb``, and
  the limit is what is in use plus that headroom. ``limit = available - reserve_mb``
  would count the running tasks twice (once in ``available``, once in ``in_use``)
  and admit too little. The model assumes a task's declared cost is resident soon
  after it starts; the reserve absorbs the ramp-up of tasks not yet at their size.
  When a task's real use is known, ``reconcile({"memory_mb": estimate},
  {"memory_mb": measured})`` corrects ``in_use`` (then release the measured amount).

* :class:`CpuCapacitySource` is a gate on system CPU use with hysteresis: it closes
  when a sample is above ``target`` percent and reopens when one is below
  ``target - hysteresis``, so it does not flap around the target. While closed it
  admits nothing new through it, whatever the cost (its effective limit is what is
  already in use); running work keeps its capacity. Reopening serves the waiters of
  its whole subtree at once.

Sampling runs on the event loop: ``start()`` (or ``async with source:``) takes a
sample now and then one every ``interval`` seconds; ``close()`` / ``await aclose()``
stop it. ``sample_now()`` takes one sample synchronously, for tests and for callers
that drive sampling themselves. Every limit change goes through ``set_limits`` (or,
for the gate, the core's wake-up), so waiters are served as soon as room appears.

The samplers are injectable: ``sampler=`` takes a zero-argument callable (a
:class:`MemorySample` for memory, a CPU percentage for the gate), which makes tests
deterministic. A sampler that raises during timed sampling is logged (logger
``pullpush.capacity``) and the limits stay as they were.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import Callable
from types import TracebackType
from typing import NamedTuple, TypeVar

from .._clock import Clock
from .._util import check_seconds
from ._events import CapacityMetricsCollector
from ._resource import ResourceCapacitySource, ResourceCost
from ._timer import PeriodicTimer

__all__ = [
    "CpuCapacitySource",
    "CpuSampler",
    "MemoryCapacitySource",
    "MemorySample",
    "MemorySampler",
    "system_cpu_percent",
    "system_memory",
]

_log = logging.getLogger("pullpush.capacity")

_MIB = 1024 * 1024

M = TypeVar("M", bound="_MeasuredCapacitySource")


class MemorySample(NamedTuple):
    """One reading of system memory, in MiB."""

    available_mb: float
    """Memory that can be given to new work without swapping (psutil's ``available``)."""
    total_mb: float
    """Total physical memory."""


MemorySampler = Callable[[], MemorySample]
"""Returns a :class:`MemorySample` each time it is called."""

CpuSampler = Callable[[], float]
"""Returns system-wide CPU use in percent (0 to 100) since its previous call."""


def system_memory() -> MemorySample:
    """Read the system's available and total memory with psutil."""
    import psutil

    memory = psutil.virtual_memory()
    return MemorySample(memory.available / _MIB, memory.total / _MIB)


def system_cpu_percent() -> CpuSampler:
    """Return a sampler of system-wide CPU use with psutil (non-blocking).

    Each call returns the percentage since the previous call (the first since this
    function was called). Built on ``psutil.cpu_percent(interval=None)``, whose
    baseline psutil keeps per thread.
    """
    import psutil

    psutil.cpu_percent(interval=None)  # set the baseline: the first reading is meaningless
    return lambda: float(psutil.cpu_percent(interval=None))


def _number(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}: {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    return float(value)


class _MeasuredCapacitySource(ResourceCapacitySource):
    """What measured sources share: the sampling timer and its lifecycle."""

    def __init__(
        self,
        limits: ResourceCost,
        *,
        interval: float,
        parent: ResourceCapacitySource | None,
        metrics: CapacityMetricsCollector | None,
        clock: Clock | None,
    ) -> None:
        self._interval: float = check_seconds("interval", interval, positive=True)
        super().__init__(limits, parent, metrics, clock=clock)
        # Invariant: a timer exists exactly while sampling is started (start() to close()).
        self._timer: PeriodicTimer | None = None

    @property
    def interval(self) -> float:
        """Seconds between samples while sampling runs."""
        return self._interval

    @property
    def sampling(self) -> bool:
        """Whether periodic sampling runs (between ``start()`` and ``close()``)."""
        return self._timer is not None

    def sample_now(self) -> object:
        """Take one sample and apply it now."""
        raise NotImplementedError

    def start(self) -> None:
        """Sample now, then every ``interval`` seconds on the running event loop.

        Idempotent while sampling runs. A failing first sample raises (and sampling
        does not start); later failures are logged and skipped.

        Raises:
            RuntimeError: no event loop is running.
        """
        if self._timer is not None:
            return
        timer = PeriodicTimer(self._interval, self._tick)  # RuntimeError without a loop
        try:
            self.sample_now()
        except BaseException:
            timer.cancel()
            raise
        self._timer = timer

    def _tick(self) -> None:
        try:
            self.sample_now()
        except Exception:
            # A broken sampler must not stop the timer nor touch the books: the
            # limits stay as the last good sample left them.
            _log.exception("sampling failed for %r; limits unchanged", self)

    def close(self) -> None:
        """Stop sampling (idempotent). The capacity stays usable at its last limits."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    async def aclose(self) -> None:
        """Stop sampling (idempotent); ``await`` twin of :meth:`close`."""
        self.close()

    async def __aenter__(self: M) -> M:
        self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class MemoryCapacitySource(_MeasuredCapacitySource):
    """A ``memory_mb`` budget that follows the system's available memory.

    ``limit = in_use + max(0, available - reserve_mb - settling)`` at every sample
    (rounded down to whole MiB): the headroom left for new work is what is available
    beyond the reserve, and what admitted tasks already hold is not counted twice
    (see the module docs). ``settling`` is the memory admitted in the last ``settle``
    seconds: a task that just started has not allocated its memory yet, so
    ``available`` does not show it, and without this term the next sample would
    admit it a second time. Tasks declare ``{"memory_mb": estimate}``; when the real use is
    known, ``reconcile(estimated, actual)`` corrects the books and the next sample
    starts from them. A limit set by hand is replaced at the next sample.

    As the parent of a runner's unit pool::

        memory = MemoryCapacitySource(reserve_mb=2048)
        pool = CapacitySource(8, parent=memory, cost={"memory_mb": 500})
        async with memory:                      # samples every second
            async for envelope in HierarchicalTaskPoolRunner("x", tasks, pool).run_tasks():
                ...

    One sample is taken at construction (so the limit is known at once, and the
    reserve is checked against total memory); sampling runs from :meth:`start` (or
    ``async with``) to :meth:`close` / :meth:`aclose`.

    Args:
        reserve_mb: MiB to keep free for everything else (>= 0, at most the total).
        interval: seconds between samples while sampling runs (> 0).
        settle: seconds a newly admitted cost is assumed not to show in the
            measurement yet (default: twice the interval, at least 1 s); raise it
            for tasks that allocate slowly.
        parent: the next level up, or ``None``.
        sampler: returns a :class:`MemorySample`; default :func:`system_memory`
            (psutil).
        clock: where event times are read; default :func:`time.monotonic`.
        metrics: a :class:`~pullpush.CapacityMetricsCollector` (a limit change is an
            ``on_set_limits`` event).

    Raises:
        ValueError: ``reserve_mb`` is negative or above total memory, ``interval``
            is not > 0, or the sampler returned a negative or non-finite reading.
    """

    RESOURCE = "memory_mb"
    """The resource this source tracks."""

    def __init__(
        self,
        reserve_mb: float,
        *,
        interval: float = 1.0,
        settle: float | None = None,
        parent: ResourceCapacitySource | None = None,
        sampler: MemorySampler | None = None,
        clock: Clock | None = None,
        metrics: CapacityMetricsCollector | None = None,
    ) -> None:
        if settle is None:
            settle = max(1.0, 2 * check_seconds("interval", interval, positive=True))
        self._settle = check_seconds("settle", settle)
        # Invariant: (when, MiB) of the admissions of the last ``settle`` seconds.
        self._recent: deque[tuple[float, float]] = deque()
        reserve = _number("reserve_mb", reserve_mb)
        if reserve < 0:
            raise ValueError(f"reserve_mb must be >= 0, got {reserve_mb}")
        self._sampler: MemorySampler = system_memory if sampler is None else sampler
        sample = self._read()
        if reserve > sample.total_mb:
            raise ValueError(
                f"reserve_mb ({reserve_mb}) is above total memory ({sample.total_mb:.0f} MiB)"
            )
        self._reserve = reserve
        # Invariant: the sample the current limit was computed from.
        self._last = sample
        super().__init__(
            {self.RESOURCE: self._headroom(sample)},
            interval=interval,
            parent=parent,
            metrics=metrics,
            clock=clock,
        )

    def _read(self) -> MemorySample:
        sample = self._sampler()
        available = _number("sample.available_mb", sample.available_mb)
        total = _number("sample.total_mb", sample.total_mb)
        if available < 0 or total < 0:
            raise ValueError(f"memory sample must not be negative, got {sample!r}")
        return MemorySample(available, total)

    def _headroom(self, sample: MemorySample) -> int:
        return math.floor(max(0.0, sample.available_mb - self._reserve - self._settling()))

    def _settling(self) -> float:
        """MiB admitted too recently to show in a measurement (at most what is in use)."""
        recent = self._recent
        if not recent:
            return 0.0
        horizon = self._clock() - self._settle
        while recent and recent[0][0] < horizon:
            recent.popleft()
        return min(sum(amount for _, amount in recent), self._in_use.get(self.RESOURCE, 0.0))

    def _take(self, cost: ResourceCost) -> None:
        super()._take(cost)
        amount = cost.get(self.RESOURCE)
        if amount:
            self._recent.append((self._clock(), amount))

    @property
    def reserve_mb(self) -> float:
        """MiB kept free for everything else."""
        return self._reserve

    @property
    def last_sample(self) -> MemorySample:
        """The sample the current limit was computed from."""
        return self._last

    def sample_now(self) -> MemorySample:
        """Read memory now and set ``limit = in_use + headroom``; return the sample.

        A grown limit serves waiters at once (here and below).

        Raises:
            ValueError: the sampler returned a negative or non-finite reading
                (nothing changed).
        """
        sample = self._read()
        self._last = sample
        key = self.RESOURCE
        limit = self._in_use[key] + self._headroom(sample)
        if limit != self._limits[key]:
            self.set_limits({key: limit})
        return sample

    def __repr__(self) -> str:
        return (
            f"<MemoryCapacitySource limit={self._limits[self.RESOURCE]:.0f} MiB "
            f"in_use={self._in_use[self.RESOURCE]:.0f} MiB reserve={self._reserve:.0f} MiB "
            f"waiting={len(self._waiters)}>"
        )


class CpuCapacitySource(_MeasuredCapacitySource):
    """A gate that admits work while system CPU use is under a target percentage.

    Hysteresis: the gate closes when a sample is above ``target`` and reopens when a
    sample is below ``target - hysteresis`` (``target=80, hysteresis=10``: closed
    above 80 %, open again below 70 %). While closed, no acquire passes through this
    level, whatever its cost, and :meth:`peek` of any source below it returns
    ``None``; what is running keeps its capacity (the gate's limit is, in effect,
    what is already in use). Reopening serves every waiter below it at once, in the
    usual FIFO order.

    It tracks no resource of its own (``limits`` is empty), so any cost passes it
    while open; use it as a parent::

        cpu = CpuCapacitySource(target=80, hysteresis=10)
        pool = CapacitySource(8, parent=cpu, cost={})
        memory_then_cpu = ResourceCapacitySource({"memory_mb": 4096}, parent=cpu)

    It starts open; sampling runs from :meth:`start` (or ``async with``), whose first
    sample is taken at once, to :meth:`close` / :meth:`aclose`.

    Args:
        target: the CPU percentage (0 to 100) above which the gate closes.
        hysteresis: percentage points below ``target`` that CPU use must fall to
            before the gate reopens (>= 0, at most ``target``).
        interval: seconds between samples while sampling runs (> 0).
        parent: the next level up, or ``None``.
        sampler: returns CPU use in percent; default :func:`system_cpu_percent`
            (psutil, created here).
        clock: where event times are read; default :func:`time.monotonic`.
        metrics: a :class:`~pullpush.CapacityMetricsCollector`.

    Raises:
        ValueError: ``target`` is outside 0 to 100, ``hysteresis`` is negative or
            above ``target``, or ``interval`` is not > 0.
    """

    def __init__(
        self,
        target: float = 80.0,
        *,
        hysteresis: float = 10.0,
        interval: float = 1.0,
        parent: ResourceCapacitySource | None = None,
        sampler: CpuSampler | None = None,
        clock: Clock | None = None,
        metrics: CapacityMetricsCollector | None = None,
    ) -> None:
        target = _number("target", target)
        if not 0 <= target <= 100:
            raise ValueError(f"target must be a percentage from 0 to 100, got {target}")
        hysteresis = _number("hysteresis", hysteresis)
        if hysteresis < 0:
            raise ValueError(f"hysteresis must be >= 0, got {hysteresis}")
        if hysteresis > target:
            raise ValueError(
                f"hysteresis ({hysteresis}) must not exceed target ({target}): "
                "the gate could never reopen"
            )
        super().__init__({}, interval=interval, parent=parent, metrics=metrics, clock=clock)
        self._target = target
        self._hysteresis = hysteresis
        self._sampler: CpuSampler = system_cpu_percent() if sampler is None else sampler
        # Invariant: False exactly while the last sample that changed the state was
        # above target (and none since was below target - hysteresis).
        self._open = True
        self._last: float | None = None

    def _fits(self, cost: ResourceCost) -> bool:
        return self._open and super()._fits(cost)

    @property
    def target(self) -> float:
        """The CPU percentage above which the gate closes."""
        return self._target

    @property
    def hysteresis(self) -> float:
        """How far below ``target`` CPU use must fall before the gate reopens."""
        return self._hysteresis

    @property
    def is_open(self) -> bool:
        """Whether the gate admits new work."""
        return self._open

    @property
    def cpu_percent(self) -> float | None:
        """The last CPU sample in percent (``None`` before the first)."""
        return self._last

    def sample_now(self) -> float:
        """Read CPU use now, open or close the gate; return the sample (percent).

        Readings outside 0 to 100 are clamped. Reopening serves waiters at once.

        Raises:
            ValueError: the sampler returned a non-finite reading (nothing changed).
        """
        percent = min(100.0, max(0.0, _number("cpu sample", self._sampler())))
        self._last = percent
        if self._open:
            if percent > self._target:
                self._open = False
        elif percent < self._target - self._hysteresis:
            self._open = True
            self._grown(self)
        return percent

    def __repr__(self) -> str:
        state = "open" if self._open else "closed"
        return (
            f"<CpuCapacitySource {state} cpu={self._last}% target={self._target}% "
            f"hysteresis={self._hysteresis} waiting={len(self._waiters)}>"
        )
