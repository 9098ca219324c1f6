"""PullAwaitReset on its own: wait for a signal, drain the source, wait for the next."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from typing import Any

import pytest

from pullpush import PullAwaitReset, SourceBufferObj, SourceObj, WaitObject
from pullpush.testing import assert_closed, assert_items, assert_raises, settle


class Batches(SourceObj[Any]):
    """A restartable source that counts its cycles: one per drain."""

    restartable = True

    def __init__(self, *items: Any) -> None:
        super().__init__()
        self.items = list(items)
        self.cycles = 0

    async def pull_impl(self) -> AsyncGenerator[Any, Any]:
        self.cycles += 1
        while self.items:
            yield self.items.pop(0)


async def parked(reset: PullAwaitReset[Any]) -> asyncio.Future[Any]:
    """Start a pull and let it drain the source and park on the signal."""
    pull = asyncio.ensure_future(reset.__anext__())
    await settle()
    assert not pull.done()
    return pull


@pytest.mark.timeout(10)
async def test_waits_for_a_signal_drains_then_waits_for_the_next() -> None:
    source = Batches(1, 2)
    signal: WaitObject[bool] = WaitObject("bridge")
    reset = PullAwaitReset(source, signal)
    pull = await parked(reset)  # nothing before the first signal
    assert source.cycles == 0
    signal.resolve(True)
    assert [await pull, await reset.__anext__()] == [1, 2]
    pull = await parked(reset)
    source.items.append(3)
    await settle()
    assert not pull.done()  # new items alone do not wake it
    signal.resolve(True)
    assert await pull == 3
    assert source.cycles == 2
    pull = await parked(reset)
    source.items.extend([4, 5])
    signal.resolve(False)  # finish: one last drain, then the stream ends
    assert await pull == 4
    await assert_items(reset, [5])
    assert source.cycles == 3


@pytest.mark.timeout(10)
async def test_wait_first_false_drains_at_once_and_waits_once_drained() -> None:
    source = Batches(1, 2)
    signal: WaitObject[bool] = WaitObject("bridge")
    reset = PullAwaitReset(source, signal, wait_first=False)
    assert [await reset.__anext__(), await reset.__anext__()] == [1, 2]
    pull = await parked(reset)
    source.items.append(3)
    signal.resolve(True)
    assert await pull == 3
    pull = await parked(reset)
    signal.resolve(False)
    with pytest.raises(StopAsyncIteration):
        await pull
    assert source.cycles == 3


@pytest.mark.timeout(10)
async def test_signals_sent_while_draining_coalesce_into_one_more_drain() -> None:
    source = Batches(1, 2)
    signal: WaitObject[bool] = WaitObject("bridge")
    reset = PullAwaitReset(source, signal)
    signal.resolve(True)  # before the first pull: stored, not missed
    assert await reset.__anext__() == 1
    signal.resolve(True)  # nobody waits yet: stored, not missed
    signal.resolve(True)
    assert await reset.__anext__() == 2
    pull = await parked(reset)
    assert source.cycles == 2  # the stored signal drained once more, then it waits
    assert signal.waiters == 1
    signal.resolve(False)
    with pytest.raises(StopAsyncIteration):
        await pull
    assert reset.done


@pytest.mark.timeout(10)
@pytest.mark.parametrize("end", ["stop", "reject"])
async def test_an_ended_signal_drains_once_more_then_ends_or_raises(end: str) -> None:
    source = SourceBufferObj([0])
    signal: WaitObject[bool] = WaitObject("bridge")
    reset = PullAwaitReset(source, signal)
    pull = await parked(reset)
    source.buffer.append(1)
    if end == "stop":
        signal.stop()
    else:
        signal.reject(KeyError("producer failed"))
    assert await pull == 0
    if end == "stop":  # the stream ends
        await assert_items(reset, [1])
    else:  # the rejection's error is raised after the last drain
        await assert_raises(reset, KeyError, items=[1], match="producer failed")
    assert_closed(source)


@pytest.mark.timeout(10)
async def test_a_signal_given_before_the_first_pull_is_kept() -> None:
    source = Batches(1)
    signal: WaitObject[bool] = WaitObject("bridge", init_value=True)
    reset = PullAwaitReset(source, signal)
    assert await asyncio.wait_for(reset.__anext__(), 1) == 1  # the initial signal
    pull = await parked(reset)  # that signal was used up
    source.items.append(2)
    signal.resolve(True)
    assert await pull == 2
    await reset.aclose()


@pytest.mark.parametrize("how", ["close", "aclose"])
async def test_closing_while_waiting_ends_the_pull_and_closes_the_source(how: str) -> None:
    source = SourceBufferObj([1])
    reset = PullAwaitReset(source, WaitObject("bridge"))
    pull = await parked(reset)
    if how == "close":
        reset.close()
    else:
        await reset.aclose()
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(pull, 1)
    assert reset.done and source.closing
    await reset.aclose()
    assert source.closed
    assert list(source.buffer) == [1]  # closed while waiting: nothing was drained


async def test_peek_delegates_to_the_source() -> None:
    source = SourceBufferObj(["next"])
    reset = PullAwaitReset(source, WaitObject("bridge", init_value=True))
    assert reset.peek() == "next"
    assert PullAwaitReset(Batches(1), WaitObject("bridge")).peek() is None  # not peekable
    assert await reset.__anext__() == "next"
    assert reset.peek() is None
    await reset.aclose()


def test_wait_obj_must_be_a_wait_object() -> None:
    with pytest.raises(TypeError, match="wait_obj must be a WaitObject"):
        PullAwaitReset(SourceBufferObj(), asyncio.Event())  # type: ignore[arg-type]
