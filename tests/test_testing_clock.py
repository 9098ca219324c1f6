"""pullpush.testing.ManualClock: a clock that moves only when told to."""

from __future__ import annotations

import pytest

from pullpush.testing import ManualClock


def test_manual_clock_moves_only_when_told() -> None:
    clock = ManualClock(10.0)
    assert clock() == 10.0
    assert clock.advance(2.5) == 12.5
    clock.set(20)
    assert (clock(), clock.now) == (20.0, 20.0)
    assert repr(clock) == "<ManualClock now=20.0>"


@pytest.mark.parametrize(
    ("move", "error", "match"),
    [
        (lambda c: c.advance(-1), ValueError, "never goes back"),
        (lambda c: c.set(-1), ValueError, "never goes back"),
        (lambda c: c.advance(float("inf")), ValueError, "finite"),
        (lambda c: c.advance("1"), TypeError, "seconds"),
    ],
)
def test_manual_clock_refuses_bad_moves(move: object, error: type[Exception], match: str) -> None:
    clock = ManualClock()
    with pytest.raises(error, match=match):
        move(clock)  # type: ignore[operator]
    assert clock() == 0.0
