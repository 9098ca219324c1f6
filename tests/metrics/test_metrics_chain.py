"""DefaultChainMetricsCollector: turnstiles, FIFO and by-id latency, sections."""

from __future__ import annotations

import asyncio

import pytest

from pullpush import (
    ChainMetricsSnapshot,
    DefaultChainMetricsCollector,
    RollingWindowStats,
    SectionSnapshot,
)
from pullpush.testing import ManualClock

EMPTY = RollingWindowStats(60.0, 0, 0, 0, None, None)


def test_a_pass_counts_and_observes_the_throughput() -> None:
    clock = ManualClock()
    chain = DefaultChainMetricsCollector(10.0, clock=clock)
    chain.on_turnstile_pass("in")
    chain.on_turnstile_pass("in", at=4)
    snap = chain.snapshot(now=5)
    assert snap.turnstiles["in"].passed == 2
    assert snap.turnstiles["in"].throughput_per_sec == RollingWindowStats(10.0, 2, 2, 1, 1, 1)
    assert snap.turnstiles["in"].throughput_per_sec.rate == 0.2
    assert chain.snapshot(now=10.5).turnstiles["in"].throughput_per_sec.count == 1


def test_fifo_latency_from_every_earlier_checkpoint() -> None:
    chain = DefaultChainMetricsCollector(clock=ManualClock())
    for t in (0, 1, 2):
        chain.on_turnstile_pass("A", at=t)
    chain.on_turnstile_pass("B", at=3)  # pass 0 at B pairs with pass 0 at A (t=0)
    chain.on_turnstile_pass("C", at=5)
    chain.on_turnstile_pass("B", at=6)  # pass 1 pairs with A's pass 1 (t=1)
    latency = chain.snapshot(now=6).stage_latency
    assert list(latency) == ["A->B", "A->C", "B->C"]  # checkpoints in first-pass order
    assert (latency["A->B"].count, latency["A->B"].min, latency["A->B"].max) == (2, 3, 5)
    assert (latency["A->C"].count, latency["A->C"].avg) == (1, 5)
    assert (latency["B->C"].count, latency["B->C"].avg) == (1, 2)


def test_matching_by_id_survives_a_filter_between_checkpoints() -> None:
    chain = DefaultChainMetricsCollector(clock=ManualClock())
    for item, t in ((1, 0), (2, 1), (3, 2)):
        chain.on_turnstile_pass("read", item_id=item, at=t)
    # Item 2 was filtered out: FIFO would pair item 3 with item 2's pass.
    chain.on_turnstile_pass("kept", item_id=1, at=10)
    chain.on_turnstile_pass("kept", item_id=3, at=12)
    chain.on_turnstile_pass("kept", item_id=99, at=13)  # never read: not matched
    stats = chain.snapshot(now=13).stage_latency["read->kept"]
    assert (stats.count, stats.min, stats.max) == (2, 10, 10)


def test_pending_correlation_is_capped_per_turnstile_oldest_evicted() -> None:
    chain = DefaultChainMetricsCollector(max_pending_correlation=2, clock=ManualClock())
    for t in range(4):
        chain.on_turnstile_pass("A", at=t)  # remembers only passes 2 and 3
        chain.on_turnstile_pass("X", item_id=t, at=t)  # remembers only ids 2 and 3
    for _ in range(4):
        chain.on_turnstile_pass("B", at=10)
    for item in range(4):
        chain.on_turnstile_pass("Y", item_id=item, at=10)
    latency = chain.snapshot(now=10).stage_latency
    assert (latency["A->B"].count, latency["A->B"].min, latency["A->B"].max) == (2, 7, 8)
    assert (latency["X->Y"].count, latency["X->Y"].min, latency["X->Y"].max) == (2, 7, 8)
    assert len(chain._turnstiles["X"].by_id) == 2


def test_sections_count_entries_exits_status_and_duration() -> None:
    clock = ManualClock()
    chain = DefaultChainMetricsCollector(clock=clock)
    ok, failed, cancelled, still = (chain.enter_section("llm") for _ in range(4))
    assert ok < failed < cancelled < still  # tokens increase
    clock.advance(2)
    chain.leave_section("llm", ok)
    chain.leave_section("llm", failed, "error", at=3)
    chain.leave_section("llm", cancelled, "cancelled", at=4)
    snap = chain.snapshot()
    assert snap.sections["llm"] == SectionSnapshot(
        entered=4,
        left=3,
        errored=1,
        cancelled=1,
        in_flight=1,
        duration=RollingWindowStats(60.0, 3, 9, 3, 2, 4),
    )
    chain.leave_section("llm", still)


def test_unknown_reused_and_mismatched_tokens_are_ignored() -> None:
    chain = DefaultChainMetricsCollector(clock=ManualClock())
    token = chain.enter_section("a")
    chain.leave_section("a", 12345)  # unknown
    chain.leave_section("b", token)  # another section's name: ignored, still open
    assert chain.snapshot().sections["a"].in_flight == 1
    chain.leave_section("a", token)
    chain.leave_section("a", token)  # reused
    section = chain.snapshot().sections["a"]
    assert (section.entered, section.left, section.in_flight) == (1, 1, 0)
    assert "b" not in chain.snapshot().sections
    with pytest.raises(ValueError, match="status must be"):
        chain.leave_section("a", chain.enter_section("a"), "late")  # type: ignore[arg-type]


async def test_the_section_context_manager_picks_the_status() -> None:
    chain = DefaultChainMetricsCollector(clock=ManualClock())
    with chain.section("s"):
        pass
    with pytest.raises(KeyError), chain.section("s"):
        raise KeyError("x")

    async def cancelled() -> None:
        with chain.section("s"):
            await asyncio.sleep(3600)

    task = asyncio.create_task(cancelled())
    await asyncio.sleep(0)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    section = chain.snapshot().sections["s"]
    assert (section.entered, section.left, section.errored, section.cancelled) == (3, 3, 1, 1)


def test_an_empty_collector_snapshot_and_validation() -> None:
    snap = DefaultChainMetricsCollector(clock=ManualClock(2)).snapshot()
    assert snap == ChainMetricsSnapshot(2, {}, {}, {})
    with pytest.raises(ValueError, match="max_pending_correlation"):
        DefaultChainMetricsCollector(max_pending_correlation=0)
    with pytest.raises(ValueError, match="window"):
        DefaultChainMetricsCollector(window=0)
