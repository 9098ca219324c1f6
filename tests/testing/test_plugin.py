"""The pytest plugin, run on small test files in a fresh pytest (pytester)."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.timeout(120)

ARGS = ("-p", "pullpush.testing.plugin", "-p", "no:randomly", "-W", "error")


def test_an_opted_in_async_test_runs_on_both_loops(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        """
        import asyncio, pytest

        @pytest.mark.pullpush_async
        async def test_loops(loop_kind):
            loop = type(asyncio.get_running_loop()).__module__
            assert ("uvloop" in loop) == (loop_kind == "uvloop")
        """
    )
    result = pytester.runpytest_subprocess(*ARGS)
    result.assert_outcomes(passed=2)


def test_a_pending_task_fails_the_test(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import asyncio, pytest

        @pytest.mark.pullpush_async
        async def test_leaves_a_task():
            asyncio.ensure_future(asyncio.sleep(10))
        """
    )
    result = pytester.runpytest_subprocess(*ARGS)
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(["*task(s) left pending*"])


def test_executor_fixtures_close_on_the_loop_and_are_checked(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest
        from pullpush.testing import run

        @pytest.mark.pullpush_async
        async def test_used(process_executor, thread_executor):
            assert await process_executor.run(abs, -2) == 2
            assert await thread_executor.run(abs, -3) == 3

        @pytest.mark.parametrize("thread_executor", [{"max_workers": 1}], indirect=True)
        def test_sync_left_open(thread_executor):
            assert thread_executor.max_workers == 1
            run(thread_executor.start())
        """
    )
    result = pytester.runpytest_subprocess(*ARGS)
    result.assert_outcomes(passed=3, errors=1)
    result.stdout.fnmatch_lines(["*was left open*"])


def test_a_failing_stress_test_reports_its_seed(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest
        from pullpush.testing import FaultPlan

        @pytest.mark.pullpush_stress(seed=1234)
        def test_seeded(fault_seed):
            assert fault_seed == 1234
            assert FaultPlan(fault_seed).fault(0) == FaultPlan(1234).fault(0)
            assert False, "fails on purpose"
        """
    )
    result = pytester.runpytest_subprocess(*ARGS)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*replay with --pullpush-seed 1234*"])
    again = pytester.runpytest_subprocess(*ARGS, "--pullpush-seed", "99")
    again.stdout.fnmatch_lines(["*assert 99 == 1234*"])
