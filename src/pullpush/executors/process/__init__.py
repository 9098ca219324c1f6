"""The process executor: task runners in worker processes, each running its own uvloop,
envelopes relayed over pipes."""

from ._executor import ProcessExecutor as ProcessExecutor
from ._executor import ProcessExecutorStatistics as ProcessExecutorStatistics

__all__ = ("ProcessExecutor", "ProcessExecutorStatistics")
