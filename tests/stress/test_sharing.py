"""Sharing: several runners, with tasks of different shapes and different limits of
their own, share one ``ProcessExecutor`` and one global ``CapacitySource`` at once.
None starves: over every window of ``WINDOW`` seconds, each runner completes at least
half its fair share (the window's completions divided by the number of runners)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import Callable, Iterator
from typing import Any

import _stress_tasks as tasks
import pytest
from _stress_support import (
    TALLY,
    Ledger,
    LedgerExecutor,
    check_capacity_returned,
    counted_no_leaks,
)

from pullpush import CapacitySource, EnvelopeType, HierarchicalTaskPoolRunner, ProcessExecutor

pytestmark = pytest.mark.stress

RUN_FOR = 6.0  # seconds all runners run together
WARM_UP = 0.5  # seconds after the last runner's first completion before windows start
WINDOW = 1.0  # seconds
STEP = 0.25  # seconds between window starts
GLOBAL_LIMIT = 8

# runner -> (its own limit, a task maker); fair share of the global 8 is 2 each.
RUNNERS: dict[str, tuple[int, Callable[[int], Any]]] = {
    "blocking": (3, lambda key: functools.partial(tasks.doze, key, 0.001)),
    "async": (4, lambda key: functools.partial(tasks.nap, key, 0.001)),
    "streaming": (6, lambda key: functools.partial(tasks.stream, key, 2)),
    "cpu": (8, lambda key: functools.partial(tasks.spin, key, 300)),
}


def endless(make: Callable[[int], Any]) -> Iterator[Any]:
    key = 0
    while True:
        yield make(key)
        key += 1


async def consume(runner: HierarchicalTaskPoolRunner, deadline: float) -> list[float]:
    """Read until ``deadline``; return the arrival times of the FINAL envelopes."""
    finals: list[float] = []
    async with contextlib.aclosing(runner.run_tasks()) as envelopes:
        async for envelope in envelopes:
            now = time.monotonic()
            assert envelope.type is not EnvelopeType.ERROR, envelope.error
            if envelope.type is EnvelopeType.FINAL:
                finals.append(now)
            if now > deadline:
                break
    return finals


def starved_windows(arrivals: dict[str, list[float]], start: float, end: float) -> list[str]:
    """Every window in which some runner got less than half its fair share."""
    problems = []
    begin = start
    while begin + WINDOW <= end:
        end_of_window = begin + WINDOW
        counts = {
            name: sum(begin <= t < end_of_window for t in times) for name, times in arrivals.items()
        }
        fair = sum(counts.values()) / len(counts)
        if any(count < fair / 2 for count in counts.values()):
            problems.append(f"[{begin - start:.2f}, {begin - start + WINDOW:.2f}) s: {counts}")
        begin += STEP
    return problems


@pytest.mark.timeout(90)
@pytest.mark.parametrize("loop_kind", ["asyncio", "uvloop"])
async def test_runners_sharing_a_pool_and_a_global_capacity_do_not_starve(
    loop_kind: str,
) -> None:
    global_capacity = CapacitySource(GLOBAL_LIMIT)
    levels = {
        name: CapacitySource(limit, parent=global_capacity) for name, (limit, _) in RUNNERS.items()
    }
    ledger = Ledger({"global": global_capacity, **levels})
    async with counted_no_leaks():
        async with ProcessExecutor(2) as pool:
            runners = {
                name: HierarchicalTaskPoolRunner(
                    name,
                    endless(make),
                    levels[name],
                    executor=LedgerExecutor(pool, ledger, (name, "global")),
                )
                for name, (_, make) in RUNNERS.items()
            }
            deadline = time.monotonic() + RUN_FOR
            results = await asyncio.gather(
                *(consume(runner, deadline) for runner in runners.values())
            )
            assert pool.capacity.in_use == 0
        check_capacity_returned(global_capacity, *levels.values())
    ledger.check()
    arrivals = dict(zip(runners, results, strict=True))
    assert all(arrivals.values()), {name: len(times) for name, times in arrivals.items()}
    start = max(times[0] for times in arrivals.values()) + WARM_UP
    starved = starved_windows(arrivals, start, deadline)
    totals = {name: len(times) for name, times in arrivals.items()}
    print(f"sharing on {loop_kind}: FINAL envelopes per runner {totals}, peaks {ledger.peaks()}")
    assert not starved, starved
    TALLY.add(tasks=sum(totals.values()))
