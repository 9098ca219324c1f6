"""Push objects: sinks, one-to-one operators and one-to-many fan-outs."""

from ._signal import PushPostSignalObj as PushPostSignalObj
from ._signal import PushPreSignalObj as PushPreSignalObj
from ._sinks import SinkCallbacksObj as SinkCallbacksObj
from ._sinks import SinkCollectObj as SinkCollectObj

__all__ = (
    "PushPostSignalObj",
    "PushPreSignalObj",
    "SinkCallbacksObj",
    "SinkCollectObj",
)
