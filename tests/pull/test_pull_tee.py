"""PullPushBridgeObj and PullPushDistributeObj: pull stages that tee into push sinks
(push objects or plain callables, no priming: decision C20)."""

from __future__ import annotations

import pytest

from pullpush import (
    PullPushBridgeObj,
    PullPushDistributeObj,
    SinkCollectObj,
    SinkLabelError,
    SourceBufferObj,
)
from pullpush.testing import RecordingSink, TrackedSource, assert_items, assert_raises


async def test_bridge_pushes_each_item_into_every_sink_then_yields_it() -> None:
    seen_by_async: list[int] = []

    async def record(item: int) -> None:
        seen_by_async.append(item)

    push_sink = RecordingSink()
    plain: list[int] = []
    bridge = PullPushBridgeObj(SourceBufferObj([1, 2, 3], True), push_sink, plain.append, record)
    await assert_items(bridge, [1, 2, 3])
    assert push_sink.items == plain == seen_by_async == [1, 2, 3]
    assert push_sink.closed  # the end of the stream closes push sinks


async def test_bridge_sink_sees_the_item_before_the_consumer() -> None:
    sink = SinkCollectObj()
    bridge = PullPushBridgeObj(SourceBufferObj([1, 2], True), sink)
    async for item in bridge:
        assert sink.buffer[-1] == item


async def test_bridge_closing_early_closes_sinks_and_source() -> None:
    source = TrackedSource(range(10))
    sink = RecordingSink()
    bridge = PullPushBridgeObj(source, sink)
    async for item in bridge:
        if item == 2:
            break
    await bridge.aclose()
    assert sink.items == [0, 1, 2] and sink.closed and source.closed


async def test_bridge_upstream_error_is_thrown_into_sinks() -> None:
    source = TrackedSource(range(5), fail_at=2, error=ValueError("upstream"))
    sink = RecordingSink()
    await assert_raises(PullPushBridgeObj(source, sink), ValueError, items=[0, 1])
    assert isinstance(sink.error_received, ValueError)


async def test_bridge_drops_a_push_sink_once_it_is_done() -> None:
    short = RecordingSink(done_after=1)
    bridge = PullPushBridgeObj(SourceBufferObj([1, 2, 3], True), short)
    await assert_items(bridge, [1, 2, 3])
    assert short.items == [1] and bridge.sinks == []


async def test_distribute_tees_by_selector_and_still_yields_everything() -> None:
    urgent, normal = RecordingSink(), []
    items = [{"p": "urgent", "n": 1}, {"p": "normal", "n": 2}, {"p": "other", "n": 3}]
    tee = PullPushDistributeObj(
        SourceBufferObj(list(items), True), {"urgent": urgent, "normal": normal.append}, "p"
    )
    await assert_items(tee, items)
    assert urgent.items == [items[0]] and normal == [items[1]] and urgent.closed


async def test_distribute_async_selector_and_strict_mode() -> None:
    async def parity(n: int) -> str:
        return "even" if n % 2 == 0 else "odd"

    evens: list[int] = []
    tee = PullPushDistributeObj(SourceBufferObj([1, 2, 3, 4], True), {"even": evens.append}, parity)
    await assert_items(tee, [1, 2, 3, 4])
    assert evens == [2, 4]

    strict = PullPushDistributeObj(
        SourceBufferObj([2, 3], True), {"even": evens.append}, parity, throw_on_nonexistence=True
    )
    error = await assert_raises(strict, SinkLabelError, items=[2])
    assert "odd" in str(error)


def test_tee_sinks_are_validated() -> None:
    source = SourceBufferObj([1])
    with pytest.raises(TypeError, match=r"sinks\[0\]"):
        PullPushBridgeObj(source, 5)
    with pytest.raises(TypeError, match="sink_map"):
        PullPushDistributeObj(source, [print], "x")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"sink_map\['a'\]"):
        PullPushDistributeObj(source, {"a": 3}, "x")
    with pytest.raises(TypeError, match="obj2selector"):
        PullPushDistributeObj(source, {}, 3)  # type: ignore[arg-type]
