"""ScheduledTaskPoolRunner: costs, callbacks, impossible costs, backfill, dependency
sources with auto-wiring and retries."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from pullpush import (
    DependencyGraph,
    DependencySourceObj,
    EnvelopeType,
    ImpossibleCostError,
    PriorityDependencySourceObj,
    PrioritySourceObj,
    ResourceCapacitySource,
    RetryPolicy,
    ScheduledTask,
    ScheduledTaskPoolRunner,
    TaskProgressEnvelope,
)
from pullpush.testing import collect


def value(v: Any, delay: float = 0.0) -> Any:
    async def run() -> Any:
        await asyncio.sleep(delay)
        return v

    return run


def keyed(envelopes: list[TaskProgressEnvelope]) -> dict[Any, str]:
    return {e.key: e.type.value for e in envelopes}


async def test_costs_limit_concurrency_per_resource() -> None:
    capacity = ResourceCapacitySource({"cpu": 4, "memory_mb": 1000})
    running = {"cpu": 0.0, "memory_mb": 0.0}
    peak = {"cpu": 0.0, "memory_mb": 0.0}

    def task(key: str, cost: dict[str, float]) -> ScheduledTask[str]:
        async def run() -> str:
            for name, amount in cost.items():
                running[name] += amount
                peak[name] = max(peak[name], running[name])
            await asyncio.sleep(0.002)
            for name, amount in cost.items():
                running[name] -= amount
            return key

        return ScheduledTask(key, run, cost)

    tasks = [task(f"t{i}", {"cpu": 1, "memory_mb": 400}) for i in range(8)]
    runner = ScheduledTaskPoolRunner("costs", tasks, capacity)
    envelopes = await collect(runner.run_tasks())
    assert sorted(e.value for e in envelopes) == sorted(f"t{i}" for i in range(8))
    assert peak["memory_mb"] <= 1000 and peak["cpu"] <= 4
    assert capacity.available == {"cpu": 4, "memory_mb": 1000}


async def test_callbacks_run_before_the_envelope_with_the_key() -> None:
    calls: list[tuple[str, Any]] = []

    def boom() -> None:
        raise OSError("disk")

    tasks = [
        ScheduledTask("ok", value(1), on_complete=lambda k, r: calls.append((k, r))),
        ScheduledTask("bad", boom, on_error=lambda k, e: calls.append((k, type(e).__name__))),
    ]
    runner = ScheduledTaskPoolRunner("callbacks", tasks, ResourceCapacitySource({"capacity": 1}))
    envelopes = await collect(runner.run_tasks())
    assert keyed(envelopes) == {"ok": "FINAL", "bad": "ERROR"}
    assert calls == [("ok", 1), ("bad", "OSError")]


async def test_an_impossible_cost_gets_an_error_at_once_and_the_runner_goes_on() -> None:
    tasks = [
        ScheduledTask("huge", value("never"), {"gpu": 5}),
        ScheduledTask("fine", value("ok"), {"gpu": 1}),
    ]
    runner = ScheduledTaskPoolRunner("impossible", tasks, ResourceCapacitySource({"gpu": 2}))
    envelopes = await collect(runner.run_tasks())
    assert keyed(envelopes) == {"huge": "ERROR", "fine": "FINAL"}
    error = next(e.error for e in envelopes if e.key == "huge")
    assert isinstance(error, ImpossibleCostError) and "gpu" in str(error)


async def test_bad_tasks_get_an_error_envelope_and_the_runner_goes_on() -> None:
    tasks: list[Any] = [
        ScheduledTask("negative", value("never"), {"cpu": -1}),
        ScheduledTask("not callable", 42, {"cpu": 1}),
        ScheduledTask("too big", value("never"), {"cpu": 3}),
        ScheduledTask("fine", value("ok"), {"cpu": 1}),
    ]
    capacity = ResourceCapacitySource({"cpu": 2})
    runner = ScheduledTaskPoolRunner("bad", tasks, capacity)
    envelopes = await collect(runner.run_tasks())
    assert keyed(envelopes) == {
        "negative": "ERROR",
        "not callable": "ERROR",
        "too big": "ERROR",
        "fine": "FINAL",
    }
    errors = {e.key: e.error for e in envelopes if e.type is EnvelopeType.ERROR}
    assert isinstance(errors["negative"], ValueError) and "cpu" in str(errors["negative"])
    assert isinstance(errors["not callable"], TypeError)
    assert "callable" in str(errors["not callable"])
    assert isinstance(errors["too big"], ImpossibleCostError)
    assert capacity.available == {"cpu": 2}


async def test_backfill_checks_do_not_use_up_task_ids() -> None:
    """Regression: a backfill candidate whose cost is impossible took an id each time
    it was checked, so ids had gaps (ids without an envelope) once it reached the
    head. Found by test_scheduled_runner_invariants_over_a_resource_hierarchy."""
    tasks = [
        ScheduledTask("long", value("long", 0.05), {"cpu": 2}),
        ScheduledTask("waits", value("waits"), {"cpu": 1}),
        ScheduledTask("impossible", value("never"), {"cpu": 5}),
        ScheduledTask("free", value("free"), {"cpu": 0}),
    ]
    runner = ScheduledTaskPoolRunner("ids", tasks, ResourceCapacitySource({"cpu": 2}), backfill=2)
    envelopes = await collect(runner.run_tasks())
    assert keyed(envelopes) == {
        "long": "FINAL",
        "waits": "FINAL",
        "impossible": "ERROR",
        "free": "FINAL",
    }
    assert sorted(e.task_id for e in envelopes) == [0, 1, 2, 3]


async def test_head_of_line_order_without_backfill_and_skipping_with_it() -> None:
    async def order(backfill: int) -> list[str]:
        capacity = ResourceCapacitySource({"slots": 4})
        started: list[str] = []

        def task(key: str, slots: int, delay: float) -> ScheduledTask[str]:
            async def run() -> None:
                started.append(key)
                await asyncio.sleep(delay)

            return ScheduledTask(key, run, {"slots": slots})

        tasks = [task("long", 3, 0.05), task("big", 4, 0.0), task("small", 1, 0.0)]
        runner = ScheduledTaskPoolRunner("hol", tasks, capacity, backfill=backfill)
        await collect(runner.run_tasks())
        return started

    assert await order(0) == ["long", "big", "small"]
    assert await order(2) == ["long", "small", "big"]


async def test_priority_source_runs_the_most_important_first() -> None:
    source: PrioritySourceObj[ScheduledTask[str]] = PrioritySourceObj()
    for key, priority in [("low", 1), ("high", 10), ("mid", 5)]:
        source.enqueue(ScheduledTask(key, value(key)), priority)
    source.close_source()
    runner = ScheduledTaskPoolRunner("priority", source, ResourceCapacitySource({"capacity": 1}))
    assert [e.key for e in await collect(runner.run_tasks())] == ["high", "mid", "low"]


async def test_dependency_source_is_auto_wired() -> None:
    graph: DependencyGraph[str] = DependencyGraph()
    graph.add_all({"fetch": [], "parse": ["fetch"], "index": ["parse"], "stats": ["fetch"]})
    order: list[str] = []

    def task(key: str) -> ScheduledTask[str]:
        def run() -> str:
            order.append(key)
            return key

        return ScheduledTask(key, run)

    source = DependencySourceObj(graph, {k: task(k) for k in ["fetch", "parse", "index", "stats"]})
    runner = ScheduledTaskPoolRunner("deps", source, ResourceCapacitySource({"capacity": 2}))
    envelopes = await collect(runner.run_tasks())
    assert set(keyed(envelopes).values()) == {"FINAL"} and len(envelopes) == 4
    assert order.index("fetch") < order.index("parse") < order.index("index")
    assert order.index("fetch") < order.index("stats")
    assert graph.is_done


async def test_failures_are_retried_then_the_cascade_is_aborted() -> None:
    graph: DependencyGraph[str] = DependencyGraph()
    graph.add_all({"flaky": [], "broken": [], "after_flaky": ["flaky"], "after_broken": ["broken"]})
    attempts = {"flaky": 0, "broken": 0}

    def fails(key: str, times: int) -> ScheduledTask[str]:
        def run() -> str:
            attempts[key] += 1
            if attempts[key] <= times:
                raise ConnectionError(f"{key} attempt {attempts[key]}")
            return key

        return ScheduledTask(key, run)

    tasks = {
        "flaky": fails("flaky", 2),
        "broken": fails("broken", 99),
        "after_flaky": ScheduledTask("after_flaky", value("after")),
        "after_broken": ScheduledTask("after_broken", value("never")),
    }
    source = PriorityDependencySourceObj(graph, tasks)
    runner = ScheduledTaskPoolRunner(
        "retry",
        source,
        ResourceCapacitySource({"capacity": 2}),
        retry=RetryPolicy(max_attempts=3, backoff=0.001),
    )
    envelopes = await collect(runner.run_tasks())
    finals = sorted(e.key for e in envelopes if e.type is EnvelopeType.FINAL)
    assert finals == ["after_flaky", "flaky"]
    assert attempts == {"flaky": 3, "broken": 3}
    assert [e.key for e in envelopes if e.type is EnvelopeType.ERROR].count("broken") == 3
    assert graph.get_state("after_broken") == "aborted"
    ids = [e.task_id for e in envelopes]
    assert sorted(ids) == list(range(len(ids)))


async def test_stop_on_error_ignores_failures_that_will_be_retried() -> None:
    graph: DependencyGraph[str] = DependencyGraph()
    graph.add_node("once")
    tries = []

    def run() -> str:
        tries.append(1)
        if len(tries) == 1:
            raise ValueError("first try fails")
        return "ok"

    source = DependencySourceObj(graph, {"once": ScheduledTask("once", run)})
    runner = ScheduledTaskPoolRunner(
        "stop", source, ResourceCapacitySource({"capacity": 1}), retry=RetryPolicy(2, 0.0)
    )
    envelopes = await collect(runner.run_tasks(stop_on_error=True))
    assert [e.type.value for e in envelopes] == ["ERROR", "FINAL"]


async def test_not_a_scheduled_task_is_an_error_envelope() -> None:
    runner = ScheduledTaskPoolRunner(
        "bad", [lambda: 1, ScheduledTask("ok", value(1))], ResourceCapacitySource({"capacity": 1})
    )
    envelopes = await collect(runner.run_tasks())
    assert [e.type.value for e in envelopes] == ["ERROR", "FINAL"]
    assert "ScheduledTask" in str(envelopes[0].error)


def test_retry_policy_validates_and_computes_backoff() -> None:
    policy = RetryPolicy(max_attempts=4, backoff=0.1, multiplier=2, max_backoff=0.3)
    assert [policy.delay(n, rng=lambda: 0.5) for n in (1, 2, 3)] == [0.1, 0.2, 0.3]
    assert policy.should_retry(3, ValueError()) and not policy.should_retry(4, ValueError())
    jittered = RetryPolicy(backoff=1.0, jitter=0.5)
    assert jittered.delay(1, rng=lambda: 0.0) == 0.5 and jittered.delay(1, rng=lambda: 1.0) == 1.5
    with pytest.raises(ValueError, match="max_attempts must be >= 1"):
        RetryPolicy(max_attempts=0)
    with pytest.raises(ValueError, match="jitter"):
        RetryPolicy(jitter=2)


def test_scheduled_runner_rejects_a_plain_capacity_source() -> None:
    from pullpush import CapacitySource

    with pytest.raises(TypeError, match="ResourceCapacitySource"):
        ScheduledTaskPoolRunner("x", [], CapacitySource(1))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="backfill must be >= 0"):
        ScheduledTaskPoolRunner("x", [], ResourceCapacitySource({"a": 1}), backfill=-1)


@pytest.mark.parametrize(
    ("timeout", "error"), [(0, ValueError), (-1, ValueError), ("1", TypeError)]
)
def test_fix_a_scheduled_task_rejects_a_timeout_that_is_not_positive(
    timeout: Any, error: type[Exception]
) -> None:
    # Found by the stress suite: ScheduledTask(timeout=-1) was accepted and timed the
    # task out at once ("timed out after -1s"); the runner's own timeout says > 0.
    with pytest.raises(error, match="timeout"):
        ScheduledTask("k", print, timeout=timeout)


# -- the documented retry pattern: the task's callbacks decide first (issue 13, item 12) ----

MAX_RETRIES = 3


def flaky(key: str, failures: int, attempts: dict[str, int]) -> Any:
    """A runner that fails its first ``failures`` attempts, then returns ``key``."""

    def run() -> str:
        attempts[key] = attempts.get(key, 0) + 1
        if attempts[key] <= failures:
            raise ConnectionError(f"{key} attempt {attempts[key]}")
        return key

    return run


def terminal_per_id(envelopes: list[TaskProgressEnvelope]) -> None:
    """Exactly one terminal envelope per task id, ids 0..n-1."""
    ids = [e.task_id for e in envelopes if e.type is not EnvelopeType.INTERMEDIATE]
    assert sorted(ids) == list(range(len(ids)))


@pytest.mark.timeout(30)
@pytest.mark.parametrize("source_kind", [DependencySourceObj, PriorityDependencySourceObj])
async def test_fix_the_documented_retry_pattern_retries_then_aborts(source_kind: Any) -> None:
    # Found by issue 13: the original's pattern -- on_complete calls
    # source.complete(key), on_error calls source.fail(key) up to MAX_RETRIES times
    # and then source.abort(key) -- could not work: the runner completed or aborted
    # the node before calling the callback, so with a task that failed twice only its
    # upstream task completed (and even that one got an ERROR from complete()).
    graph: DependencyGraph[str] = DependencyGraph()
    graph.add_all(
        {
            "up": [],
            "flaky": ["up"],
            "down": ["flaky"],
            "broken": ["up"],
            "after_broken": ["broken"],
        }
    )
    attempts: dict[str, int] = {}
    retries: dict[str, int] = {}  # the documented "retry counter in a map"
    states_seen: list[tuple[str, str]] = []
    tasks: dict[str, ScheduledTask[str]] = {}
    source = source_kind(graph, tasks)

    def on_complete(key: str, result: Any) -> None:
        states_seen.append((key, graph.get_state(key).value))
        source.complete(key)

    def on_error(key: str, error: BaseException) -> None:
        states_seen.append((key, graph.get_state(key).value))
        retries[key] = retries.get(key, 0) + 1
        if retries[key] < MAX_RETRIES:
            source.fail(key)  # back to ready: it runs again
        else:
            source.abort(key)  # gives up, with its dependents

    failures = {"up": 0, "flaky": 2, "down": 0, "broken": 99, "after_broken": 0}
    for key, count in failures.items():
        tasks[key] = ScheduledTask(
            key, flaky(key, count, attempts), on_complete=on_complete, on_error=on_error
        )
    capacity = ResourceCapacitySource({"capacity": 2})
    runner = ScheduledTaskPoolRunner("pattern", source, capacity)
    envelopes = await collect(runner.run_tasks())

    finals = sorted(e.key for e in envelopes if e.type is EnvelopeType.FINAL)
    assert finals == ["down", "flaky", "up"]
    errors = [e for e in envelopes if e.type is EnvelopeType.ERROR]
    assert sorted(e.key for e in errors) == ["broken"] * MAX_RETRIES + ["flaky"] * 2
    assert all(isinstance(e.error, ConnectionError) for e in errors)
    assert [str(e.error) for e in errors if e.key == "flaky"] == [
        "flaky attempt 1",
        "flaky attempt 2",
    ]
    assert attempts == {"up": 1, "flaky": 3, "down": 1, "broken": MAX_RETRIES}
    # Every callback saw its node still running, so it could decide.
    assert {state for _, state in states_seen} == {"running"}
    assert graph.get_state("broken") == "aborted"
    assert graph.get_state("after_broken") == "aborted"  # never started: no envelope
    assert "after_broken" not in {e.key for e in envelopes}
    assert graph.is_done
    terminal_per_id(envelopes)
    assert capacity.available == {"capacity": 2}


def chain_graph() -> DependencyGraph[str]:
    graph: DependencyGraph[str] = DependencyGraph()
    graph.add_all({"task": [], "after": ["task"]})
    return graph


@pytest.mark.timeout(30)
async def test_the_retry_policy_applies_when_on_error_leaves_the_node_running() -> None:
    # on_error decides the first failure (fail: retry), leaves the later ones to the
    # runner: RetryPolicy(max_attempts=3) counts every failed attempt, so the third
    # failure aborts the node and its dependent.
    graph = chain_graph()
    attempts: dict[str, int] = {}
    seen: list[int] = []
    tasks: dict[str, ScheduledTask[str]] = {}
    source = DependencySourceObj(graph, tasks)

    def on_error(key: str, error: BaseException) -> None:
        seen.append(attempts[key])
        if attempts[key] == 1:
            source.fail(key)

    tasks["task"] = ScheduledTask("task", flaky("task", 99, attempts), on_error=on_error)
    tasks["after"] = ScheduledTask("after", value("never"))
    capacity = ResourceCapacitySource({"capacity": 1})
    runner = ScheduledTaskPoolRunner(
        "policy", source, capacity, retry=RetryPolicy(max_attempts=3, backoff=0.0)
    )
    envelopes = await collect(runner.run_tasks())
    assert [(e.key, e.type.value) for e in envelopes] == [("task", "ERROR")] * 3
    assert seen == [1, 2, 3] and attempts == {"task": 3}
    assert graph.get_state("task") == "aborted" and graph.get_state("after") == "aborted"
    terminal_per_id(envelopes)
    assert capacity.available == {"capacity": 1}


@pytest.mark.timeout(30)
async def test_on_error_may_give_up_at_once_despite_the_retry_policy() -> None:
    graph = chain_graph()
    attempts: dict[str, int] = {}
    tasks: dict[str, ScheduledTask[str]] = {}
    source = DependencySourceObj(graph, tasks)
    tasks["task"] = ScheduledTask(
        "task", flaky("task", 99, attempts), on_error=lambda k, e: source.abort(k)
    )
    tasks["after"] = ScheduledTask("after", value("never"))
    runner = ScheduledTaskPoolRunner(
        "abort", source, ResourceCapacitySource({"capacity": 1}), retry=RetryPolicy(5, 0.0)
    )
    envelopes = await collect(runner.run_tasks())
    assert [(e.key, e.type.value) for e in envelopes] == [("task", "ERROR")]
    assert attempts == {"task": 1} and graph.get_state("after") == "aborted"


@pytest.mark.timeout(30)
async def test_an_on_error_that_raises_is_reported_and_the_policy_still_applies() -> None:
    graph = chain_graph()
    attempts: dict[str, int] = {}
    reported: list[dict[str, Any]] = []
    asyncio.get_running_loop().set_exception_handler(lambda loop, context: reported.append(context))

    def on_error(key: str, error: BaseException) -> None:
        raise KeyError("bug in the callback")

    tasks = {
        "task": ScheduledTask("task", flaky("task", 99, attempts), on_error=on_error),
        "after": ScheduledTask("after", value("never")),
    }
    capacity = ResourceCapacitySource({"capacity": 1})
    runner = ScheduledTaskPoolRunner(
        "raises", DependencySourceObj(graph, tasks), capacity, retry=RetryPolicy(2, 0.0)
    )
    envelopes = await collect(runner.run_tasks())
    # Each attempt's ERROR carries the task's own error, not the callback's.
    assert [type(e.error) for e in envelopes] == [ConnectionError, ConnectionError]
    assert [type(c["exception"]) for c in reported] == [KeyError, KeyError]
    assert all("on_error callback of task 'task'" in c["message"] for c in reported)
    assert attempts == {"task": 2}  # the runner's policy: retried once, then aborted
    assert graph.get_state("after") == "aborted" and graph.is_done
    assert capacity.available == {"capacity": 1}


@pytest.mark.timeout(30)
async def test_stop_on_error_skips_errors_on_error_retries_and_raises_when_it_gives_up() -> None:
    graph = chain_graph()
    attempts: dict[str, int] = {}
    tasks: dict[str, ScheduledTask[str]] = {}
    source = DependencySourceObj(graph, tasks)

    def on_error(key: str, error: BaseException) -> None:
        if attempts[key] < 2:
            source.fail(key)
        else:
            source.abort(key)

    tasks["task"] = ScheduledTask("task", flaky("task", 99, attempts), on_error=on_error)
    tasks["after"] = ScheduledTask("after", value("never"))
    capacity = ResourceCapacitySource({"capacity": 1})
    runner = ScheduledTaskPoolRunner("stop", source, capacity)
    seen: list[str] = []
    with pytest.raises(ConnectionError, match="task attempt 2"):
        async for envelope in runner.run_tasks(stop_on_error=True):
            seen.append(str(envelope.error))
    assert seen == ["task attempt 1"]  # the retried attempt's ERROR was yielded
    assert attempts == {"task": 2} and graph.get_state("after") == "aborted"
    assert capacity.available == {"capacity": 1}


@pytest.mark.timeout(30)
async def test_on_complete_may_send_its_node_back_to_run_again() -> None:
    # The callback decides on success too: a result it rejects is retried (FINAL
    # envelopes for both runs; the dependent starts after the accepted one).
    graph = chain_graph()
    runs: list[str] = []
    tasks: dict[str, ScheduledTask[str]] = {}
    source = DependencySourceObj(graph, tasks)

    def run() -> int:
        runs.append("task")
        return len(runs)

    def on_complete(key: str, result: Any) -> None:
        if result < 2:
            source.fail(key)  # not good enough: run it again

    def after() -> str:
        runs.append("after")
        return "after"

    tasks["task"] = ScheduledTask("task", run, on_complete=on_complete)
    tasks["after"] = ScheduledTask("after", after)
    runner = ScheduledTaskPoolRunner("accept", source, ResourceCapacitySource({"capacity": 2}))
    envelopes = await collect(runner.run_tasks())
    assert [(e.key, e.value) for e in envelopes] == [("task", 1), ("task", 2), ("after", "after")]
    assert runs == ["task", "task", "after"] and graph.is_done


@pytest.mark.timeout(30)
@pytest.mark.parametrize("decision", ["abort", "complete"])
async def test_deciding_a_node_during_its_retry_backoff_ends_it_quietly(decision: str) -> None:
    # The runner's retry waits out a backoff with the node still running; the user
    # decides meanwhile (aborts it: a graceful shutdown; completes it: a cached
    # result) while the run goes on: the retry timer must leave the node alone then.
    graph = chain_graph()
    graph.add_node("slow")
    attempts: dict[str, int] = {}
    reported: list[dict[str, Any]] = []
    asyncio.get_running_loop().set_exception_handler(lambda loop, context: reported.append(context))
    tasks = {
        "task": ScheduledTask("task", flaky("task", 99, attempts)),
        "after": ScheduledTask("after", value("never")),
        "slow": ScheduledTask("slow", value("slow", delay=0.2)),
    }
    source = DependencySourceObj(graph, tasks)
    capacity = ResourceCapacitySource({"capacity": 2})
    runner = ScheduledTaskPoolRunner("shutdown", source, capacity, retry=RetryPolicy(3, 0.02))
    envelopes = []
    async for envelope in runner.run_tasks():
        envelopes.append(envelope)
        if envelope.key == "task":
            getattr(source, decision)("task")
    if decision == "abort":
        assert [e.key for e in envelopes] == ["task", "slow"]
        assert graph.get_state("after") == "aborted"
    else:
        assert sorted(e.key for e in envelopes) == ["after", "slow", "task"]
        assert graph.get_state("after") == "completed"
    assert attempts == {"task": 1} and graph.is_done
    assert reported == []
    assert capacity.available == {"capacity": 2}
