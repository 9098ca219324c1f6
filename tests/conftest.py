"""Run every ``async def`` test on both event loops: asyncio's default and uvloop.

Each async test gets a fresh loop; when the test returns, no asyncio task may be left
pending (operators must clean up what they start). Sync tests that need a loop
(hypothesis properties) take the ``loop_kind`` fixture and call
:func:`pullpush.testing.run`.
"""

from __future__ import annotations

import inspect

import pytest

from pullpush.testing import LOOP_KINDS, run


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "loop_kind" in metafunc.fixturenames:
        metafunc.parametrize("loop_kind", LOOP_KINDS)
    elif inspect.iscoroutinefunction(metafunc.function):
        metafunc.fixturenames.append("loop_kind")
        metafunc.parametrize("loop_kind", LOOP_KINDS)


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    if not inspect.iscoroutinefunction(pyfuncitem.obj):
        return None
    loop_kind = pyfuncitem.callspec.params["loop_kind"]
    names = pyfuncitem._fixtureinfo.argnames
    kwargs = {name: pyfuncitem.funcargs[name] for name in names}
    run(pyfuncitem.obj(**kwargs), loop=loop_kind)
    return True
