"""SourceCapacityObj / SinkCapacityObj: a unit per pull, a unit back per push."""

from __future__ import annotations

import asyncio

import pytest

from pullpush import CapacitySource, OverReleaseError, SinkCapacityObj, SourceCapacityObj
from pullpush.testing import settle


async def test_each_pull_takes_a_unit_and_each_push_gives_one_back() -> None:
    cap = CapacitySource(2)
    source, sink = SourceCapacityObj(cap), SinkCapacityObj(cap)
    assert [await anext(source), await anext(source)] == [1, 0]
    assert source.peek() is None
    assert await sink.asend("done") is True
    assert source.peek() == 1
    assert await anext(source) == 0
    await source.aclose()


async def test_pull_waits_for_a_push() -> None:
    cap = CapacitySource(1)
    source, sink = SourceCapacityObj(cap), SinkCapacityObj(cap)
    await anext(source)
    pull = asyncio.create_task(anext(source))
    await settle()
    assert not pull.done()
    await sink.asend(None)
    assert await pull == 0
    await source.aclose()


async def test_closing_a_waiting_pull_ends_it_without_taking_a_unit() -> None:
    cap = CapacitySource(0)
    source = SourceCapacityObj(cap)
    pull = asyncio.create_task(anext(source))
    await settle()
    await source.aclose()
    with pytest.raises(StopAsyncIteration):
        await pull
    assert (cap.in_use, cap.waiting) == (0, 0)


async def test_graceful_close_ends_the_stream() -> None:
    cap = CapacitySource(5)
    source = SourceCapacityObj(cap)
    assert await anext(source) == 4
    source.close()
    assert [x async for x in source] == []
    assert cap.in_use == 1


async def test_sink_over_release_raises() -> None:
    with pytest.raises(OverReleaseError):
        await SinkCapacityObj(CapacitySource(1)).asend(None)


def test_capacity_argument_is_checked() -> None:
    with pytest.raises(TypeError, match="capacity must be a CapacitySource"):
        SourceCapacityObj(3)  # type: ignore[arg-type]
