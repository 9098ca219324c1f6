"""Load with faults: 100,000 tasks through a three-level capacity hierarchy (global,
two pools, two runners each) on one shared process pool, with random costs and
durations, 1% injected exceptions, 0.2% worker kills (``os._exit`` and SIGKILL), 0.5%
timeouts and random consumer pauses.

Checked: exactly one terminal envelope per task; ERROR envelopes for exactly the
injected faults, each of the right type; no capacity level over its limit at any
moment (counted by a ledger around the executor, see ``_stress_support.Ledger``);
all capacity returned; no child process or fd leaked; the parent's RSS bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import random
import signal
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from typing import Any

import _stress_tasks as tasks
import pytest
from _stress_support import (
    TALLY,
    Ledger,
    LedgerExecutor,
    check_capacity_returned,
    check_rss,
    counted_no_leaks,
    rng_for,
    rss,
)

from pullpush import (
    EnvelopeType,
    ProcessExecutor,
    RemoteTraceback,
    ResourceCapacitySource,
    ScheduledTask,
    ScheduledTaskPoolRunner,
    TaskTimeoutError,
    WorkerCrashedError,
)

pytestmark = pytest.mark.stress

TASKS = 100_000
RUNNERS = {"a1": "a", "a2": "a", "b1": "b", "b2": "b"}  # runner -> pool
P_RAISE, P_KILL, P_TIMEOUT = 0.01, 0.002, 0.005
TIMEOUT = 0.02  # seconds, for the tasks planted to time out
RSS_BOUND_MIB = 64  # MiB; about 3 MiB measured

GLOBAL_LIMITS = {"cpu": 96, "memory_mb": 6144}
POOL_LIMITS = {"cpu": 64, "memory_mb": 4096}
RUNNER_LIMITS = {"cpu": 40, "memory_mb": 2560}


class Plan:
    """The tasks of one runner, drawn lazily from a seeded generator, and the faults
    planted among them (by key)."""

    def __init__(self, name: str, keys: range, rng: random.Random) -> None:
        self.name = name
        self.keys = keys
        self.rng = rng
        self.raised: dict[int, tuple[str, str]] = {}  # key -> (error type, shape)
        self.killed: dict[int, str] = {}  # key -> how
        self.timed_out: set[int] = set()
        self.streams: dict[int, int] = {}  # key -> INTERMEDIATE envelopes expected
        self.costs: dict[int, Mapping[str, float]] = {}  # id(runner) -> cost, until submit

    def faults(self) -> int:
        return len(self.raised) + len(self.killed) + len(self.timed_out)

    def __iter__(self) -> Iterator[ScheduledTask[int]]:
        rng = self.rng
        for key in self.keys:
            cost = {"cpu": rng.randint(1, 4), "memory_mb": rng.choice((16, 32, 64, 128, 256))}
            timeout = None
            draw = rng.random()
            if draw < P_RAISE:
                error = rng.choice(sorted(tasks.ERRORS))
                shape = rng.choice(("sync", "async", "streaming"))
                self.raised[key] = (error, shape)
                maker = {
                    "sync": tasks.raise_now,
                    "async": tasks.raise_async,
                    "streaming": tasks.raise_streaming,
                }[shape]
                runner: Any = functools.partial(maker, key, error)
                if shape == "streaming":
                    self.streams[key] = 1
            elif draw < P_RAISE + P_KILL:
                how = rng.choice(("os._exit", "SIGKILL"))
                self.killed[key] = how
                runner = functools.partial(tasks.kill, how)
            elif draw < P_RAISE + P_KILL + P_TIMEOUT:
                # Awaiting, so cancelled in its worker. (Tasks stuck in blocking code,
                # whose workers are terminated after cancel_grace, are in the
                # cancellation storms: here each would cost a second of grace.)
                self.timed_out.add(key)
                runner = functools.partial(tasks.hang)
                timeout = TIMEOUT
            else:
                runner = self._ok(key, rng)
            self.costs[id(runner)] = cost
            yield ScheduledTask(key, runner, cost, timeout=timeout)

    def _ok(self, key: int, rng: random.Random) -> Any:
        draw = rng.random()
        if draw < 0.85:
            return functools.partial(tasks.ok, key)
        if draw < 0.93:
            return functools.partial(tasks.spin, key, rng.randint(1, 50))
        if draw < 0.96:
            self.streams[key] = count = rng.randint(1, 4)
            return functools.partial(tasks.stream, key, count)
        if draw < 0.97:
            self.streams[key] = count = rng.randint(1, 3)
            return functools.partial(tasks.astream, key, count)
        if draw < 0.99:
            return functools.partial(tasks.nap, key, rng.uniform(0.0005, 0.003))
        return functools.partial(tasks.doze, key, rng.uniform(0.0005, 0.002))

    def cost_of(self, runner: Any) -> Mapping[str, float]:
        return self.costs.pop(id(runner))


class Outcome:
    """What one runner's consumer saw, kept compact (one byte per task)."""

    def __init__(self, keys: range) -> None:
        self.first = keys.start
        self.terminal = bytearray(len(keys))
        self.intermediate: dict[int, list[Any]] = {}
        self.errors: dict[int, BaseException] = {}
        self.problems: list[str] = []

    def see(self, envelope: Any) -> None:
        key = envelope.key
        index = key - self.first
        if self.terminal[index]:
            self.problems.append(f"task {key}: {envelope.type} after its terminal envelope")
        if envelope.type is EnvelopeType.INTERMEDIATE:
            self.intermediate.setdefault(key, []).append(envelope.value)
            return
        self.terminal[index] += 1
        if envelope.type is EnvelopeType.ERROR:
            self.errors[key] = envelope.error
        elif envelope.value != key:
            self.problems.append(f"task {key}: FINAL {envelope.value!r}")


async def consume(
    runner: ScheduledTaskPoolRunner[int], outcome: Outcome, rng: random.Random, peak: list[int]
) -> int:
    pauses = 0
    seen = 0
    async with contextlib.aclosing(runner.run_tasks()) as envelopes:
        async for envelope in envelopes:
            outcome.see(envelope)
            seen += 1
            if seen % 5000 == 0:
                peak[0] = max(peak[0], rss())
            if rng.random() < 1 / 4000:  # a consumer pause: the runner must hold back
                pauses += 1
                await asyncio.sleep(rng.uniform(0.005, 0.05))
    return pauses


def check_outcome(plan: Plan, outcome: Outcome) -> int:
    """Check one runner's envelopes against its plan; return the faults observed."""
    assert not outcome.problems, outcome.problems[:10]
    missing = [plan.keys[i] for i, n in enumerate(outcome.terminal) if n != 1]
    assert not missing, (
        f"{len(missing)} tasks without exactly one terminal envelope: {missing[:10]}"
    )
    planted = set(plan.raised) | set(plan.killed) | set(plan.timed_out)
    assert set(outcome.errors) == planted, (
        f"ERROR envelopes for tasks not planted: {sorted(set(outcome.errors) - planted)[:10]}; "
        f"planted faults without one: {sorted(planted - set(outcome.errors))[:10]}"
    )
    for key, (name, _) in plan.raised.items():
        error = outcome.errors[key]
        assert type(error) is tasks.ERRORS[name], (key, error)
        assert f"injected into task {key}" in str(error), (key, error)
        assert isinstance(error.__cause__, RemoteTraceback), (key, error.__cause__)
    for key, how in plan.killed.items():
        error = outcome.errors[key]
        assert isinstance(error, WorkerCrashedError), (key, error)
        if how == "os._exit":
            assert (error.exitcode, error.signal) == (tasks.KILL_EXIT_CODE, None), error
        else:
            assert (error.exitcode, error.signal) == (None, signal.SIGKILL), error
    for key in plan.timed_out:
        assert isinstance(outcome.errors[key], TaskTimeoutError), (key, outcome.errors[key])
    streamed = set(outcome.intermediate)
    assert streamed <= set(plan.streams), sorted(streamed - set(plan.streams))[:10]
    for key, count in plan.streams.items():
        # Every value once, in order: a stream is never run twice, not even when its
        # worker is killed right after it (its end is sent before the next task starts).
        expected = [key] if key in plan.raised else list(range(count))
        assert outcome.intermediate.get(key, []) == expected, (key, outcome.intermediate.get(key))
    return len(outcome.errors)


@pytest.mark.timeout(240)
@pytest.mark.parametrize("loop_kind", ["asyncio", "uvloop"])
async def test_load_with_faults(loop_kind: str) -> None:
    rng = rng_for(f"load-{loop_kind}")
    global_level = ResourceCapacitySource(GLOBAL_LIMITS)
    pools = {p: ResourceCapacitySource(POOL_LIMITS, parent=global_level) for p in "ab"}
    levels = {
        name: ResourceCapacitySource(RUNNER_LIMITS, parent=pools[p]) for name, p in RUNNERS.items()
    }
    ledger = Ledger({"global": global_level, **pools, **levels})
    per_runner = TASKS // len(RUNNERS)
    plans = {
        name: Plan(name, range(i * per_runner, (i + 1) * per_runner), random.Random(rng.random()))
        for i, name in enumerate(RUNNERS)
    }
    outcomes = {name: Outcome(plan.keys) for name, plan in plans.items()}
    rss_before = rss()
    peak = [rss_before]
    started = time.perf_counter()
    async with counted_no_leaks():
        async with ProcessExecutor(2, cancel_grace=1.0) as pool:
            runners = {
                name: ScheduledTaskPoolRunner(
                    name,
                    iter(plans[name]),
                    levels[name],
                    executor=LedgerExecutor(
                        pool, ledger, (name, RUNNERS[name], "global"), plans[name].cost_of
                    ),
                    max_unread=256,
                )
                for name in RUNNERS
            }
            pauses = await asyncio.gather(
                *(
                    consume(runners[name], outcomes[name], random.Random(rng.random()), peak)
                    for name in RUNNERS
                )
            )
            stats = pool.statistics()
            assert pool.capacity.in_use == 0, pool.capacity
        elapsed = time.perf_counter() - started
        check_capacity_returned(global_level, *pools.values(), *levels.values())
    check_rss(rss_before, RSS_BOUND_MIB, "load with faults", peak[0])
    ledger.check()
    observed = sum(check_outcome(plans[name], outcomes[name]) for name in RUNNERS)
    injected = sum(plan.faults() for plan in plans.values())
    kills = sum(len(plan.killed) for plan in plans.values())
    # Each kill costs a worker, and nothing else does: a timed-out task (they await) is
    # cancelled inside its worker.
    assert stats.workers_lost == kills, (stats, kills)
    kinds = Counter(type(e).__name__ for o in outcomes.values() for e in o.errors.values())
    print(
        f"load with faults on {loop_kind}: {TASKS} tasks in {elapsed:.1f} s, {injected} faults "
        f"planted, {observed} ERROR envelopes {dict(kinds)}, {sum(pauses)} consumer pauses, "
        f"{stats.workers_started} workers started, peaks {ledger.peaks()}"
    )
    TALLY.add(tasks=TASKS, injected=injected, observed=observed)
