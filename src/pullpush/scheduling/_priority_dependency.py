"""``PriorityDependencySourceObj``: a dependency graph's ready tasks, most urgent first."""

from __future__ import annotations

import math
from collections.abc import AsyncGenerator, Callable, Hashable, Mapping, Sequence
from typing import Any, Generic, TypeVar

from .._clock import Clock, resolve_clock
from .._obj import SourceObj
from .._sync import ParkingLot
from .._util import check_callable, is_awaitable
from ._aging import AgingEntry, AgingQueue
from ._dependency import check_graph, task_for
from ._graph import DependencyGraph
from ._priority import check_priority

__all__ = ["PriorityDependencySourceObj"]

K = TypeVar("K", bound=Hashable)
T = TypeVar("T")


class PriorityDependencySourceObj(SourceObj[T], Generic[K, T]):
    """Yield the tasks of ready nodes of ``graph``, highest priority first.

    Like :class:`~pullpush.DependencySourceObj` (nodes become running when
    yielded; the stream ends once the graph is done), but ready nodes are ordered by
    ``priority_fn(key, task)`` (default: 1 for every node, i.e. the order they became
    ready), with aging as in :class:`~pullpush.PrioritySourceObj`, counted from when
    each node became ready. A node that fails is ready again and re-prioritised.

    Nodes that become ready are queued in the same synchronous step as the
    transition (no async gap between ``complete(key)`` and its dependents being
    queued). Tasks and their priorities are looked up lazily, when the source is
    peeked or pulled (decision C7): the map may be filled after the source is built,
    and a ready key missing from it raises :class:`~pullpush.MissingTaskError` there
    (the key stays queued, so adding the task and peeking again works).

    Peek then pull: a pull yields the task the last :meth:`peek` (or
    :meth:`peek_key`) returned, unless the queue changed in between.

    Args:
        graph: the dependency graph to run.
        task_map: the task of each key (kept by reference, not copied).
        priority_fn: ``(key, task) -> number``, larger is more urgent; must be
            synchronous. ``None``: every node has priority 1.
        aging_rate: priority gained per second a node stays ready (>= 0).
        max_age_boost: the most aging can add (>= 0; default ``inf``).
        clock: where time is read; default :func:`time.monotonic`.
    """

    def __init__(
        self,
        graph: DependencyGraph[K],
        task_map: Mapping[K, T],
        *,
        priority_fn: Callable[[K, T], float] | None = None,
        aging_rate: float = 0.0,
        max_age_boost: float = math.inf,
        clock: Clock | None = None,
    ) -> None:
        super().__init__()
        check_graph(graph, task_map)
        if priority_fn is not None:
            check_callable("priority_fn", priority_fn)
        self._graph = graph
        self.task_map = task_map
        self.priority_fn = priority_fn
        self._clock = resolve_clock(clock)
        self._queue: AgingQueue[tuple[K, T]] = AgingQueue(aging_rate, max_age_boost)
        # Invariant: every ready node of the graph is in exactly one of _incoming
        # (not looked up yet: key -> when it became ready) and _entries (queued).
        self._incoming: dict[K, float] = {}
        self._entries: dict[K, AgingEntry[tuple[K, T]]] = {}
        # Invariant: the entry the last peek returned, while the queue did not change.
        self._peeked: AgingEntry[tuple[K, T]] | None = None
        self._lot = ParkingLot()
        now = self._clock()
        for key in graph.ready:
            self._incoming[key] = now
        graph._subscribe(self)

    @property
    def dependency_graph(self) -> DependencyGraph[K]:
        """The graph this source runs."""
        return self._graph

    @property
    def queue_size(self) -> int:
        """How many ready nodes wait to be yielded (started ones excluded)."""
        return len(self._incoming) + len(self._entries)

    def __repr__(self) -> str:
        state = "done" if self.done else "open"
        return f"<PriorityDependencySourceObj {state} queued={self.queue_size} {self._graph!r}>"

    # -- graph events ---------------------------------------------------------------------

    def _graph_changed(self, ready: Sequence[K], gone: Sequence[K]) -> None:
        for key in gone:  # started (by us or anyone) or aborted: leave the queue
            self._incoming.pop(key, None)
            entry = self._entries.pop(key, None)
            if entry is not None:
                self._queue.remove(entry)
        if ready:
            now = self._clock()
            for key in ready:
                self._incoming[key] = now
        if ready or gone:
            self._peeked = None
        self._lot.unpark_all()

    def _interrupt(self) -> None:
        self._lot.unpark_all()

    # -- the queue ------------------------------------------------------------------------

    def _resolve(self) -> None:
        """Look up the task and priority of every newly ready node, in ready order."""
        incoming = self._incoming
        while incoming:
            key, ready_at = next(iter(incoming.items()))
            task = task_for(self.task_map, key)
            priority = self._priority(key, task)
            del incoming[key]
            self._entries[key] = self._queue.push((key, task), priority, ready_at)

    def _priority(self, key: K, task: T) -> float:
        if self.priority_fn is None:
            return 1.0
        value: Any = self.priority_fn(key, task)
        if is_awaitable(value):
            close = getattr(value, "close", None)
            if close is not None:
                close()  # a coroutine never awaited would warn
            raise TypeError("priority_fn must be synchronous (it returned an awaitable)")
        return check_priority(f"priority_fn({key!r}, task)", value)

    def _head(self) -> AgingEntry[tuple[K, T]] | None:
        self._resolve()
        entry = self._peeked
        if entry is None or not entry.queued:
            entry = self._peeked = self._queue.peek(self._clock())
        return entry

    def peek(self) -> T | None:
        """Return the task a pull would yield now, or ``None`` if no node is ready.

        Raises:
            MissingTaskError: a ready node has no task in ``task_map``.
        """
        entry = self._head()
        return None if entry is None else entry.item[1]

    def peek_key(self) -> K | None:
        """Return the key a pull would start now, or ``None`` if no node is ready.

        Raises:
            MissingTaskError: a ready node has no task in ``task_map``.
        """
        entry = self._head()
        return None if entry is None else entry.item[0]

    # -- outcomes -------------------------------------------------------------------------

    def complete(self, key: K) -> list[K]:
        """Complete the running node ``key``; its newly ready dependents are queued at
        once. Return them."""
        return self._graph.complete(key)

    def fail(self, key: K) -> None:
        """Send the running node ``key`` back to ready; it is queued again."""
        self._graph.fail(key)

    def abort(self, key: K) -> list[K]:
        """Abort ``key`` and its transitive dependents, removing them from the queue;
        return the keys aborted."""
        return self._graph.abort(key)

    async def pull_impl(self) -> AsyncGenerator[T, Any]:
        graph = self._graph
        while not self._closing:
            entry = self._head()
            if entry is not None:
                key, task = entry.item
                graph.start(key)  # notifies us: the entry leaves the queue
                yield task
            elif graph.is_done:
                return
            else:
                await self._lot.park()
