"""The injectable clock: every time-dependent part of pullpush reads time through one.

A clock is any zero-argument callable returning seconds as a ``float`` that never go
backwards; the default is :func:`time.monotonic`. Tests pass
:class:`pullpush.testing.ManualClock` to make aging, quotas and balancers
deterministic without sleeping.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeAlias

__all__ = ["Clock", "resolve_clock"]

Clock: TypeAlias = Callable[[], float]
"""A source of time: seconds, non-decreasing (only differences are meaningful)."""


def resolve_clock(clock: Clock | None) -> Clock:
    """Return ``clock``, or :func:`time.monotonic` when it is ``None``."""
    if clock is None:
        return time.monotonic
    if not callable(clock):
        raise TypeError(f"clock must be a callable returning seconds, got {clock!r}")
    return clock
