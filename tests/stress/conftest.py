"""The stress suite's shared tally, printed as one summary line at the end of the run.

Also puts this directory on ``sys.path`` so the test modules and the worker
processes (which inherit ``sys.path``) can import ``_stress_tasks`` by name.
"""

from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _stress_support import TALLY


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    here = os.path.dirname(os.path.abspath(__file__))
    reports = [r for rs in terminalreporter.stats.values() for r in rs]
    ran = [r for r in reports if isinstance(r, pytest.TestReport) and r.when == "call"]
    if any(os.path.abspath(r.fspath).startswith(here) for r in ran):
        terminalreporter.write_line(TALLY.summary())
