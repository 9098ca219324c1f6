"""The crash matrix of ProcessExecutor with the spawn start method: the cases of
``tests/executors/test_crash_matrix.py`` (forkserver and fork in the default suite),
here because a spawned worker takes about a second to start and a third of the cases
start a fresh pool (about 90 s in all on two cores). The cases and the contract are in
``tests/executors/_crash_matrix.py``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# The cases live beside the default suite's; workers import _crash_tasks by name.
sys.path.insert(
    0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "executors")
)

import _crash_matrix as cm

pytestmark = pytest.mark.stress

METHODS = ["spawn"]


@pytest.fixture(scope="module")
def pools() -> Iterator[cm._Pools]:
    yield from cm.shared_pools()


@pytest.mark.timeout(cm.TEST_TIMEOUT)
@pytest.mark.parametrize(("stage", "how", "method"), cm.matrix_cells(METHODS))
def test_crash_matrix(pools: cm._Pools, stage: str, how: str, method: str, tmp_path: Path) -> None:
    cm.run_matrix_cell(pools, stage, how, method, tmp_path)


@pytest.mark.timeout(cm.TEST_TIMEOUT)
@pytest.mark.parametrize("stage", ["unpickle call", "run", "pickle result", "after yield"])
@pytest.mark.parametrize("method", METHODS)
def test_a_worker_that_exits_with_status_0_mid_task_is_a_crash(
    pools: cm._Pools, stage: str, method: str, tmp_path: Path
) -> None:
    cm.case_a_worker_that_exits_with_status_0_mid_task_is_a_crash(pools, stage, method, tmp_path)


@pytest.mark.timeout(cm.TEST_TIMEOUT)
@pytest.mark.parametrize("method", METHODS)
def test_workers_crash_with_large_arguments_in_their_pipes(method: str) -> None:
    cm.case_workers_crash_with_large_arguments_in_their_pipes(method)


@pytest.mark.timeout(cm.TEST_TIMEOUT)
@pytest.mark.parametrize("method", METHODS)
def test_a_busy_worker_killed_from_outside(method: str) -> None:
    cm.case_a_busy_worker_killed_from_outside(method)


@pytest.mark.timeout(cm.TEST_TIMEOUT)
@pytest.mark.parametrize("method", METHODS)
def test_many_arguments_that_cannot_be_pickled_then_good_ones(
    pools: cm._Pools, method: str
) -> None:
    cm.case_many_arguments_that_cannot_be_pickled_then_good_ones(pools, method)


@pytest.mark.timeout(cm.TEST_TIMEOUT)
@pytest.mark.parametrize("how", ["segfault", "os._exit"])
@pytest.mark.parametrize("method", METHODS)
def test_aclose_while_a_worker_crashes(method: str, how: str) -> None:
    cm.case_aclose_while_a_worker_crashes(method, how)


@pytest.mark.timeout(cm.TEST_TIMEOUT)
@pytest.mark.parametrize("method", METHODS)
def test_aclose_right_after_a_pickling_failure(method: str) -> None:
    cm.case_aclose_right_after_a_pickling_failure(method)


@pytest.mark.timeout(cm.TEST_TIMEOUT)
@pytest.mark.parametrize("method", METHODS)
def test_a_dying_worker_fails_the_task_running_beside_the_faulty_one(method: str) -> None:
    cm.case_a_dying_worker_fails_the_task_running_beside_the_faulty_one(method)
