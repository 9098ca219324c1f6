"""PushPreSignalObj and PushPostSignalObj on their own: the signal around each forward."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from pullpush import PushPostSignalObj, PushPreSignalObj, SinkObj, WaitObject
from pullpush.testing import RecordingSink, settle


class SignalProbe(SinkObj[Any]):
    """Records each value with whether ``signal`` held a value when it arrived."""

    def __init__(self, signal: WaitObject[Any]) -> None:
        super().__init__()
        self.signal = signal
        self.seen: list[tuple[Any, bool]] = []

    async def next_impl(self, value: Any) -> None:
        self.seen.append((value, self.signal.has_pending))
        self.signal.clear()


async def test_pre_signal_resolves_before_each_forward() -> None:
    signal: WaitObject[None] = WaitObject("pre")
    probe = SignalProbe(signal)
    pre = PushPreSignalObj(probe, signal)
    assert await pre.asend("a")
    assert await pre.asend("b")
    assert probe.seen == [("a", True), ("b", True)]


@pytest.mark.parametrize(
    ("signal_obj", "woken_with"),
    [(PushPreSignalObj, (None, [])), (PushPostSignalObj, (True, [1]))],
    ids=["pre: before the sink has it", "post: after, with True"],
)
async def test_a_waiter_is_woken_before_or_after_the_value_reaches_the_sink(
    signal_obj: Any, woken_with: tuple[Any, list[Any]]
) -> None:
    signal: WaitObject[Any] = WaitObject("signal")
    sink = RecordingSink(yield_to_loop=True)
    pushed = signal_obj(sink, signal)

    async def watch() -> tuple[Any, list[Any]]:
        value = await signal.wait()
        return value, list(sink.items)

    watcher = asyncio.ensure_future(watch())
    await settle()
    assert await pushed.asend(1)
    assert await asyncio.wait_for(watcher, 1) == woken_with
    assert sink.items == [1]


async def test_pre_signal_is_done_with_its_sink_and_drops_later_values_unsignalled() -> None:
    signal: WaitObject[None] = WaitObject("pre")
    sink = RecordingSink(done_after=1)
    pre = PushPreSignalObj(sink, signal)
    assert not await pre.asend(1)
    assert pre.done
    signal.clear()
    assert not await pre.asend(2)
    assert sink.items == [1] and not signal.has_pending


async def test_pre_signal_forwards_close_and_errors_to_its_sink() -> None:
    closed, failed = RecordingSink(), RecordingSink()
    await PushPreSignalObj(closed, WaitObject("pre")).aclose()
    error = ValueError("upstream failed")
    await PushPreSignalObj(failed, WaitObject("pre")).athrow(error)
    assert closed.closed and closed.done
    assert failed.error_received is error and failed.done


async def test_post_signal_resolves_false_once_the_sink_is_done() -> None:
    signal: WaitObject[bool] = WaitObject("post")
    sink = RecordingSink(done_after=2)
    post = PushPostSignalObj(sink, signal)
    assert await post.asend(1)
    assert await signal.wait() is True
    assert not await post.asend(2)
    assert await signal.wait() is False
    assert not await post.asend(3)  # dropped: no signal, nothing forwarded
    assert not signal.has_pending and sink.items == [1, 2]


@pytest.mark.parametrize("end", ["aclose", "athrow"])
async def test_post_signal_close_resolves_false_and_an_error_rejects(end: str) -> None:
    signal: WaitObject[bool] = WaitObject("post")
    sink = RecordingSink()
    post = PushPostSignalObj(sink, signal)
    waiter = asyncio.ensure_future(signal.wait())
    await settle()
    if end == "aclose":
        await post.aclose()
        assert await waiter is False
        assert sink.closed
    else:
        error = ValueError("producer failed")
        await post.athrow(error)
        for wait in (waiter, signal.wait()):  # the rejection is sticky
            with pytest.raises(ValueError, match="producer failed"):
                await wait
        assert sink.error_received is error
    assert post.done and sink.done


@pytest.mark.parametrize("signal_obj", [PushPreSignalObj, PushPostSignalObj])
async def test_wait_obj_is_mutable(signal_obj: Any) -> None:
    first: WaitObject[Any] = WaitObject("first")
    second: WaitObject[Any] = WaitObject("second")
    pushed = signal_obj(RecordingSink(), first)
    pushed.wait_obj = second
    await pushed.asend(1)
    assert second.has_pending and not first.has_pending


@pytest.mark.parametrize("signal_obj", [PushPreSignalObj, PushPostSignalObj])
def test_wait_obj_must_be_a_wait_object(signal_obj: Any) -> None:
    with pytest.raises(TypeError, match="wait_obj must be a WaitObject"):
        signal_obj(RecordingSink(), asyncio.Event())
