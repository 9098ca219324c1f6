"""``HierarchicalBalancer``: a control loop that grows busy children and shrinks idle ones."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Literal

from .._clock import Clock, resolve_clock
from .._util import check_seconds
from ._resource import ResourceCapacitySource, ResourceCost, _valid
from ._timer import PeriodicTimer

__all__ = [
    "BalancerAction",
    "BalancerChildConfig",
    "HierarchicalBalancer",
    "HierarchicalBalancerOptions",
]


@dataclasses.dataclass(frozen=True)
class BalancerChildConfig:
    """One child the balancer manages, with the bounds of its limits.

    Resources missing from ``min`` may shrink down to 0; resources missing from
    ``max`` may grow without bound.

    Raises:
        TypeError: ``capacity`` is not a :class:`~pullpush.ResourceCapacitySource`.
        ValueError: an amount is negative, or a ``min`` exceeds its ``max``.
    """

    capacity: ResourceCapacitySource
    """The source whose limits are adjusted."""
    min: ResourceCost
    """The lowest limit per resource."""
    max: ResourceCost
    """The highest limit per resource."""

    def __post_init__(self) -> None:
        if not isinstance(self.capacity, ResourceCapacitySource):
            raise TypeError(
                f"capacity must be a ResourceCapacitySource, got {type(self.capacity).__name__}"
            )
        low, high = _valid("min", self.min), _valid("max", self.max)
        for key in low.keys() & high.keys():
            if low[key] > high[key]:
                raise ValueError(f"min[{key!r}]={low[key]} exceeds max[{key!r}]={high[key]}")
        object.__setattr__(self, "min", low)
        object.__setattr__(self, "max", high)


@dataclasses.dataclass(frozen=True)
class HierarchicalBalancerOptions:
    """The balancer's settings, fully defaulted (all times in seconds)."""

    check_interval: float = 1.0
    """Seconds between passes while running."""
    idle_time_threshold: float = 5.0
    """Seconds a child must stay idle before it shrinks."""
    busy_time_threshold: float = 5.0
    """Seconds a child must stay busy before it grows."""
    idle_threshold: float = 0.3
    """A child is idle when *every* resource's utilisation is below this."""
    busy_threshold: float = 0.85
    """A child is busy when *any* resource's utilisation is above this."""
    increment: Mapping[str, float] | None = None
    """The step per resource; ``None``: 1 for each resource in the child's min/max."""
    cooldown: float = 0.0
    """Seconds after an action on a child during which it is left alone (new)."""


@dataclasses.dataclass(frozen=True)
class BalancerAction:
    """What one :meth:`HierarchicalBalancer.check` did to one child."""

    at: float
    """When (seconds of the balancer's clock)."""
    index: int
    """The child's position in ``children``."""
    capacity: ResourceCapacitySource
    """The child's source."""
    kind: Literal["grow", "shrink"]
    """Which way its limits moved."""
    limits_before: Mapping[str, float]
    """The changed limits before."""
    limits_after: Mapping[str, float]
    """The changed limits after."""


class _ChildState:
    __slots__ = ("busy_since", "idle_since", "last_action")

    def __init__(self) -> None:
        # Invariant: at most one of idle_since / busy_since is set: the time the
        # current continuous idle (busy) stretch began, or the last action on it.
        self.idle_since: float | None = None
        self.busy_since: float | None = None
        self.last_action = -math.inf


class HierarchicalBalancer:
    """Move capacity between children of a shared parent, following their utilisation.

    Each pass (every ``check_interval`` seconds while running, or on :meth:`check`)
    looks at every child:

    * **busy**: some resource's utilisation is above ``busy_threshold``. Busy
      continuously for ``busy_time_threshold`` seconds, it grows by ``increment``
      (through ``set_limits``), clamped at its ``max``.
    * **idle**: every resource's utilisation is below ``idle_threshold``. Idle
      continuously for ``idle_time_threshold`` seconds, it shrinks by
      ``increment``, clamped at its ``min``.

    After an action the child's busy/idle stretch starts again, so the next step
    needs another full period (hysteresis), and no action is taken on it for
    ``cooldown`` seconds. The balancer looks only at utilisation (not queue depth)
    and does not keep the children's sum under their parent's limits: the parent
    still bounds what they can take together.

    Time is read from ``clock`` (pass :class:`pullpush.testing.ManualClock` and
    call :meth:`check` for deterministic tests); the periodic passes are scheduled on
    the running event loop by :meth:`start`.

    Args:
        children: the children and their bounds.
        check_interval: seconds between passes (> 0).
        idle_time_threshold: seconds of idleness before shrinking.
        busy_time_threshold: seconds of busyness before growing.
        idle_threshold: utilisation below which a resource is idle, in [0, 1].
        busy_threshold: utilisation above which a resource is busy, in [0, 1], at
            least ``idle_threshold``.
        increment: the step per resource (None: 1 per resource in min/max).
        cooldown: seconds to leave a child alone after acting on it.
        clock: where time is read; default :func:`time.monotonic`.
    """

    def __init__(
        self,
        children: Sequence[BalancerChildConfig],
        *,
        check_interval: float = 1.0,
        idle_time_threshold: float = 5.0,
        busy_time_threshold: float = 5.0,
        idle_threshold: float = 0.3,
        busy_threshold: float = 0.85,
        increment: ResourceCost | None = None,
        cooldown: float = 0.0,
        clock: Clock | None = None,
    ) -> None:
        children = list(children)
        for i, child in enumerate(children):
            if not isinstance(child, BalancerChildConfig):
                raise TypeError(
                    f"children[{i}] must be a BalancerChildConfig, got {type(child).__name__}"
                )
        check_seconds("check_interval", check_interval, positive=True)
        check_seconds("idle_time_threshold", idle_time_threshold)
        check_seconds("busy_time_threshold", busy_time_threshold)
        check_seconds("cooldown", cooldown)
        for name, value in (("idle_threshold", idle_threshold), ("busy_threshold", busy_threshold)):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError(f"{name} must be a number, got {type(value).__name__}")
            if not 0 <= value <= 1:
                raise ValueError(f"{name} must be in [0, 1], got {value}")
        if idle_threshold > busy_threshold:
            raise ValueError(
                f"idle_threshold ({idle_threshold}) must not exceed busy_threshold "
                f"({busy_threshold})"
            )
        step = None if increment is None else _valid("increment", increment)
        self._children = tuple(children)
        self._options = HierarchicalBalancerOptions(
            check_interval=check_interval,
            idle_time_threshold=idle_time_threshold,
            busy_time_threshold=busy_time_threshold,
            idle_threshold=idle_threshold,
            busy_threshold=busy_threshold,
            increment=step,
            cooldown=cooldown,
        )
        self._clock = resolve_clock(clock)
        self._states = [_ChildState() for _ in children]
        self._timer: PeriodicTimer | None = None

    @property
    def children(self) -> tuple[BalancerChildConfig, ...]:
        """The managed children."""
        return self._children

    @property
    def options(self) -> HierarchicalBalancerOptions:
        """The settings, fully defaulted."""
        return self._options

    @property
    def running(self) -> bool:
        """Whether periodic passes are scheduled."""
        return self._timer is not None

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<HierarchicalBalancer {state} children={len(self._children)}>"

    def start(self) -> None:
        """Run :meth:`check` every ``check_interval`` seconds (idempotent).

        Raises:
            RuntimeError: no event loop is running.
        """
        if self._timer is None:
            self._timer = PeriodicTimer(self._options.check_interval, self.check)

    def stop(self) -> None:
        """Stop the periodic passes (idempotent)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def check(self) -> list[BalancerAction]:
        """Make one pass over the children now; return the actions taken."""
        now = self._clock()
        actions: list[BalancerAction] = []
        for index, (child, state) in enumerate(zip(self._children, self._states, strict=True)):
            action = self._check_child(index, child, state, now)
            if action is not None:
                actions.append(action)
        return actions

    def _check_child(
        self, index: int, child: BalancerChildConfig, state: _ChildState, now: float
    ) -> BalancerAction | None:
        opts = self._options
        usage = child.capacity.utilization.values()
        if any(u > opts.busy_threshold for u in usage):
            kind: Literal["grow", "shrink"] = "grow"
            state.idle_since = None
            since = state.busy_since = now if state.busy_since is None else state.busy_since
            needed = opts.busy_time_threshold
        elif usage and all(u < opts.idle_threshold for u in usage):
            kind = "shrink"
            state.busy_since = None
            since = state.idle_since = now if state.idle_since is None else state.idle_since
            needed = opts.idle_time_threshold
        else:
            state.idle_since = state.busy_since = None
            return None
        if now - since < needed or now - state.last_action < opts.cooldown:
            return None
        limits = child.capacity.limits
        step = opts.increment
        if step is None:
            step = dict.fromkeys({**child.min, **child.max}, 1)
        changed: dict[str, float] = {}
        for key, amount in step.items():
            if key not in limits:
                continue
            current = limits[key]
            # Clamp at the bound, but never move the wrong way (a limit already
            # outside its bounds, e.g. set by hand, is only moved towards them).
            if kind == "grow":
                target = max(current, min(child.max.get(key, math.inf), current + amount))
            else:
                target = min(current, max(child.min.get(key, 0), current - amount))
            if target != current:
                changed[key] = target
        if not changed:
            return None
        child.capacity.set_limits(changed)
        state.last_action = now
        if kind == "grow":
            state.busy_since = now
        else:
            state.idle_since = now
        return BalancerAction(
            at=now,
            index=index,
            capacity=child.capacity,
            kind=kind,
            limits_before={key: limits[key] for key in changed},
            limits_after=changed,
        )
