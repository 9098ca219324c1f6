"""Run every ``async def`` test on both event loops: asyncio's default and uvloop.

Each async test gets a fresh loop; when the test returns, no asyncio task may be left
pending (operators must clean up what they start).
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable, Coroutine
from typing import Any

import pytest
import uvloop

LOOP_FACTORIES: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
    "asyncio": asyncio.new_event_loop,
    "uvloop": uvloop.new_event_loop,
}


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if inspect.iscoroutinefunction(metafunc.function) and "loop_kind" not in metafunc.fixturenames:
        metafunc.fixturenames.append("loop_kind")
        metafunc.parametrize("loop_kind", list(LOOP_FACTORIES))


def run_on_loop(coro: Coroutine[Any, Any, Any], loop_kind: str) -> Any:
    """Run ``coro`` to completion on a fresh loop of ``loop_kind``; then check that it
    left no task behind, and close the loop the way ``asyncio.run`` does."""
    loop = LOOP_FACTORIES[loop_kind]()
    asyncio.set_event_loop(loop)

    async def checked() -> Any:
        from pullpush.testing import assert_no_pending_tasks

        result = await coro
        await assert_no_pending_tasks()
        return result

    try:
        return loop.run_until_complete(checked())
    finally:
        try:
            pending = asyncio.all_tasks(loop)
            for task in pending:
                task.cancel()
            if pending:
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
        finally:
            asyncio.set_event_loop(None)
            loop.close()


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    if not inspect.iscoroutinefunction(pyfuncitem.obj):
        return None
    loop_kind = pyfuncitem.callspec.params["loop_kind"]
    names = pyfuncitem._fixtureinfo.argnames
    kwargs = {name: pyfuncitem.funcargs[name] for name in names}
    run_on_loop(pyfuncitem.obj(**kwargs), loop_kind)
    return True
