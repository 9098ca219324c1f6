"""The pullpush pytest plugin, registered through the ``pytest11`` entry point:
installing pullpush is enough (``-p no:pullpush.testing.plugin`` turns it off).

Async tests on both event loops
    An ``async def`` test marked ``@pytest.mark.pullpush_async`` (or every one, with
    ``pullpush_async = true`` in the pytest configuration) runs once per event loop
    kind, asyncio's and uvloop's, each on a fresh loop, and fails if it leaves an
    asyncio task pending. A test that takes a ``loop_kind`` argument gets the kind's
    name; one that parametrizes ``loop_kind`` itself runs on the kinds it names. Tests
    not opted in are left to whatever else runs them (pytest-asyncio, anyio...).

Executors checked for leaks
    ``process_executor`` (2 workers) and ``thread_executor`` (2 threads) are built
    unstarted; configure them with indirect parametrization
    (``@pytest.mark.parametrize("process_executor", [{"max_workers": 1}],
    indirect=True)``). An async test's executors are closed on its loop when its body
    ends; a sync test must close them itself. At teardown the test fails if the
    executor was left open, or if child processes or file descriptors it created are
    still there after 5 seconds.

Stress tests with seeded faults
    ``fault_seed`` is an int from ``--pullpush-seed``, else
    ``@pytest.mark.pullpush_stress(seed=...)``, else a fresh random one; a failing
    test's report shows it, for a replay. Build a :class:`~pullpush.testing.FaultPlan`
    from it and check the run with ``plan.check(...)`` (exactly one terminal envelope
    per task, each fault's error).
"""

from __future__ import annotations

import inspect
import random
import time
from collections.abc import Generator, Iterator
from typing import Any

import pytest

from ..executors import Executor, ProcessExecutor, ThreadExecutor
from ._leaks import _children, _fd_count
from ._loops import LOOP_KINDS, run

__all__ = ["fault_seed", "process_executor", "thread_executor"]

_EXECUTORS = pytest.StashKey[list[Executor]]()
_SEED = pytest.StashKey[int]()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(
        "pullpush_async",
        "run every async def test on asyncio's and uvloop's loops (pullpush plugin)",
        type="bool",
        default=False,
    )
    parser.addoption(
        "--pullpush-seed",
        type=int,
        default=None,
        help="the seed of the fault_seed fixture (replays a stress test)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "pullpush_async: run this async def test on each event loop kind (pullpush plugin)",
    )
    config.addinivalue_line(
        "markers",
        "pullpush_stress(seed=None): a stress test; seed= fixes its fault_seed",
    )


def _ours(function: Any, config: pytest.Config, markers: Iterator[Any]) -> bool:
    if not inspect.iscoroutinefunction(function):
        return False
    return bool(config.getini("pullpush_async")) or any(True for _ in markers)


def _names_loop_kind(metafunc: pytest.Metafunc) -> bool:
    for marker in metafunc.definition.iter_markers("parametrize"):
        names = marker.args[0]
        if isinstance(names, str):
            names = [n.strip() for n in names.split(",")]
        if "loop_kind" in names:
            return True
    return False


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if _names_loop_kind(metafunc):
        return
    ours = _ours(
        metafunc.function, metafunc.config, metafunc.definition.iter_markers("pullpush_async")
    )
    if "loop_kind" in metafunc.fixturenames:
        metafunc.parametrize("loop_kind", LOOP_KINDS)
    elif ours:
        metafunc.fixturenames.append("loop_kind")
        metafunc.parametrize("loop_kind", LOOP_KINDS)


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    if not _ours(pyfuncitem.obj, pyfuncitem.config, pyfuncitem.iter_markers("pullpush_async")):
        return None
    loop_kind = str(pyfuncitem.callspec.params["loop_kind"])
    names = pyfuncitem._fixtureinfo.argnames
    kwargs = {name: pyfuncitem.funcargs[name] for name in names}
    executors = pyfuncitem.stash.get(_EXECUTORS, [])

    async def body() -> None:
        try:
            await pyfuncitem.obj(**kwargs)
        finally:
            for executor in executors:
                await executor.aclose()

    run(body(), loop=loop_kind)
    return True


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, Any, None]:
    outcome: Any = yield
    report = outcome.get_result()
    seed = item.stash.get(_SEED, None)
    if seed is not None and report.failed:
        report.sections.append(
            ("pullpush fault seed", f"fault_seed = {seed}: replay with --pullpush-seed {seed}")
        )


@pytest.fixture
def fault_seed(request: pytest.FixtureRequest) -> int:
    """The seed for a :class:`~pullpush.testing.FaultPlan` (see the module's notes)."""
    seed = request.config.getoption("--pullpush-seed")
    if seed is None:
        marker = request.node.get_closest_marker("pullpush_stress")
        seed = marker.kwargs.get("seed") if marker is not None else None
    if seed is None:
        seed = random.SystemRandom().randrange(2**32)
    request.node.stash[_SEED] = seed
    return int(seed)


def _checked(request: pytest.FixtureRequest, executor: Executor) -> Iterator[Executor]:
    import uvloop

    # libuv opens a pipe pair for good with a process's first uvloop loop: not a leak.
    uvloop.new_event_loop().close()
    children, fds = _children(), _fd_count()
    request.node.stash.setdefault(_EXECUTORS, []).append(executor)
    yield executor
    if executor.started and not executor.closed:
        executor._abandon()
        pytest.fail(
            f"{executor!r} was left open: an async test's executors close with its loop; "
            "a sync test must close its own (await executor.aclose() on the loop it ran on)"
        )
    deadline = time.monotonic() + 5.0
    while True:
        new_children = sorted(_children() - children)
        extra_fds = _fd_count() - fds
        if not new_children and extra_fds <= 0:
            return
        if time.monotonic() > deadline:
            pytest.fail(f"{executor!r} leaked: child processes {new_children}, {extra_fds} fds")
        time.sleep(0.02)


@pytest.fixture
def process_executor(request: pytest.FixtureRequest) -> Iterator[ProcessExecutor]:
    """A :class:`ProcessExecutor` (2 workers unless parametrized), checked for leaked
    children and fds at teardown."""
    options = {"max_workers": 2, **getattr(request, "param", {})}
    yield from _checked(request, ProcessExecutor(**options))  # type: ignore[misc]


@pytest.fixture
def thread_executor(request: pytest.FixtureRequest) -> Iterator[ThreadExecutor]:
    """A :class:`ThreadExecutor` (2 threads unless parametrized), checked for leaks at
    teardown."""
    options = {"max_workers": 2, **getattr(request, "param", {})}
    yield from _checked(request, ThreadExecutor(**options))  # type: ignore[misc]
