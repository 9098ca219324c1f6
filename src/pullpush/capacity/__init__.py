"""Hierarchical capacity: unit counters, multi-resource budgets, quotas and a balancer.

* :class:`CapacitySource` lends one unit per task, atomically across a chain of
  parents; :class:`SourceCapacityObj` / :class:`SinkCapacityObj` wrap it as pull and
  push objects.
* :class:`ResourceCapacitySource` budgets several named resources per task;
  :class:`QuotaCapacitySource` makes the budget consumable and refills it on timers;
  :class:`HierarchicalBalancer` moves limits between children by utilisation.
* Measured capacity: :class:`MemoryCapacitySource` and :class:`CpuCapacitySource`
  follow psutil samples taken on an interval.
* Metrics: frozen events and the :class:`CapacityMetricsCollector` protocol.
"""

from .._clock import Clock as Clock
from .._exceptions import AcquireTimeoutError as AcquireTimeoutError
from .._exceptions import InsufficientCapacityError as InsufficientCapacityError
from .._exceptions import OverReleaseError as OverReleaseError
from .._exceptions import UntrackedResourceWarning as UntrackedResourceWarning
from ._balancer import BalancerAction as BalancerAction
from ._balancer import BalancerChildConfig as BalancerChildConfig
from ._balancer import HierarchicalBalancer as HierarchicalBalancer
from ._balancer import HierarchicalBalancerOptions as HierarchicalBalancerOptions
from ._events import AcquirePath as AcquirePath
from ._events import CapacityAcquireAcceptedEvent as CapacityAcquireAcceptedEvent
from ._events import CapacityAcquireRejectedEvent as CapacityAcquireRejectedEvent
from ._events import CapacityIncrementEvent as CapacityIncrementEvent
from ._events import CapacityMetricsCollector as CapacityMetricsCollector
from ._events import CapacityReconcileEvent as CapacityReconcileEvent
from ._events import CapacityReleaseEvent as CapacityReleaseEvent
from ._events import CapacityResetEvent as CapacityResetEvent
from ._events import CapacitySetLimitsEvent as CapacitySetLimitsEvent
from ._events import TryAcquireRejectReason as TryAcquireRejectReason
from ._measured import CpuCapacitySource as CpuCapacitySource
from ._measured import MemoryCapacitySource as MemoryCapacitySource
from ._measured import MemorySample as MemorySample
from ._measured import system_cpu_percent as system_cpu_percent
from ._measured import system_memory as system_memory
from ._objs import SinkCapacityObj as SinkCapacityObj
from ._objs import SourceCapacityObj as SourceCapacityObj
from ._quota import QuotaCapacitySource as QuotaCapacitySource
from ._resource import ResourceCapacitySource as ResourceCapacitySource
from ._resource import ResourceCapacityStatistics as ResourceCapacityStatistics
from ._resource import ResourceCost as ResourceCost
from ._result import TryAcquireResult as TryAcquireResult
from ._source import CapacitySource as CapacitySource
from ._source import CapacityStatistics as CapacityStatistics

__all__ = (
    "AcquirePath",
    "AcquireTimeoutError",
    "BalancerAction",
    "BalancerChildConfig",
    "CapacityAcquireAcceptedEvent",
    "CapacityAcquireRejectedEvent",
    "CapacityIncrementEvent",
    "CapacityMetricsCollector",
    "CapacityReconcileEvent",
    "CapacityReleaseEvent",
    "CapacityResetEvent",
    "CapacitySetLimitsEvent",
    "CapacitySource",
    "CapacityStatistics",
    "Clock",
    "HierarchicalBalancer",
    "HierarchicalBalancerOptions",
    "InsufficientCapacityError",
    "OverReleaseError",
    "QuotaCapacitySource",
    "ResourceCapacitySource",
    "ResourceCapacityStatistics",
    "ResourceCost",
    "SinkCapacityObj",
    "SourceCapacityObj",
    "TryAcquireRejectReason",
    "TryAcquireResult",
    "UntrackedResourceWarning",
    # measured capacity
    "CpuCapacitySource",
    "MemoryCapacitySource",
    "MemorySample",
    "system_cpu_percent",
    "system_memory",
)
