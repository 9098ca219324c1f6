"""Run a coroutine on a fresh event loop of a chosen kind, checking it cleaned up."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import uvloop

from ..executors._thread_worker import wind_down
from ._leaks import assert_no_pending_tasks

__all__ = ["LOOP_KINDS", "run"]

T = TypeVar("T")

_FACTORIES: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
    "asyncio": asyncio.new_event_loop,
    "uvloop": uvloop.new_event_loop,
}

LOOP_KINDS: tuple[str, ...] = tuple(_FACTORIES)
"""The event loops pullpush is tested on: ``"asyncio"`` and ``"uvloop"``."""


def run(coro: Coroutine[Any, Any, T], *, loop: str = "asyncio", check_tasks: bool = True) -> T:
    """Run ``coro`` to completion on a fresh loop of kind ``loop`` and close the loop
    as :func:`asyncio.run` does.

    With ``check_tasks`` (default), fail if the coroutine left any asyncio task
    pending: streams and runners must clean up what they start.
    """
    if loop not in _FACTORIES:
        coro.close()
        raise ValueError(f"loop must be one of {', '.join(LOOP_KINDS)}; got {loop!r}")
    event_loop = _FACTORIES[loop]()
    asyncio.set_event_loop(event_loop)

    async def checked() -> T:
        result = await coro
        if check_tasks:
            await assert_no_pending_tasks()
        return result

    try:
        return event_loop.run_until_complete(checked())
    finally:
        try:
            wind_down(event_loop)
            event_loop.run_until_complete(event_loop.shutdown_default_executor())
        finally:
            asyncio.set_event_loop(None)
            event_loop.close()
