"""Pull objects: sources, one-to-one operators and many-to-one combiners."""

from ._signal import PullAwaitReset as PullAwaitReset
from ._sources import BufferMode as BufferMode
from ._sources import PullTimerObj as PullTimerObj
from ._sources import SourceBufferObj as SourceBufferObj
from ._sources import SourceCacheObj as SourceCacheObj
from ._sources import SourceFromIterable as SourceFromIterable

# isort: split
# push operators (pull stages that tee into push sinks)
from ._tee import PullPushBridgeObj as PullPushBridgeObj
from ._tee import PullPushDistributeObj as PullPushDistributeObj

__all__ = (
    "BufferMode",
    "PullAwaitReset",
    "PullTimerObj",
    "SourceBufferObj",
    "SourceCacheObj",
    "SourceFromIterable",
    # push operators (pull stages that tee into push sinks)
    "PullPushBridgeObj",
    "PullPushDistributeObj",
)
