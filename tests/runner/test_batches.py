"""run_batches: the envelopes of run_tasks, handed over in batches (EnvelopeBatch,
IntermediateRun), with max_unread, acks and stop_on_error still right."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import pickle
import sys
from collections.abc import Generator
from typing import Any

import cloudpickle
import pytest

from pullpush import (
    CapacitySource,
    EnvelopeBatch,
    EnvelopeType,
    Executor,
    Final,
    HierarchicalTaskPoolRunner,
    IntermediateRun,
    ProcessExecutor,
    ScheduledTask,
    ScheduledTaskPoolRunner,
    TaskProgressEnvelope,
)
from pullpush.testing import assert_no_leaks, collect, settle

cloudpickle.register_pickle_by_value(sys.modules[__name__])

pytestmark = pytest.mark.timeout(60)

INTERMEDIATE, FINAL, ERROR = EnvelopeType.INTERMEDIATE, EnvelopeType.FINAL, EnvelopeType.ERROR


def counting(n: int) -> Generator[int, None, str]:
    yield from range(n)
    return f"counted {n}"


def failing(message: str) -> None:
    raise ValueError(message)


def by_task(envelopes: list[TaskProgressEnvelope]) -> dict[int, list[tuple[str, Any]]]:
    tasks: dict[int, list[tuple[str, Any]]] = {}
    for e in envelopes:
        tasks.setdefault(e.task_id, []).append(
            (e.type.value, str(e.error) if e.type is ERROR else e.value)
        )
    return tasks


def check_batch(batch: EnvelopeBatch, max_batch: int) -> list[TaskProgressEnvelope]:
    """The batch's envelopes, after checking that its views agree."""
    assert 1 <= len(batch) <= max_batch
    envelopes = list(batch)
    assert len(envelopes) == len(batch)
    assert all(isinstance(e, TaskProgressEnvelope) for e in envelopes)
    assert [batch[i] for i in range(len(batch))] == envelopes
    assert batch[-1] == envelopes[-1] and batch[1:] == envelopes[1:]
    flattened: list[TaskProgressEnvelope] = []
    for group in batch.groups():
        if group.type is INTERMEDIATE:
            assert isinstance(group, IntermediateRun) and group.values
            flattened += group.envelopes()
        else:
            assert isinstance(group, TaskProgressEnvelope) and group.type in (FINAL, ERROR)
            flattened.append(group)
    assert flattened == envelopes
    return envelopes


def tasks() -> list[Any]:
    return [
        functools.partial(counting, 3),
        functools.partial(failing, "boom"),
        functools.partial(counting, 0),
        functools.partial(counting, 5),
    ]


@pytest.mark.parametrize("executor", ["inline", "thread"])
async def test_run_batches_yields_what_run_tasks_yields(executor: Any) -> None:
    expected = by_task(
        await collect(HierarchicalTaskPoolRunner("one", tasks(), 2, executor=executor).run_tasks())
    )
    runner = HierarchicalTaskPoolRunner("batches", tasks(), 2, executor=executor, max_unread=4)
    got: list[TaskProgressEnvelope] = []
    async for batch in runner.run_batches(max_batch=3):
        got += check_batch(batch, 3)
    assert by_task(got) == expected
    assert [kind for kind, _ in expected[1]] == ["ERROR"]
    assert sum(1 for e in got if e.type is not INTERMEDIATE) == 4  # one terminal each
    assert runner.capacity.available == 2 and runner.running == 0
    assert runner.statistics().envelopes == len(got) == 4 + 1 + 1 + 6


class _BatchingExecutor(Executor):
    """Reports each task's values as one run through ``task_intermediates``, as the
    process executor does; a task ends once its whole run was acknowledged."""

    name = "batching"

    def __init__(self, values: list[int]) -> None:
        super().__init__()
        self.values = values
        self.acks: list[tuple[int, int]] = []

    def submit(self, task_id: int, runner: Any, events: Any) -> Any:
        executor = self
        result = runner()

        class Handle:
            acked = 0

            def cancel(self, error: BaseException | None = None) -> None:
                events.task_error(task_id, error or asyncio.CancelledError())

            def ack(self, count: int = 1) -> None:
                executor.acks.append((task_id, count))
                self.acked += count
                if self.acked == len(executor.values):
                    events.task_final(task_id, result)

        events.task_intermediates(task_id, list(self.values))
        return Handle()


async def test_runs_come_as_runs_and_are_acknowledged_when_the_next_batch_is_asked_for() -> None:
    executor = _BatchingExecutor([10, 11, 12])
    runner = HierarchicalTaskPoolRunner(
        "runs", [lambda: "a", lambda: "b"], CapacitySource(2), executor=executor
    )
    stream = runner.run_batches()
    first = await stream.__anext__()
    groups = first.groups()
    assert [(type(g), g.task_id) for g in groups] == [(IntermediateRun, 0), (IntermediateRun, 1)]
    assert [g.values for g in groups if isinstance(g, IntermediateRun)] == [[10, 11, 12]] * 2
    assert len(first) == 6
    assert executor.acks == []  # the consumer holds the batch: no credit yet
    rest = [e for batch in await collect(stream) for e in check_batch(batch, 4096)]
    assert sorted(executor.acks) == [(0, 3), (1, 3)]
    assert sorted((e.task_id, e.value) for e in rest) == [(0, "a"), (1, "b")]
    assert runner.statistics().envelopes == 8 and runner.capacity.available == 2


async def test_max_batch_splits_a_run_and_keeps_its_order() -> None:
    executor = _BatchingExecutor(list(range(10)))
    runner = HierarchicalTaskPoolRunner("split", [lambda: "a"], 1, executor=executor)
    batches = [check_batch(batch, 4) async for batch in runner.run_batches(max_batch=4)]
    assert [len(b) for b in batches] == [4, 4, 2, 1]
    envelopes = [e for b in batches for e in b]
    assert [e.value for e in envelopes] == [*range(10), "a"]
    assert sum(count for _, count in executor.acks) == 10


async def test_max_unread_counts_the_envelopes_of_a_batch_until_it_is_handed_over() -> None:
    started: list[int] = []

    def recording(i: int) -> Any:
        def run() -> int:
            started.append(i)
            return i

        return run

    # Each task reports 4 values: with max_unread=10, about three tasks' envelopes
    # wait unread before the runner stops starting tasks.
    runner = HierarchicalTaskPoolRunner(
        "eager",
        [recording(i) for i in range(50)],
        50,
        executor=_BatchingExecutor([0, 1, 2, 3]),
        max_unread=10,
    )
    stream = runner.run_batches(max_batch=2)
    await stream.__anext__()
    await settle(20)
    assert 2 <= len(started) <= 4
    await stream.aclose()
    assert runner.capacity.available == 50 and runner.running == 0


async def test_stop_on_error_hands_over_what_came_before_then_raises() -> None:
    runner = HierarchicalTaskPoolRunner(
        "stop",
        [functools.partial(counting, 2), functools.partial(failing, "bad"), lambda: "late"],
        1,
    )
    before: list[TaskProgressEnvelope] = []
    with pytest.raises(ValueError, match="bad"):
        async for batch in runner.run_batches(stop_on_error=True):
            before += check_batch(batch, 4096)
    assert by_task(before) == {
        0: [("INTERMEDIATE", 0), ("INTERMEDIATE", 1), ("FINAL", "counted 2")]
    }
    assert runner.capacity.available == 1 and runner.running == 0


async def test_scheduled_runner_batches_and_a_second_run_is_refused() -> None:
    source = [ScheduledTask(key=k, runner=functools.partial(counting, 2)) for k in "ab"]
    runner = ScheduledTaskPoolRunner("scheduled", source, 2)
    stream = runner.run_batches()
    batch = await stream.__anext__()
    assert all(g.key in ("a", "b") for g in batch.groups())
    with pytest.raises(RuntimeError, match="already running"):
        await runner.run_tasks().__anext__()
    envelopes = list(batch) + [e async for b in stream for e in check_batch(b, 4096)]
    assert sorted((e.key, e.type.value, e.value) for e in envelopes if e.type is FINAL) == [
        ("a", "FINAL", "counted 2"),
        ("b", "FINAL", "counted 2"),
    ]
    assert len(envelopes) == 6


class _Reported:
    """Runner metrics hooks that count the envelopes the executor reported."""

    def __init__(self) -> None:
        self.envelopes = 0

    def on_envelope(self, envelope: TaskProgressEnvelope) -> None:
        self.envelopes += 1

    def on_task_pulled(self, *args: Any) -> None:
        pass

    on_task_started = on_task_rejected = on_task_ended = on_task_pulled


async def test_process_relay_in_batches_holds_its_producers_back() -> None:
    window = 64
    reported = _Reported()
    async with assert_no_leaks(), ProcessExecutor(2, credit_window=window) as executor:
        runner = HierarchicalTaskPoolRunner(
            "relay",
            [functools.partial(counting, 3000)] * 2,
            2,
            executor=executor,
            metrics=reported,  # type: ignore[arg-type]
        )
        async with contextlib.aclosing(runner.run_batches()) as stream:
            first = await stream.__anext__()
            assert first.groups()[0].type is INTERMEDIATE
            await asyncio.sleep(0.3)  # the batch is held: its values are not credited
            # Until the consumer asks for the next batch, each task may send only its
            # credit window of (small, one-credit) values.
            assert reported.envelopes <= 2 * window
            received = len(first)
            finals = []
            async for batch in stream:
                for group in batch.groups():
                    if isinstance(group, IntermediateRun):
                        received += len(group.values)
                    else:
                        finals.append(group)
        assert received == 6000 and reported.envelopes == 6002
        assert [(e.type, e.value) for e in finals] == [(FINAL, "counted 3000")] * 2
        assert runner.capacity.available == 2 and runner.running == 0
        assert await executor.run(functools.partial(counting, 0)) == "counted 0"


async def test_bad_max_batch() -> None:
    runner = HierarchicalTaskPoolRunner("x", [], 1)
    with pytest.raises(ValueError, match="max_batch must be >= 1"):
        await runner.run_batches(max_batch=0).__anext__()
    assert await collect(runner.run_batches()) == []  # the refused run left nothing held


def test_batch_views() -> None:
    final = TaskProgressEnvelope(FINAL, 0, None, "done")
    batch = EnvelopeBatch([IntermediateRun(0, "k", [1, 2]), final], 3)
    assert [(e.type, e.value) for e in batch] == [
        (INTERMEDIATE, 1),
        (INTERMEDIATE, 2),
        (FINAL, "done"),
    ]
    assert batch[0].key == "k" and batch[2] is final and batch[-3].value == 1
    with pytest.raises(IndexError):
        batch[3]
    assert repr(batch) == "<EnvelopeBatch of 3 envelopes in 2 groups>"
    assert "INTERMEDIATE run task=0 key='k' of 2 values" in repr(batch.groups()[0])


def test_envelopes_and_final_can_be_built_through_their_generic_alias() -> None:
    # Python 3.10 to 3.12 raised TypeError here: the frozen slots dataclass's __setattr__
    # broke the alias setting __orig_class__.
    envelope = TaskProgressEnvelope[int, None](EnvelopeType.FINAL, 3, None, 9)
    assert (envelope.type, envelope.task_id, envelope.value) == (EnvelopeType.FINAL, 3, 9)
    assert Final[str]("done").value == "done"
    with pytest.raises(dataclasses.FrozenInstanceError):
        envelope.value = 10  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        Final(1).value = 2  # type: ignore[misc]
    assert pickle.loads(pickle.dumps(envelope)) == envelope
