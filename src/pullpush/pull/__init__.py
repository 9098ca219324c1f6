"""Pull objects: sources, one-to-one operators and many-to-one combiners."""

from ._batch import PullBufferObj as PullBufferObj
from ._batch import PullWindowObj as PullWindowObj
from ._batch import PullWindowTimeoutObj as PullWindowTimeoutObj
from ._batch import TimeoutFrom as TimeoutFrom
from ._combine import AttributedResult as AttributedResult
from ._combine import LabeledValue as LabeledValue
from ._combine import PullConcatObj as PullConcatObj
from ._combine import PullLabeledRaceObj as PullLabeledRaceObj
from ._combine import PullLabeledRaceRobinObj as PullLabeledRaceRobinObj
from ._combine import PullLabeledRoundRobinObj as PullLabeledRoundRobinObj
from ._combine import PullLabeledZipObj as PullLabeledZipObj
from ._combine import PullRaceCutoffObj as PullRaceCutoffObj
from ._combine import PullRaceObj as PullRaceObj
from ._combine import PullRaceRobinObj as PullRaceRobinObj
from ._combine import PullRaceValuesObj as PullRaceValuesObj
from ._combine import PullRoundRobinObj as PullRoundRobinObj
from ._combine import PullZipObj as PullZipObj
from ._flow import PullEagerObj as PullEagerObj
from ._flow import PullTimeoutObj as PullTimeoutObj
from ._select import PullDedupeObj as PullDedupeObj
from ._select import PullInOrderObj as PullInOrderObj
from ._signal import PullAwaitReset as PullAwaitReset
from ._sources import BufferMode as BufferMode
from ._sources import PullTimerObj as PullTimerObj
from ._sources import SourceBufferObj as SourceBufferObj
from ._sources import SourceCacheObj as SourceCacheObj
from ._sources import SourceFromIterable as SourceFromIterable
from ._transform import PullBufferReduceObj as PullBufferReduceObj
from ._transform import PullCallbackObj as PullCallbackObj
from ._transform import PullFilterObj as PullFilterObj
from ._transform import PullFlatMapObj as PullFlatMapObj
from ._transform import PullFlattenObj as PullFlattenObj
from ._transform import PullMapObj as PullMapObj
from ._transform import PullReduceObj as PullReduceObj

# isort: split
# push operators (pull stages that tee into push sinks)
from ._tee import PullPushBridgeObj as PullPushBridgeObj
from ._tee import PullPushDistributeObj as PullPushDistributeObj

__all__ = (
    # sources
    "BufferMode",
    "PullTimerObj",
    "SourceBufferObj",
    "SourceCacheObj",
    "SourceFromIterable",
    # one-to-one
    "PullAwaitReset",
    "PullBufferObj",
    "PullBufferReduceObj",
    "PullCallbackObj",
    "PullDedupeObj",
    "PullEagerObj",
    "PullFilterObj",
    "PullFlatMapObj",
    "PullFlattenObj",
    "PullInOrderObj",
    "PullMapObj",
    "PullReduceObj",
    "PullTimeoutObj",
    "PullWindowObj",
    "PullWindowTimeoutObj",
    "TimeoutFrom",
    # many-to-one
    "AttributedResult",
    "LabeledValue",
    "PullConcatObj",
    "PullLabeledRaceObj",
    "PullLabeledRaceRobinObj",
    "PullLabeledRoundRobinObj",
    "PullLabeledZipObj",
    "PullRaceCutoffObj",
    "PullRaceObj",
    "PullRaceRobinObj",
    "PullRaceValuesObj",
    "PullRoundRobinObj",
    "PullZipObj",
    # push operators (pull stages that tee into push sinks)
    "PullPushBridgeObj",
    "PullPushDistributeObj",
)
