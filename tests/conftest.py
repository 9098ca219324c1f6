"""Run every ``async def`` test on both event loops: asyncio's default and uvloop.

Each async test gets a fresh loop; when the test returns, no asyncio task may be left
pending (operators must clean up what they start). Sync tests that need a loop
(hypothesis properties) take the ``loop_kind`` fixture and call
:func:`pullpush.testing.run`.

A test that parametrizes ``loop_kind`` itself (``@pytest.mark.parametrize("loop_kind",
["uvloop"])``) runs on the loops it names only: heavy stress tests pick one loop each,
and the suite as a whole covers both.
"""

from __future__ import annotations

import inspect

import pytest

from pullpush.testing import LOOP_KINDS, run


def _names_loop_kind(metafunc: pytest.Metafunc) -> bool:
    for marker in metafunc.definition.iter_markers("parametrize"):
        names = marker.args[0]
        if isinstance(names, str):
            names = [n.strip() for n in names.split(",")]
        if "loop_kind" in names:
            return True
    return False


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if _names_loop_kind(metafunc):
        return
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
