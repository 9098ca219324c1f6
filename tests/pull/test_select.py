"""Dedupe and in-order."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from pullpush import PullDedupeObj, PullInOrderObj, SourceBufferObj
from pullpush.testing import assert_items, assert_raises


def items(*values: object) -> SourceBufferObj[object]:
    return SourceBufferObj(values, one_shot=True)


@dataclass
class Job:
    id: int
    name: str


async def test_dedupe_is_global_by_default() -> None:
    await assert_items(PullDedupeObj(items(1, 2, 1, 3, 2, 1)), [1, 2, 3])


async def test_dedupe_consecutive_drops_only_adjacent_repeats() -> None:
    await assert_items(PullDedupeObj(items(1, 1, 2, 1, 1), consecutive=True), [1, 2, 1])


async def test_dedupe_by_key_name_works_on_mappings_and_attributes() -> None:
    await assert_items(
        PullDedupeObj(items({"id": 1}, {"id": 1, "x": 2}, {"id": 2}), "id"), [{"id": 1}, {"id": 2}]
    )
    jobs = [Job(1, "a"), Job(1, "b"), Job(2, "c")]
    await assert_items(PullDedupeObj(items(*jobs), "id"), [jobs[0], jobs[2]])
    await assert_items(PullDedupeObj(items(*jobs), lambda j: j.name), jobs)


async def test_dedupe_cache_can_be_pre_seeded_and_cleared() -> None:
    seen = {1}
    chain = PullDedupeObj(items(1, 2, 1, 2), cache=seen)
    assert await chain.__anext__() == 2
    seen.clear()
    await assert_items(chain, [1, 2])


async def test_in_order_resequences_by_index() -> None:
    jobs = [Job(2, "c"), Job(0, "a"), Job(3, "d"), Job(1, "b")]
    ordered = PullInOrderObj(items(*jobs), "id")
    await assert_items(ordered, [jobs[1], jobs[3], jobs[0], jobs[2]])
    assert ordered.start == 4 and not ordered.cache


async def test_in_order_yields_items_held_behind_a_gap_at_the_end() -> None:
    await assert_items(PullInOrderObj(items(5, 1, 0, 3), lambda n: n), [0, 1, 3, 5])


async def test_in_order_strict_raises_naming_the_missing_index() -> None:
    await assert_raises(
        PullInOrderObj(items(0, 2), lambda n: n, strict=True),
        ValueError,
        items=[0],
        match="index 1",
    )


async def test_in_order_rejects_duplicates() -> None:
    await assert_raises(PullInOrderObj(items(0, 0), lambda n: n), ValueError, match="index 0")
    await assert_raises(PullInOrderObj(items(2, 2), lambda n: n), ValueError, match="index 2")


def test_bad_selectors_are_rejected() -> None:
    with pytest.raises(TypeError, match="obj2id must be a callable"):
        PullDedupeObj(items(), 3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="obj2index"):
        PullInOrderObj(items(), None)  # type: ignore[arg-type]
