"""Push objects: sinks, one-to-one operators and one-to-many fan-outs.

Common ground for every push object here:

* **Backpressure.** ``await obj.asend(v)`` returns once ``v`` has been handled
  downstream (forwarded, buffered or dropped); it returns ``False`` once the object
  is done, and a done object drops what it is sent.
* **Ordering and concurrency.** Stateless stages (map, filter, flatten, flat-map,
  callbacks, fan-outs) let concurrent senders overlap, as FireFoundry does.
  Stateful stages (reduce, buffer, window, window-timeout, buffer-reduce) and
  :class:`PushSerialObj` take turns: one value at a time, in arrival order.
* **Callables** may be sync or async; awaitable results are awaited.
* **Cancellation** of a sender interrupts the downstream work of that one value;
  the stage stays usable (a stateful stage releases its turn).
"""

from ._signal import PushPostSignalObj as PushPostSignalObj
from ._signal import PushPreSignalObj as PushPreSignalObj
from ._sinks import SinkCallbacksObj as SinkCallbacksObj
from ._sinks import SinkCollectObj as SinkCollectObj

# isort: split
# push operators
from ._batch import PushBufferObj as PushBufferObj
from ._batch import PushWindowObj as PushWindowObj
from ._fanout import PushDistributeObj as PushDistributeObj
from ._fanout import PushForkObj as PushForkObj
from ._fanout import PushLabeledDistributeObj as PushLabeledDistributeObj
from ._fanout import PushObj1ToMany as PushObj1ToMany
from ._fanout import PushObj1ToManyBase as PushObj1ToManyBase
from ._fanout import PushObjLabeled1ToMany as PushObjLabeled1ToMany
from ._fanout import PushRoundRobinObj as PushRoundRobinObj
from ._reduce import UNSEEDED as UNSEEDED
from ._reduce import PushBufferReduceObj as PushBufferReduceObj
from ._reduce import PushReduceObj as PushReduceObj
from ._serial import PushObjSerial1To1 as PushObjSerial1To1
from ._serial import PushSerialObj as PushSerialObj
from ._timeout import PushWindowTimeoutObj as PushWindowTimeoutObj
from ._timeout import TimeoutFrom as TimeoutFrom
from ._transform import PushFilterObj as PushFilterObj
from ._transform import PushFlatMapObj as PushFlatMapObj
from ._transform import PushFlattenObj as PushFlattenObj
from ._transform import PushMapObj as PushMapObj
from ._transform import PushPostCallbacksObj as PushPostCallbacksObj
from ._transform import PushPreCallbacksObj as PushPreCallbacksObj

__all__ = (
    "PushPostSignalObj",
    "PushPreSignalObj",
    "SinkCallbacksObj",
    "SinkCollectObj",
    # push operators
    "UNSEEDED",
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
    "TimeoutFrom",
)
