"""pullpush: composable async pull/push streams, hierarchical capacity, and task pool
runners that run inline, in threads, in uvloop worker processes or on Ray."""

from ._bridge import BufferStatistics as BufferStatistics
from ._bridge import OverflowPolicy as OverflowPolicy
from ._bridge import PushPullBufferCacheObj as PushPullBufferCacheObj
from ._bridge import PushPullBufferObj as PushPullBufferObj
from ._bridge import PushPullObj as PushPullObj
from ._combiner import AnyFailedError as AnyFailedError
from ._combiner import AsyncIteratorCombiner as AsyncIteratorCombiner

# runners and executors
from ._envelope import EnvelopeType as EnvelopeType
from ._envelope import Final as Final
from ._envelope import TaskProgressEnvelope as TaskProgressEnvelope
from ._exceptions import BufferFullError as BufferFullError
from ._exceptions import ChainConsumedError as ChainConsumedError
from ._exceptions import ImpossibleCostError as ImpossibleCostError
from ._exceptions import PullPushError as PullPushError
from ._exceptions import PullTimeoutError as PullTimeoutError
from ._exceptions import RaceCutoffError as RaceCutoffError
from ._exceptions import SignalStoppedError as SignalStoppedError
from ._exceptions import TaskTimeoutError as TaskTimeoutError
from ._obj import Peekable as Peekable
from ._obj import PullObj as PullObj
from ._obj import PullObj1To1Link as PullObj1To1Link
from ._obj import PullObjLabeledManyTo1Link as PullObjLabeledManyTo1Link
from ._obj import PullObjManyTo1Link as PullObjManyTo1Link
from ._obj import PushObj as PushObj
from ._obj import PushObj1To1 as PushObj1To1
from ._obj import SinkObj as SinkObj
from ._obj import SourceObj as SourceObj
from ._runner import HierarchicalTaskPoolRunner as HierarchicalTaskPoolRunner
from ._runner import RunnerStatistics as RunnerStatistics
from ._runner import ScheduledTaskPoolRunner as ScheduledTaskPoolRunner
from ._sync import WaitObject as WaitObject
from ._task import RetryPolicy as RetryPolicy
from ._task import ScheduledTask as ScheduledTask

# capacity
from .capacity import AcquirePath as AcquirePath
from .capacity import AcquireTimeoutError as AcquireTimeoutError
from .capacity import BalancerAction as BalancerAction
from .capacity import BalancerChildConfig as BalancerChildConfig
from .capacity import CapacityAcquireAcceptedEvent as CapacityAcquireAcceptedEvent
from .capacity import CapacityAcquireRejectedEvent as CapacityAcquireRejectedEvent
from .capacity import CapacityIncrementEvent as CapacityIncrementEvent
from .capacity import CapacityMetricsCollector as CapacityMetricsCollector
from .capacity import CapacityReleaseEvent as CapacityReleaseEvent
from .capacity import CapacityResetEvent as CapacityResetEvent
from .capacity import CapacitySetLimitsEvent as CapacitySetLimitsEvent
from .capacity import CapacitySource as CapacitySource
from .capacity import CapacityStatistics as CapacityStatistics
from .capacity import Clock as Clock
from .capacity import HierarchicalBalancer as HierarchicalBalancer
from .capacity import HierarchicalBalancerOptions as HierarchicalBalancerOptions
from .capacity import InsufficientCapacityError as InsufficientCapacityError
from .capacity import OverReleaseError as OverReleaseError
from .capacity import QuotaCapacitySource as QuotaCapacitySource
from .capacity import ResourceCapacitySource as ResourceCapacitySource
from .capacity import ResourceCapacityStatistics as ResourceCapacityStatistics
from .capacity import ResourceCost as ResourceCost
from .capacity import SinkCapacityObj as SinkCapacityObj
from .capacity import SourceCapacityObj as SourceCapacityObj
from .capacity import TryAcquireRejectReason as TryAcquireRejectReason
from .capacity import TryAcquireResult as TryAcquireResult
from .capacity import UntrackedResourceWarning as UntrackedResourceWarning
from .executors import Executor as Executor
from .executors import ExecutorClosedError as ExecutorClosedError
from .executors import InlineExecutor as InlineExecutor

# thread and ray executors
from .executors import RayExecutor as RayExecutor
from .executors import ThreadExecutor as ThreadExecutor
from .pull import AttributedResult as AttributedResult
from .pull import BufferMode as BufferMode
from .pull import LabeledValue as LabeledValue
from .pull import PullAwaitReset as PullAwaitReset
from .pull import PullBufferObj as PullBufferObj
from .pull import PullBufferReduceObj as PullBufferReduceObj
from .pull import PullCallbackObj as PullCallbackObj
from .pull import PullConcatObj as PullConcatObj
from .pull import PullDedupeObj as PullDedupeObj
from .pull import PullEagerObj as PullEagerObj
from .pull import PullFilterObj as PullFilterObj
from .pull import PullFlatMapObj as PullFlatMapObj
from .pull import PullFlattenObj as PullFlattenObj
from .pull import PullInOrderObj as PullInOrderObj
from .pull import PullLabeledRaceObj as PullLabeledRaceObj
from .pull import PullLabeledRaceRobinObj as PullLabeledRaceRobinObj
from .pull import PullLabeledRoundRobinObj as PullLabeledRoundRobinObj
from .pull import PullLabeledZipObj as PullLabeledZipObj
from .pull import PullMapObj as PullMapObj
from .pull import PullRaceCutoffObj as PullRaceCutoffObj
from .pull import PullRaceObj as PullRaceObj
from .pull import PullRaceRobinObj as PullRaceRobinObj
from .pull import PullReduceObj as PullReduceObj
from .pull import PullRoundRobinObj as PullRoundRobinObj
from .pull import PullTimeoutObj as PullTimeoutObj
from .pull import PullTimerObj as PullTimerObj
from .pull import PullWindowObj as PullWindowObj
from .pull import PullWindowTimeoutObj as PullWindowTimeoutObj
from .pull import PullZipObj as PullZipObj
from .pull import SourceBufferObj as SourceBufferObj
from .pull import SourceCacheObj as SourceCacheObj
from .pull import SourceFromIterable as SourceFromIterable
from .pull import TimeoutFrom as TimeoutFrom
from .push import PushPostSignalObj as PushPostSignalObj
from .push import PushPreSignalObj as PushPreSignalObj
from .push import SinkCallbacksObj as SinkCallbacksObj
from .push import SinkCollectObj as SinkCollectObj

# scheduling
from .scheduling import DependencyCycleError as DependencyCycleError
from .scheduling import DependencyGraph as DependencyGraph
from .scheduling import DependencySourceObj as DependencySourceObj
from .scheduling import DuplicateNodeError as DuplicateNodeError
from .scheduling import MissingTaskError as MissingTaskError
from .scheduling import NodeState as NodeState
from .scheduling import NodeStateError as NodeStateError
from .scheduling import PriorityDependencySourceObj as PriorityDependencySourceObj
from .scheduling import PrioritySourceObj as PrioritySourceObj
from .scheduling import SourceClosedError as SourceClosedError
from .scheduling import UnknownNodeError as UnknownNodeError

__version__ = "0.1.0.dev0"

__all__ = (
    # runners and executors
    "EnvelopeType",
    "Executor",
    "ExecutorClosedError",
    "Final",
    "HierarchicalTaskPoolRunner",
    "ImpossibleCostError",
    "InlineExecutor",
    "RetryPolicy",
    "RunnerStatistics",
    "ScheduledTask",
    "ScheduledTaskPoolRunner",
    "TaskProgressEnvelope",
    "TaskTimeoutError",
    # thread and ray executors
    "RayExecutor",
    "ThreadExecutor",
    # bases and protocols
    "Peekable",
    "PullObj",
    "PullObj1To1Link",
    "PullObjLabeledManyTo1Link",
    "PullObjManyTo1Link",
    "PushObj",
    "PushObj1To1",
    "SinkObj",
    "SourceObj",
    # sources
    "BufferMode",
    "PullTimerObj",
    "SourceBufferObj",
    "SourceCacheObj",
    "SourceFromIterable",
    # pull operators
    "AttributedResult",
    "LabeledValue",
    "PullBufferObj",
    "PullBufferReduceObj",
    "PullCallbackObj",
    "PullConcatObj",
    "PullDedupeObj",
    "PullEagerObj",
    "PullFilterObj",
    "PullFlatMapObj",
    "PullFlattenObj",
    "PullInOrderObj",
    "PullLabeledRaceObj",
    "PullLabeledRaceRobinObj",
    "PullLabeledRoundRobinObj",
    "PullLabeledZipObj",
    "PullMapObj",
    "PullRaceCutoffObj",
    "PullRaceObj",
    "PullRaceRobinObj",
    "PullReduceObj",
    "PullRoundRobinObj",
    "PullTimeoutObj",
    "PullWindowObj",
    "PullWindowTimeoutObj",
    "PullZipObj",
    "TimeoutFrom",
    # signals and bridges
    "BufferStatistics",
    "OverflowPolicy",
    "PullAwaitReset",
    "PushPostSignalObj",
    "PushPreSignalObj",
    "PushPullBufferCacheObj",
    "PushPullBufferObj",
    "PushPullObj",
    "WaitObject",
    # push sinks
    "SinkCallbacksObj",
    "SinkCollectObj",
    # combiner
    "AnyFailedError",
    "AsyncIteratorCombiner",
    # errors
    "BufferFullError",
    "ChainConsumedError",
    "PullPushError",
    "PullTimeoutError",
    "RaceCutoffError",
    "SignalStoppedError",
    # capacity
    "AcquirePath",
    "AcquireTimeoutError",
    "BalancerAction",
    "BalancerChildConfig",
    "CapacityAcquireAcceptedEvent",
    "CapacityAcquireRejectedEvent",
    "CapacityIncrementEvent",
    "CapacityMetricsCollector",
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
    # scheduling
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
