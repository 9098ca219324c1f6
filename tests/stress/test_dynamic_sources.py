"""Dynamic sources: producers push task runners into a ``PushPullBufferObj`` while a
runner pulls them, and the sink is closed (or failed) mid-run, while producers are
still sending, some of them blocked on a full buffer.

Checked, in every round: each task whose ``asend`` returned ``True`` runs exactly once
and each one refused (``False``) never runs; the run ends by itself after the sink
ends (with the sink's error, if it was failed); capacity is returned at every level.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import random
from collections import Counter
from typing import Any

import _stress_tasks as tasks
import pytest
from _stress_support import (
    TALLY,
    Ledger,
    LedgerExecutor,
    check_capacity_returned,
    counted_no_leaks,
    rng_for,
)

from pullpush import (
    CapacitySource,
    EnvelopeType,
    Executor,
    HierarchicalTaskPoolRunner,
    InlineExecutor,
    ProcessExecutor,
    PushPullBufferObj,
)

pytestmark = pytest.mark.stress

ROUNDS = 40


class SinkFailed(Exception):
    """What a round's closer throws into the sink instead of closing it."""


def task_for(key: int, rng: random.Random) -> Any:
    draw = rng.random()
    if draw < 0.8:
        return functools.partial(tasks.ok, key)
    if draw < 0.9:
        return functools.partial(tasks.nap, key, 0.001)
    return functools.partial(tasks.spin, key, 20)


async def one_round(
    rng: random.Random, executor: Executor, global_capacity: CapacitySource
) -> tuple[int, int]:
    """Run one round; return the tasks accepted and the sends refused."""
    queue: PushPullBufferObj[Any] = PushPullBufferObj(maxsize=rng.choice((None, 1, 4, 64)))
    capacity = CapacitySource(rng.randint(1, 8), parent=global_capacity)
    ledger = Ledger({"runner": capacity, "global": global_capacity})
    runner = HierarchicalTaskPoolRunner(
        "dynamic",
        queue.source,
        capacity,
        executor=LedgerExecutor(executor, ledger, ("runner", "global")),
    )
    producers, per_producer = rng.randint(2, 6), rng.randint(20, 150)
    close_after = rng.randint(0, producers * per_producer)  # accepted sends, then it ends
    fail = rng.random() < 0.3
    accepted: set[int] = set()
    refused: set[int] = set()
    ended = asyncio.Event()
    producing = producers

    async def produce(p: int, prng: random.Random) -> None:
        nonlocal producing
        try:
            for i in range(per_producer):
                key = p * 1000 + i
                if await queue.sink.asend(task_for(key, prng)):
                    assert not ended.is_set(), f"task {key} accepted after the sink ended"
                    accepted.add(key)
                else:
                    refused.add(key)
                if prng.random() < 0.3:
                    await asyncio.sleep(0)
                elif prng.random() < 0.02:
                    await asyncio.sleep(0.001)
        finally:
            producing -= 1

    async def end() -> None:
        while len(accepted) < close_after and producing:
            await asyncio.sleep(0)
        if fail:
            await queue.sink.athrow(SinkFailed("the producer side failed"))
        else:
            await queue.sink.aclose()
        ended.set()

    async def consume(crng: random.Random) -> Counter[int]:
        ran: Counter[int] = Counter()
        with pytest.raises(SinkFailed) if fail else contextlib.nullcontext():
            async for envelope in runner.run_tasks():
                assert envelope.type is EnvelopeType.FINAL, envelope
                ran[envelope.value] += 1
                if crng.random() < 0.01:
                    await asyncio.sleep(crng.uniform(0, 0.005))
        return ran

    *_, ran = await asyncio.wait_for(
        asyncio.gather(
            *(produce(p, random.Random(rng.random())) for p in range(producers)),
            end(),
            consume(random.Random(rng.random())),
        ),
        60,
    )
    assert set(ran) == accepted, (
        f"accepted, never ran: {sorted(accepted - set(ran))[:10]}; "
        f"ran, not accepted: {sorted(set(ran) - accepted)[:10]}"
    )
    assert all(count == 1 for count in ran.values()), ran.most_common(3)
    assert not refused & set(ran)
    assert len(queue) == 0 and queue.statistics().blocked_producers == 0
    check_capacity_returned(capacity, global_capacity)
    ledger.check()
    return len(accepted), len(refused)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("loop_kind", ["asyncio", "uvloop"])
async def test_producers_race_the_consumer_and_the_sink_ends_mid_run(loop_kind: str) -> None:
    rng = rng_for(f"dynamic-{loop_kind}")
    global_capacity = CapacitySource(12)
    accepted = refused = 0
    async with counted_no_leaks(), ProcessExecutor(2) as pool:
        inline = InlineExecutor()
        for _ in range(ROUNDS):
            executor = pool if rng.random() < 0.5 else inline
            a, r = await one_round(rng, executor, global_capacity)
            accepted += a
            refused += r
    print(f"dynamic sources on {loop_kind}: {accepted} tasks accepted and run, {refused} refused")
    assert refused, "no round ended while producers were still sending"
    TALLY.add(tasks=accepted)
