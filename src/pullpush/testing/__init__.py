"""Test helpers for code built on pullpush: assert a stream's items or error, and
that every object and task was closed.

Example::

    from pullpush.testing import assert_items, TrackedSource

    async def test_double():
        source = TrackedSource([1, 2, 3])
        await assert_items(PullMapObj(source, lambda n: 2 * n), [2, 4, 6])
        assert source.closed

Installing pullpush also installs its pytest plugin (:mod:`pullpush.testing.plugin`):
async tests on both event loops, executor fixtures checked for leaks, and seeded fault
injection for stress tests.
"""

from ._clock import ManualClock as ManualClock
from ._faults import FaultPlan as FaultPlan
from ._faults import InjectedFault as InjectedFault
from ._faults import assert_one_terminal_per_task as assert_one_terminal_per_task
from ._leaks import (
    LeakReport as LeakReport,
)
from ._leaks import (
    assert_no_leaks as assert_no_leaks,
)
from ._leaks import (
    assert_no_pending_tasks as assert_no_pending_tasks,
)
from ._leaks import (
    settle as settle,
)
from ._loops import LOOP_KINDS as LOOP_KINDS
from ._loops import run as run
from ._streams import (
    TrackedSource as TrackedSource,
)
from ._streams import (
    assert_closed as assert_closed,
)
from ._streams import (
    assert_items as assert_items,
)
from ._streams import (
    assert_raises as assert_raises,
)
from ._streams import (
    collect as collect,
)

# isort: split
# push operators
from ._push import RecordingSink as RecordingSink

__all__ = (
    "FaultPlan",
    "InjectedFault",
    "LOOP_KINDS",
    "LeakReport",
    "ManualClock",
    "TrackedSource",
    "assert_closed",
    "assert_items",
    "assert_no_leaks",
    "assert_no_pending_tasks",
    "assert_one_terminal_per_task",
    "assert_raises",
    "collect",
    "run",
    "settle",
    # push operators
    "RecordingSink",
)
