"""Push objects that signal a :class:`WaitObject` around each forward."""

from __future__ import annotations

from typing import Any, TypeVar

from .._obj import PushObj, PushObj1To1
from .._sync import WaitObject

__all__ = ["PushPostSignalObj", "PushPreSignalObj"]

T = TypeVar("T")


def _check_wait_obj(wait_obj: object) -> Any:
    if not isinstance(wait_obj, WaitObject):
        raise TypeError(f"wait_obj must be a WaitObject, got {type(wait_obj).__name__}")
    return wait_obj


class PushPreSignalObj(PushObj1To1[T, T]):
    """Resolve ``wait_obj`` (with ``None``) before forwarding each value."""

    def __init__(self, sink: PushObj[T], wait_obj: WaitObject[Any]) -> None:
        super().__init__(sink)
        self.wait_obj: WaitObject[Any] = _check_wait_obj(wait_obj)

    async def next_impl(self, value: T) -> None:
        self.wait_obj.resolve(None)
        await self.forward(value)


class PushPostSignalObj(PushObj1To1[T, T]):
    """After forwarding each value, resolve ``wait_obj`` with whether the pipeline is
    still live (``True``), or ``False`` once it is done. Closing resolves ``False``;
    failing rejects ``wait_obj`` with the error. This is the push half of a bridge."""

    def __init__(self, sink: PushObj[T], wait_obj: WaitObject[bool]) -> None:
        super().__init__(sink)
        self.wait_obj: WaitObject[bool] = _check_wait_obj(wait_obj)

    async def next_impl(self, value: T) -> None:
        await self.forward(value)
        self.wait_obj.resolve(not self._done)

    async def close_impl(self) -> None:
        try:
            await super().close_impl()
        finally:
            self.wait_obj.resolve(False)

    async def throw_impl(self, error: BaseException) -> None:
        try:
            await super().throw_impl(error)
        finally:
            self.wait_obj.reject(error)
