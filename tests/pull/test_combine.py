"""Many-to-one combiners: concat, zip, round robin, race, race-robin, race-cutoff,
and their labeled variants."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable
from typing import Any

import pytest

from pullpush import (
    AttributedResult,
    LabeledValue,
    PullConcatObj,
    PullLabeledRaceObj,
    PullLabeledRaceRobinObj,
    PullLabeledRoundRobinObj,
    PullLabeledZipObj,
    PullObj,
    PullObjManyTo1Link,
    PullRaceCutoffObj,
    PullRaceObj,
    PullRaceRobinObj,
    PullRaceValuesObj,
    PullRoundRobinObj,
    PullTimerObj,
    PullZipObj,
    RaceCutoffError,
    SourceBufferObj,
)
from pullpush.testing import (
    TrackedSource,
    assert_items,
    assert_no_pending_tasks,
    assert_raises,
    collect,
    settle,
)


def items(*values: Any) -> SourceBufferObj[Any]:
    return SourceBufferObj(values, one_shot=True)


async def test_concat_drains_sources_one_after_another() -> None:
    second = TrackedSource([3, 4])
    chain = PullConcatObj([items(1, 2), second])
    assert await chain.__anext__() == 1
    assert await chain.__anext__() == 2
    assert second.pulls == 0
    await assert_items(chain, [3, 4])


async def test_eager_concat_prefetches_every_source() -> None:
    second = TrackedSource([3, 4])
    chain = PullConcatObj([items(1, 2), second], eager=True)
    assert await chain.__anext__() == 1
    await settle()
    assert second.pulls == 1
    await assert_items(chain, [2, 3, 4])
    assert chain.eager


async def test_eager_round_robin_reads_every_source_ahead_of_its_turn() -> None:
    for eager in (False, True):
        first, second = TrackedSource([1, 2, 3]), TrackedSource(["a", "b"])
        robin = PullRoundRobinObj([first, second], eager=eager)
        assert await robin.__anext__() == 1
        await settle()
        # On demand only the source whose turn it was is pulled; eager, every source
        # holds one item ahead of the consumer (PullEagerObj's buffer of one).
        assert (first.pulls, second.pulls) == ((2, 1) if eager else (1, 0))
        await assert_items(robin, ["a", 2, "b", 3])
        assert robin.eager is eager
        assert first.closed and second.closed


def _value(item: Any) -> Any:
    return item.value if isinstance(item, AttributedResult) else item


@pytest.mark.parametrize("eager", [False, True])
@pytest.mark.parametrize("combine", [PullZipObj, PullRaceObj, PullRaceRobinObj])
async def test_eager_racing_combiners_read_one_more_item_ahead(
    combine: Callable[..., PullObjManyTo1Link[Any, Any]], eager: bool
) -> None:
    low, high = TrackedSource(range(10)), TrackedSource(range(10, 20))
    # read_ahead=0: a source is pulled again only once its value was taken, so
    # without eager it is at most one item ahead of the consumer.
    combined = combine([low, high], eager=eager, read_ahead=0)
    first = await combined.__anext__()
    await settle(20)
    if combine is PullZipObj:
        assert first == (0, 10)
        taken = {low: 1, high: 1}
    else:
        taken = {low: 0, high: 0, low if _value(first) < 10 else high: 1}
    leads = [source.pulls - count for source, count in taken.items()]
    if eager:
        assert min(leads) >= 2, leads
    else:
        assert max(leads) <= 1, leads
    rest = await collect(combined)
    await settle()
    assert combined.done and low.closed and high.closed
    # Values and order are those of the combiner without eager.
    if combine is PullZipObj:
        assert [first, *rest] == [(n, n + 10) for n in range(10)]
        return
    values = [_value(item) for item in [first, *rest]]
    assert [v for v in values if v < 10] == list(range(10))  # each source in order
    assert [v for v in values if v >= 10] == list(range(10, 20))
    if combine is PullRaceRobinObj:  # still one item from each source per round
        rounds = [{v < 10 for v in values[i : i + 2]} for i in range(0, 20, 2)]
        assert all(r == {True, False} for r in rounds), rounds


async def test_eager_race_attributes_values_to_the_original_sources() -> None:
    """Regression: with eager=True a race attributed each value to the PullEagerObj
    wrapping its source, not to the source the caller passed."""
    low, high = TrackedSource([1]), TrackedSource([2])
    raced = await collect(PullRaceObj([low, high], eager=True))
    assert {result.source for result in raced} == {low, high}


@pytest.mark.parametrize(
    "combine", [PullConcatObj, PullZipObj, PullRoundRobinObj, PullRaceObj, PullRaceRobinObj]
)
async def test_closing_an_eager_combiner_stops_every_read_ahead(
    combine: Callable[..., PullObjManyTo1Link[Any, Any]],
) -> None:
    sources = [TrackedSource(range(100), delay=0.001) for _ in range(3)]
    combined = combine(sources, eager=True)
    await combined.__anext__()
    await settle()
    assert all(source.pulls for source in sources)  # all of them are reading ahead
    await combined.aclose()
    await assert_no_pending_tasks()
    assert combined.closed and all(source.closed for source in sources)
    pulls = [source.pulls for source in sources]
    await asyncio.sleep(0.01)
    assert [source.pulls for source in sources] == pulls  # nothing reads any more


@pytest.mark.parametrize(
    "combine", [PullConcatObj, PullZipObj, PullRoundRobinObj, PullRaceObj, PullRaceRobinObj]
)
async def test_an_eager_combiner_raises_a_source_error_and_closes_the_others(
    combine: Callable[..., PullObjManyTo1Link[Any, Any]],
) -> None:
    healthy = TrackedSource(range(100), delay=0.001)
    failing = TrackedSource([1, 2], fail_at=1, error=OSError("disk"))
    await assert_raises(combine([failing, healthy], eager=True), OSError, match="disk")
    await assert_no_pending_tasks()
    assert healthy.closed and failing.closed


async def test_zip_continues_while_any_source_is_alive() -> None:
    await assert_items(PullZipObj([items(1, 2, 3), items("a")]), [(1, "a"), (2,), (3,)])


async def test_round_robin_rotates_and_drops_exhausted_sources() -> None:
    await assert_items(
        PullRoundRobinObj([items(1, 2, 3), items("a"), items("x", "y")]),
        [1, "a", "x", 2, "y", 3],
    )


class Returns:
    """An async iterator with a final value, as JavaScript generators have."""

    def __init__(self, values: list[Any], final: Any) -> None:
        self.values, self.final = list(values), final

    def __aiter__(self) -> Returns:
        return self

    async def __anext__(self) -> Any:
        if not self.values:
            raise StopAsyncIteration(self.final)
        return self.values.pop(0)


async def test_round_robin_yield_return_emits_final_values() -> None:
    await assert_items(
        PullRoundRobinObj([Returns([1], "done-a"), Returns([2, 3], "done-b")], yield_return=True),
        [1, 2, "done-a", 3, "done-b"],
    )


async def test_race_attributes_each_value_to_its_source() -> None:
    fast = TrackedSource([1, 2], delay=0.001)
    slow = TrackedSource(["s"], delay=0.05)
    results = await collect(PullRaceObj([slow, fast]))
    assert results == [
        AttributedResult(fast, 1),
        AttributedResult(fast, 2),
        AttributedResult(slow, "s"),
    ]


async def test_race_values_yields_raw_values_in_arrival_order_decision_c15() -> None:
    fast = TrackedSource([1, 2], delay=0.001)
    slow = TrackedSource(["s"], delay=0.05)
    race = PullRaceValuesObj([slow, fast], read_ahead=0)
    await assert_items(race, [1, 2, "s"])
    assert race.read_ahead == 0 and not race.yield_return and fast.exhausted


async def test_race_error_propagates_and_closes_the_other_sources() -> None:
    healthy = TrackedSource(range(100), delay=0.01)
    failing = TrackedSource([1], fail_at=0, error=OSError("disk"), yield_to_loop=True)
    await assert_raises(PullRaceObj([healthy, failing]), OSError, match="disk")
    assert healthy.closed


@pytest.mark.parametrize(
    "combine",
    [
        PullRaceObj,
        PullRaceValuesObj,
        lambda s: PullLabeledRaceObj(dict(enumerate(s))),
        PullRaceRobinObj,
        PullZipObj,
        PullRoundRobinObj,
    ],
    ids=["race", "race_values", "labeled_race", "race_robin", "zip", "round_robin"],
)
async def test_leaving_async_for_early_closes_the_combiner_and_its_sources(
    combine: Callable[[list[Any]], PullObj[Any]],
) -> None:
    sources = [TrackedSource(range(100), delay=0.001) for _ in range(2)]
    combined = combine(sources)
    try:
        async for _ in combined:
            break
        await settle()
        assert combined.closed and all(source.closed for source in sources), sources
    finally:
        await combined.aclose()


def racing(kind: str, sources: list[Any]) -> Any:
    if kind == "labeled":
        return PullLabeledRaceObj(dict(enumerate(sources)))
    return PullRaceObj(sources) if kind == "attributed" else PullRaceValuesObj(sources)


RACING = ["attributed", "values", "labeled"]


@pytest.mark.parametrize("kind", RACING)
async def test_leaving_a_race_loop_early_closes_it_regression_c0c1b6f(kind: str) -> None:
    # c0c1b6f let `async for` iterate a race's cycle directly, which the object keeps:
    # `break` dropped nothing, so the race and its pumps stayed open.
    fast, slow = TrackedSource(range(100)), TrackedSource(range(100), delay=0.01)
    race = racing(kind, [fast, slow])
    async for _ in race:
        break
    await settle()
    assert race.closed and fast.closed and slow.closed
    assert "closed" in repr(race)

    async def fail_in_body(race: Any) -> None:
        async for _ in race:
            raise KeyError("body")

    fast, slow = TrackedSource(range(100)), TrackedSource(range(100), delay=0.01)
    race = racing(kind, [fast, slow])
    with pytest.raises(KeyError):
        await fail_in_body(race)
    await settle()
    assert race.closed and fast.closed and slow.closed


@pytest.mark.parametrize("kind", RACING)
async def test_race_close_ends_after_the_item_in_flight(kind: str) -> None:
    source = TrackedSource(range(100), yield_to_loop=True)
    race = racing(kind, [source])
    got = []
    async for item in race:
        got.append(item)
        race.close()
    assert len(got) == 1
    await settle()
    assert race.closed and source.closed


@pytest.mark.parametrize("kind", RACING)
async def test_a_race_pulled_with_anext_stays_open_and_iterates_on(kind: str) -> None:
    source = TrackedSource(range(3))
    race = racing(kind, [source])
    first = await race.__anext__()
    rest = [item async for item in race]
    assert len(rest) == 2 and first not in rest
    assert race.done and not race.closed


async def test_race_robin_gives_every_source_one_value_per_round() -> None:
    fast = TrackedSource(["f1", "f2", "f3"], yield_to_loop=True)
    slow = TrackedSource(["s1", "s2"], delay=0.01)
    got = await collect(PullRaceRobinObj([slow, fast]))
    assert got == ["f1", "s1", "f2", "s2", "f3"]


async def test_race_cutoff_ends_rounds_without_losing_values() -> None:
    slow = TrackedSource(["late"], delay=0.05)
    fast = TrackedSource(["a", "b"], yield_to_loop=True)
    timer = PullTimerObj(0.01)
    got = await collect(PullRaceCutoffObj([fast, slow], timer))
    assert got == ["a", "b", "late"]
    assert timer.closed


async def test_race_cutoff_can_throw() -> None:
    slow = TrackedSource(["late"], delay=1)
    await assert_raises(
        PullRaceCutoffObj([slow], PullTimerObj(0.001), throw_on_cutoff=True), RaceCutoffError
    )
    assert slow.closed


async def test_labeled_combiners() -> None:
    await assert_items(
        PullLabeledZipObj({"n": items(1, 2), "s": items("a")}), [{"n": 1, "s": "a"}, {"n": 2}]
    )
    await assert_items(
        PullLabeledRoundRobinObj({"n": items(1, 2), "s": items("a")}),
        [LabeledValue("n", 1), LabeledValue("s", "a"), LabeledValue("n", 2)],
    )
    raced = await collect(PullLabeledRaceObj({"n": items(1, 2), "s": items("a")}))
    assert sorted(raced) == [LabeledValue("n", 1), LabeledValue("n", 2), LabeledValue("s", "a")]
    robin = await collect(PullLabeledRaceRobinObj({"n": items(1, 2), "s": items("a")}))
    assert sorted(robin[:2]) == [LabeledValue("n", 1), LabeledValue("s", "a")]
    assert robin[2] == LabeledValue("n", 2)


def test_attributed_result_and_labeled_value_are_generic_named_tuples() -> None:
    # Python 3.10 cannot subclass NamedTuple and Generic together: both must still be
    # named tuples there, and subscriptable for annotations such as LabeledValue[str, int].
    for cls, fields in ((AttributedResult, ("source", "value")), (LabeledValue, ("key", "value"))):
        assert cls._fields == fields
        assert issubclass(cls, tuple)
    assert AttributedResult[int].__origin__ is AttributedResult  # type: ignore[attr-defined]
    assert LabeledValue[str, int].__args__ == (str, int)  # type: ignore[attr-defined]
    labeled: LabeledValue[str, int] = LabeledValue("k", 1)
    key, value = labeled
    assert (key, value, labeled.key, labeled.value) == ("k", 1, "k", 1)
    assert labeled == ("k", 1) and labeled._replace(value=2) == LabeledValue("k", 2)
    raced = AttributedResult(source="s", value=3)
    assert (raced.source, raced.value, raced[1]) == ("s", 3, 3)


async def test_labeled_sources_property_and_close_propagation() -> None:
    a, b = TrackedSource([1]), TrackedSource([2])
    chain = PullLabeledRoundRobinObj({"a": a, "b": b})
    assert chain.sources == [a, b]
    await chain.aclose()
    assert a.closed and b.closed


async def gen(*values: Any) -> AsyncGenerator[Any, None]:
    for value in values:
        yield value


def test_combiner_arguments_are_validated() -> None:
    with pytest.raises(TypeError, match=r"sources\[1\] must be an async iterable"):
        PullZipObj([items(), [1, 2]])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="sources must be an iterable"):
        PullConcatObj(items())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="labeled_sources must be a mapping"):
        PullLabeledZipObj([items()])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="cutoff_source"):
        PullRaceCutoffObj([items()], 5)  # type: ignore[arg-type]
