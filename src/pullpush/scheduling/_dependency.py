"""``DependencySourceObj``: yield the tasks of a dependency graph as nodes become ready."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Hashable, Mapping, Sequence
from typing import Any, Generic, TypeVar

from .._exceptions import MissingTaskError
from .._obj import SourceObj
from .._sync import ParkingLot
from ._graph import DependencyGraph

__all__ = ["DependencySourceObj", "check_graph", "task_for"]

K = TypeVar("K", bound=Hashable)
T = TypeVar("T")


def check_graph(graph: object, task_map: object) -> None:
    """Raise ``TypeError`` naming the argument unless both have the right types."""
    if not isinstance(graph, DependencyGraph):
        raise TypeError(f"graph must be a DependencyGraph, got {type(graph).__name__}")
    if not isinstance(task_map, Mapping):
        raise TypeError(f"task_map must be a mapping of key to task, got {type(task_map).__name__}")


def task_for(task_map: Mapping[K, T], key: K) -> T:
    """Return ``task_map[key]``, or raise :class:`MissingTaskError` naming the key."""
    try:
        return task_map[key]
    except KeyError:
        raise MissingTaskError(
            f"node {key!r} is ready but has no task in task_map (tasks are looked up "
            "when the source is peeked or pulled)"
        ) from None


class DependencySourceObj(SourceObj[T], Generic[K, T]):
    """Yield the task of each node of ``graph`` once it is ready, marking it running.

    Nodes are yielded in the order they became ready. When none is ready, a pull
    waits for one (a completion, a failure sending a node back to ready, a node
    added); the stream ends once the graph is done (every node completed or
    aborted). Report outcomes through :meth:`complete` / :meth:`fail` /
    :meth:`abort` (or on the graph itself: the source sees those too).

    Tasks are looked up in ``task_map`` lazily, when the source is peeked or pulled
    (decision C7), so the map may be filled after the source is built; a ready key
    missing from it raises :class:`~pullpush.MissingTaskError` there.

    The graph's ``on_ready``/``on_complete`` callbacks are left to the user: the
    source subscribes to the graph separately.

    Args:
        graph: the dependency graph to run.
        task_map: the task of each key (kept by reference, not copied).
    """

    def __init__(self, graph: DependencyGraph[K], task_map: Mapping[K, T]) -> None:
        super().__init__()
        check_graph(graph, task_map)
        self._graph = graph
        self.task_map = task_map
        self._lot = ParkingLot()
        graph._subscribe(self)

    @property
    def dependency_graph(self) -> DependencyGraph[K]:
        """The graph this source runs."""
        return self._graph

    def __repr__(self) -> str:
        return f"<DependencySourceObj {'done' if self.done else 'open'} {self._graph!r}>"

    def _graph_changed(self, ready: Sequence[K], gone: Sequence[K]) -> None:
        self._lot.unpark_all()

    def _interrupt(self) -> None:
        self._lot.unpark_all()

    def peek_key(self) -> K | None:
        """Return the key a pull would start now, or ``None`` if no node is ready."""
        return self._graph.first_ready()

    def peek(self) -> T | None:
        """Return the task a pull would yield now, or ``None`` if no node is ready.

        Raises:
            MissingTaskError: the ready node has no task in ``task_map``.
        """
        key = self._graph.first_ready()
        return None if key is None else task_for(self.task_map, key)

    def complete(self, key: K) -> list[K]:
        """Complete the running node ``key``; return the keys that became ready."""
        return self._graph.complete(key)

    def fail(self, key: K) -> None:
        """Send the running node ``key`` back to ready, to be yielded again."""
        self._graph.fail(key)

    def abort(self, key: K) -> list[K]:
        """Abort ``key`` and its transitive dependents; return the keys aborted."""
        return self._graph.abort(key)

    async def pull_impl(self) -> AsyncGenerator[T, Any]:
        graph = self._graph
        while not self._closing:
            key = graph.first_ready()
            if key is not None:
                task = task_for(self.task_map, key)  # before start: a miss changes nothing
                graph.start(key)
                yield task
            elif graph.is_done:
                return
            else:
                await self._lot.park()
