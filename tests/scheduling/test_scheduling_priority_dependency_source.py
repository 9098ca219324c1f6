"""PriorityDependencySourceObj: ready tasks by priority (with aging), looked up lazily."""

from __future__ import annotations

import asyncio

import pytest

from pullpush import (
    DependencyGraph,
    MissingTaskError,
    NodeState,
    PriorityDependencySourceObj,
)
from pullpush.testing import ManualClock, settle

PRIORITY = {"a": 1, "b": 5, "c": 3, "d": 9}


def _graph(edges: dict[str, list[str]]) -> DependencyGraph[str]:
    graph: DependencyGraph[str] = DependencyGraph()
    graph.add_all(edges)
    return graph


def _source(edges: dict[str, list[str]], **kwargs: object) -> PriorityDependencySourceObj[str, str]:
    tasks = {key: key.upper() for key in edges}
    return PriorityDependencySourceObj(
        _graph(edges), tasks, priority_fn=lambda key, task: PRIORITY[key], **kwargs
    )


async def test_ready_tasks_come_highest_priority_first() -> None:
    source = _source({"a": [], "b": [], "c": []})
    assert [await anext(source) for _ in range(3)] == ["B", "C", "A"]
    assert source.queue_size == 0
    await source.aclose()


async def test_default_priority_keeps_readiness_order() -> None:
    graph = _graph({"x": [], "y": [], "z": []})
    source = PriorityDependencySourceObj(graph, {"x": 1, "y": 2, "z": 3})
    assert [await anext(source) for _ in range(3)] == [1, 2, 3]
    await source.aclose()


async def test_complete_queues_dependents_in_the_same_step() -> None:
    source = _source({"a": [], "d": ["a"], "c": ["a"]})
    assert await anext(source) == "A"
    assert source.queue_size == 0
    assert source.complete("a") == ["d", "c"]
    assert (source.queue_size, source.peek_key()) == (2, "d")
    await source.aclose()


async def test_runs_the_whole_graph_and_ends() -> None:
    source = _source({"a": [], "b": ["a"], "c": ["a"], "d": ["b", "c"]})
    order = []
    async for task in source:
        order.append(task)
        source.complete(task.lower())
    assert order == ["A", "B", "C", "D"]


async def test_aging_counts_from_when_a_node_became_ready() -> None:
    clock = ManualClock()
    source = PriorityDependencySourceObj(
        _graph({"a": []}),
        {"a": "A", "b": "B"},
        priority_fn=lambda key, task: PRIORITY[key],
        aging_rate=1.0,
        clock=clock,
    )  # "a" (1) ready at 0 s
    clock.advance(5.0)
    source.dependency_graph.add_node("b")  # "b" (5) ready at 5 s; "a" is worth 6 now
    assert source.peek_key() == "a"
    clock.advance(1.0)
    assert [await anext(source), await anext(source)] == ["A", "B"]
    await source.aclose()


async def test_tasks_and_priorities_are_looked_up_lazily() -> None:
    graph = _graph({"a": []})
    tasks: dict[str, str] = {}
    source = PriorityDependencySourceObj(graph, tasks)  # built before the map is filled
    with pytest.raises(MissingTaskError, match="'a'"):
        source.peek()
    assert source.queue_size == 1
    tasks["a"] = "A"
    assert (source.peek(), await anext(source)) == ("A", "A")
    await source.aclose()


async def test_fail_requeues_and_abort_removes_from_the_queue() -> None:
    source = _source({"a": [], "b": [], "c": ["b"]})
    assert await anext(source) == "B"
    source.fail("b")
    assert source.queue_size == 2
    assert source.abort("b") == ["b", "c"]
    assert (source.queue_size, source.peek_key()) == (1, "a")
    assert await anext(source) == "A"
    source.complete("a")
    assert [t async for t in source] == []


async def test_nodes_started_elsewhere_leave_the_queue() -> None:
    source = _source({"a": [], "b": []})
    source.dependency_graph.start("b")
    assert (source.queue_size, source.peek_key()) == (1, "a")
    await source.aclose()


async def test_a_pull_waits_for_a_node_to_become_ready() -> None:
    source = _source({"a": [], "b": ["a"]})
    await anext(source)
    pull = asyncio.create_task(anext(source))
    await settle()
    assert not pull.done()
    source.complete("a")
    assert await pull == "B"
    await source.aclose()


async def test_closing_a_waiting_pull_ends_it_and_starts_nothing() -> None:
    source = _source({"a": [], "b": ["a"]})
    await anext(source)
    pull = asyncio.create_task(anext(source))
    await settle()
    await source.aclose()
    with pytest.raises(StopAsyncIteration):
        await pull
    assert source.dependency_graph.get_state("b") is NodeState.PENDING


async def test_an_async_priority_fn_is_refused() -> None:
    async def slow(key: str, task: int) -> float:
        return 1.0

    graph = _graph({"a": []})
    source = PriorityDependencySourceObj(graph, {"a": 1}, priority_fn=slow)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="priority_fn must be synchronous"):
        source.peek()


def test_bad_arguments() -> None:
    graph: DependencyGraph[str] = DependencyGraph()
    with pytest.raises(TypeError, match="priority_fn must be callable"):
        PriorityDependencySourceObj(graph, {}, priority_fn=3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="aging_rate"):
        PriorityDependencySourceObj(graph, {}, aging_rate=-1)
    source = PriorityDependencySourceObj(
        _graph({"a": []}), {"a": 1}, priority_fn=lambda k, t: float("nan")
    )
    with pytest.raises(ValueError, match=r"priority_fn\('a', task\) must not be NaN"):
        source.peek()
