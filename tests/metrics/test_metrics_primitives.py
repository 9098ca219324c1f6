"""Counter, UpDown, RollingWindow and Duration (FEATURES 2.15, in seconds)."""

from __future__ import annotations

import math

import pytest

from pullpush import Counter, Duration, RollingWindow, RollingWindowStats, UpDown
from pullpush.testing import ManualClock


def test_counter_adds_non_negative_deltas_and_resets() -> None:
    counter = Counter()
    counter.add()
    counter.add(3)
    counter.add(0.5)
    assert counter.value == 4.5
    for bad in (-1, math.nan, math.inf):
        with pytest.raises(ValueError, match="delta must be a finite number >= 0"):
            counter.add(bad)
    assert counter.value == 4.5
    assert repr(counter) == "<Counter value=4.5>"
    counter.reset()
    assert counter.value == 0


def test_up_down_adds_signed_deltas_and_resets() -> None:
    level = UpDown()
    level.add(2)
    level.add(-5)
    assert level.value == -3
    with pytest.raises(ValueError, match="delta must be finite"):
        level.add(math.nan)
    level.reset()
    assert level.value == 0
    assert repr(level) == "<UpDown value=0>"


def test_an_empty_window_has_zero_count_sum_avg_and_no_min_max() -> None:
    assert RollingWindow(60.0, clock=ManualClock()).stats() == RollingWindowStats(
        60.0, 0, 0, 0, None, None
    )


def test_window_stats_cover_exactly_the_last_window_seconds() -> None:
    clock = ManualClock()
    window = RollingWindow(10.0, clock=clock)
    window.observe(5)  # at 0
    clock.advance(4)
    window.observe(1)  # at 4
    window.observe(9, at=6)
    assert window.stats() == RollingWindowStats(10.0, 3, 15, 5, 1, 9)
    assert window.stats(now=9.999).count == 3
    # At 10 the observation made at 0 has left (an entry counts while now - 10 < t).
    assert window.stats(now=10) == RollingWindowStats(10.0, 2, 10, 5, 1, 9)
    assert window.stats(now=14.5) == RollingWindowStats(10.0, 1, 9, 9, 9, 9)
    assert window.stats(now=16) == RollingWindowStats(10.0, 0, 0, 0, None, None)
    assert window.stats(now=16).rate == 0


def test_min_and_max_follow_evictions_without_scanning() -> None:
    clock = ManualClock()
    window = RollingWindow(3.0, clock=clock)
    values = [5, 1, 4, 2, 8, 3, 7, 0, 6]
    for t, value in enumerate(values):
        window.observe(value, at=t)
        held = values[max(0, t - 2) : t + 1]
        stats = window.stats(now=t)
        assert (stats.min, stats.max, stats.count, stats.sum) == (
            min(held),
            max(held),
            len(held),
            sum(held),
        )
    assert len(window._entries) == 3  # old observations are gone, not just skipped


def test_an_out_of_order_time_counts_as_the_latest_and_rate_is_per_second() -> None:
    window = RollingWindow(2.0, clock=ManualClock())
    window.observe(1, at=5)
    window.observe(1, at=3)  # counts as made at 5
    assert window.stats(now=6.5) == RollingWindowStats(2.0, 2, 2, 1, 1, 1)
    assert window.stats(now=6.5).rate == 1.0


def test_window_reset_and_validation() -> None:
    window = RollingWindow(1.0, clock=ManualClock())
    window.observe(3)
    window.reset()
    assert window.stats().count == 0
    for bad in (0, -1):
        with pytest.raises(ValueError, match="window must be > 0"):
            RollingWindow(bad)
    assert window.window == 1.0
    assert repr(window) == "<RollingWindow window=1.0 count=0>"


def test_window_since_gives_each_value_once_while_held() -> None:
    clock = ManualClock()
    window = RollingWindow(10.0, clock=clock)
    cursor, values = window._since(0)
    assert (cursor, values) == (0, [])
    window.observe(1)
    window.observe(2)
    cursor, values = window._since(cursor)
    assert values == [1, 2]
    window.observe(3)
    cursor, values = window._since(cursor)
    assert values == [3]
    assert window._since(cursor)[1] == []
    clock.advance(20)
    window.observe(4)
    window.observe(5)
    window.stats()
    assert window._since(0)[1] == [4, 5]  # what left the window is gone


def test_duration_start_returns_a_stop_that_records_once() -> None:
    clock = ManualClock(100)
    duration = Duration(60.0, clock=clock)
    stop = duration.start()
    clock.advance(1.5)
    assert stop() == 1.5
    clock.advance(3)
    assert stop() == 1.5  # the same again, not recorded twice
    duration.record(0.5)
    assert duration.stats() == RollingWindowStats(60.0, 2, 2.0, 1.0, 0.5, 1.5)
    assert duration.window == 60.0
    duration.reset()
    assert duration.stats().count == 0


def test_duration_rejects_negative_and_non_finite_seconds() -> None:
    duration = Duration(1.0, clock=ManualClock())
    for bad in (-0.1, math.nan, math.inf):
        with pytest.raises(ValueError, match="seconds must be a finite number >= 0"):
            duration.record(bad)
    assert duration.stats().count == 0
