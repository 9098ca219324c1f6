"""Push-to-pull bridges: a push ``sink`` and a pull ``source`` over one buffer.

Data flow of :class:`PushPullBufferObj`::

    producer --asend--> PushPostSignalObj --> collect sink --append--> deque
                             | resolve(True/False), reject(err)            |
                             v                                             v
                        WaitObject ----wakes----> PullAwaitReset <--drain-- buffer source
                                                        |
                                                        v
                                                    consumer
"""

from __future__ import annotations

import dataclasses
from collections import deque
from collections.abc import AsyncGenerator, Iterable
from typing import Any, Generic, Literal, TypeVar, get_args

from ._exceptions import BufferFullError
from ._obj import PullObj, PushObj
from ._sync import ParkingLot, WaitObject
from ._util import check_int
from .pull._signal import PullAwaitReset
from .pull._sources import SourceBufferObj, SourceCacheObj
from .push._signal import PushPostSignalObj
from .push._sinks import SinkCollectObj

__all__ = [
    "BufferStatistics",
    "OverflowPolicy",
    "PushPullBufferCacheObj",
    "PushPullBufferObj",
    "PushPullObj",
]

IN = TypeVar("IN")
OUT = TypeVar("OUT")
T = TypeVar("T")

OverflowPolicy = Literal["block", "drop_oldest", "drop_newest", "error"]
_POLICIES: tuple[str, ...] = get_args(OverflowPolicy)


class PushPullObj(Generic[IN, OUT]):
    """Connect a push ``sink`` to a pull ``source`` that sees what the sink received.

    The sink is wrapped in :class:`PushPostSignalObj` and the source in
    :class:`PullAwaitReset` (``wait_first=False``), sharing one :class:`WaitObject`:
    the pull side drains the source, waits only once it is drained, and each value
    pushed wakes it to drain again. ``await bridge.sink.aclose()`` ends the pull side
    once it has drained; ``await bridge.sink.athrow(exc)`` makes it raise ``exc`` once
    it has drained.

    For the pull side to see what the sink received, both must hold the same buffer,
    e.g. ``PushPullObj(SinkCollectObj(shared), SourceBufferObj(shared))`` over one list
    ``shared`` (:class:`SourceBufferObj` uses the list it is given, not a copy). A
    source that never ends, such as :class:`SourceCacheObj`, is never drained, so the
    pull side then never waits: :class:`PushPullBufferCacheObj` yields its cache once
    per signal instead.
    """

    def __init__(self, sink: PushObj[IN], source: PullObj[OUT]) -> None:
        self.wait_obj: WaitObject[bool] = WaitObject("bridge")
        self._sink = PushPostSignalObj(sink, self.wait_obj)
        self._source = PullAwaitReset(source, self.wait_obj, wait_first=False)

    @property
    def sink(self) -> PushPostSignalObj[IN]:
        """The push side."""
        return self._sink

    @property
    def source(self) -> PullAwaitReset[OUT]:
        """The pull side."""
        return self._source

    def peek(self) -> OUT | None:
        """The item the pull side would yield next, or ``None``."""
        return self._source.peek()


@dataclasses.dataclass(frozen=True)
class BufferStatistics:
    """A snapshot of a :class:`PushPullBufferObj`."""

    size: int
    """Items waiting to be pulled."""
    maxsize: int | None
    """The bound, or ``None`` when unbounded."""
    overflow: str
    """The overflow policy."""
    dropped: int
    """Items dropped by the ``drop_oldest`` / ``drop_newest`` policies so far."""
    blocked_producers: int
    """Producers waiting for room (``block`` policy)."""


class _BufferState:
    """What the two halves of a bounded buffer share besides the deque."""

    __slots__ = ("consumer_closed", "dropped", "maxsize", "overflow", "space")

    def __init__(self, maxsize: int | None, overflow: str) -> None:
        self.maxsize = maxsize
        self.overflow = overflow
        self.dropped = 0
        self.consumer_closed = False
        # Producers blocked on a full buffer park here; each item taken wakes one.
        self.space = ParkingLot()


class _BoundedCollectObj(SinkCollectObj[T]):
    """Append to the shared deque, applying the overflow policy when it is full."""

    def __init__(self, buffer: deque[T], state: _BufferState) -> None:
        super().__init__(buffer)
        self._state = state

    async def next_impl(self, value: T) -> None:
        state = self._state
        buffer: deque[T] = self.buffer  # type: ignore[assignment]
        maxsize = state.maxsize
        if maxsize is not None and len(buffer) >= maxsize:
            policy = state.overflow
            if policy == "block":
                while len(buffer) >= maxsize:
                    if state.consumer_closed:
                        self._done = True  # nobody will ever read: drop and report done
                        return
                    await state.space.park()
                    if self._done:
                        # The sink was closed or failed while this send waited for
                        # room: a done object drops the value (asend returns False),
                        # and the pull side, which may have ended, never sees it.
                        return
            elif policy == "drop_oldest":
                buffer.popleft()
                state.dropped += 1
            elif policy == "drop_newest":
                state.dropped += 1
                return
            else:
                raise BufferFullError(f"buffer is full (maxsize={maxsize}); value not added")
        buffer.append(value)

    async def close_impl(self) -> None:
        # Producers waiting for room would wait forever: wake them to drop their values.
        self._state.space.unpark_all()

    async def throw_impl(self, error: BaseException) -> None:
        await super().throw_impl(error)
        self._state.space.unpark_all()


class _BufferSourceObj(SourceBufferObj[T]):
    """A restartable FIFO source over the shared deque that frees room as it drains."""

    def __init__(self, buffer: deque[T], state: _BufferState) -> None:
        super().__init__(buffer)
        self._queue = buffer
        self._state = state

    async def pull_impl(self) -> AsyncGenerator[T, Any]:
        buffer, space = self._queue, self._state.space
        while buffer and not self._closing:
            item = buffer.popleft()
            if space:
                space.unpark()
            yield item

    async def aclose(self) -> None:
        self._state.consumer_closed = True
        self._state.space.unpark_all()
        await super().aclose()


class PushPullBufferObj(PushPullObj[T, T]):
    """A dynamic FIFO queue: push into ``sink``, pull from ``source``.

    Ordering is preserved and, with the default policy, nothing is ever lost. The
    standard dynamic task source for the pool runners.

    Args:
        buffer: initial items.
        maxsize: the most items held; ``None`` (default) is unbounded, as in the
            original library.
        overflow: what a push into a full buffer does: ``"block"`` (default; the
            ``asend`` waits for room, and returns ``False``, dropping the value, if
            the consumer closes or the sink is closed or failed meanwhile),
            ``"drop_oldest"``, ``"drop_newest"`` (both counted in
            :meth:`statistics`), or ``"error"`` (raises :class:`BufferFullError`).
    """

    def __init__(
        self,
        buffer: Iterable[T] | None = None,
        *,
        maxsize: int | None = None,
        overflow: OverflowPolicy = "block",
    ) -> None:
        if maxsize is not None:
            check_int("maxsize", maxsize, minimum=1)
        if overflow not in _POLICIES:
            raise ValueError(f"overflow must be one of {', '.join(_POLICIES)}; got {overflow!r}")
        self.buffer: deque[T] = deque(buffer or ())
        self._state = _BufferState(maxsize, overflow)
        super().__init__(
            _BoundedCollectObj(self.buffer, self._state),
            _BufferSourceObj(self.buffer, self._state),
        )

    def __len__(self) -> int:
        return len(self.buffer)

    def __repr__(self) -> str:
        s = self.statistics()
        return (
            f"<PushPullBufferObj size={s.size} maxsize={s.maxsize} overflow={s.overflow!r} "
            f"dropped={s.dropped} blocked_producers={s.blocked_producers}>"
        )

    def statistics(self) -> BufferStatistics:
        """Return the buffer's live numbers."""
        state = self._state
        return BufferStatistics(
            size=len(self.buffer),
            maxsize=state.maxsize,
            overflow=state.overflow,
            dropped=state.dropped,
            blocked_producers=len(state.space),
        )


class _CacheOnceObj(SourceCacheObj[T]):
    """A :class:`SourceCacheObj` whose cycle yields the cache once (restartable): one
    drain of the bridge, one value."""

    restartable = True

    async def pull_impl(self) -> AsyncGenerator[T, Any]:
        if not self._closing:
            yield self.cache


class PushPullBufferCacheObj(PushPullObj[T, list[T]]):
    """Push items in; each pull yields the *whole* accumulated list (the same list
    object, growing): the first pull at once, then one per signal (a push, or the
    sink's close, after which the pull side ends)."""

    def __init__(self, buffer: list[T] | None = None) -> None:
        self.buffer: list[T] = [] if buffer is None else buffer
        super().__init__(SinkCollectObj(self.buffer), _CacheOnceObj(self.buffer))
