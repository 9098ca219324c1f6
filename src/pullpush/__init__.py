"""pullpush: composable async pull/push streams, hierarchical capacity, and task pool
runners that run inline, in threads, in uvloop worker processes or on Ray."""

from ._bridge import BufferStatistics as BufferStatistics
from ._bridge import OverflowPolicy as OverflowPolicy
from ._bridge import PushPullBufferCacheObj as PushPullBufferCacheObj
from ._bridge import PushPullBufferObj as PushPullBufferObj
from ._bridge import PushPullObj as PushPullObj
from ._combiner import AnyFailedError as AnyFailedError
from ._combiner import AsyncIteratorCombiner as AsyncIteratorCombiner
from ._exceptions import BufferFullError as BufferFullError
from ._exceptions import ChainConsumedError as ChainConsumedError
from ._exceptions import PullPushError as PullPushError
from ._exceptions import PullTimeoutError as PullTimeoutError
from ._exceptions import RaceCutoffError as RaceCutoffError
from ._exceptions import SignalStoppedError as SignalStoppedError
from ._obj import Peekable as Peekable
from ._obj import PullObj as PullObj
from ._obj import PullObj1To1Link as PullObj1To1Link
from ._obj import PullObjLabeledManyTo1Link as PullObjLabeledManyTo1Link
from ._obj import PullObjManyTo1Link as PullObjManyTo1Link
from ._obj import PushObj as PushObj
from ._obj import PushObj1To1 as PushObj1To1
from ._obj import SinkObj as SinkObj
from ._obj import SourceObj as SourceObj
from ._sync import WaitObject as WaitObject
from .pull import BufferMode as BufferMode
from .pull import PullAwaitReset as PullAwaitReset
from .pull import PullTimerObj as PullTimerObj
from .pull import SourceBufferObj as SourceBufferObj
from .pull import SourceCacheObj as SourceCacheObj
from .pull import SourceFromIterable as SourceFromIterable
from .push import PushPostSignalObj as PushPostSignalObj
from .push import PushPreSignalObj as PushPreSignalObj
from .push import SinkCallbacksObj as SinkCallbacksObj
from .push import SinkCollectObj as SinkCollectObj

# isort: split
# push operators
from ._exceptions import SinkIndexError as SinkIndexError
from ._exceptions import SinkLabelError as SinkLabelError
from .pull import PullPushBridgeObj as PullPushBridgeObj
from .pull import PullPushDistributeObj as PullPushDistributeObj
from .push import UNSEEDED as UNSEEDED
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
from .push import PushPreCallbacksObj as PushPreCallbacksObj
from .push import PushReduceObj as PushReduceObj
from .push import PushRoundRobinObj as PushRoundRobinObj
from .push import PushSerialObj as PushSerialObj
from .push import PushWindowObj as PushWindowObj
from .push import PushWindowTimeoutObj as PushWindowTimeoutObj
from .push import TimeoutFrom as TimeoutFrom

# isort: split
# chains
from .chain import BidiProcessor as BidiProcessor
from .chain import BidiProcessorFactory as BidiProcessorFactory
from .chain import BidirectionalChain as BidirectionalChain
from .chain import CompiledPushChain as CompiledPushChain
from .chain import PushChain as PushChain
from .chain import PushChainBuilder as PushChainBuilder
from .chain import PushOpDescriptor as PushOpDescriptor
from .chain import ToArrayResult as ToArrayResult

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
    # sources
    "BufferMode",
    "PullTimerObj",
    "SourceBufferObj",
    "SourceCacheObj",
    "SourceFromIterable",
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
    # push operators
    "PullPushBridgeObj",
    "PullPushDistributeObj",
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
    "PushPreCallbacksObj",
    "PushReduceObj",
    "PushRoundRobinObj",
    "PushSerialObj",
    "PushWindowObj",
    "PushWindowTimeoutObj",
    "SinkIndexError",
    "SinkLabelError",
    "TimeoutFrom",
    "UNSEEDED",
    # chains
    "BidiProcessor",
    "BidiProcessorFactory",
    "BidirectionalChain",
    "CompiledPushChain",
    "PushChain",
    "PushChainBuilder",
    "PushOpDescriptor",
    "ToArrayResult",
)
