"""Bad input: task runners that return odd things (None, coroutines that raise,
generators that raise as they are closed, objects that cannot be pickled, a 100 MB
value, deeply nested values, ``sys.exit``, something that is not callable), on every
local executor; and invalid constructor arguments. Each gives a clear ERROR envelope
(or FINAL, where the value is fine) or a clear exception -- never a hang or a broken
pool: a batch of plain tasks runs on the same executor afterwards, and nothing leaks.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import math
import threading
from collections.abc import Callable
from typing import Any

import _stress_tasks as tasks
import pytest
from _stress_support import (
    TALLY,
    check_capacity_returned,
    check_rss,
    counted_no_leaks,
    rss,
)

from pullpush import (
    CapacitySource,
    EnvelopeType,
    Executor,
    HierarchicalTaskPoolRunner,
    InlineExecutor,
    ProcessExecutor,
    PushPullBufferObj,
    RemoteTraceback,
    ResourceCapacitySource,
    RetryPolicy,
    ScheduledTask,
    ScheduledTaskPoolRunner,
    TaskPicklingError,
    TaskTimeoutError,
    ThreadExecutor,
)
from pullpush.testing import collect
from pullpush.testing._leaks import _children

pytestmark = pytest.mark.stress

MB = 1024 * 1024
DEEP = 100_000  # nesting levels: more than pickle's recursion allows
CLOSE_TIMEOUT = 0.2  # seconds, for the generators stopped by a timeout

# An expectation: ("FINAL", check of the value) or ("ERROR", types, words in the message).
Expectation = tuple[str, Any, tuple[str, ...]]


def final(check: Callable[[Any], bool] = lambda _: True) -> Expectation:
    return ("FINAL", check, ())


def error(types: type[BaseException] | tuple[type[BaseException], ...], *words: str) -> Expectation:
    return ("ERROR", types, words)


def cases(kind: str) -> dict[str, tuple[Any, float | None, Expectation]]:
    """Case name -> (runner, timeout, what the executor ``kind`` must report)."""
    process = kind == "process"
    lock = threading.Lock()
    return {
        "returns None": (functools.partial(tasks.returns, None), None, final(lambda v: v is None)),
        "coroutine raises": (
            functools.partial(tasks.raise_async, 1, "ValueError"),
            None,
            error(ValueError, "injected into task 1"),
        ),
        "generator raises in finally at its end": (
            tasks.ends_then_raises_on_close,
            None,
            error(tasks.CloseError, "finally"),
        ),
        # Stopped by their timeout, they raise as they are closed: the timeout wins.
        "generator raises when closed": (
            functools.partial(tasks.raises_on_close, 0.01),
            CLOSE_TIMEOUT,
            error(TaskTimeoutError),
        ),
        "async generator raises when closed": (
            functools.partial(tasks.araises_on_close, 0.01),
            CLOSE_TIMEOUT,
            error(TaskTimeoutError),
        ),
        "yields after Final": (tasks.yields_after_final, None, error(ValueError, "after Final")),
        "returns a lock": (
            tasks.make_lock,
            None,
            error(TaskPicklingError, "result", "lock")
            if process
            else final(lambda v: isinstance(v, type(lock))),
        ),
        "takes a lock": (
            functools.partial(tasks.returns, lock),
            None,
            error(TaskPicklingError, "argument 0 (lock)", "_thread.lock")
            if process
            else final(lambda v: v is lock),
        ),
        "raises an unpicklable exception": (
            tasks.raise_unpicklable,
            None,
            error(TaskPicklingError, "UnpicklableError", "could not be pickled")
            if process
            else error(tasks.UnpicklableError, "holds a lock"),
        ),
        "returns 100 MB": (
            functools.partial(tasks.big, 100),
            None,
            final(lambda v: isinstance(v, bytes) and len(v) == 100 * MB),
        ),
        "takes 100 MB": (
            functools.partial(tasks.length, b"y" * (100 * MB)),
            None,
            final(lambda v: v == 100 * MB),
        ),
        "returns a deeply nested list": (
            functools.partial(tasks.nested, DEEP),
            None,
            error(TaskPicklingError, "result", "recursion")
            if process
            else final(lambda v: type(v) is list),
        ),
        "takes a deeply nested list": (
            functools.partial(tasks.returns, tasks.nested(DEEP)),
            None,
            error(TaskPicklingError, "argument 0 (list)", "recursion")
            if process
            else final(lambda v: type(v) is list),
        ),
        "yields a deeply nested list": (
            functools.partial(tasks.yields_nested, DEEP),
            None,
            error(TaskPicklingError, "yielded", "recursion") if process else final(),
        ),
        "returns a moderately nested list": (
            functools.partial(tasks.nested, 200),
            None,
            final(lambda v: type(v) is list),
        ),
        "calls sys.exit": (
            functools.partial(tasks.exits, 3),
            None,
            error(SystemExit),  # the worker catches it: only the task fails
        ),
        "is not callable": (42, None, error(TypeError, "runner must be callable")),
    }


def check_case(name: str, expected: Expectation, envelope: Any) -> bool:
    """Check one case's terminal envelope; return whether it was an (expected) ERROR."""
    kind, check, words = expected
    if kind == "FINAL":
        assert envelope.type is EnvelopeType.FINAL, (name, envelope)
        assert check(envelope.value), (name, type(envelope.value))
        return False
    assert envelope.type is EnvelopeType.ERROR, (name, envelope)
    assert isinstance(envelope.error, check), (name, envelope.error)
    for word in words:
        assert word in str(envelope.error), (name, word, envelope.error)
    return True


def make_executor(kind: str) -> Executor:
    if kind == "inline":
        return InlineExecutor()
    if kind == "thread":
        return ThreadExecutor(2)
    return ProcessExecutor(2)


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    ("loop_kind", "kind"),
    [("asyncio", "inline"), ("uvloop", "thread"), ("asyncio", "process"), ("uvloop", "process")],
)
async def test_odd_task_runners_give_clear_envelopes_and_leave_the_pool_working(
    loop_kind: str, kind: str
) -> None:
    rss_before = rss()
    capacity = ResourceCapacitySource({"capacity": 4})
    async with counted_no_leaks(), make_executor(kind) as executor:
        table = cases(kind)
        count = len(table)
        scheduled = [
            ScheduledTask(name, runner, timeout=timeout)
            for name, (runner, timeout, _) in table.items()
        ]
        runner = ScheduledTaskPoolRunner("bad", scheduled, capacity, executor=executor)
        envelopes = await asyncio.wait_for(collect(runner.run_tasks()), 60)
        del scheduled, runner
        ends = {e.key: e for e in envelopes if e.type is not EnvelopeType.INTERMEDIATE}
        assert sorted(ends) == sorted(table)  # one terminal envelope each
        assert len(ends) == sum(e.type is not EnvelopeType.INTERMEDIATE for e in envelopes)
        errors = sum(check_case(name, table[name][2], ends[name]) for name in table)
        if kind == "process":
            raised = ends["coroutine raises"].error
            assert isinstance(raised.__cause__, RemoteTraceback), raised.__cause__
        del envelopes, ends, table
        # The pool is not broken: plain tasks run on it.
        plain = [functools.partial(tasks.ok, i) for i in range(50)]
        after = HierarchicalTaskPoolRunner("after", plain, CapacitySource(4), executor=executor)
        values = [e.value for e in await collect(after.run_tasks())]
        assert sorted(values) == list(range(50))
        check_capacity_returned(capacity)
    gc.collect()  # the errors' tracebacks hold frames that hold the 100 MB values
    check_rss(rss_before, 64, f"bad input ({kind})")
    print(f"bad input on {kind}/{loop_kind}: {count} cases, {errors} ERROR envelopes")
    TALLY.add(tasks=count + 50, injected=errors, observed=errors)


C, R = CapacitySource(1), ResourceCapacitySource({"cpu": 1})
INVALID: list[tuple[str, Callable[[], Any], type[Exception], str]] = [
    ("ProcessExecutor(0)", lambda: ProcessExecutor(0), ValueError, "max_workers"),
    ("ProcessExecutor('2')", lambda: ProcessExecutor("2"), TypeError, "max_workers"),
    ("ProcessExecutor(2.0)", lambda: ProcessExecutor(2.0), TypeError, "max_workers"),
    ("start_method", lambda: ProcessExecutor(1, start_method="bogus"), ValueError, "start_method"),
    ("tasks_per_worker", lambda: ProcessExecutor(1, tasks_per_worker=0), ValueError, "tasks_per"),
    (
        "max_tasks_per_worker",
        lambda: ProcessExecutor(1, max_tasks_per_worker=0),
        ValueError,
        "max_tasks",
    ),
    ("max_worker_memory", lambda: ProcessExecutor(1, max_worker_memory=0), ValueError, "memory"),
    ("initializer", lambda: ProcessExecutor(1, initializer=42), TypeError, "initializer"),
    ("initargs", lambda: ProcessExecutor(1, initargs=[1]), TypeError, "initargs"),
    ("prefetch -1", lambda: ProcessExecutor(1, prefetch=-1), ValueError, "prefetch"),
    ("prefetch 'lots'", lambda: ProcessExecutor(1, prefetch="lots"), ValueError, "prefetch"),
    ("credit_window", lambda: ProcessExecutor(1, credit_window=0), ValueError, "credit_window"),
    ("cancel_grace", lambda: ProcessExecutor(1, cancel_grace=-1), ValueError, "cancel_grace"),
    ("kill_grace", lambda: ProcessExecutor(1, kill_grace=math.nan), ValueError, "kill_grace"),
    ("ThreadExecutor(0)", lambda: ThreadExecutor(0), ValueError, "max_workers"),
    ("InlineExecutor", lambda: InlineExecutor(credit_window=0), ValueError, "credit_window"),
    ("CapacitySource(-1)", lambda: CapacitySource(-1), ValueError, "limit"),
    ("CapacitySource(1.5)", lambda: CapacitySource(1.5), TypeError, "limit"),
    ("CapacitySource parent", lambda: CapacitySource(1, parent=5), TypeError, "parent"),
    ("resource limits", lambda: ResourceCapacitySource({"cpu": -1}), ValueError, "cpu"),
    ("resource nan", lambda: ResourceCapacitySource({"cpu": math.nan}), ValueError, "cpu"),
    ("resource parent", lambda: ResourceCapacitySource({"cpu": 1}, parent=C), TypeError, "parent"),
    ("runner capacity", lambda: HierarchicalTaskPoolRunner("x", [], "5"), TypeError, "capacity"),
    ("runner source", lambda: HierarchicalTaskPoolRunner("x", 42, C), TypeError, "source"),
    (
        "runner timeout",
        lambda: HierarchicalTaskPoolRunner("x", [], C, timeout=0),
        ValueError,
        "timeout",
    ),
    (
        "runner max_unread",
        lambda: HierarchicalTaskPoolRunner("x", [], C, max_unread=0),
        ValueError,
        "max_unread",
    ),
    (
        "runner executor",
        lambda: HierarchicalTaskPoolRunner("x", [], C, executor="bogus"),
        ValueError,
        "executor",
    ),
    ("scheduled capacity", lambda: ScheduledTaskPoolRunner("x", [], C), TypeError, "capacity"),
    (
        "scheduled backfill",
        lambda: ScheduledTaskPoolRunner("x", [], R, backfill=-1),
        ValueError,
        "backfill",
    ),
    (
        "scheduled retry",
        lambda: ScheduledTaskPoolRunner("x", [], R, retry="no"),
        TypeError,
        "retry",
    ),
    ("task timeout", lambda: ScheduledTask("k", print, timeout=-1), ValueError, "timeout"),
    ("retry attempts", lambda: RetryPolicy(max_attempts=0), ValueError, "max_attempts"),
    ("buffer maxsize", lambda: PushPullBufferObj(maxsize=0), ValueError, "maxsize"),
    ("buffer overflow", lambda: PushPullBufferObj(overflow="x"), ValueError, "overflow"),
]


@pytest.mark.timeout(30)
def test_invalid_constructor_arguments_raise_at_once_and_start_nothing() -> None:
    children, threads = _children(), threading.active_count()
    for name, make, error_type, word in INVALID:
        with pytest.raises(error_type, match=word):
            make()
        assert _children() == children and threading.active_count() == threads, name
    TALLY.add(injected=len(INVALID), observed=len(INVALID))
