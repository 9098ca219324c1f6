"""Capacity metrics events: every acquire path is metered (C9), emitting is fire-and-forget."""

from __future__ import annotations

import asyncio
import logging

import pytest

from pullpush import (
    CapacityAcquireAcceptedEvent,
    CapacityAcquireRejectedEvent,
    CapacityIncrementEvent,
    CapacityMetricsCollector,
    CapacityReconcileEvent,
    CapacityReleaseEvent,
    CapacityResetEvent,
    CapacitySetLimitsEvent,
    ResourceCapacitySource,
)
from pullpush.testing import ManualClock, settle


class Recorder:
    """A collector that keeps every event, in order."""

    def __init__(self) -> None:
        self.events: list[object] = []

    def on_acquire_accepted(self, event: CapacityAcquireAcceptedEvent) -> None:
        self.events.append(event)

    def on_acquire_rejected(self, event: CapacityAcquireRejectedEvent) -> None:
        self.events.append(event)

    def on_release(self, event: CapacityReleaseEvent) -> None:
        self.events.append(event)

    def on_reset(self, event: CapacityResetEvent) -> None:
        self.events.append(event)

    def on_increment(self, event: CapacityIncrementEvent) -> None:
        self.events.append(event)

    def on_set_limits(self, event: CapacitySetLimitsEvent) -> None:
        self.events.append(event)

    def snapshot(self, now: float | None = None) -> object:
        return list(self.events)


class Broken(Recorder):
    def on_acquire_accepted(self, event: CapacityAcquireAcceptedEvent) -> None:
        raise RuntimeError("collector bug")


def _source(recorder: Recorder, clock: ManualClock | None = None) -> ResourceCapacitySource:
    source = ResourceCapacitySource({"cpu": 2}, metrics=recorder, clock=clock or ManualClock())
    recorder.events.clear()  # the construction event is tested on its own
    return source


def test_recorder_satisfies_the_protocol() -> None:
    assert isinstance(Recorder(), CapacityMetricsCollector)


def test_one_set_limits_event_at_construction() -> None:
    recorder = Recorder()
    ResourceCapacitySource({"cpu": 2}, metrics=recorder, clock=ManualClock(7.0))
    assert recorder.events == [CapacitySetLimitsEvent(7.0, {}, {"cpu": 2}, {"cpu": 2})]


async def test_every_acquire_path_emits_an_accepted_event_naming_it() -> None:
    recorder = Recorder()
    source = _source(recorder)
    source.try_acquire({"cpu": 1})
    source.acquire_immediate({"cpu": 1})
    waiting = asyncio.create_task(source.acquire({"cpu": 1}))
    await settle()
    source.release({"cpu": 1})
    await waiting
    accepted = [e for e in recorder.events if isinstance(e, CapacityAcquireAcceptedEvent)]
    assert [e.path for e in accepted] == ["try_acquire", "acquire_immediate", "acquire"]
    assert [e.available_after for e in accepted] == [{"cpu": 1}, {"cpu": 0}, {"cpu": 0}]


def test_can_acquire_is_advisory_and_emits_nothing() -> None:
    recorder = Recorder()
    _source(recorder).can_acquire({"cpu": 1})
    assert recorder.events == []


def test_only_try_acquire_emits_rejections_with_a_reason() -> None:
    recorder = Recorder()
    source = _source(recorder, ManualClock(3.0))
    source.try_acquire({"cpu": 5})
    source.try_acquire({"cpu": -1})
    assert recorder.events == [
        CapacityAcquireRejectedEvent(3.0, {"cpu": 5}, {"cpu": 2}, "insufficient_capacity"),
        CapacityAcquireRejectedEvent(3.0, {"cpu": -1}, {"cpu": 2}, "invalid_cost"),
    ]


def test_release_reset_increment_and_set_limits_events() -> None:
    recorder = Recorder()
    clock = ManualClock()
    source = _source(recorder, clock)
    source.acquire_immediate({"cpu": 2})
    recorder.events.clear()
    clock.advance(1.0)
    source.release({"cpu": 1})
    source.increment({"cpu": 1}, cap={"cpu": 2})
    source.reset()
    source.set_limits({"cpu": 3})
    assert recorder.events == [
        CapacityReleaseEvent(1.0, {"cpu": 1}, {"cpu": 1}),
        CapacityIncrementEvent(1.0, {"cpu": 1}, {"cpu": 2}, {"cpu": 2}),
        CapacityResetEvent(1.0, {"cpu": 2}, {"cpu": 2}),
        CapacitySetLimitsEvent(1.0, {"cpu": 2}, {"cpu": 3}, {"cpu": 3}),
    ]


def test_a_failing_collector_does_not_break_capacity(caplog: pytest.LogCaptureFixture) -> None:
    source = ResourceCapacitySource({"cpu": 2}, metrics=Broken())
    with caplog.at_level(logging.ERROR, logger="pullpush.capacity"):
        assert source.try_acquire({"cpu": 1})
    assert source.available == {"cpu": 1}
    assert "collector bug" in caplog.text


def test_events_are_frozen() -> None:
    event = CapacityReleaseEvent(0.0, {"cpu": 1}, {"cpu": 1})
    with pytest.raises(AttributeError):
        event.at = 1.0  # type: ignore[misc]


class ReconcileRecorder(Recorder):
    def on_reconcile(self, event: CapacityReconcileEvent) -> None:
        self.events.append(event)


def test_reconcile_emits_to_a_collector_that_has_the_optional_hook() -> None:
    recorder = ReconcileRecorder()
    source = _source(recorder, ManualClock(2.0))
    source.acquire_immediate({"cpu": 1})
    recorder.events.clear()
    source.reconcile({"cpu": 1}, {"cpu": 2})
    assert recorder.events == [CapacityReconcileEvent(2.0, {"cpu": 1}, {"cpu": 2}, {"cpu": 0})]


def test_reconcile_skips_a_collector_without_the_optional_hook() -> None:
    recorder = Recorder()
    source = _source(recorder)
    source.acquire_immediate({"cpu": 1})
    recorder.events.clear()
    source.reconcile({"cpu": 1}, {"cpu": 1})
    assert recorder.events == []
    assert isinstance(recorder, CapacityMetricsCollector)
