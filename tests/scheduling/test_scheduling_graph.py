"""DependencyGraph: the state machine, building, cycles, cascades and the decided edge cases."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pullpush import (
    DependencyCycleError,
    DependencyGraph,
    DuplicateNodeError,
    NodeState,
    NodeStateError,
    UnknownNodeError,
)


def _diamond() -> DependencyGraph[str]:
    graph: DependencyGraph[str] = DependencyGraph()
    graph.add_all({"d": ["b", "c"], "b": ["a"], "c": ["a"], "a": []})
    return graph


def _run(graph: DependencyGraph[str], *keys: str) -> None:
    for key in keys:
        graph.start(key)
        graph.complete(key)


def test_node_starts_ready_or_pending() -> None:
    graph: DependencyGraph[str] = DependencyGraph()
    assert graph.add_node("a") is NodeState.READY
    assert graph.add_node("b", ["a"]) == "pending"
    assert list(graph.ready) == ["a"]
    assert (graph.size, len(graph), graph.has("b"), "z" in graph) == (2, 2, True, False)


def test_add_node_errors_name_the_problem() -> None:
    graph: DependencyGraph[str] = DependencyGraph()
    graph.add_node("a")
    with pytest.raises(DuplicateNodeError, match="'a' already exists"):
        graph.add_node("a")
    with pytest.raises(UnknownNodeError, match="'b' depends on unknown node 'x'") as info:
        graph.add_node("b", ["x"])
    assert isinstance(info.value, KeyError)
    assert str(info.value) == "node 'b' depends on unknown node 'x'"
    with pytest.raises(DependencyCycleError, match="'c' -> 'c'"):
        graph.add_node("c", ["a", "c"])
    with pytest.raises(TypeError, match="a list"):
        graph.add_node("d", "a")
    assert graph.size == 1


def test_add_all_sorts_topologically_whatever_the_mapping_order() -> None:
    graph = _diamond()
    assert graph.topological_sort() == ["a", "b", "c", "d"]
    assert graph.get_dependencies("d") == ("b", "c")
    assert graph.get_dependents("a") == ("b", "c")
    assert not graph.has_cycle()


def test_add_all_names_the_cycle_and_adds_nothing() -> None:
    graph: DependencyGraph[str] = DependencyGraph()
    graph.add_node("root")
    with pytest.raises(DependencyCycleError) as info:
        graph.add_all({"x": ["root"], "a": ["c"], "b": ["a"], "c": ["b"]})
    assert info.value.cycle in {("a", "c", "b", "a"), ("b", "a", "c", "b"), ("c", "b", "a", "c")}
    assert "dependency cycle: " in str(info.value)
    assert isinstance(info.value, ValueError)
    assert graph.size == 1


def test_add_all_may_depend_on_existing_nodes_and_checks_everything_first() -> None:
    graph: DependencyGraph[str] = DependencyGraph()
    graph.add_node("a")
    graph.add_all({"b": ["a"]})
    with pytest.raises(UnknownNodeError, match="'x'"):
        graph.add_all({"c": ["b"], "d": ["x"]})
    with pytest.raises(DuplicateNodeError):
        graph.add_all({"e": [], "a": []})
    assert graph.topological_sort() == ["a", "b"]


def test_transitions_and_callbacks_in_order() -> None:
    graph: DependencyGraph[str] = DependencyGraph()
    seen: list[str] = []
    graph.on_ready = lambda k: seen.append(f"ready {k}")
    graph.on_complete = lambda k: seen.append(f"complete {k}")
    graph.add_all({"a": [], "b": ["a"], "c": ["a"]})
    graph.start("a")
    assert graph.get_state("a") is NodeState.RUNNING and list(graph.running) == ["a"]
    assert graph.complete("a") == ["b", "c"]
    assert seen == ["ready a", "complete a", "ready b", "ready c"]
    assert list(graph.completed) == ["a"]


def test_fail_sends_a_running_node_back_to_ready() -> None:
    graph: DependencyGraph[str] = DependencyGraph()
    graph.add_node("a")
    graph.start("a")
    readied: list[str] = []
    graph.on_ready = readied.append
    graph.fail("a")
    assert (graph.get_state("a"), readied) == (NodeState.READY, ["a"])


@pytest.mark.parametrize("action", ["complete", "fail"])
def test_complete_or_fail_of_a_node_not_running_is_an_error(action: str) -> None:
    graph: DependencyGraph[str] = DependencyGraph()
    graph.add_all({"a": [], "b": ["a"]})
    with pytest.raises(NodeStateError, match=f"cannot {action} 'a': it is ready, not running"):
        getattr(graph, action)("a")
    with pytest.raises(NodeStateError, match="pending"):
        getattr(graph, action)("b")
    with pytest.raises(NodeStateError, match="cannot start 'b'"):
        graph.start("b")


def test_abort_cascades_through_dependents_only() -> None:
    graph = _diamond()
    _run(graph, "a")
    assert graph.abort("c") == ["c", "d"]
    _run(graph, "b")  # the other branch still runs
    assert graph.is_done
    assert (list(graph.aborted), graph.abort("c"), graph.abort("a")) == (["c", "d"], [], [])


def test_complete_or_fail_after_an_abort_in_flight_is_ignored() -> None:
    graph = _diamond()
    graph.start("a")
    assert graph.abort("a") == ["a", "b", "c", "d"]
    assert graph.complete("a") == []
    graph.fail("a")
    assert graph.get_state("a") is NodeState.ABORTED and graph.is_done


def test_a_node_added_behind_an_aborted_one_is_aborted() -> None:
    graph: DependencyGraph[str] = DependencyGraph()
    graph.add_node("a")
    graph.abort("a")
    assert graph.add_node("b", ["a"]) is NodeState.ABORTED
    assert graph.is_done


def test_adding_to_a_done_graph_makes_it_not_done() -> None:
    graph: DependencyGraph[str] = DependencyGraph()
    assert graph.is_done  # empty
    graph.add_node("a")
    _run(graph, "a")
    assert graph.is_done
    assert graph.add_node("b", ["a"]) is NodeState.READY
    assert not graph.is_done


def test_cancel_pending_aborts_what_has_not_started() -> None:
    graph = _diamond()
    graph.add_node("e")
    _run(graph, "a")
    graph.start("b")
    assert sorted(graph.cancel_pending()) == ["c", "d", "e"]
    assert graph.get_state("b") is NodeState.RUNNING and not graph.is_done
    graph.complete("b")
    assert graph.is_done


def test_query_sets_are_snapshots_safe_to_mutate_the_graph_over() -> None:
    graph: DependencyGraph[str] = DependencyGraph()
    graph.add_all({"a": [], "b": [], "c": []})
    for key in graph.ready:  # the C21 graceful-shutdown loop
        graph.abort(key)
    assert graph.is_done


def test_a_raising_callback_leaves_the_transition_done() -> None:
    graph: DependencyGraph[str] = DependencyGraph()
    graph.add_all({"a": [], "b": ["a"]})
    graph.start("a")

    def boom(key: str) -> None:
        raise RuntimeError(key)

    graph.on_complete = boom
    with pytest.raises(RuntimeError):
        graph.complete("a")
    assert graph.get_state("b") is NodeState.READY


def test_unknown_keys_in_queries() -> None:
    graph: DependencyGraph[str] = DependencyGraph()
    for query in (graph.get_state, graph.get_dependencies, graph.start, graph.abort):
        with pytest.raises(UnknownNodeError, match="no node 'x'"):
            query("x")  # type: ignore[operator]


def test_repr_counts_states() -> None:
    graph = _diamond()
    assert repr(graph) == ("<DependencyGraph size=4 ready=1 running=0 completed=0 aborted=0>")


dags = st.integers(1, 12).flatmap(
    lambda n: st.tuples(
        *[st.lists(st.integers(0, max(0, i - 1)), max_size=3 if i else 0) for i in range(n)]
    )
)


@settings(max_examples=80, deadline=None)
@given(dag=dags, seed=st.integers(0, 1000))
def test_add_all_in_any_order_gives_a_topological_order(
    dag: tuple[list[int], ...], seed: int
) -> None:
    mapping = {i: deps for i, deps in enumerate(dag)}
    keys = list(mapping)
    random.Random(seed).shuffle(keys)
    graph: DependencyGraph[int] = DependencyGraph()
    graph.add_all({k: mapping[k] for k in keys})
    position = {k: i for i, k in enumerate(graph.topological_sort())}
    assert sorted(position) == sorted(mapping)
    assert all(position[d] < position[k] for k, deps in mapping.items() for d in deps)
    assert not graph.has_cycle()


@settings(max_examples=80, deadline=None)
@given(dag=dags, back=st.data())
def test_any_back_edge_is_reported_as_a_real_cycle(
    dag: tuple[list[int], ...], back: st.DataObject
) -> None:
    mapping = {i: list(deps) for i, deps in enumerate(dag)}
    # Add an edge low -> high: a cycle exactly when high (transitively) depends on low.
    low = back.draw(st.integers(0, len(dag) - 1))
    high = back.draw(st.integers(low, len(dag) - 1))
    mapping[low].append(high)
    seen, stack = set(), [high]
    while stack:
        for dep in mapping[stack.pop()]:
            if dep not in seen:
                seen.add(dep)
                stack.append(dep)
    graph: DependencyGraph[int] = DependencyGraph()
    if low not in seen:
        graph.add_all(mapping)  # the new edge closed no cycle
        assert not graph.has_cycle()
        return
    with pytest.raises(DependencyCycleError) as info:
        graph.add_all(mapping)
    cycle = info.value.cycle
    assert cycle[0] == cycle[-1]
    assert all(cycle[i + 1] in mapping[cycle[i]] for i in range(len(cycle) - 1))
    assert graph.size == 0
