"""Randomized runner invariants: capacity never over its limit and always returned;
exactly one terminal envelope per started task; ids unique, increasing in start order."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from pullpush import (
    CapacitySource,
    EnvelopeType,
    Final,
    HierarchicalTaskPoolRunner,
    ImpossibleCostError,
    ResourceCapacitySource,
    ScheduledTask,
    ScheduledTaskPoolRunner,
    TaskProgressEnvelope,
    TaskTimeoutError,
)
from pullpush.testing import run

# A task: (kind, event-loop turns it takes, values it streams)
task_spec = st.tuples(
    st.sampled_from(["ok", "error", "hang", "stream", "sync"]),
    st.integers(min_value=0, max_value=4),
    st.integers(min_value=0, max_value=3),
)


class Meter:
    """Counts tasks running under each capacity level, remembering the peak."""

    def __init__(self) -> None:
        self.now: Counter[str] = Counter()
        self.peak: Counter[str] = Counter()

    def enter(self, *levels: str) -> None:
        for level in levels:
            self.now[level] += 1
            self.peak[level] = max(self.peak[level], self.now[level])

    def leave(self, *levels: str) -> None:
        for level in levels:
            self.now[level] -= 1


def make_task(
    spec: tuple[str, int, int], meter: Meter, levels: tuple[str, ...], index: int = -1
) -> Any:
    """A task of ``spec``'s kind. What it reports carries ``index`` (its position in
    the source), so a test can check which id the runner gave it."""
    kind, turns, values = spec
    if kind == "sync":
        return lambda: (index, "sync")

    async def body() -> Any:
        meter.enter(*levels)
        try:
            for _ in range(turns):
                await asyncio.sleep(0)
            if kind == "error":
                raise ValueError(index)
            if kind == "hang":
                await asyncio.sleep(3600)
            return (index, kind)
        finally:
            meter.leave(*levels)

    async def stream() -> Any:
        meter.enter(*levels)
        try:
            for i in range(values):
                await asyncio.sleep(0)
                yield (index, i)
        finally:
            meter.leave(*levels)

    return stream if kind == "stream" else body


def source_index(envelope: TaskProgressEnvelope) -> int | None:
    """The source position an envelope's task reported (None: a timeout says none)."""
    if envelope.type is EnvelopeType.ERROR:
        error = envelope.error
        return error.args[0] if type(error) is ValueError else None
    value = envelope.value
    return value[0] if isinstance(value, tuple) else None  # a stream's FINAL is None


async def consume(
    runner: HierarchicalTaskPoolRunner | ScheduledTaskPoolRunner[Any], stop_after: int | None
) -> list[TaskProgressEnvelope]:
    envelopes: list[TaskProgressEnvelope] = []
    async with contextlib.aclosing(runner.run_tasks()) as stream:
        async for envelope in stream:
            envelopes.append(envelope)
            if stop_after is not None and len(envelopes) >= stop_after:
                break
    return envelopes


def check_envelopes(envelopes: list[TaskProgressEnvelope], complete: bool, total: int) -> None:
    terminal = Counter(e.task_id for e in envelopes if e.type is not EnvelopeType.INTERMEDIATE)
    assert all(count == 1 for count in terminal.values()), terminal
    ended: set[int] = set()
    for e in envelopes:  # nothing of a task comes after its terminal envelope
        assert e.task_id not in ended
        if e.type is not EnvelopeType.INTERMEDIATE:
            ended.add(e.task_id)
    if complete:
        assert sorted(terminal) == list(range(total))
    for e in envelopes:
        if e.type is EnvelopeType.ERROR:
            assert isinstance(e.error, (ValueError, TaskTimeoutError)), e.error


@settings(max_examples=40, deadline=None)
@given(
    a=st.lists(task_spec, max_size=25),
    b=st.lists(task_spec, max_size=25),
    limits=st.tuples(
        st.integers(min_value=1, max_value=4),
        st.integers(min_value=1, max_value=4),
        st.integers(min_value=1, max_value=6),
    ),
    stop_after=st.one_of(st.none(), st.integers(min_value=1, max_value=10)),
)
def test_capacity_and_envelope_invariants(
    a: list[tuple[str, int, int]],
    b: list[tuple[str, int, int]],
    limits: tuple[int, int, int],
    stop_after: int | None,
    loop_kind: str,
) -> None:
    async def scenario() -> None:
        meter = Meter()
        top = CapacitySource(limits[2])
        cap_a = CapacitySource(limits[0], top)
        cap_b = CapacitySource(limits[1], top)
        runner_a = HierarchicalTaskPoolRunner(
            "a",
            [make_task(s, meter, ("a", "top"), i) for i, s in enumerate(a)],
            cap_a,
            timeout=0.02,
        )
        runner_b = HierarchicalTaskPoolRunner(
            "b",
            [make_task(s, meter, ("b", "top"), i) for i, s in enumerate(b)],
            cap_b,
            timeout=0.02,
        )
        got_a, got_b = await asyncio.gather(consume(runner_a, stop_after), consume(runner_b, None))
        assert meter.peak["a"] <= limits[0] and meter.peak["b"] <= limits[1]
        assert meter.peak["top"] <= limits[2]
        assert sum(meter.now.values()) == 0
        assert (cap_a.available, cap_b.available, top.available) == limits
        check_envelopes(got_a, stop_after is None, len(a))
        check_envelopes(got_b, True, len(b))
        ids = [e.task_id for e in got_b if e.type is not EnvelopeType.INTERMEDIATE]
        assert len(set(ids)) == len(ids)
        # Ids follow start order, and tasks start in source order: id == position.
        for envelope in got_a + got_b:
            index = source_index(envelope)
            assert index is None or envelope.task_id == index, (envelope, index)

    run(scenario(), loop=loop_kind)


RESOURCES = ("cpu", "memory_mb")


@settings(max_examples=30, deadline=None)
@given(
    specs=st.lists(
        st.tuples(
            task_spec,
            st.fixed_dictionaries(
                {"cpu": st.integers(min_value=0, max_value=3), "memory_mb": st.integers(0, 600)}
            ),
        ),
        max_size=25,
    ),
    pool=st.fixed_dictionaries(
        {"cpu": st.integers(min_value=1, max_value=4), "memory_mb": st.integers(600, 1500)}
    ),
    total=st.fixed_dictionaries(
        {"cpu": st.integers(min_value=1, max_value=6), "memory_mb": st.integers(600, 2500)}
    ),
    backfill=st.integers(min_value=0, max_value=3),
    stop_after=st.one_of(st.none(), st.integers(min_value=1, max_value=10)),
)
def test_scheduled_runner_invariants_over_a_resource_hierarchy(
    specs: list[tuple[tuple[str, int, int], dict[str, int]]],
    pool: dict[str, int],
    total: dict[str, int],
    backfill: int,
    stop_after: int | None,
    loop_kind: str,
) -> None:
    async def scenario() -> None:
        in_use = {name: 0 for name in RESOURCES}
        peak = dict(in_use)

        def scheduled(index: int, spec: tuple[str, int, int], cost: dict[str, int]) -> Any:
            inner = make_task(spec, Meter(), (), index)

            def runner() -> Any:
                async def metered() -> Any:
                    # Counted while it runs: never over the limits, all back at the end.
                    for name in RESOURCES:
                        in_use[name] += cost[name]
                        peak[name] = max(peak[name], in_use[name])
                    try:
                        result = inner()
                        if hasattr(result, "__aiter__"):
                            async for item in result:
                                yield item
                        elif hasattr(result, "__await__"):
                            yield Final(await result)
                        else:
                            yield Final(result)
                    finally:
                        for name in RESOURCES:
                            in_use[name] -= cost[name]

                return metered()

            return ScheduledTask(index, runner, cost)

        top = ResourceCapacitySource(total)
        capacity = ResourceCapacitySource(pool, top)
        runner = ScheduledTaskPoolRunner(
            "scheduled",
            [scheduled(i, spec, cost) for i, (spec, cost) in enumerate(specs)],
            capacity,
            timeout=0.02,
            backfill=backfill,
        )
        envelopes = await consume(runner, stop_after)
        limit = {name: min(pool[name], total[name]) for name in RESOURCES}
        assert all(peak[name] <= limit[name] for name in RESOURCES), (peak, limit)
        assert in_use == {name: 0 for name in RESOURCES}
        assert capacity.available == pool and top.available == total
        complete = stop_after is None
        terminal = Counter(e.task_id for e in envelopes if e.type is not EnvelopeType.INTERMEDIATE)
        assert all(count == 1 for count in terminal.values())
        if complete:
            assert sorted(terminal) == list(range(len(specs)))
            impossible = {
                i for i, (_, cost) in enumerate(specs) if any(cost[n] > limit[n] for n in RESOURCES)
            }
            rejected = {e.key for e in envelopes if isinstance(e.error, ImpossibleCostError)}
            assert rejected == impossible
        for envelope in envelopes:  # the envelope's key is its task's
            index = source_index(envelope)
            assert index is None or envelope.key == index

    run(scenario(), loop=loop_kind)
