"""The capacity and scheduling packages' public names are all exported from pullpush."""

from __future__ import annotations

import pytest

import pullpush
import pullpush.capacity
import pullpush.metrics
import pullpush.scheduling
import pullpush.testing


@pytest.mark.parametrize("package", [pullpush.capacity, pullpush.scheduling, pullpush.metrics])
def test_every_public_name_is_exported_from_pullpush(package: object) -> None:
    names = package.__all__  # type: ignore[attr-defined]
    assert isinstance(names, tuple)
    for name in names:
        assert name in pullpush.__all__, name
        assert getattr(pullpush, name) is getattr(package, name)


def test_manual_clock_is_a_testing_helper() -> None:
    assert "ManualClock" in pullpush.testing.__all__
