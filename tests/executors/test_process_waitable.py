"""Waitable tasks on the process executor: messages down the call pipe, a waiting
task resident in its worker but out of its running slots, and the faults."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
from collections import Counter
from typing import Any

import _waitable_tasks as tasks
import cloudpickle
import pytest

from pullpush import (
    CapacitySource,
    EnvelopeType,
    HierarchicalTaskPoolRunner,
    MessageNotReceivedError,
    ProcessExecutor,
    TaskProgressEnvelope,
    UnknownTaskError,
    WaitLimitError,
    WorkerCrashedError,
    waitable,
)
from pullpush.executors.process._spawn import _READY
from pullpush.testing import assert_no_leaks

cloudpickle.register_pickle_by_value(tasks)

pytestmark = pytest.mark.timeout(120)

W, R = EnvelopeType.WAITING, EnvelopeType.RESUMED
TERMINAL = (EnvelopeType.FINAL, EnvelopeType.ERROR)


def max_overlap(intervals: list[tuple[float, float]]) -> int:
    events = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    now = peak = 0
    for _, step in events:  # an end sorts before a start at the same instant
        now += step
        peak = max(peak, now)
    return peak


async def run_one(
    name: str,
    specs: list[tuple[int, int, bool]],
    capacity: CapacitySource,
    executor: ProcessExecutor,
    rng: random.Random,
) -> tuple[list[TaskProgressEnvelope], list[tuple[float, float]]]:
    runner = HierarchicalTaskPoolRunner(
        name,
        [waitable(tasks.metered, n, t, f) for n, t, f in specs],
        capacity,
        executor=executor,
    )
    sent: Counter[int] = Counter()
    answers: set[asyncio.Task[None]] = set()

    async def answer(task_id: int, number: int, delay: float) -> None:
        await asyncio.sleep(delay)
        await runner.send(task_id, (task_id, number))

    envelopes = []
    async for envelope in runner.run_tasks():
        envelopes.append(envelope)
        if envelope.type is W:
            number = sent[envelope.task_id]
            sent[envelope.task_id] += 1
            answers.add(asyncio.ensure_future(answer(envelope.task_id, number, rng.random() / 200)))
    await asyncio.gather(*answers)
    intervals: list[tuple[float, float]] = []
    terminal = Counter(e.task_id for e in envelopes if e.type in TERMINAL)
    assert sorted(terminal) == list(range(len(specs))) and set(terminal.values()) == {1}
    for e in envelopes:
        receives, _, fails = specs[e.task_id]
        if e.type is EnvelopeType.FINAL:
            got, spans = e.value
            assert got == [(e.task_id, n) for n in range(receives)]  # once each, in order
            intervals += spans
        elif e.type is EnvelopeType.ERROR:
            assert fails and isinstance(e.error, ValueError), e.error
            assert e.error.args[0] == e.task_id
            intervals += e.error.args[1]
    return envelopes, intervals


async def test_randomised_invariants_on_the_process_executor() -> None:
    rng = random.Random(1818)
    async with assert_no_leaks(), ProcessExecutor(2, prefetch=0, max_waiting=32) as executor:
        for _ in range(6):
            limits = (rng.randint(1, 3), rng.randint(1, 3), rng.randint(1, 4))
            top = CapacitySource(limits[2])
            cap_a, cap_b = CapacitySource(limits[0], top), CapacitySource(limits[1], top)

            def specs() -> list[tuple[int, int, bool]]:
                return [
                    (rng.randint(0, 3), rng.randint(0, 2), rng.random() < 0.2)
                    for _ in range(rng.randint(1, 10))
                ]

            (_, spans_a), (_, spans_b) = await asyncio.gather(
                run_one("a", specs(), cap_a, executor, rng),
                run_one("b", specs(), cap_b, executor, rng),
            )
            # No level ever above its limit counting active tasks.
            assert max_overlap(spans_a) <= limits[0]
            assert max_overlap(spans_b) <= limits[1]
            assert max_overlap(spans_a + spans_b) <= limits[2]
            assert (cap_a.available, cap_b.available, top.available) == limits
            assert all(w.waiting == 0 for w in executor._workers)


async def test_every_task_waits_at_once_in_one_worker() -> None:
    # One worker, one running slot: twelve tasks wait in it at once, which only works
    # if waiting tasks take none of its slots.
    async with assert_no_leaks(), ProcessExecutor(1, prefetch=0) as executor:
        capacity = CapacitySource(1)
        runner = HierarchicalTaskPoolRunner(
            "all", [waitable(tasks.receive_once) for _ in range(12)], capacity, executor=executor
        )
        finals = {}
        sent = False
        async for envelope in runner.run_tasks():
            if envelope.type is W and runner.waiting == 12 and not sent:
                sent = True
                assert capacity.available == 1 and executor.capacity.available == 1
                for task_id in range(12):
                    runner.send_nowait(task_id, {"large": "x" * 70_000, "id": task_id})
            if envelope.type is EnvelopeType.FINAL:
                finals[envelope.task_id] = envelope.value["id"]
        assert finals == {i: i for i in range(12)}


async def test_a_worker_killed_while_hosting_waiting_tasks_fails_exactly_those() -> None:
    async with assert_no_leaks(), ProcessExecutor(2, prefetch=0) as executor:
        while sum(w.state == _READY for w in executor._workers) < 2:
            await asyncio.sleep(0.01)  # both ready: the waiting tasks spread over them
        capacity = CapacitySource(2)
        runner = HierarchicalTaskPoolRunner(
            "kill", [waitable(tasks.receive_once) for _ in range(6)], capacity, executor=executor
        )
        outcome: dict[int, Any] = {}
        victims: set[int] = set()
        async for envelope in runner.run_tasks():
            if envelope.type is W and runner.waiting == 6 and not victims:
                worker = executor._workers[0]
                victims = {t.task_id for t in worker.tasks.values()}
                assert victims and len(victims) < 6
                assert worker.pid is not None
                os.kill(worker.pid, signal.SIGKILL)
                await asyncio.sleep(0.2)
                for task_id in set(range(6)) - victims:
                    await runner.send(task_id, f"ok {task_id}")
            if envelope.type in TERMINAL:
                outcome[envelope.task_id] = envelope.value or envelope.error
        assert set(outcome) == set(range(6))
        for task_id, result in outcome.items():
            if task_id in victims:
                assert isinstance(result, WorkerCrashedError), result
                assert f"task {task_id}" in str(result)
            else:
                assert result == f"ok {task_id}"
        assert capacity.available == 2
        with pytest.raises(UnknownTaskError):
            runner.send_nowait(min(victims), "too late")
        # The pool runs another task afterwards, a waitable one included.
        again = HierarchicalTaskPoolRunner(
            "again", [waitable(tasks.receive_once, 0.01)], 1, executor=executor
        )
        assert [e.value async for e in again.run_tasks() if e.type is EnvelopeType.FINAL] == [
            "timed out"
        ]
        assert executor.statistics().workers == 2


async def test_cancelling_waiting_tasks_and_limits() -> None:
    async with assert_no_leaks(), ProcessExecutor(1, prefetch=0, max_waiting=2) as executor:
        capacity = CapacitySource(3)
        runner = HierarchicalTaskPoolRunner(
            "cancel", [waitable(tasks.receive_once) for _ in range(2)], capacity, executor=executor
        )
        waiter = None
        async with contextlib.aclosing(runner.run_tasks()) as stream:
            async for envelope in stream:
                if envelope.type is W and runner.waiting == 2:
                    waiter = asyncio.ensure_future(runner.send(0, "never taken"))
                    await asyncio.sleep(0)
                    break
        assert capacity.available == 3 and runner.waiting == 0
        assert waiter is not None
        with pytest.raises(MessageNotReceivedError):
            await waiter
        assert executor._workers[0].waiting == 0
        # max_waiting=2: a third task waiting at once fails with WaitLimitError;
        # receive_blocking is refused (it would block the worker's loop).
        runner = HierarchicalTaskPoolRunner(
            "limit",
            [waitable(tasks.receive_once, 0.2) for _ in range(3)] + [waitable(tasks.blocking)],
            4,
            executor=executor,
        )
        results = [e for e in [e async for e in runner.run_tasks()] if e.type in TERMINAL]
        errors = [type(e.error) for e in results if e.type is EnvelopeType.ERROR]
        assert sorted(e.__name__ for e in errors) == ["RuntimeError", "WaitLimitError"]
        assert [e.value for e in results if e.type is EnvelopeType.FINAL] == ["timed out"] * 2
        assert WaitLimitError in errors
