"""HierarchicalBalancer: hysteresis, bounds and cooldown, driven by a ManualClock."""

from __future__ import annotations

import asyncio

import pytest

from pullpush import (
    BalancerChildConfig,
    HierarchicalBalancer,
    HierarchicalBalancerOptions,
    ResourceCapacitySource,
)
from pullpush.testing import ManualClock


def _child(limit: int, low: int = 1, high: int = 10) -> BalancerChildConfig:
    return BalancerChildConfig(ResourceCapacitySource({"w": limit}), {"w": low}, {"w": high})


def _busy(child: BalancerChildConfig) -> BalancerChildConfig:
    child.capacity.acquire_immediate(child.capacity.limits)
    return child


def test_options_are_fully_defaulted() -> None:
    assert HierarchicalBalancer([]).options == HierarchicalBalancerOptions(
        check_interval=1.0,
        idle_time_threshold=5.0,
        busy_time_threshold=5.0,
        idle_threshold=0.3,
        busy_threshold=0.85,
        increment=None,
        cooldown=0.0,
    )


def test_busy_child_grows_after_the_busy_time_then_needs_a_full_period_again() -> None:
    clock = ManualClock()
    child = _busy(_child(4))
    balancer = HierarchicalBalancer([child], clock=clock)
    assert balancer.check() == []  # the busy stretch starts
    clock.advance(5.0)
    (action,) = balancer.check()
    assert (action.kind, action.limits_before, action.limits_after) == ("grow", {"w": 4}, {"w": 5})
    assert child.capacity.limits == {"w": 5}
    child.capacity.acquire_immediate({"w": 1})
    clock.advance(4.0)
    assert balancer.check() == []  # the stretch restarted at the action
    clock.advance(1.0)
    assert [a.kind for a in balancer.check()] == ["grow"]


def test_idle_child_shrinks_down_to_its_min() -> None:
    clock = ManualClock()
    child = _child(3, low=2)
    balancer = HierarchicalBalancer([child], idle_time_threshold=1.0, clock=clock)
    balancer.check()
    for _ in range(3):
        clock.advance(1.0)
        balancer.check()
    assert child.capacity.limits == {"w": 2}


def test_growth_is_clamped_at_max_and_uses_the_increment() -> None:
    clock = ManualClock()
    child = _busy(_child(4, high=6))
    balancer = HierarchicalBalancer([child], busy_time_threshold=0, increment={"w": 5}, clock=clock)
    (action,) = balancer.check()
    assert action.limits_after == {"w": 6}
    child.capacity.acquire_immediate({"w": 2})
    assert balancer.check() == []  # at max: nothing to do


def test_a_child_neither_idle_nor_busy_restarts_its_stretches() -> None:
    clock = ManualClock()
    child = _child(10)
    balancer = HierarchicalBalancer([child], idle_time_threshold=2.0, clock=clock)
    balancer.check()  # idle (0 %)
    clock.advance(1.0)
    child.capacity.acquire_immediate({"w": 5})  # 50 %: neither
    balancer.check()
    child.capacity.release({"w": 5})
    clock.advance(1.5)
    assert balancer.check() == []  # idle again, but only for 0 s
    clock.advance(2.0)
    assert [a.kind for a in balancer.check()] == ["shrink"]


def test_cooldown_leaves_a_child_alone_after_an_action() -> None:
    clock = ManualClock()
    child = _busy(_child(2))
    balancer = HierarchicalBalancer([child], busy_time_threshold=0, cooldown=10.0, clock=clock)
    assert len(balancer.check()) == 1
    child.capacity.acquire_immediate({"w": 1})
    clock.advance(9.0)
    assert balancer.check() == []
    clock.advance(1.0)
    assert len(balancer.check()) == 1


def test_each_child_is_judged_on_its_own() -> None:
    clock = ManualClock()
    busy, idle = _busy(_child(4)), _child(4)
    balancer = HierarchicalBalancer(
        [busy, idle], busy_time_threshold=0, idle_time_threshold=0, clock=clock
    )
    actions = balancer.check()
    assert [(a.index, a.kind) for a in actions] == [(0, "grow"), (1, "shrink")]
    assert (busy.capacity.limits, idle.capacity.limits) == ({"w": 5}, {"w": 3})


async def test_start_runs_checks_on_the_loop_and_stop_is_idempotent() -> None:
    child = _busy(_child(1))
    balancer = HierarchicalBalancer([child], check_interval=0.001, busy_time_threshold=0)
    balancer.start()
    balancer.start()
    assert balancer.running
    while child.capacity.limits == {"w": 1}:
        await asyncio.sleep(0.001)
    balancer.stop()
    balancer.stop()
    assert not balancer.running


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"check_interval": 0}, "check_interval"),
        ({"idle_threshold": 1.5}, "idle_threshold"),
        ({"idle_threshold": 0.9, "busy_threshold": 0.5}, "must not exceed busy_threshold"),
        ({"cooldown": -1}, "cooldown"),
        ({"increment": {"w": -1}}, r"increment\['w'\]"),
    ],
)
def test_bad_options_name_what_was_wrong(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        HierarchicalBalancer([], **kwargs)  # type: ignore[arg-type]


def test_bad_child_configs() -> None:
    cap = ResourceCapacitySource({"w": 1})
    with pytest.raises(ValueError, match=r"min\['w'\]=3 exceeds max\['w'\]=2"):
        BalancerChildConfig(cap, {"w": 3}, {"w": 2})
    with pytest.raises(TypeError, match="capacity must be a ResourceCapacitySource"):
        BalancerChildConfig(object(), {}, {})  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"children\[0\]"):
        HierarchicalBalancer([cap])  # type: ignore[list-item]
