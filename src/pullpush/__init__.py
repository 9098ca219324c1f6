"""pullpush: composable async pull/push streams, hierarchical capacity, and task pool
runners that run inline, in threads, in uvloop worker processes or on Ray."""

# ruff: noqa: I001 -- imports are grouped by topic, as __all__ is

# bases and protocols
from ._obj import Peekable as Peekable
from ._obj import PullObj as PullObj
from ._obj import PullObj1To1Link as PullObj1To1Link
from ._obj import PullObjLabeledManyTo1Link as PullObjLabeledManyTo1Link
from ._obj import PullObjManyTo1Link as PullObjManyTo1Link
from ._obj import PushObj as PushObj
from ._obj import PushObj1To1 as PushObj1To1
from ._obj import SinkObj as SinkObj
from ._obj import SourceObj as SourceObj

# pull: sources, operators, combiners
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
from .pull import PullPushBridgeObj as PullPushBridgeObj
from .pull import PullPushDistributeObj as PullPushDistributeObj
from .pull import PullRaceCutoffObj as PullRaceCutoffObj
from .pull import PullRaceObj as PullRaceObj
from .pull import PullRaceRobinObj as PullRaceRobinObj
from .pull import PullRaceValuesObj as PullRaceValuesObj
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

# push: sinks, operators, fan-outs
from .push import PushBufferObj as PushBufferObj
from .push import PushBufferReduceObj as PushBufferReduceObj
from .push import PushDistributeObj as PushDistributeObj
from .push import PushFilterObj as PushFilterObj
from .push import PushFlatMapObj as PushFlatMapObj
from .push import PushFlattenObj as PushFlattenObj
from .push import PushForkObj as PushForkObj
from .push import PushLabeledDistributeObj as PushLabeledDistributeObj
from .push import PushMapObj as PushMapObj
from .push import PushObj1ToMany as PushObj1ToMany
from .push import PushObj1ToManyBase as PushObj1ToManyBase
from .push import PushObjLabeled1ToMany as PushObjLabeled1ToMany
from .push import PushObjSerial1To1 as PushObjSerial1To1
from .push import PushPostCallbacksObj as PushPostCallbacksObj
from .push import PushPostSignalObj as PushPostSignalObj
from .push import PushPreCallbacksObj as PushPreCallbacksObj
from .push import PushPreSignalObj as PushPreSignalObj
from .push import PushReduceObj as PushReduceObj
from .push import PushRoundRobinObj as PushRoundRobinObj
from .push import PushSerialObj as PushSerialObj
from .push import PushWindowObj as PushWindowObj
from .push import PushWindowTimeoutObj as PushWindowTimeoutObj
from .push import SinkCallbacksObj as SinkCallbacksObj
from .push import SinkCollectObj as SinkCollectObj
from .push import UNSEEDED as UNSEEDED

# signals, bridges and the combiner
from ._bridge import BufferStatistics as BufferStatistics
from ._bridge import OverflowPolicy as OverflowPolicy
from ._bridge import PushPullBufferCacheObj as PushPullBufferCacheObj
from ._bridge import PushPullBufferObj as PushPullBufferObj
from ._bridge import PushPullObj as PushPullObj
from ._exceptions import AnyFailedError as AnyFailedError
from .pull._combiner import AsyncIteratorCombiner as AsyncIteratorCombiner
from ._sync import WaitObject as WaitObject

# chains
from .chain import BidiProcessor as BidiProcessor
from .chain import BidiProcessorFactory as BidiProcessorFactory
from .chain import BidirectionalChain as BidirectionalChain
from .chain import CompiledPushChain as CompiledPushChain
from .chain import PushChain as PushChain
from .chain import PushChainBuilder as PushChainBuilder
from .chain import PushOpDescriptor as PushOpDescriptor
from .chain import ToArrayResult as ToArrayResult
from .chain import PullChain as PullChain
from .chain import CompiledPullChain as CompiledPullChain
from .chain import PullOpDescriptor as PullOpDescriptor

# capacity
from .capacity import AcquirePath as AcquirePath
from .capacity import AcquireTimeoutError as AcquireTimeoutError
from .capacity import BalancerAction as BalancerAction
from .capacity import BalancerChildConfig as BalancerChildConfig
from .capacity import CapacityAcquireAcceptedEvent as CapacityAcquireAcceptedEvent
from .capacity import CapacityAcquireRejectedEvent as CapacityAcquireRejectedEvent
from .capacity import CapacityIncrementEvent as CapacityIncrementEvent
from .capacity import CapacityMetricsCollector as CapacityMetricsCollector
from .capacity import CapacityReconcileEvent as CapacityReconcileEvent
from .capacity import CapacityReleaseEvent as CapacityReleaseEvent
from .capacity import CapacityResetEvent as CapacityResetEvent
from .capacity import CapacitySetLimitsEvent as CapacitySetLimitsEvent
from .capacity import CapacitySource as CapacitySource
from .capacity import CapacityStatistics as CapacityStatistics
from .capacity import Clock as Clock
from .capacity import CpuCapacitySource as CpuCapacitySource
from .capacity import HierarchicalBalancer as HierarchicalBalancer
from .capacity import HierarchicalBalancerOptions as HierarchicalBalancerOptions
from .capacity import InsufficientCapacityError as InsufficientCapacityError
from .capacity import MemoryCapacitySource as MemoryCapacitySource
from .capacity import MemorySample as MemorySample
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
from .capacity import system_cpu_percent as system_cpu_percent
from .capacity import system_memory as system_memory

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

# runners
from .runners._envelope import EnvelopeBatch as EnvelopeBatch
from .runners._envelope import EnvelopeType as EnvelopeType
from .runners._envelope import Final as Final
from .runners._envelope import IntermediateRun as IntermediateRun
from .runners._envelope import TaskProgressEnvelope as TaskProgressEnvelope
from .runners._hierarchical import HierarchicalTaskPoolRunner as HierarchicalTaskPoolRunner
from .runners._pool import RunnerStatistics as RunnerStatistics
from .runners._scheduled import ScheduledTaskPoolRunner as ScheduledTaskPoolRunner
from .runners._map import map as map
from .runners._map import map_sync as map_sync
from .runners._map import MapStream as MapStream
from .runners._task import RetryPolicy as RetryPolicy
from .runners._task import ScheduledTask as ScheduledTask
from .runners._waitable import TaskContext as TaskContext
from .runners._waitable import Waitable as Waitable
from .runners._waitable import waitable as waitable

# executors
from .executors import Executor as Executor
from .executors import ExecutorSpec as ExecutorSpec
from .executors import ProcessExecutorStatistics as ProcessExecutorStatistics
from .executors import TaskEvents as TaskEvents
from .executors import TaskHandle as TaskHandle
from .executors import TaskRunner as TaskRunner
from .executors import ExecutorClosedError as ExecutorClosedError
from .executors import InlineExecutor as InlineExecutor
from .executors import ProcessExecutor as ProcessExecutor
from .executors import RayExecutor as RayExecutor
from .executors import ThreadExecutor as ThreadExecutor

# metrics
from .metrics import CapacityMetricsSnapshot as CapacityMetricsSnapshot
from .metrics import CapacityRates as CapacityRates
from .metrics import CapacityTotals as CapacityTotals
from .metrics import ChainMetricsSnapshot as ChainMetricsSnapshot
from .metrics import ChainSectionStatus as ChainSectionStatus
from .metrics import ChainToken as ChainToken
from .metrics import Counter as Counter
from .metrics import DefaultCapacityMetricsCollector as DefaultCapacityMetricsCollector
from .metrics import DefaultChainMetricsCollector as DefaultChainMetricsCollector
from .metrics import Duration as Duration
from .metrics import MetricAttrs as MetricAttrs
from .metrics import MetricPoint as MetricPoint
from .metrics import MetricsPump as MetricsPump
from .metrics import MetricsSink as MetricsSink
from .metrics import MetricsSnapshot as MetricsSnapshot
from .metrics import OpenTelemetrySink as OpenTelemetrySink
from .metrics import RollingWindow as RollingWindow
from .metrics import RollingWindowStats as RollingWindowStats
from .metrics import RunnerMetricsCollector as RunnerMetricsCollector
from .metrics import RunnerMetricsSnapshot as RunnerMetricsSnapshot
from .metrics import SectionSnapshot as SectionSnapshot
from .metrics import TurnstileSnapshot as TurnstileSnapshot
from .metrics import UpDown as UpDown
from .metrics import render_prometheus as render_prometheus
from .metrics import snapshot_points as snapshot_points

# errors
from ._exceptions import BrokenExecutorError as BrokenExecutorError
from ._exceptions import BufferFullError as BufferFullError
from ._exceptions import ChainConsumedError as ChainConsumedError
from ._exceptions import ImpossibleCostError as ImpossibleCostError
from ._exceptions import LargeTaskWarning as LargeTaskWarning
from ._exceptions import MessageNotReceivedError as MessageNotReceivedError
from ._exceptions import NoMessageError as NoMessageError
from ._exceptions import NotWaitableError as NotWaitableError
from ._exceptions import UnknownTaskError as UnknownTaskError
from ._exceptions import WaitLimitError as WaitLimitError
from ._exceptions import PullPushError as PullPushError
from ._exceptions import PullTimeoutError as PullTimeoutError
from ._exceptions import RaceCutoffError as RaceCutoffError
from ._exceptions import RemoteTaskError as RemoteTaskError
from ._exceptions import RemoteTraceback as RemoteTraceback
from ._exceptions import SignalStoppedError as SignalStoppedError
from ._exceptions import SinkIndexError as SinkIndexError
from ._exceptions import SinkLabelError as SinkLabelError
from ._exceptions import TaskPicklingError as TaskPicklingError
from ._exceptions import TaskTimeoutError as TaskTimeoutError
from ._exceptions import WorkerCrashedError as WorkerCrashedError

__version__ = "0.1.0.dev0"

__all__ = (
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
    # pull: sources, operators, combiners
    "AttributedResult",
    "BufferMode",
    "LabeledValue",
    "PullAwaitReset",
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
    "PullPushBridgeObj",
    "PullPushDistributeObj",
    "PullRaceCutoffObj",
    "PullRaceObj",
    "PullRaceRobinObj",
    "PullRaceValuesObj",
    "PullReduceObj",
    "PullRoundRobinObj",
    "PullTimeoutObj",
    "PullTimerObj",
    "PullWindowObj",
    "PullWindowTimeoutObj",
    "PullZipObj",
    "SourceBufferObj",
    "SourceCacheObj",
    "SourceFromIterable",
    "TimeoutFrom",
    # push: sinks, operators, fan-outs
    "PushBufferObj",
    "PushBufferReduceObj",
    "PushDistributeObj",
    "PushFilterObj",
    "PushFlatMapObj",
    "PushFlattenObj",
    "PushForkObj",
    "PushLabeledDistributeObj",
    "PushMapObj",
    "PushObj1ToMany",
    "PushObj1ToManyBase",
    "PushObjLabeled1ToMany",
    "PushObjSerial1To1",
    "PushPostCallbacksObj",
    "PushPostSignalObj",
    "PushPreCallbacksObj",
    "PushPreSignalObj",
    "PushReduceObj",
    "PushRoundRobinObj",
    "PushSerialObj",
    "PushWindowObj",
    "PushWindowTimeoutObj",
    "SinkCallbacksObj",
    "SinkCollectObj",
    "UNSEEDED",
    # signals, bridges and the combiner
    "AnyFailedError",
    "AsyncIteratorCombiner",
    "BufferStatistics",
    "OverflowPolicy",
    "PushPullBufferCacheObj",
    "PushPullBufferObj",
    "PushPullObj",
    "WaitObject",
    # chains
    "BidiProcessor",
    "BidiProcessorFactory",
    "BidirectionalChain",
    "CompiledPushChain",
    "PushChain",
    "PushChainBuilder",
    "PushOpDescriptor",
    "ToArrayResult",
    "PullChain",
    "CompiledPullChain",
    "PullOpDescriptor",
    # capacity
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
    "CpuCapacitySource",
    "HierarchicalBalancer",
    "HierarchicalBalancerOptions",
    "InsufficientCapacityError",
    "MemoryCapacitySource",
    "MemorySample",
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
    "system_cpu_percent",
    "system_memory",
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
    # runners
    "EnvelopeBatch",
    "EnvelopeType",
    "Final",
    "HierarchicalTaskPoolRunner",
    "IntermediateRun",
    "RetryPolicy",
    "RunnerStatistics",
    "ScheduledTask",
    "TaskContext",
    "Waitable",
    "waitable",
    "ScheduledTaskPoolRunner",
    # ``map`` is public (``pullpush.map``, ``from pullpush import map``) but not in
    # ``__all__``: ``from pullpush import *`` must not shadow the builtin.
    "map_sync",
    "MapStream",
    "TaskProgressEnvelope",
    # executors
    "Executor",
    "ExecutorSpec",
    "ProcessExecutorStatistics",
    "TaskEvents",
    "TaskHandle",
    "TaskRunner",
    "ExecutorClosedError",
    "InlineExecutor",
    "ProcessExecutor",
    "RayExecutor",
    "ThreadExecutor",
    # metrics
    "CapacityMetricsSnapshot",
    "CapacityRates",
    "CapacityTotals",
    "ChainMetricsSnapshot",
    "ChainSectionStatus",
    "ChainToken",
    "Counter",
    "DefaultCapacityMetricsCollector",
    "DefaultChainMetricsCollector",
    "Duration",
    "MetricAttrs",
    "MetricPoint",
    "MetricsPump",
    "MetricsSink",
    "MetricsSnapshot",
    "OpenTelemetrySink",
    "RollingWindow",
    "RollingWindowStats",
    "RunnerMetricsCollector",
    "RunnerMetricsSnapshot",
    "SectionSnapshot",
    "TurnstileSnapshot",
    "UpDown",
    "render_prometheus",
    "snapshot_points",
    # errors
    "BrokenExecutorError",
    "BufferFullError",
    "ChainConsumedError",
    "ImpossibleCostError",
    "LargeTaskWarning",
    "MessageNotReceivedError",
    "NoMessageError",
    "NotWaitableError",
    "UnknownTaskError",
    "WaitLimitError",
    "PullPushError",
    "PullTimeoutError",
    "RaceCutoffError",
    "RemoteTaskError",
    "RemoteTraceback",
    "SignalStoppedError",
    "SinkIndexError",
    "SinkLabelError",
    "TaskPicklingError",
    "TaskTimeoutError",
    "WorkerCrashedError",
)
