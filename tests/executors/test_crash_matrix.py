"""The crash matrix of ProcessExecutor under HierarchicalTaskPoolRunner, with the
forkserver, fork and spawn start methods (spawn's cases, slower to start a worker, are
marked ``stress``: the stress suite runs them).

Stage x failure x start method; each case checks the whole contract (the run ends,
one terminal envelope per task, the faulty task's error names what failed, the
innocent tasks are FINAL, all capacity is back, the pool runs another task, nothing
is left after ``aclose()``). The cases and the contract are in ``_crash_matrix.py``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import _crash_matrix as cm
import _crash_tasks as ct
import pytest

METHODS = ["forkserver", "fork", "spawn"]
METHOD_PARAMS = cm.method_params(METHODS)


@pytest.fixture(scope="module")
def pools() -> Iterator[cm._Pools]:
    yield from cm.shared_pools()


@pytest.mark.timeout(cm.TEST_TIMEOUT)
@pytest.mark.parametrize(("stage", "how", "method"), cm.matrix_cells(METHODS))
def test_crash_matrix(pools: cm._Pools, stage: str, how: str, method: str, tmp_path: Path) -> None:
    cm.run_matrix_cell(pools, stage, how, method, tmp_path)


@pytest.mark.timeout(cm.TEST_TIMEOUT)
@pytest.mark.parametrize("stage", ["unpickle call", "run", "pickle result", "after yield"])
@pytest.mark.parametrize("method", METHOD_PARAMS)
def test_a_worker_that_exits_with_status_0_mid_task_is_a_crash(
    pools: cm._Pools, stage: str, method: str, tmp_path: Path
) -> None:
    cm.case_a_worker_that_exits_with_status_0_mid_task_is_a_crash(pools, stage, method, tmp_path)


@pytest.mark.timeout(cm.TEST_TIMEOUT)
@pytest.mark.parametrize("method", METHOD_PARAMS)
def test_workers_crash_with_large_arguments_in_their_pipes(method: str) -> None:
    cm.case_workers_crash_with_large_arguments_in_their_pipes(method)


@pytest.mark.timeout(cm.TEST_TIMEOUT)
@pytest.mark.parametrize("method", METHOD_PARAMS)
def test_a_busy_worker_killed_from_outside(method: str) -> None:
    cm.case_a_busy_worker_killed_from_outside(method)


@pytest.mark.timeout(cm.TEST_TIMEOUT)
@pytest.mark.parametrize("method", METHOD_PARAMS)
def test_many_arguments_that_cannot_be_pickled_then_good_ones(
    pools: cm._Pools, method: str
) -> None:
    cm.case_many_arguments_that_cannot_be_pickled_then_good_ones(pools, method)


@pytest.mark.timeout(cm.TEST_TIMEOUT)
@pytest.mark.parametrize("how", ["segfault", "os._exit"])
@pytest.mark.parametrize("method", METHOD_PARAMS)
def test_aclose_while_a_worker_crashes(method: str, how: str) -> None:
    cm.case_aclose_while_a_worker_crashes(method, how)


@pytest.mark.timeout(cm.TEST_TIMEOUT)
@pytest.mark.parametrize("method", METHOD_PARAMS)
def test_aclose_right_after_a_pickling_failure(method: str) -> None:
    cm.case_aclose_right_after_a_pickling_failure(method)


@pytest.mark.timeout(cm.TEST_TIMEOUT)
@pytest.mark.parametrize("method", METHOD_PARAMS)
def test_a_dying_worker_fails_the_task_running_beside_the_faulty_one(method: str) -> None:
    cm.case_a_dying_worker_fails_the_task_running_beside_the_faulty_one(method)


@pytest.mark.timeout(10)
def test_the_matrix_has_every_cell() -> None:
    """11 stages x 7 failures, less the 3 deaths in the 4 stages that run in the
    caller's process (they would end the test process itself), per start method."""
    assert len(ct.FAILURES) == 7 and len(cm.STAGES) == 11 and len(cm.PARENT_STAGES) == 4
    assert len(cm.matrix_cells(["forkserver"])) == 11 * 7 - 4 * 3 == 65
