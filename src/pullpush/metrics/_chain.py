"""``DefaultChainMetricsCollector``: turnstiles, stage latencies and timed sections."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
from collections import deque
from collections.abc import Hashable, Iterator, Mapping
from typing import Literal, TypeAlias

from .._clock import Clock, resolve_clock
from .._util import check_int, check_seconds
from ._duration import Duration
from ._window import RollingWindow, RollingWindowStats

__all__ = [
    "ChainMetricsSnapshot",
    "ChainSectionStatus",
    "ChainToken",
    "DefaultChainMetricsCollector",
    "SectionSnapshot",
    "TurnstileSnapshot",
]

ChainToken: TypeAlias = int
"""What ``enter_section`` returns: a number, increasing with every call."""

ChainSectionStatus = Literal["ok", "error", "cancelled"]
"""How a section ended."""

_STATUSES = ("ok", "error", "cancelled")


@dataclasses.dataclass(frozen=True)
class TurnstileSnapshot:
    """One checkpoint: how many items passed it, and how many in the last window."""

    passed: int
    """Passes since the collector started."""
    throughput_per_sec: RollingWindowStats
    """Passes in the last window (each observes 1; ``.rate`` is per second)."""


@dataclasses.dataclass(frozen=True)
class SectionSnapshot:
    """One section: entries, exits by status, what is inside, and how long it took."""

    entered: int
    left: int
    """Exits, whatever their status."""
    errored: int
    """Exits with status ``"error"``."""
    cancelled: int
    """Exits with status ``"cancelled"``."""
    in_flight: int
    """Entered and not yet left."""
    duration: RollingWindowStats
    """Seconds from enter to leave, over the last window."""


@dataclasses.dataclass(frozen=True)
class ChainMetricsSnapshot:
    """A :class:`DefaultChainMetricsCollector`'s view at one moment."""

    captured_at: float
    """When, in seconds of the collector's clock."""
    turnstiles: Mapping[str, TurnstileSnapshot]
    """Per checkpoint, in the order they were first passed."""
    sections: Mapping[str, SectionSnapshot]
    """Per section, in the order they were first entered."""
    stage_latency: Mapping[str, RollingWindowStats]
    """Seconds from an earlier checkpoint to a later one, keyed ``"A->B"``."""


class _Turnstile:
    __slots__ = ("by_id", "keys", "name", "passed", "rate", "recent", "upstream")

    def __init__(
        self, name: str, upstream: list[_Turnstile], window: float, clock: Clock, cap: int
    ) -> None:
        self.name = name
        self.passed = 0
        self.rate = RollingWindow(window, clock=clock)
        # Invariant: the times of the latest passes, oldest first; recent[i] is pass
        # number passed - len(recent) + i. At most `cap` (the oldest are dropped).
        self.recent: deque[float] = deque(maxlen=cap)
        # Invariant: item id -> time of its latest pass, oldest first; at most `cap`.
        self.by_id: dict[Hashable, float] = {}
        # The checkpoints first passed before this one, and the "A->B" keys.
        self.upstream = upstream
        self.keys = [f"{before.name}->{name}" for before in upstream]


class _Section:
    __slots__ = ("cancelled", "duration", "entered", "errored", "left")

    def __init__(self, window: float, clock: Clock) -> None:
        # Invariant: entered - left == the tokens of this section still open.
        self.entered = self.left = self.errored = self.cancelled = 0
        self.duration = Duration(window, clock=clock)


class DefaultChainMetricsCollector:
    """Measure a pipeline: items passing checkpoints, and time spent in sections.

    **Turnstiles.** Call ``on_turnstile_pass("parsed")`` where items pass a point of
    the chain (e.g. in a ``PullCallbackObj``). Each pass is counted and kept for the
    throughput, and the collector measures the latency from *every* checkpoint first
    passed earlier to this one (key ``"A->B"``). Passes are matched:

    * **FIFO** without an id: pass N here pairs with pass N at the earlier
      checkpoint. Right for chains that keep order and drop nothing between the two
      points; a filter in between misaligns them (pass an id then);
    * **by id** with ``item_id=``: this pass pairs with the latest pass of the same
      id at the earlier checkpoint.

    Each checkpoint remembers its latest ``max_pending_correlation`` passes (and as
    many ids) for matching; older ones are dropped, so memory stays bounded when
    items never reach a later checkpoint. A pass is not consumed by a match, so
    ``A->B`` and ``A->C`` are both measured.

    **Sections.** ``token = enter_section("llm")`` ... ``leave_section("llm", token,
    status)`` count entries, exits (``"ok"``, ``"error"``, ``"cancelled"``) and time
    the section; ``with collector.section("llm"):`` does both and picks the status
    from how the block ended. An unknown token, one already used, or one given with
    another section's name is ignored (it stays open for its own section).

    Example::

        chain = DefaultChainMetricsCollector(window=60.0)
        chain.on_turnstile_pass("read", item_id=7)
        chain.on_turnstile_pass("written", item_id=7)
        chain.snapshot().stage_latency["read->written"].avg

    Args:
        window: seconds over which rates and durations are kept (> 0).
        max_pending_correlation: passes remembered per checkpoint for matching (>= 1).
        clock: where time is read when ``at=`` / ``now=`` is not given; default
            :func:`time.monotonic`.
    """

    def __init__(
        self,
        window: float = 60.0,
        max_pending_correlation: int = 10000,
        clock: Clock | None = None,
    ) -> None:
        self._clock = resolve_clock(clock)
        self._window: float = check_seconds("window", window, positive=True)
        self._cap = check_int("max_pending_correlation", max_pending_correlation, minimum=1)
        # Invariant: in the order of first pass.
        self._turnstiles: dict[str, _Turnstile] = {}
        self._latency: dict[str, RollingWindow] = {}
        self._sections: dict[str, _Section] = {}
        # Invariant: the tokens entered and not yet left -> (section, entered at).
        self._open: dict[ChainToken, tuple[str, float]] = {}
        self._tokens = itertools.count(1)

    # -- turnstiles ---------------------------------------------------------------------

    def on_turnstile_pass(
        self, checkpoint: str, item_id: Hashable | None = None, at: float | None = None
    ) -> None:
        """Count a pass at ``checkpoint`` and measure the latency from earlier ones.

        Args:
            checkpoint: the checkpoint's name.
            item_id: the item's id, to match passes by id instead of FIFO.
            at: when (seconds of the collector's clock); default: now.
        """
        now = self._clock() if at is None else at
        turnstile = self._turnstiles.get(checkpoint)
        if turnstile is None:
            turnstile = _Turnstile(
                checkpoint, list(self._turnstiles.values()), self._window, self._clock, self._cap
            )
            self._turnstiles[checkpoint] = turnstile
        number = turnstile.passed
        for before, key in zip(turnstile.upstream, turnstile.keys, strict=True):
            if item_id is None:
                first = before.passed - len(before.recent)
                if not first <= number < before.passed:
                    continue  # never passed there, or dropped from its memory
                began = before.recent[number - first]
            else:
                found = before.by_id.get(item_id)
                if found is None:
                    continue
                began = found
            window = self._latency.get(key)
            if window is None:
                window = self._latency[key] = RollingWindow(self._window, clock=self._clock)
            window.observe(max(0.0, now - began), now)
        turnstile.passed = number + 1
        turnstile.rate.observe(1, now)
        turnstile.recent.append(now)
        if item_id is not None:
            by_id = turnstile.by_id
            by_id.pop(item_id, None)
            by_id[item_id] = now
            if len(by_id) > self._cap:
                del by_id[next(iter(by_id))]

    # -- sections -----------------------------------------------------------------------

    def enter_section(self, section: str, at: float | None = None) -> ChainToken:
        """Count an entry into ``section``; return the token to leave it with."""
        now = self._clock() if at is None else at
        state = self._sections.get(section)
        if state is None:
            state = self._sections[section] = _Section(self._window, self._clock)
        state.entered += 1
        token = next(self._tokens)
        self._open[token] = (section, now)
        return token

    def leave_section(
        self,
        section: str,
        token: ChainToken,
        status: ChainSectionStatus = "ok",
        at: float | None = None,
    ) -> None:
        """Count an exit from ``section`` and record its duration.

        An unknown or already used token, or one entered under another section,
        is ignored.

        Raises:
            ValueError: ``status`` is not ``"ok"``, ``"error"`` or ``"cancelled"``.
        """
        if status not in _STATUSES:
            raise ValueError(f"status must be 'ok', 'error' or 'cancelled', got {status!r}")
        entry = self._open.get(token)
        if entry is None or entry[0] != section:
            return
        del self._open[token]
        now = self._clock() if at is None else at
        state = self._sections[section]
        state.left += 1
        if status == "error":
            state.errored += 1
        elif status == "cancelled":
            state.cancelled += 1
        state.duration.record(max(0.0, now - entry[1]))

    @contextlib.contextmanager
    def section(self, section: str) -> Iterator[ChainToken]:
        """Time a block as ``section`` (in sync or async code).

        The status is ``"ok"`` when the block ends normally, ``"cancelled"`` when it
        ends with :class:`asyncio.CancelledError` and ``"error"`` otherwise; the
        exception propagates.
        """
        token = self.enter_section(section)
        status: ChainSectionStatus = "error"
        try:
            yield token
            status = "ok"
        except asyncio.CancelledError:
            status = "cancelled"
            raise
        finally:
            self.leave_section(section, token, status)

    # -- reading ------------------------------------------------------------------------

    def snapshot(self, now: float | None = None) -> ChainMetricsSnapshot:
        """Return every checkpoint, section and stage latency at ``now``."""
        now = self._clock() if now is None else now
        return ChainMetricsSnapshot(
            captured_at=now,
            turnstiles={
                name: TurnstileSnapshot(t.passed, t.rate.stats(now))
                for name, t in self._turnstiles.items()
            },
            sections={
                name: SectionSnapshot(
                    entered=s.entered,
                    left=s.left,
                    errored=s.errored,
                    cancelled=s.cancelled,
                    in_flight=s.entered - s.left,
                    duration=s.duration.stats(now),
                )
                for name, s in self._sections.items()
            },
            stage_latency={key: w.stats(now) for key, w in self._latency.items()},
        )

    def _duration_windows(self) -> Iterator[tuple[str, dict[str, str], RollingWindow]]:
        """Every window of durations, for exporters that forward each value."""
        for name, state in self._sections.items():
            yield "chain.section.duration", {"section": name}, state.duration._window
        for key, window in self._latency.items():
            yield "chain.stage.latency", {"stage": key}, window

    def __repr__(self) -> str:
        return (
            f"<DefaultChainMetricsCollector turnstiles={len(self._turnstiles)} "
            f"sections={len(self._sections)} open={len(self._open)}>"
        )
