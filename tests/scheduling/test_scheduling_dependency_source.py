"""DependencySourceObj: yields ready tasks, marks them running, ends when the graph is done."""

from __future__ import annotations

import asyncio

import pytest

from pullpush import DependencyGraph, DependencySourceObj, MissingTaskError, NodeState
from pullpush.testing import assert_closed, settle


def _source(edges: dict[str, list[str]]) -> DependencySourceObj[str, str]:
    graph: DependencyGraph[str] = DependencyGraph()
    graph.add_all(edges)
    return DependencySourceObj(graph, {key: f"task-{key}" for key in edges})


async def test_yields_ready_tasks_in_readiness_order_and_marks_them_running() -> None:
    source = _source({"a": [], "b": [], "c": ["a"]})
    assert await anext(source) == "task-a"
    assert await anext(source) == "task-b"
    graph = source.dependency_graph
    assert list(graph.running) == ["a", "b"]
    assert source.complete("a") == ["c"]
    assert await anext(source) == "task-c"
    await source.aclose()


async def test_ends_once_the_graph_is_done() -> None:
    source = _source({"a": [], "b": ["a"]})
    seen = []
    async for task in source:
        seen.append(task)
        source.complete(task.removeprefix("task-"))
    assert seen == ["task-a", "task-b"]
    assert_closed(source)


async def test_empty_graph_ends_at_once() -> None:
    assert [t async for t in DependencySourceObj(DependencyGraph(), {})] == []


async def test_a_pull_waits_until_a_completion_makes_a_node_ready() -> None:
    source = _source({"a": [], "b": ["a"]})
    await anext(source)
    pull = asyncio.create_task(anext(source))
    await settle()
    assert not pull.done()
    source.dependency_graph.complete("a")  # on the graph directly: still seen
    assert await pull == "task-b"
    await source.aclose()


async def test_a_waiting_pull_ends_when_the_last_running_node_completes() -> None:
    source = _source({"a": []})
    await anext(source)
    pull = asyncio.create_task(anext(source))
    await settle()
    source.complete("a")
    with pytest.raises(StopAsyncIteration):
        await pull


async def test_failed_node_is_yielded_again() -> None:
    source = _source({"a": []})
    await anext(source)
    source.fail("a")
    assert await anext(source) == "task-a"
    await source.aclose()


async def test_aborted_nodes_are_never_yielded() -> None:
    source = _source({"a": [], "b": ["a"], "c": []})
    assert await anext(source) == "task-a"
    assert source.abort("a") == ["a", "b"]
    rest = []
    async for task in source:
        rest.append(task)
        source.complete(task.removeprefix("task-"))
    assert rest == ["task-c"]


async def test_peek_shows_what_the_next_pull_yields() -> None:
    source = _source({"a": [], "b": []})
    assert (source.peek(), source.peek_key()) == ("task-a", "a")
    assert await anext(source) == "task-a"
    assert source.peek() == "task-b"
    await anext(source)
    assert source.peek() is None and source.peek_key() is None
    await source.aclose()


async def test_tasks_are_looked_up_lazily_and_a_missing_one_raises_there() -> None:
    graph: DependencyGraph[str] = DependencyGraph()
    graph.add_node("a")
    tasks: dict[str, str] = {}
    source = DependencySourceObj(graph, tasks)
    with pytest.raises(MissingTaskError, match="'a' is ready but has no task"):
        source.peek()
    tasks["a"] = "late"  # filled after the source was built (C7)
    assert await anext(source) == "late"
    await source.aclose()


async def test_a_missing_task_at_pull_time_leaves_the_node_ready() -> None:
    graph: DependencyGraph[str] = DependencyGraph()
    graph.add_node("a")
    source = DependencySourceObj(graph, {})
    with pytest.raises(MissingTaskError):
        await anext(source)
    assert graph.get_state("a") is NodeState.READY


async def test_closing_a_waiting_pull_ends_it() -> None:
    source = _source({"a": [], "b": ["a"]})
    await anext(source)
    pull = asyncio.create_task(anext(source))
    await settle()
    await source.aclose()
    with pytest.raises(StopAsyncIteration):
        await pull
    assert source.dependency_graph.get_state("b") is NodeState.PENDING


async def test_the_users_on_ready_callback_still_fires() -> None:
    graph: DependencyGraph[str] = DependencyGraph()
    readied: list[str] = []
    graph.on_ready = readied.append
    source = DependencySourceObj(graph, {"a": 1, "b": 2})
    graph.add_all({"a": [], "b": ["a"]})
    assert await anext(source) == 1
    source.complete("a")
    assert readied == ["a", "b"]
    await source.aclose()


def test_arguments_are_checked() -> None:
    with pytest.raises(TypeError, match="graph must be a DependencyGraph"):
        DependencySourceObj({}, {})  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="task_map must be a mapping"):
        DependencySourceObj(DependencyGraph(), [])  # type: ignore[arg-type]
