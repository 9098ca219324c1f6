"""Waitable tasks: messages into running tasks, and a task that waits holds nothing.

Randomized invariants on the inline and thread executors (the process executor's
are in tests/executors/test_process_waitable.py) (every capacity level never
above its limit counting active tasks, all capacity back, one terminal envelope per
task, each message exactly once and in order, no deadlock when every running task
waits at once), then the edges: errors of ``send``, timeouts, cancellation, priority
of resuming tasks, executors that refuse waitable runners.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import threading
import time
import warnings
from collections import Counter
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pullpush import (
    CapacitySource,
    EnvelopeType,
    HierarchicalTaskPoolRunner,
    InlineExecutor,
    MessageNotReceivedError,
    NoMessageError,
    NotWaitableError,
    ResourceCapacitySource,
    ScheduledTask,
    ScheduledTaskPoolRunner,
    TaskContext,
    TaskProgressEnvelope,
    TaskTimeoutError,
    ThreadExecutor,
    UnknownTaskError,
    WaitLimitError,
    waitable,
)
from pullpush.testing import run

W, R = EnvelopeType.WAITING, EnvelopeType.RESUMED
TERMINAL = (EnvelopeType.FINAL, EnvelopeType.ERROR)


class Meter:
    """Active tasks under each level (thread-safe), with their peak."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.now: Counter[str] = Counter()
        self.peak: Counter[str] = Counter()

    def enter(self, levels: tuple[str, ...]) -> None:
        with self.lock:
            for level in levels:
                self.now[level] += 1
                self.peak[level] = max(self.peak[level], self.now[level])

    def leave(self, levels: tuple[str, ...]) -> None:
        with self.lock:
            for level in levels:
                self.now[level] -= 1


async def metered_task(
    ctx: TaskContext, meter: Meter, levels: tuple[str, ...], receives: int, turns: int, fail: bool
) -> list[Any]:
    """Receive ``receives`` messages, counted active except while in ``receive``."""
    got: list[Any] = []
    meter.enter(levels)
    try:
        for _ in range(receives):
            for _ in range(turns):
                await asyncio.sleep(0)
            meter.leave(levels)
            try:
                got.append(await ctx.receive())
            finally:
                meter.enter(levels)
        if fail:
            raise ValueError(ctx.task_id)
        return got
    finally:
        meter.leave(levels)


class Approver:
    """Answers each WAITING envelope after a random delay: message ``(task_id, n)``
    for the n-th answer to that task; the answers run as tasks it awaits at the end."""

    def __init__(self, runner: Any, seed: int, max_delay: float) -> None:
        self.runner = runner
        self.rng = random.Random(seed)
        self.max_delay = max_delay
        self.sent: Counter[int] = Counter()
        self.pending: set[asyncio.Task[None]] = set()

    def on_waiting(self, task_id: int) -> None:
        number = self.sent[task_id]
        self.sent[task_id] += 1
        delay = self.rng.random() * self.max_delay
        task = asyncio.ensure_future(self._answer(task_id, number, delay))
        self.pending.add(task)

    async def _answer(self, task_id: int, number: int, delay: float) -> None:
        await asyncio.sleep(delay)
        try:
            await self.runner.send(task_id, (task_id, number))
        except (UnknownTaskError, MessageNotReceivedError):
            assert self.stopped  # only once the consumer left early

    stopped = False

    async def drain(self) -> None:
        await asyncio.gather(*self.pending)


def check_stream(envelopes: list[TaskProgressEnvelope], total: int, complete: bool) -> None:
    terminal = Counter(e.task_id for e in envelopes if e.type in TERMINAL)
    if complete:
        assert sorted(terminal) == list(range(total))
    assert all(count == 1 for count in terminal.values()), terminal
    state: dict[int, str] = {}
    for e in envelopes:  # WAITING and RESUMED alternate; nothing after the end
        last = state.get(e.task_id, "run")
        assert last != "end", e
        if e.type is W:
            assert last == "run", e
            state[e.task_id] = "wait"
        elif e.type is R:
            assert last == "wait", e
            state[e.task_id] = "run"
        else:
            assert last == "run", e
            state[e.task_id] = "end"


def make_executor(kind: str) -> Any:
    return InlineExecutor() if kind == "inline" else ThreadExecutor(3)


# (receives, turns between them, fails)
spec = st.tuples(
    st.integers(min_value=0, max_value=3), st.integers(min_value=0, max_value=3), st.booleans()
)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("executor_kind", ["inline", "thread"])
@settings(max_examples=12, deadline=None)
@given(
    specs=st.lists(spec, min_size=1, max_size=14),
    limits=st.tuples(st.integers(min_value=1, max_value=3), st.integers(min_value=1, max_value=4)),
    seed=st.integers(min_value=0, max_value=2**16),
    stop_after=st.one_of(st.none(), st.integers(min_value=1, max_value=12)),
)
def test_waitable_invariants(
    specs: list[tuple[int, int, bool]],
    limits: tuple[int, int],
    seed: int,
    stop_after: int | None,
    executor_kind: str,
    loop_kind: str,
) -> None:
    async def scenario() -> None:
        meter = Meter()
        top = CapacitySource(limits[1])
        child = CapacitySource(limits[0], top)
        levels = ("child", "top")
        executor = make_executor(executor_kind)
        tasks = [waitable(metered_task, meter, levels, n, t, f) for n, t, f in specs]
        runner = HierarchicalTaskPoolRunner("w", tasks, child, executor=executor)
        approver = Approver(runner, seed, 0.003)
        envelopes: list[TaskProgressEnvelope] = []
        async with executor:
            async with contextlib.aclosing(runner.run_tasks()) as stream:
                async for envelope in stream:
                    envelopes.append(envelope)
                    if envelope.type is W:
                        approver.on_waiting(envelope.task_id)
                    if stop_after is not None and len(envelopes) >= stop_after:
                        approver.stopped = True
                        break
            await approver.drain()
        assert meter.peak["child"] <= limits[0]
        assert meter.peak["top"] <= limits[1]
        assert sum(meter.now.values()) == 0
        assert (child.available, top.available) == limits
        assert runner.waiting == 0 and runner.running == 0
        check_stream(envelopes, len(specs), complete=not approver.stopped)
        for e in envelopes:
            receives, _, fails = specs[e.task_id]
            if e.type is EnvelopeType.FINAL:
                # Every message exactly once, in send order.
                assert e.value == [(e.task_id, n) for n in range(receives)]
            elif e.type is EnvelopeType.ERROR:
                assert fails and isinstance(e.error, ValueError)

    run(scenario(), loop=loop_kind)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("executor_kind", ["inline", "thread"])
async def test_every_running_task_waits_at_once_and_the_pool_admits_more(
    executor_kind: str,
) -> None:
    # Capacity 2, 8 tasks that each wait: the approver answers only once all 8 wait,
    # which can happen only if the waiting ones hold nothing.
    capacity = CapacitySource(2)
    executor = make_executor(executor_kind)

    async def task(ctx: TaskContext) -> Any:
        return await ctx.receive()

    runner = HierarchicalTaskPoolRunner(
        "all", [waitable(task) for _ in range(8)], capacity, executor=executor
    )
    finals = {}
    sent = False
    async with executor:
        async for envelope in runner.run_tasks():
            if envelope.type is W and runner.waiting == 8 and not sent:
                sent = True
                assert capacity.available == 2
                for task_id in range(8):
                    runner.send_nowait(task_id, f"go {task_id}")
            if envelope.type is EnvelopeType.FINAL:
                finals[envelope.task_id] = envelope.value
    assert finals == {i: f"go {i}" for i in range(8)}
    assert capacity.available == 2


@pytest.mark.timeout(60)
async def test_thread_executor_seceded_threads_do_not_use_slots() -> None:
    # max_workers=2, five sync runners blocked in receive_blocking at once; a sixth,
    # plain task still runs meanwhile.
    executor = ThreadExecutor(2, thread_name_prefix="wt")
    capacity = CapacitySource(6)

    def blocking(ctx: TaskContext) -> Any:
        return ctx.receive_blocking()

    plain_ran = threading.Event()

    def plain() -> str:
        plain_ran.set()
        return "plain"

    tasks: list[Any] = [waitable(blocking) for _ in range(5)] + [plain]
    runner = HierarchicalTaskPoolRunner("sec", tasks, capacity, executor=executor)
    finals = {}
    sent = False
    before = set(threading.enumerate())
    async with executor:
        async for envelope in runner.run_tasks():
            if envelope.type is W and runner.waiting == 5 and not sent:
                sent = True
                assert executor._waiting == 5
                for task_id in range(5):
                    runner.send_nowait(task_id, task_id * 10)
            if envelope.type is EnvelopeType.FINAL:
                finals[envelope.task_id] = envelope.value
        assert executor._waiting == 0 and executor._members >= 2
    assert plain_ran.is_set()
    assert finals == {0: 0, 1: 10, 2: 20, 3: 30, 4: 40, 5: "plain"}
    assert capacity.available == 6
    left = [t for t in set(threading.enumerate()) - before if t.name.startswith("wt")]
    assert not left, left


@pytest.mark.timeout(60)
async def test_thread_executor_max_waiting() -> None:
    executor = ThreadExecutor(1, max_waiting=1)

    async def task(ctx: TaskContext) -> Any:
        return await ctx.receive(timeout=0.05)

    runner = HierarchicalTaskPoolRunner(
        "lim", [waitable(task), waitable(task)], 2, executor=executor
    )
    async with executor:
        envelopes = [e async for e in runner.run_tasks()]
    errors = [e.error for e in envelopes if e.type is EnvelopeType.ERROR]
    assert len(errors) == 2
    assert sum(isinstance(e, WaitLimitError) for e in errors) == 1
    assert sum(type(e) is TimeoutError for e in errors) == 1


@pytest.mark.timeout(30)
@pytest.mark.parametrize("executor_kind", ["inline", "thread"])
async def test_cancelling_waiting_tasks_gives_back_nothing(executor_kind: str) -> None:
    top = CapacitySource(3)
    capacity = CapacitySource(2, top)
    executor = make_executor(executor_kind)
    cancelled = []

    async def task(ctx: TaskContext) -> None:
        try:
            await ctx.receive()
        except asyncio.CancelledError:
            cancelled.append(ctx.task_id)
            raise

    def blocking(ctx: TaskContext) -> None:
        ctx.receive_blocking()

    kinds: list[Any] = [task, task, task]
    if executor_kind == "thread":
        kinds.append(blocking)
    runner = HierarchicalTaskPoolRunner(
        "cancel", [waitable(k) for k in kinds], capacity, executor=executor
    )
    async with executor:
        stream = runner.run_tasks()
        async with contextlib.aclosing(stream):
            async for envelope in stream:
                if envelope.type is W and runner.waiting == len(kinds):
                    break
        # Closing cancelled every waiting task; nothing was released twice (an
        # over-release raises) and everything is back.
        assert sorted(cancelled) == [0, 1, 2]
        assert (capacity.available, top.available) == (2, 3)
        assert runner.running == 0 and runner.waiting == 0
        # The runner runs again afterwards.
        again = HierarchicalTaskPoolRunner("again", [lambda: 1], capacity, executor=executor)
        assert [e.value async for e in again.run_tasks()] == [1]


@pytest.mark.timeout(30)
async def test_receive_timeout_resumes_with_timeout_error() -> None:
    capacity = CapacitySource(1)

    async def task(ctx: TaskContext) -> str:
        try:
            await ctx.receive(timeout=0.02)
        except TimeoutError:
            return "timed out"
        return "message"

    runner = HierarchicalTaskPoolRunner("t", [waitable(task)], capacity)
    envelopes = [e async for e in runner.run_tasks()]
    assert [e.type for e in envelopes] == [W, R, EnvelopeType.FINAL]
    assert envelopes[-1].value == "timed out"
    assert capacity.available == 1


@pytest.mark.timeout(30)
@pytest.mark.parametrize("executor_kind", ["inline", "thread"])
async def test_timeout_counts_active_time_only(executor_kind: str) -> None:
    executor = make_executor(executor_kind)

    async def task(ctx: TaskContext) -> Any:
        message = await ctx.receive()  # waits longer than the timeout
        if message == "hang":
            await asyncio.sleep(10)
        return message

    runner = HierarchicalTaskPoolRunner(
        "t", [waitable(task), waitable(task)], 2, executor=executor, timeout=0.1
    )
    results: dict[int, Any] = {}
    async with executor:
        async for envelope in runner.run_tasks():
            if envelope.type is W:
                await asyncio.sleep(0.25)
                runner.send_nowait(envelope.task_id, "hang" if envelope.task_id else "ok")
            elif envelope.type in TERMINAL:
                results[envelope.task_id] = envelope.value or envelope.error
    assert results[0] == "ok"
    assert isinstance(results[1], TaskTimeoutError)


async def test_messages_sent_before_the_task_waits_arrive_in_order_without_parking() -> None:
    gate = asyncio.Event()

    async def task(ctx: TaskContext) -> list[Any]:
        with pytest.raises(NoMessageError):
            ctx.receive_nowait()
        await gate.wait()
        first = ctx.receive_nowait()
        return [first, await ctx.receive(), await ctx.receive()]

    runner = HierarchicalTaskPoolRunner("pre", [waitable(task)], 1)
    envelopes = []
    stream = runner.run_tasks()
    async with contextlib.aclosing(stream):
        sender = None

        async def send_all() -> None:
            await asyncio.sleep(0.01)
            runner.send_nowait(0, "a")
            await runner.send(0, "b") if False else runner.send_nowait(0, "b")
            runner.send_nowait(0, "c")
            gate.set()

        sender = asyncio.ensure_future(send_all())
        envelopes = [e async for e in stream]
        await sender
    assert [e.type for e in envelopes] == [EnvelopeType.FINAL]
    assert envelopes[0].value == ["a", "b", "c"]


async def test_send_errors() -> None:
    async def task(ctx: TaskContext) -> str:
        return "done without receiving"

    async def receiver(ctx: TaskContext) -> Any:
        return await ctx.receive()

    runner = HierarchicalTaskPoolRunner(
        "err", [lambda: "plain", waitable(receiver), waitable(task)], 3
    )
    outcome: dict[str, Any] = {}
    async for envelope in runner.run_tasks():
        if envelope.type is W:  # task 1 waits; task 0 may have ended or not
            with pytest.raises(UnknownTaskError, match="runs no task 99"):
                runner.send_nowait(99, "x")
            with pytest.raises(UnknownTaskError, match="runs no task 'nokey'"):
                runner.send_nowait("nokey", "x")
            if 0 in outcome:
                with pytest.raises(UnknownTaskError, match="has ended"):
                    runner.send_nowait(0, "x")
            runner.send_nowait(1, "hello")
        if envelope.type in TERMINAL:
            outcome[envelope.task_id] = envelope.value
            if envelope.task_id == 0:
                with pytest.raises(UnknownTaskError, match="task 0 of runner 'err' has ended"):
                    runner.send_nowait(0, "x")
    assert outcome == {0: "plain", 1: "hello", 2: "done without receiving"}

    # A task that is not waitable; a waitable one that ends without receiving.
    gate = asyncio.Event()

    async def slow_plain() -> str:
        await gate.wait()
        return "p"

    async def ends(ctx: TaskContext) -> str:
        await gate.wait()
        return "e"

    runner = HierarchicalTaskPoolRunner("err2", [slow_plain, waitable(ends), waitable(ends)], 3)
    stream = runner.run_tasks()
    async with contextlib.aclosing(stream):
        await asyncio.sleep(0)
        first = asyncio.ensure_future(stream.__anext__())
        await asyncio.sleep(0.01)
        with pytest.raises(NotWaitableError, match="not waitable"):
            runner.send_nowait(0, "x")
        awaited = asyncio.ensure_future(runner.send(1, "never received"))
        await asyncio.sleep(0)
        gate.set()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            runner.send_nowait(2, "never received either")
            rest = [await first] + [e async for e in stream]
        assert any("never received" in str(w.message) for w in caught)
        with pytest.raises(MessageNotReceivedError, match="task 1 ended"):
            await awaited
    assert sorted(e.value for e in rest) == ["e", "e", "p"]


async def test_scheduled_runner_sends_by_key_and_resumes_with_the_cost() -> None:
    capacity = ResourceCapacitySource({"cpu": 2, "gpu": 1})

    async def task(ctx: TaskContext, name: str) -> str:
        answer = await ctx.receive()
        return f"{name}: {answer}"

    tasks = [
        ScheduledTask(f"doc{i}", waitable(task, f"doc{i}"), cost={"cpu": 1, "gpu": 1})
        for i in range(3)
    ]
    runner = ScheduledTaskPoolRunner("keys", tasks, capacity)
    finals = {}
    waiting = []
    async for envelope in runner.run_tasks():
        if envelope.type is W:
            # One GPU: all three can wait at once only if the waiting hold none.
            waiting.append(envelope.key)
            if len(waiting) == 3:
                assert capacity.available == {"cpu": 2, "gpu": 1}
                for key in waiting:
                    await runner.send(key, "ok")
        if envelope.type is EnvelopeType.FINAL:
            finals[envelope.key] = envelope.value
    assert finals == {f"doc{i}": f"doc{i}: ok" for i in range(3)}
    assert capacity.available == {"cpu": 2, "gpu": 1}


async def test_resuming_tasks_go_ahead_of_new_ones() -> None:
    order: list[str] = []
    release_one = asyncio.Event()

    async def zero(ctx: TaskContext) -> None:
        order.append("0 start")
        await ctx.receive()
        order.append("0 resumed")

    async def one() -> None:
        order.append("1 start")
        await release_one.wait()

    def later(n: int) -> Any:
        async def task() -> None:
            order.append(f"{n} start")

        return task

    runner = HierarchicalTaskPoolRunner("prio", [waitable(zero), one, later(2), later(3)], 1)
    async for envelope in runner.run_tasks():
        if envelope.type is W:
            runner.send_nowait(0, "go")
            await asyncio.sleep(0.01)
            release_one.set()
    assert order == ["0 start", "1 start", "0 resumed", "2 start", "3 start"]


class NoWaitables(InlineExecutor):
    """An executor that cannot run waitable runners (as the Ray executor)."""

    name = "plain"
    runs_waitables = False


async def test_executors_that_cannot_run_waitables_refuse_them() -> None:
    async def task(ctx: TaskContext) -> Any:
        return await ctx.receive()

    executor = NoWaitables()
    runner = HierarchicalTaskPoolRunner("no", [waitable(task), lambda: 2], 2, executor=executor)
    envelopes = [e async for e in runner.run_tasks()]
    errors = [e for e in envelopes if e.type is EnvelopeType.ERROR]
    assert len(errors) == 1 and isinstance(errors[0].error, NotWaitableError)
    assert "plain executor cannot run waitable" in str(errors[0].error)
    assert [e.value for e in envelopes if e.type is EnvelopeType.FINAL] == [2]
    from pullpush import RayExecutor

    assert not RayExecutor.runs_waitables


async def test_a_waitable_without_a_context_says_so() -> None:
    async def task(ctx: TaskContext) -> int:
        return 1

    with pytest.raises(NotWaitableError, match="needs a TaskContext"):
        waitable(task)()
    async with InlineExecutor() as executor:
        with pytest.raises(NotWaitableError, match="receiver must accept messages"):
            await executor.run(waitable(task))


def test_receive_blocking_is_refused_inline(loop_kind: str) -> None:
    def task(ctx: TaskContext) -> Any:
        return ctx.receive_blocking()

    async def scenario() -> list[TaskProgressEnvelope]:
        runner = HierarchicalTaskPoolRunner("blk", [waitable(task)], 1)
        return [e async for e in runner.run_tasks()]

    (envelope,) = run(scenario(), loop=loop_kind)
    assert isinstance(envelope.error, RuntimeError)
    assert "thread executor" in str(envelope.error)


@pytest.mark.timeout(30)
async def test_a_sync_runner_resumes_after_receive_blocking() -> None:
    # A sync task on a thread: a message, then a timeout that it sees after resuming.
    async with ThreadExecutor(1) as executor:

        def task(ctx: TaskContext) -> list[Any]:
            got = [ctx.receive_blocking()]
            try:
                ctx.receive_blocking(timeout=0.02)
            except TimeoutError:
                got.append("timeout")
            time.sleep(0.001)
            return got

        runner = HierarchicalTaskPoolRunner("sync", [waitable(task)], 1, executor=executor)
        envelopes = []
        async for envelope in runner.run_tasks():
            envelopes.append(envelope)
            if envelope.type is W and len(envelopes) == 1:
                runner.send_nowait(0, "m")
    assert [e.type for e in envelopes] == [W, R, W, R, EnvelopeType.FINAL]
    assert envelopes[-1].value == ["m", "timeout"]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("backfill", [0, 2])
@pytest.mark.parametrize("seed", range(4))
async def test_scheduled_runner_invariants_with_waitables(backfill: int, seed: int) -> None:
    rng = random.Random(seed)
    limits = {"cpu": 3, "gpu": 1}
    capacity = ResourceCapacitySource(limits)
    in_use = Counter[str]()
    peak = Counter[str]()

    async def task(ctx: TaskContext, cost: dict[str, int], receives: int) -> list[Any]:
        def enter() -> None:
            for name, amount in cost.items():
                in_use[name] += amount
                peak[name] = max(peak[name], in_use[name])

        def leave() -> None:
            for name, amount in cost.items():
                in_use[name] -= amount

        got = []
        enter()
        try:
            for _ in range(receives):
                await asyncio.sleep(0)
                leave()
                try:
                    got.append(await ctx.receive())
                finally:
                    enter()
            return got
        finally:
            leave()

    specs = [
        ({"cpu": rng.randint(1, 3), "gpu": rng.randint(0, 1)}, rng.randint(0, 3))
        for _ in range(rng.randint(3, 15))
    ]
    scheduled = [
        ScheduledTask(f"k{i}", waitable(task, cost, n), cost=cost)
        for i, (cost, n) in enumerate(specs)
    ]
    runner = ScheduledTaskPoolRunner("sched", scheduled, capacity, backfill=backfill)
    approver = Approver(runner, seed, 0.003)
    envelopes = []
    async for envelope in runner.run_tasks():
        envelopes.append(envelope)
        if envelope.type is W:
            approver.on_waiting(envelope.task_id)
    await approver.drain()
    assert all(peak[name] <= limit for name, limit in limits.items()), peak
    assert capacity.available == limits and runner.waiting == 0
    check_stream(envelopes, len(specs), complete=True)
    finals = {e.key: e.value for e in envelopes if e.type is EnvelopeType.FINAL}
    assert len(finals) == len(specs)
    for e in envelopes:
        if e.type is EnvelopeType.FINAL:
            assert e.value == [(e.task_id, n) for n in range(specs[int(e.key[1:])][1])]
