"""One-to-many push objects: fork (sequential and concurrent), round robin,
distribute, labeled distribute."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pullpush import (
    PushDistributeObj,
    PushForkObj,
    PushLabeledDistributeObj,
    PushObj1ToMany,
    PushObjLabeled1ToMany,
    PushRoundRobinObj,
    SinkCollectObj,
    SinkIndexError,
    SinkLabelError,
)
from pullpush.testing import RecordingSink
from pullpush.testing import run as run_on_loop


async def test_fork_sends_the_same_object_to_every_branch_in_order() -> None:
    log: list[str] = []

    class Branch(SinkCollectObj[Any]):
        def __init__(self, name: str) -> None:
            super().__init__()
            self.name = name

        async def next_impl(self, value: Any) -> None:
            log.append(self.name)
            await super().next_impl(value)

    a, b = Branch("a"), Branch("b")
    fork = PushForkObj([a, b])
    item = {"k": 1}
    await fork.asend(item)
    assert log == ["a", "b"]
    assert a.buffer[0] is item and b.buffer[0] is item


async def test_fork_drops_done_branches_and_is_done_when_all_are() -> None:
    short, long = RecordingSink(done_after=1), RecordingSink(done_after=2)
    fork = PushForkObj([short, long])
    assert await fork.asend(1) is True
    assert fork.sinks == [long]
    assert await fork.asend(2) is False
    assert fork.done and short.items == [1] and long.items == [1, 2]


async def test_fork_close_and_throw_reach_branches_only_when_forwarded() -> None:
    a, b = RecordingSink(), RecordingSink()
    await PushForkObj([a]).aclose()
    assert not a.closed
    await PushForkObj([a, b], forward_close=True).aclose()
    assert a.closed and b.closed
    c = RecordingSink()
    error = ValueError("x")
    await PushForkObj([c], forward_errors=True).athrow(error)
    assert c.error_received is error


async def test_forwarded_close_reaches_every_branch_even_if_one_fails() -> None:
    class Failing(RecordingSink):
        async def close_impl(self) -> None:
            raise KeyError("close")

    good = RecordingSink()
    with pytest.raises(KeyError):
        await PushForkObj([Failing(), good], forward_close=True).aclose()
    assert good.closed


async def test_sequential_fork_error_stops_later_branches() -> None:
    bad, later = RecordingSink(fail_at=0), RecordingSink()
    with pytest.raises(RuntimeError):
        await PushForkObj([bad, later]).asend(1)
    assert later.items == []


async def test_concurrent_fork_delivers_to_branches_together() -> None:
    started: list[str] = []
    gate = asyncio.Event()

    class Slow(SinkCollectObj[Any]):
        def __init__(self, name: str) -> None:
            super().__init__()
            self.name = name

        async def next_impl(self, value: Any) -> None:
            started.append(self.name)
            if len(started) == 2:
                gate.set()
            await gate.wait()  # deadlocks if the branches ran one after another
            await super().next_impl(value)

    a, b = Slow("a"), Slow("b")
    fork = PushForkObj([a, b], concurrent=True)
    assert await fork.asend(1) is True
    assert a.buffer == [1] and b.buffer == [1]


async def test_concurrent_fork_waits_for_all_branches_then_raises_the_first_error() -> None:
    first_bad = RecordingSink(fail_at=0, error=ValueError("first"))
    slow_ok = RecordingSink(delay=0.002)
    second_bad = RecordingSink(fail_at=0, error=KeyError("second"))
    fork = PushForkObj([first_bad, slow_ok, second_bad], concurrent=True)
    with pytest.raises(ValueError, match="first"):
        await fork.asend(1)
    assert slow_ok.items == [1]  # finished although a sibling failed


async def test_concurrent_fork_cancellation_cancels_branches_and_leaks_no_task() -> None:
    a, b = RecordingSink(delay=60), RecordingSink(delay=60)
    fork = PushForkObj([a, b], concurrent=True)
    send = asyncio.ensure_future(fork.asend(1))
    await asyncio.sleep(0.001)
    send.cancel()
    with pytest.raises(asyncio.CancelledError):
        await send
    assert [t for t in asyncio.all_tasks() if t is not asyncio.current_task()] == []
    assert a.items == [] and b.items == []


async def test_concurrent_fork_drops_done_branches() -> None:
    a, b = RecordingSink(done_after=1), RecordingSink()
    fork = PushForkObj([a, b], concurrent=True)
    await fork.asend(1)
    await fork.asend(2)
    assert fork.sinks == [b] and a.items == [1] and b.items == [1, 2]


async def test_round_robin_cycles_and_skips_done_sinks() -> None:
    sinks = [RecordingSink(), RecordingSink(done_after=1), RecordingSink()]
    rr = PushRoundRobinObj(sinks)
    for v in range(7):
        await rr.asend(v)
    assert [s.items for s in sinks] == [[0, 3, 5], [1], [2, 4, 6]]


async def test_distribute_routes_by_index_and_keeps_positions() -> None:
    high, low = RecordingSink(done_after=1), RecordingSink()
    d = PushDistributeObj([high, low], lambda n: 0 if n > 10 else 1)
    for v in [1, 50, 2, 60, 3]:
        await d.asend(v)
    assert high.items == [50] and low.items == [1, 2, 3]
    assert not d.done


async def test_distribute_async_and_string_selectors() -> None:
    a, b = RecordingSink(), RecordingSink()

    async def pick(item: dict[str, int]) -> int:
        return item["to"]

    await PushDistributeObj([a, b], pick).asend({"to": 1})
    await PushDistributeObj([a, b], "to").asend({"to": 0})
    assert a.items == [{"to": 0}] and b.items == [{"to": 1}]


async def test_distribute_out_of_range_index_raises_index_error_naming_it() -> None:
    d = PushDistributeObj([SinkCollectObj(), SinkCollectObj()], lambda v: v)
    for bad in (2, -1):
        with pytest.raises(IndexError, match=f"index {bad}") as raised:
            await d.asend(bad)
        assert isinstance(raised.value, SinkIndexError) and raised.value.index == bad
    with pytest.raises(TypeError, match="int"):
        await d.asend("0")


async def test_distribute_is_done_when_every_sink_is() -> None:
    a, b = RecordingSink(done_after=1), RecordingSink(done_after=1)
    d = PushDistributeObj([a, b], lambda v: v)
    assert await d.asend(0) is True
    assert await d.asend(1) is False and d.done


async def test_labeled_distribute_drops_or_raises_for_missing_labels() -> None:
    errors, infos = RecordingSink(), RecordingSink()
    d = PushLabeledDistributeObj({"error": errors, "info": infos}, "level")
    for item in [{"level": "info"}, {"level": "debug"}, {"level": "error"}]:
        assert await d.asend(item) is True
    assert errors.items == [{"level": "error"}] and infos.items == [{"level": "info"}]

    strict = PushLabeledDistributeObj({"a": RecordingSink()}, str, throw_on_nonexistence=True)
    with pytest.raises(KeyError, match="no sink is labeled 'b'") as raised:
        await strict.asend("b")
    assert isinstance(raised.value, SinkLabelError) and raised.value.label == "b"


async def test_labeled_fanout_base_and_done_tracking() -> None:
    a, b = RecordingSink(done_after=1), RecordingSink(done_after=1)
    labeled: PushObjLabeled1ToMany[str, int, int] = PushObjLabeled1ToMany(
        {"a": a, "b": b}, forward_close=True
    )
    assert labeled.sinks == [a, b]
    assert await labeled.send_to_label(1, "a") is False
    assert not labeled.done
    assert await labeled.send_to_label(2, "b") is False
    assert labeled.done
    await labeled.aclose()
    assert not a.closed  # already done: nothing is forwarded


async def test_send_to_sink_removes_a_done_sink() -> None:
    a, b = RecordingSink(done_after=1), RecordingSink()
    many: PushObj1ToMany[int, int] = PushObj1ToMany([a, b])
    assert await many.send_to_sink(1, 0) is False
    assert many.sinks == [b]


def test_fanouts_validate_their_sinks() -> None:
    with pytest.raises(ValueError, match="sinks"):
        PushForkObj([])
    with pytest.raises(TypeError, match=r"sinks\[1\]"):
        PushRoundRobinObj([SinkCollectObj(), object()])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="sinks"):
        PushForkObj(SinkCollectObj())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="selector"):
        PushDistributeObj([SinkCollectObj()], 5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="labeled_sinks"):
        PushLabeledDistributeObj({}, "x")
    with pytest.raises(TypeError, match="labeled_sinks"):
        PushLabeledDistributeObj([SinkCollectObj()], "x")  # type: ignore[arg-type]


@settings(max_examples=30, deadline=None)
@given(
    values=st.lists(st.integers(), max_size=40),
    branches=st.integers(min_value=1, max_value=4),
    concurrent=st.booleans(),
)
def test_fork_and_round_robin_deliver_every_value_exactly_once(
    loop_kind: str, values: list[int], branches: int, concurrent: bool
) -> None:
    async def scenario() -> None:
        fork_sinks = [RecordingSink(yield_to_loop=True) for _ in range(branches)]
        fork = PushForkObj(fork_sinks, concurrent=concurrent)
        rr_sinks = [RecordingSink(yield_to_loop=True) for _ in range(branches)]
        rr = PushRoundRobinObj(rr_sinks)
        for v in values:
            await fork.asend(v)
            await rr.asend(v)
        assert all(s.items == values for s in fork_sinks)
        assert sorted(v for s in rr_sinks for v in s.items) == sorted(values)
        for i, s in enumerate(rr_sinks):
            assert s.items == values[i::branches]

    run_on_loop(scenario(), loop=loop_kind)
