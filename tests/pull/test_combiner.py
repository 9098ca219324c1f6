"""AsyncIteratorCombiner: race, round robin, all, race(), any()."""

from __future__ import annotations

import asyncio

import pytest

from pullpush import AnyFailedError, AsyncIteratorCombiner
from pullpush.testing import TrackedSource, collect


async def test_race_generator_interleaves_by_arrival() -> None:
    combiner = AsyncIteratorCombiner(
        TrackedSource(["slow"], delay=0.03), TrackedSource(["f1", "f2"], delay=0.001)
    )
    assert combiner.size == 2
    assert await collect(combiner.race_generator()) == ["f1", "f2", "slow"]
    assert combiner.size == 0


async def test_round_robin_generator_rotates() -> None:
    combiner = AsyncIteratorCombiner(TrackedSource([1, 2, 3]), TrackedSource("ab"))
    assert await collect(combiner.round_robin_generator()) == [1, "a", 2, "b", 3]


async def test_all_pulls_one_from_each_in_source_order() -> None:
    combiner = AsyncIteratorCombiner(
        TrackedSource([1, 2], delay=0.02), TrackedSource(["a"], delay=0.001)
    )
    assert await combiner.all() == [1, "a"]
    assert await combiner.all() == [2]
    assert await combiner.all() == []


async def test_race_keeps_pulls_in_flight_for_the_next_call() -> None:
    slow = TrackedSource(["slow"], delay=0.02)
    fast = TrackedSource(["fast"], delay=0.001)
    combiner = AsyncIteratorCombiner(slow, fast, read_ahead=0)
    assert await combiner.race() == "fast"
    assert await combiner.race() == "slow"  # not lost
    assert slow.pulls == 1
    with pytest.raises(StopAsyncIteration):
        await combiner.race()


async def test_race_discard_round_drops_the_other_pulls() -> None:
    slow = TrackedSource(["slow", "slow2"], delay=0.05)
    combiner = AsyncIteratorCombiner(slow, TrackedSource(["fast"], delay=0.001))
    assert await combiner.race(discard_round=True) == "fast"
    assert await combiner.race() == "slow2"  # "slow" was in flight: dropped
    await combiner.aclose()


async def test_race_discard_round_drops_waiting_values_but_not_an_end() -> None:
    class Ends:
        """Three values at once, then an end with a final value."""

        def __init__(self) -> None:
            self.values = [1, 2, 3]

        def __aiter__(self) -> Ends:
            return self

        async def __anext__(self) -> int:
            if not self.values:
                raise StopAsyncIteration("final")
            return self.values.pop(0)

    slow = TrackedSource(["in flight", "later"], delay=0.05)
    combiner = AsyncIteratorCombiner(Ends(), slow)
    assert await combiner.race(discard_round=True) == 1  # 2, 3 were waiting: dropped
    assert await combiner.race(yield_final_values=True) == "final"
    assert await combiner.race() == "later"  # "in flight" was dropped
    with pytest.raises(StopAsyncIteration):
        await combiner.race()


async def test_race_raises_a_source_error() -> None:
    combiner = AsyncIteratorCombiner(TrackedSource([1], fail_at=0, error=KeyError("k")))
    with pytest.raises(KeyError):
        await combiner.race()


async def test_any_ignores_failures_until_a_success() -> None:
    combiner = AsyncIteratorCombiner(
        TrackedSource([1], fail_at=0, error=KeyError("k")),
        TrackedSource(["ok"], delay=0.01),
    )
    assert await combiner.any() == "ok"


async def test_any_raises_when_every_source_fails() -> None:
    combiner = AsyncIteratorCombiner(
        TrackedSource([1], fail_at=0, error=KeyError("a")),
        TrackedSource([1], fail_at=0, error=OSError("b")),
    )
    with pytest.raises(AnyFailedError) as raised:
        await combiner.any()
    assert {type(e) for e in raised.value.errors} == {KeyError, OSError}


async def test_leaving_a_race_generator_cancels_its_pulls() -> None:
    slow = TrackedSource(range(10), delay=0.05)
    combiner = AsyncIteratorCombiner(slow, TrackedSource([1]))
    generator = combiner.race_generator()
    assert await generator.__anext__() == 1
    await generator.aclose()
    assert "pumping=0" in repr(combiner)
    await combiner.aclose()
    assert slow.closed


async def test_async_with_closes_every_source() -> None:
    sources = [TrackedSource(range(3), delay=0.01) for _ in range(3)]
    async with AsyncIteratorCombiner(*sources) as combiner:
        await combiner.race()
    assert all(s.closed for s in sources)


async def test_cancelling_a_race_waiter_loses_no_value() -> None:
    source = TrackedSource(["a", "b"], delay=0.02)
    combiner = AsyncIteratorCombiner(source)
    waiter = asyncio.create_task(combiner.race())
    await asyncio.sleep(0.001)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert await combiner.race() == "a"
    assert await combiner.race() == "b"


def test_combiner_rejects_bad_arguments() -> None:
    with pytest.raises(TypeError, match=r"sources\[0\] must be an async iterable"):
        AsyncIteratorCombiner([1, 2])  # type: ignore[arg-type]
    source = TrackedSource([1])
    with pytest.raises(ValueError, match=r"sources\[1\] appears twice"):
        AsyncIteratorCombiner(source, source)
    with pytest.raises(ValueError, match="read_ahead must be >= 0"):
        AsyncIteratorCombiner(source, read_ahead=-1)


async def test_read_ahead_bounds_how_far_a_source_runs_ahead() -> None:
    eager = TrackedSource(range(100))
    combiner = AsyncIteratorCombiner(eager, TrackedSource([], delay=0.01), read_ahead=3)
    assert await combiner.race() == 0
    await asyncio.sleep(0.001)
    assert eager.pulls == 5  # the value taken, three waiting, one more pulled and parked
    strict = TrackedSource(range(100))
    combiner2 = AsyncIteratorCombiner(strict, read_ahead=0)
    assert await combiner2.race() == 0
    await asyncio.sleep(0.001)
    assert strict.pulls == 2  # pulled again only once its value was taken
    await combiner.aclose()
    await combiner2.aclose()
