"""``DependencyGraph``: a DAG of keys, each moving through a small state machine.

States and transitions::

    pending --(all dependencies completed)--> ready --start--> running --complete--> completed
                                                ^                 |
                                                +-------fail------+   (failed: transient)
    any state but completed --abort--> aborted   (cascades to every transitive dependent)

Every transition is a plain synchronous method: check and act happen with no
``await`` in between, so on one event loop they are atomic.
"""

from __future__ import annotations

import enum
import weakref
from collections import deque
from collections.abc import Callable, Hashable, Iterable, KeysView, Mapping, Sequence
from typing import Generic, Protocol, TypeVar

from .._exceptions import (
    DependencyCycleError,
    DuplicateNodeError,
    NodeStateError,
    UnknownNodeError,
)

__all__ = ["DependencyGraph", "NodeState"]

K = TypeVar("K", bound=Hashable)
K_contra = TypeVar("K_contra", contravariant=True)


class NodeState(str, enum.Enum):
    """Where a node of a :class:`DependencyGraph` is (a ``str`` enum: ``== "ready"`` works)."""

    PENDING = "pending"
    """Waiting for dependencies to complete."""
    READY = "ready"
    """Every dependency completed; not started."""
    RUNNING = "running"
    """Started (its task is in flight)."""
    COMPLETED = "completed"
    """Done (terminal)."""
    FAILED = "failed"
    """Transient: ``fail()`` passes through it straight back to ``READY``; never stored."""
    ABORTED = "aborted"
    """Given up, with every transitive dependent (terminal)."""


class _Listener(Protocol[K_contra]):
    """What the scheduling sources subscribe with (internal)."""

    def _graph_changed(self, ready: Sequence[K_contra], gone: Sequence[K_contra]) -> None:
        """After a transition: keys that became ready, keys that stopped being ready."""


class _Node(Generic[K]):
    __slots__ = ("dependents", "deps", "state", "unmet")

    def __init__(self, deps: tuple[K, ...]) -> None:
        self.deps = deps
        self.dependents: list[K] = []
        self.state = NodeState.PENDING
        # Invariant: for a pending node, how many of deps are not completed.
        self.unmet = 0


class DependencyGraph(Generic[K]):
    """A DAG of task keys and their state (see the module docs for the state machine).

    Build it with :meth:`add_node` (dependencies must exist already) or
    :meth:`add_all` (any order; sorted and checked for cycles first). Drive it with
    :meth:`start`, :meth:`complete`, :meth:`fail` and :meth:`abort`. The callbacks
    ``on_ready(key)`` and ``on_complete(key)`` are assignable attributes, called
    synchronously during the transition, after the graph's state is fully updated.

    Decisions on cases the original left undocumented:

    * ``complete``/``fail`` of a node that is not running raises
      :class:`~pullpush.NodeStateError` -- except of an *aborted* node, where they do
      nothing (the abort won; a task aborted in flight may still report back).
    * Adding a node to a done graph is allowed; the graph is no longer done. A
      dependency source that already ended does not see it.
    * A node added behind an aborted dependency starts, and stays, aborted.
    * ``abort`` of a completed or aborted node does nothing and returns ``[]``.

    Ordering: ``ready`` (and the dependency sources) list nodes in the order they
    became ready; dependents become ready in the order they were added.
    """

    def __init__(self) -> None:
        # Invariant: insertion order is a topological order (dependencies must exist
        # before a node is added).
        self._nodes: dict[K, _Node[K]] = {}
        # Invariant: each key is in exactly the dict of its state (pending nodes in
        # none); ready in the order the nodes became ready.
        self._ready: dict[K, None] = {}
        self._running: dict[K, None] = {}
        self._completed: dict[K, None] = {}
        self._aborted: dict[K, None] = {}
        self._listeners: list[weakref.ReferenceType[_Listener[K]]] = []
        self.on_ready: Callable[[K], object] | None = None
        """Called with each key that becomes ready."""
        self.on_complete: Callable[[K], object] | None = None
        """Called with each key that completes (before its dependents' ``on_ready``)."""

    # -- queries --------------------------------------------------------------------------

    @property
    def size(self) -> int:
        """How many nodes the graph has."""
        return len(self._nodes)

    def __len__(self) -> int:
        return len(self._nodes)

    def __contains__(self, key: object) -> bool:
        return key in self._nodes

    def has(self, key: K) -> bool:
        """Return whether ``key`` is a node."""
        return key in self._nodes

    @property
    def is_done(self) -> bool:
        """Whether every node is completed or aborted (an empty graph is done)."""
        return len(self._completed) + len(self._aborted) == len(self._nodes)

    @property
    def ready(self) -> KeysView[K]:
        """The ready nodes, in the order they became ready (a snapshot)."""
        return dict.fromkeys(self._ready).keys()

    @property
    def running(self) -> KeysView[K]:
        """The running nodes (a snapshot)."""
        return dict.fromkeys(self._running).keys()

    @property
    def completed(self) -> KeysView[K]:
        """The completed nodes, in completion order (a snapshot)."""
        return dict.fromkeys(self._completed).keys()

    @property
    def aborted(self) -> KeysView[K]:
        """The aborted nodes (a snapshot)."""
        return dict.fromkeys(self._aborted).keys()

    def first_ready(self) -> K | None:
        """Return the ready node that has been ready longest, or ``None``; O(1)."""
        return next(iter(self._ready), None)

    def get_state(self, key: K) -> NodeState:
        """Return the state of ``key``.

        Raises:
            UnknownNodeError: no such node.
        """
        return self._node(key).state

    def get_dependencies(self, key: K) -> tuple[K, ...]:
        """Return the direct dependencies of ``key``, in the order given."""
        return self._node(key).deps

    def get_dependents(self, key: K) -> tuple[K, ...]:
        """Return the nodes that depend directly on ``key``, in the order added."""
        return tuple(self._node(key).dependents)

    def topological_sort(self) -> list[K]:
        """Return every key, dependencies before dependents (O(n): insertion order)."""
        return list(self._nodes)

    def has_cycle(self) -> bool:
        """Check the whole graph for a cycle (depth-first; for assertions).

        Always ``False`` for a graph built through this class's methods.
        """
        return self._find_cycle(self._nodes, lambda key: self._nodes[key].deps) is not None

    def __repr__(self) -> str:
        return (
            f"<DependencyGraph size={len(self._nodes)} ready={len(self._ready)} "
            f"running={len(self._running)} completed={len(self._completed)} "
            f"aborted={len(self._aborted)}>"
        )

    # -- building -------------------------------------------------------------------------

    def add_node(self, key: K, deps: Iterable[K] = ()) -> NodeState:
        """Add ``key`` depending on ``deps`` (which must exist); return its state.

        The node starts ready (and ``on_ready`` fires) when every dependency is
        completed, aborted when any dependency is aborted, pending otherwise.

        Raises:
            DuplicateNodeError: ``key`` exists already.
            UnknownNodeError: a dependency does not exist.
            DependencyCycleError: ``key`` depends on itself.
            TypeError: ``deps`` is a string (pass ``["a"]``, not ``"a"``).
        """
        dep_keys = self._deps_tuple(key, deps)
        if key in self._nodes:
            raise DuplicateNodeError(f"node {key!r} already exists")
        if key in dep_keys:
            raise DependencyCycleError((key, key))
        for dep in dep_keys:
            if dep not in self._nodes:
                raise UnknownNodeError(f"node {key!r} depends on unknown node {dep!r}")
        self._announce(self._insert(key, dep_keys))
        return self._nodes[key].state

    def add_all(self, nodes: Mapping[K, Iterable[K]]) -> list[K]:
        """Add several nodes at once, in any order; return the keys in the order added.

        Dependencies may be keys of ``nodes`` or nodes already in the graph. The
        input is sorted topologically first (ties keep the mapping's order) and
        checked as a whole: on any error nothing is added.

        Raises:
            DependencyCycleError: the input has a cycle (the error names one).
            DuplicateNodeError: a key exists already.
            UnknownNodeError: a dependency is neither in ``nodes`` nor in the graph.
        """
        deps = {key: self._deps_tuple(key, d) for key, d in nodes.items()}
        for key, key_deps in deps.items():
            if key in self._nodes:
                raise DuplicateNodeError(f"node {key!r} already exists")
            for dep in key_deps:
                if dep not in deps and dep not in self._nodes:
                    raise UnknownNodeError(f"node {key!r} depends on unknown node {dep!r}")
        order = self._sort_new(deps)
        ready: list[K] = []
        for key in order:
            ready.extend(self._insert(key, deps[key]))
        self._announce(ready)
        return order

    @staticmethod
    def _deps_tuple(key: K, deps: Iterable[K]) -> tuple[K, ...]:
        if isinstance(deps, (str, bytes)) or not isinstance(deps, Iterable):
            raise TypeError(
                f"dependencies of {key!r} must be an iterable of keys (a list), got {deps!r}"
            )
        return tuple(dict.fromkeys(deps))

    def _sort_new(self, deps: Mapping[K, tuple[K, ...]]) -> list[K]:
        """Kahn's algorithm over the new nodes (existing dependencies are satisfied)."""
        unmet = {key: sum(1 for d in key_deps if d in deps) for key, key_deps in deps.items()}
        dependents: dict[K, list[K]] = {key: [] for key in deps}
        for key, key_deps in deps.items():
            for dep in key_deps:
                if dep in deps:
                    dependents[dep].append(key)
        queue = deque(key for key, n in unmet.items() if n == 0)
        order: list[K] = []
        while queue:
            key = queue.popleft()
            order.append(key)
            for dependent in dependents[key]:
                unmet[dependent] -= 1
                if unmet[dependent] == 0:
                    queue.append(dependent)
        if len(order) < len(deps):
            left = {key: None for key in deps if unmet[key] > 0}
            cycle = self._find_cycle(left, lambda key: [d for d in deps[key] if d in left])
            assert cycle is not None  # nodes left by Kahn's algorithm always hold a cycle
            raise DependencyCycleError(cycle)
        return order

    @staticmethod
    def _find_cycle(keys: Iterable[K], deps_of: Callable[[K], Iterable[K]]) -> tuple[K, ...] | None:
        """Return one cycle (first key repeated at the end), or ``None``; iterative DFS."""
        on_path: dict[K, int] = {}
        finished: set[K] = set()
        for root in keys:
            if root in finished:
                continue
            path: list[K] = [root]
            on_path[root] = 0
            stack = [iter(deps_of(root))]
            while stack:
                for dep in stack[-1]:
                    if dep in on_path:
                        return (*path[on_path[dep] :], dep)
                    if dep not in finished:
                        on_path[dep] = len(path)
                        path.append(dep)
                        stack.append(iter(deps_of(dep)))
                        break
                else:
                    stack.pop()
                    done = path.pop()
                    del on_path[done]
                    finished.add(done)
        return None

    def _insert(self, key: K, deps: tuple[K, ...]) -> list[K]:
        node: _Node[K] = _Node(deps)
        self._nodes[key] = node
        for dep in deps:
            dep_node = self._nodes[dep]
            dep_node.dependents.append(key)
            if dep_node.state is NodeState.ABORTED:
                node.state = NodeState.ABORTED
            elif dep_node.state is not NodeState.COMPLETED:
                node.unmet += 1
        if node.state is NodeState.ABORTED:
            self._aborted[key] = None
            return []
        if node.unmet == 0:
            node.state = NodeState.READY
            self._ready[key] = None
            return [key]
        return []

    def _announce(self, ready: list[K]) -> None:
        try:
            for key in ready:
                self._fire(self.on_ready, key)
        finally:
            self._notify(ready, [])  # even if a callback raised: the state has changed

    # -- transitions ----------------------------------------------------------------------

    def start(self, key: K) -> None:
        """Mark the ready node ``key`` running.

        Raises:
            NodeStateError: it is not ready.
            UnknownNodeError: no such node.
        """
        node = self._node(key)
        if node.state is not NodeState.READY:
            raise NodeStateError(f"cannot start {key!r}: it is {node.state.value}, not ready")
        node.state = NodeState.RUNNING
        del self._ready[key]
        self._running[key] = None
        self._notify([], [key])

    def complete(self, key: K) -> list[K]:
        """Mark the running node ``key`` completed; return the keys that became ready.

        Fires ``on_complete(key)``, then ``on_ready`` for each newly ready dependent.
        On an aborted node it does nothing and returns ``[]``.

        Raises:
            NodeStateError: the node is pending, ready or completed.
            UnknownNodeError: no such node.
        """
        node = self._node(key)
        if node.state is NodeState.ABORTED:
            return []
        self._check_running("complete", key, node)
        node.state = NodeState.COMPLETED
        del self._running[key]
        self._completed[key] = None
        newly: list[K] = []
        for dependent in node.dependents:
            dep_node = self._nodes[dependent]
            if dep_node.state is NodeState.PENDING:
                dep_node.unmet -= 1
                if dep_node.unmet == 0:
                    dep_node.state = NodeState.READY
                    self._ready[dependent] = None
                    newly.append(dependent)
        try:
            self._fire(self.on_complete, key)
        finally:
            self._announce(newly)
        return newly

    def fail(self, key: K) -> None:
        """Send the running node ``key`` back to ready (to be retried); fires ``on_ready``.

        On an aborted node it does nothing.

        Raises:
            NodeStateError: the node is pending, ready or completed.
            UnknownNodeError: no such node.
        """
        node = self._node(key)
        if node.state is NodeState.ABORTED:
            return
        self._check_running("fail", key, node)
        node.state = NodeState.READY
        del self._running[key]
        self._ready[key] = None
        self._announce([key])

    def abort(self, key: K) -> list[K]:
        """Abort ``key`` and every transitive dependent; return the keys aborted.

        Breadth-first from ``key``; nodes already completed or aborted are skipped
        (so other branches are untouched: in a diamond A -> B, C -> D, aborting C
        aborts D while B can still complete). A running node is marked aborted, but
        its task is not stopped: its later ``complete``/``fail`` is ignored.

        Raises:
            UnknownNodeError: no such node.
        """
        self._node(key)
        aborted: list[K] = []
        gone: list[K] = []
        queue = deque([key])
        while queue:
            current = queue.popleft()
            node = self._nodes[current]
            if node.state in (NodeState.COMPLETED, NodeState.ABORTED):
                continue
            if node.state is NodeState.READY:
                del self._ready[current]
                gone.append(current)
            elif node.state is NodeState.RUNNING:
                del self._running[current]
            node.state = NodeState.ABORTED
            self._aborted[current] = None
            aborted.append(current)
            queue.extend(node.dependents)
        if aborted:
            self._notify([], gone)
        return aborted

    def cancel_pending(self) -> list[K]:
        """Abort every node not started yet (pending or ready); return the keys aborted.

        Running nodes are left to finish (their dependents, pending, are aborted), so
        the graph is done once they complete: a graceful shutdown (decision C21).
        """
        aborted: list[K] = []
        for key in [k for k, n in self._nodes.items() if n.state in _NOT_STARTED]:
            aborted.extend(self.abort(key))
        return aborted

    # -- internals ------------------------------------------------------------------------

    def _node(self, key: K) -> _Node[K]:
        try:
            return self._nodes[key]
        except KeyError:
            raise UnknownNodeError(f"no node {key!r} in the graph") from None

    @staticmethod
    def _check_running(action: str, key: K, node: _Node[K]) -> None:
        if node.state is not NodeState.RUNNING:
            raise NodeStateError(f"cannot {action} {key!r}: it is {node.state.value}, not running")

    @staticmethod
    def _fire(callback: Callable[[K], object] | None, key: K) -> None:
        if callback is not None:
            callback(key)

    def _subscribe(self, listener: _Listener[K]) -> None:
        """Tell ``listener`` (weakly held) about every later transition (internal)."""
        self._listeners.append(weakref.ref(listener))

    def _notify(self, ready: Sequence[K], gone: Sequence[K]) -> None:
        alive = []
        for ref in self._listeners:
            listener = ref()
            if listener is not None:
                alive.append(ref)
                listener._graph_changed(ready, gone)
        self._listeners = alive


_NOT_STARTED = (NodeState.PENDING, NodeState.READY)
