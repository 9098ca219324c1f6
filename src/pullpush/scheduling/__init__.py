"""Scheduling sources: a dependency graph and the pull sources that feed task runners.

* :class:`DependencyGraph` is a DAG state machine (pending, ready, running,
  completed, aborted).
* :class:`DependencySourceObj` yields the tasks of its ready nodes in readiness
  order; :class:`PriorityDependencySourceObj` by priority, with aging.
* :class:`PrioritySourceObj` is a standalone priority queue source with aging.

All three sources are peekable, and the dependency sources take ``complete(key)``,
``fail(key)`` and ``abort(key)``, which the task pool runners call for you.
"""

from .._exceptions import DependencyCycleError as DependencyCycleError
from .._exceptions import DuplicateNodeError as DuplicateNodeError
from .._exceptions import MissingTaskError as MissingTaskError
from .._exceptions import NodeStateError as NodeStateError
from .._exceptions import SourceClosedError as SourceClosedError
from .._exceptions import UnknownNodeError as UnknownNodeError
from ._dependency import DependencySourceObj as DependencySourceObj
from ._graph import DependencyGraph as DependencyGraph
from ._graph import NodeState as NodeState
from ._priority import PrioritySourceObj as PrioritySourceObj
from ._priority_dependency import PriorityDependencySourceObj as PriorityDependencySourceObj

__all__ = (
    "DependencyCycleError",
    "DependencyGraph",
    "DependencySourceObj",
    "DuplicateNodeError",
    "MissingTaskError",
    "NodeState",
    "NodeStateError",
    "PriorityDependencySourceObj",
    "PrioritySourceObj",
    "SourceClosedError",
    "UnknownNodeError",
)
