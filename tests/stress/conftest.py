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
    if TALLY.used:
        terminalreporter.write_line(TALLY.summary())
