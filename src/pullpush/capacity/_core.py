"""The engine under every capacity source: a chain of levels, FIFO waiters, and grants.

A capacity source is one *level* of a tree: a child holds a strong reference to its
parent, and its *chain* is itself followed by every ancestor up to the root. A cost
is taken atomically across the chain -- at every level or at none -- because the
check and the take run with no ``await`` in between.

Blocked acquires::

    acquire(cost) --fits at every level, nobody queued at this level?--> take, return
          |
          no: a _Waiter(cost, ticket) joins this level's FIFO and parks on its slot
          |
    availability grows at level X (release, set_limits, reset, increment,
    reconcile, a refund)
          |
          v
    X._dispatch(): among the levels of X's subtree that have queued waiters, pick
    the head waiter with the oldest ticket whose cost fits at every level of its
    chain; take its cost *now*, mark it granted, wake it; repeat until none fits.

A grant is decided and booked by the task that made room, not by the woken waiter,
so nobody can barge in between. The wake-up itself carries nothing: ``granted`` on
the waiter is the truth. That makes cancellation simple: a waiter cancelled after
its grant but before it resumed gives the cost back (a *refund*), which is more room
and dispatches again; a waiter cancelled or timed out while still queued just
leaves the queue.

Each waiter parks on its own :class:`ParkingLot` slot, so a grant wakes exactly the
waiter it was booked for (waiters of one level differ in cost; the level's FIFO
order lives in ``_waiters``), while timeouts and the cancellation interleavings of
parking stay written once, in the lot.

Fairness:

* Within one level, strictly FIFO: a head whose cost does not fit blocks the
  waiters behind it (with unit costs, as in :class:`CapacitySource`, nobody behind
  it could fit either).
* Across levels sharing an ancestor (siblings, or a parent and its children), room
  goes to the longest-waiting head whose cost fits. A small cost at one level may
  therefore pass a large one waiting at a sibling or ancestor level.
* Synchronous acquires (``try_acquire``, ``can_acquire``/``acquire_immediate``) on a
  level with queued waiters fail: the queue is served first.

Not thread-safe: a hierarchy belongs to one event loop (everything here is
synchronous except the park itself).

Bridges: a level may sit under a parent of another cost type (a unit-counting
:class:`CapacitySource` under a :class:`ResourceCapacitySource`, e.g. a memory-measured
one). The level then maps its cost to the parent's (``bridge``), and ``_xlate`` holds,
per level of the chain, how a cost of this level reads there. Fits, takes, releases
and refunds translate per level (the ``_bridged_*`` twins of the chain methods, put
in place per instance, so chains without a bridge run exactly the plain loops).
Everything else (the FIFO queue, registration, dispatch, refunds on cancellation) is
unchanged, because a waiter's cost is always the cost of the level it queued at.

Registration: a level with queued waiters registers in every level of its chain
(``_queued``, held strongly while it has waiters, which keep it alive anyway); a
level whose ``wait_obj`` was created registers weakly (``_watchers``), so a child
that is dropped disappears from its ancestors.
"""

from __future__ import annotations

import asyncio
import itertools
import weakref
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from .._clock import Clock
from .._exceptions import OverReleaseError
from .._sync import ParkingLot, WaitObject

__all__ = ["CapacityLevel", "Waiter"]

C = TypeVar("C")

_tickets = itertools.count()
"""Arrival order of every waiter of every capacity source (fairness across levels)."""


class Waiter(Generic[C]):
    """One blocked acquire: its cost, arrival ticket, slot and outcome."""

    __slots__ = ("cost", "granted", "result", "since", "slot", "ticket", "woke_with")

    def __init__(self, cost: C, slot: ParkingLot, since: float) -> None:
        self.cost = cost
        self.ticket = next(_tickets)
        self.slot = slot
        self.since = since
        # Invariant: granted is set (with result) in the same synchronous step that took
        # the cost at every level; it is never unset.
        self.granted = False
        self.result: Any = None
        self.woke_with: Any = None


class CapacityLevel(Generic[C]):
    """One level of a capacity hierarchy: the chain, the waiter queue, the grants.

    Subclasses define what a cost means at one level (``_fits``, ``_take``,
    ``_refund``, ``_release_problem``, ``_release``) and what an acquire returns
    (``_result``). ``C`` is the cost type.
    """

    def __init__(
        self,
        parent: CapacityLevel[Any] | None,
        clock: Clock,
        bridge: Callable[[C], Any] | None = None,
    ) -> None:
        self._parent = parent
        self._clock = clock
        # Invariant: _chain is (self, parent, grandparent, ..., root); fixed for life.
        self._chain: tuple[CapacityLevel[Any], ...] = (
            (self,) if parent is None else (self, *parent._chain)
        )
        # Invariant: None when every level of _chain reads a cost of this level as it
        # is (no bridge on the way up); otherwise aligned with _chain, each entry the
        # map from this level's cost to that level's (None: as it is). Fixed for life.
        self._xlate: tuple[Callable[[Any], Any] | None, ...] | None = None
        if parent is not None:
            above = parent._xlate
            if bridge is not None:
                if above is None:
                    self._xlate = (None, *(bridge for _ in parent._chain))
                else:
                    self._xlate = (None, *(_compose(bridge, f) for f in above))
            elif above is not None:
                self._xlate = (None, *above)
        if self._xlate is not None:
            # A bridged chain: instance attributes shadow the plain chain methods, so
            # chains without a bridge (nearly all) pay nothing for translation.
            for name in ("_chain_fits", "_chain_take", "_chain_release"):
                setattr(self, name, getattr(self, name.replace("_chain", "_bridged", 1)))
        # Invariant: the waiters of this level not yet granted and not yet gone, in
        # arrival order. A waiter leaves when granted (in _grant_head) or when its
        # acquire ends without a grant (timeout, cancellation, interrupt).
        self._waiters: OrderedDict[Waiter[C], None] = OrderedDict()
        # Invariant: the levels of this subtree (self included) whose _waiters is
        # non-empty.
        self._queued: dict[CapacityLevel[Any], None] = {}
        # The levels of this subtree (self included) that have a wait_obj; None until
        # the first one registers (a WeakSet costs a Python call to test for emptiness,
        # and releases test it every time).
        self._watchers: weakref.WeakSet[CapacityLevel[Any]] | None = None
        self._wait_obj: WaitObject[bool] | None = None

    # -- what a cost means at one level (subclasses) --------------------------------------

    def _fits(self, cost: C) -> bool:
        """Whether ``cost`` can be taken at this level now."""
        raise NotImplementedError

    def _take(self, cost: C) -> None:
        """Take ``cost`` at this level (``_fits`` said yes)."""
        raise NotImplementedError

    def _refund(self, cost: C) -> None:
        """Undo a ``_take`` whose acquirer never got to use it (restores even quota)."""
        raise NotImplementedError

    def _release_problem(self, cost: C) -> str | None:
        """Why releasing ``cost`` here would return more than was taken, or ``None``."""
        raise NotImplementedError

    def _release(self, cost: C) -> None:
        """Give ``cost`` back at this level (``_release_problem`` said fine)."""
        raise NotImplementedError

    def _result(self) -> Any:
        """What an acquire on this level returns right after taking its cost."""
        raise NotImplementedError

    # -- the chain ------------------------------------------------------------------------

    def _chain_fits(self, cost: C) -> bool:
        # A plain loop, not all(<generator>): this is on every acquire's hot path.
        for level in self._chain:  # noqa: SIM110
            if not level._fits(cost):
                return False
        return True

    def _chain_take(self, cost: C) -> None:
        for level in self._chain:
            level._take(cost)

    def _try_take(self, cost: C) -> bool:
        """Take ``cost`` at every level if it fits and nobody is queued here."""
        if self._waiters or not self._chain_fits(cost):
            return False
        self._chain_take(cost)
        return True

    def _chain_release(self, cost: C) -> None:
        """Give ``cost`` back at every level, or raise and change nothing."""
        for level in self._chain:
            problem = level._release_problem(cost)
            if problem is not None:
                raise OverReleaseError(self._over_release(level, problem))
        for level in self._chain:
            level._release(cost)
        self._grown(self._chain[-1])

    def _chain_refund(self, cost: C) -> None:
        for level, at_level in self._costs(cost):
            level._refund(at_level)
        self._grown(self._chain[-1])

    def _over_release(self, level: CapacityLevel[Any], problem: str) -> str:
        where = f" at {level!r}" if level is self else f" at ancestor {level!r}"
        return f"{problem}{where}; nothing was released"

    def _costs(self, cost: C) -> list[tuple[CapacityLevel[Any], Any]]:
        """Each level of the chain with ``cost`` as that level reads it."""
        xlate = self._xlate
        if xlate is None:
            return [(level, cost) for level in self._chain]
        return [
            (level, cost if f is None else f(cost))
            for level, f in zip(self._chain, xlate, strict=True)
        ]

    def _bridged_fits(self, cost: C) -> bool:
        for level, at_level in self._costs(cost):  # noqa: SIM110
            if not level._fits(at_level):
                return False
        return True

    def _bridged_take(self, cost: C) -> None:
        for level, at_level in self._costs(cost):
            level._take(at_level)

    def _bridged_release(self, cost: C) -> None:
        costs = self._costs(cost)
        for level, at_level in costs:
            problem = level._release_problem(at_level)
            if problem is not None:
                raise OverReleaseError(self._over_release(level, problem))
        for level, at_level in costs:
            level._release(at_level)
        self._grown(self._chain[-1])

    # -- waking ---------------------------------------------------------------------------

    def _grown(self, top: CapacityLevel[Any]) -> None:
        """Availability grew at ``top`` (and maybe below it): serve, then signal.

        Every waiter and ``wait_obj`` whose chain includes a level that grew is in
        ``top``'s subtree, so nothing that could now proceed is missed.
        """
        if top._queued:
            top._dispatch()
        watchers = top._watchers
        if watchers is not None and watchers:
            for level in list(watchers):
                wait_obj = level._wait_obj
                if wait_obj is not None:
                    wait_obj.resolve(True)

    def _dispatch(self) -> None:
        """Grant every head waiter of this subtree that fits, oldest ticket first."""
        queued = self._queued
        while queued:
            best: CapacityLevel[Any] | None = None
            best_ticket = 0
            for level in queued:
                head = next(iter(level._waiters))
                if (best is None or head.ticket < best_ticket) and level._chain_fits(head.cost):
                    best, best_ticket = level, head.ticket
            if best is None:
                return
            best._grant_head()

    def _grant_head(self) -> None:
        waiter = self._waiters.popitem(last=False)[0]
        if not self._waiters:
            self._set_queued(False)
        if not waiter.slot.unpark(1, True):
            # Interleaving: the waiter's park() already ended (it timed out, was
            # cancelled or interrupted an instant ago, and has not resumed yet). It no
            # longer wants the cost: take nothing; its task finds granted unset.
            return
        self._chain_take(waiter.cost)
        waiter.granted = True
        waiter.result = self._result()

    def _set_queued(self, queued: bool) -> None:
        for level in self._chain:
            if queued:
                level._queued[self] = None
            else:
                level._queued.pop(self, None)

    def _dequeue(self, waiter: Waiter[C]) -> None:
        waiters = self._waiters
        if waiter not in waiters:
            return
        was_head = next(iter(waiters)) is waiter
        del waiters[waiter]
        if not waiters:
            self._set_queued(False)
        elif was_head:
            self._dispatch()  # the new head may fit where the old one did not

    # -- blocking ---------------------------------------------------------------------------

    async def _wait(
        self, cost: C, timeout: float | None, slot: ParkingLot | None = None
    ) -> Waiter[C]:
        """Queue for ``cost`` and park until granted, timed out or interrupted.

        Returns the waiter: ``granted`` tells whether the cost was taken (then
        ``result`` is what the acquire returns); otherwise ``woke_with`` is what
        ended the wait (``TIMED_OUT`` or the value given to ``slot.unpark``).

        Args:
            cost: what to take at every level.
            timeout: seconds to wait at most, or ``None``.
            slot: where to park; pass one to be able to interrupt the wait with
                ``slot.unpark_all()``. A fresh one is used otherwise.
        """
        waiter = Waiter(cost, ParkingLot() if slot is None else slot, self._clock())
        if not self._waiters:
            self._set_queued(True)
        self._waiters[waiter] = None
        try:
            waiter.woke_with = await waiter.slot.park(timeout)
        except asyncio.CancelledError:
            if waiter.granted:
                # Interleaving: granted (the cost was taken at every level on our
                # behalf), then cancelled before this task resumed. Nobody will use
                # it: give it back, which lets the next waiter have it.
                self._chain_refund(cost)
            else:
                # Interleaving: cancelled while queued. Leave the queue.
                self._dequeue(waiter)
            raise
        if not waiter.granted:
            self._dequeue(waiter)  # timed out or interrupted: nothing was taken
        return waiter

    # -- introspection --------------------------------------------------------------------

    @property
    def waiting(self) -> int:
        """How many acquires are queued at this level."""
        return len(self._waiters)

    def _oldest_wait(self) -> float:
        """Seconds the longest-queued acquire at this level has waited (0.0: none)."""
        for waiter in self._waiters:
            return max(0.0, self._clock() - waiter.since)
        return 0.0

    def _get_wait_obj(self) -> WaitObject[bool]:
        if self._wait_obj is None:
            self._wait_obj = WaitObject(f"{type(self).__name__} capacity")
            for level in self._chain:
                if level._watchers is None:
                    level._watchers = weakref.WeakSet()
                level._watchers.add(self)
        return self._wait_obj


def _compose(
    first: Callable[[Any], Any], then: Callable[[Any], Any] | None
) -> Callable[[Any], Any]:
    """``then(first(cost))`` (just ``first`` when ``then`` is ``None``)."""
    if then is None:
        return first
    return lambda cost: then(first(cost))
