"""A task whose pickled call is several MiB warns once per executor, naming the part
that made it large."""

from __future__ import annotations

import functools

import pytest
from _process_tasks import identity

from pullpush import LargeTaskWarning, ProcessExecutor
from pullpush.executors.process._sizes import LARGE_CALL


@pytest.mark.parametrize("loop_kind", ["uvloop"])
@pytest.mark.timeout(60)
async def test_a_large_argument_warns_once_naming_it(loop_kind: str) -> None:
    big = ["x" * (LARGE_CALL + 1)]  # a list: pickled inline (a str travels out of band)
    async with ProcessExecutor(1) as executor:
        with pytest.warns(LargeTaskWarning, match=r"argument 0 \(list, 4\.0 MiB\)"):
            assert await executor.run(functools.partial(identity, big)) == big
        assert await executor.run(functools.partial(identity, big)) == big  # no 2nd warning


@pytest.mark.parametrize("loop_kind", ["uvloop"])
@pytest.mark.timeout(60)
async def test_a_closure_over_large_data_is_named(loop_kind: str) -> None:
    text = ["y" * (LARGE_CALL + 1)]  # in a list: pickled inline (a str travels out of band)
    async with ProcessExecutor(1) as executor:
        with pytest.warns(LargeTaskWarning, match="the closure variable 'text'"):
            assert await executor.run(lambda: len(text[0])) == len(text[0])
