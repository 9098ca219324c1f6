"""The pull half of a bridge: drain a source each time a signal arrives."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any, TypeVar

from .._exceptions import SignalStoppedError
from .._obj import PullObj, PullObj1To1Link, pull_iter
from .._sync import WaitObject

__all__ = ["PullAwaitReset"]

T = TypeVar("T")


class PullAwaitReset(PullObj1To1Link[T, T]):
    """Wait for a signal on ``wait_obj``, drain ``source``, wait for the next signal, and
    so on.

    A drain is one cycle of the source, read to its end (restartable sources such as a
    non-one-shot :class:`SourceBufferObj` start a new cycle on each drain). On its own
    the object waits before its first drain: nothing is yielded before a signal. What
    the signals do:

    * a truthy signal drains the source, then the object waits again;
    * a falsy signal, or a stopped ``wait_obj``, drains once more and ends;
    * a rejected ``wait_obj`` drains once more, then raises the rejection error.

    ``wait_first=False`` is the bridge's behaviour (:class:`PushPullObj`): drain at once,
    and wait only once the source is drained (its buffer is empty); there the signal
    says a value was pushed since.

    Signals coalesce (see :class:`WaitObject`), and none is missed: a signal sent
    before the first pull or while the source is being drained is stored and seen by
    the next wait.
    """

    def __init__(
        self, source: PullObj[T], wait_obj: WaitObject[Any], *, wait_first: bool = True
    ) -> None:
        super().__init__(source)
        if not isinstance(wait_obj, WaitObject):
            raise TypeError(f"wait_obj must be a WaitObject, got {type(wait_obj).__name__}")
        self._wait_obj = wait_obj
        self.wait_first = wait_first
        """Whether a cycle waits for a signal before its first drain (read when a cycle
        starts)."""

    def peek(self) -> T | None:
        """Delegate to the source's ``peek``."""
        peek = getattr(self.source, "peek", None)
        return None if peek is None else peek()

    def _interrupt(self) -> None:
        # A closed bridge must stop waiting: wake the wait with a "finish" signal.
        self._wait_obj.resolve(False)

    async def pull_impl(self) -> AsyncGenerator[T, Any]:
        wait = self.wait_first
        while True:
            if wait:
                if self._closing:
                    return
                try:
                    live = await self._wait_obj.wait()
                except SignalStoppedError:
                    live = False
                except Exception:
                    async for item in pull_iter(self.source):
                        yield item
                    raise
                if self._closed:
                    return
                if not live or self._closing:
                    async for item in pull_iter(self.source):
                        yield item
                    return
            wait = True
            async for item in pull_iter(self.source):
                yield item
