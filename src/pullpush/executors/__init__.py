"""Executors: where a task runner runs (inline, thread, process, ray)."""

from ._base import Executor as Executor
from ._base import ExecutorClosedError as ExecutorClosedError
from ._base import TaskEvents as TaskEvents
from ._base import TaskHandle as TaskHandle
from ._base import TaskRunner as TaskRunner
from ._inline import InlineExecutor as InlineExecutor
from ._registry import ExecutorSpec as ExecutorSpec
from ._registry import make_executor as make_executor
from .process import ProcessExecutor as ProcessExecutor
from .process import ProcessExecutorStatistics as ProcessExecutorStatistics

# isort: split
# thread and ray executors
from ._ray import RayExecutor as RayExecutor
from ._thread import ThreadExecutor as ThreadExecutor

__all__ = (
    "Executor",
    "ExecutorClosedError",
    "ExecutorSpec",
    "InlineExecutor",
    "ProcessExecutor",
    "ProcessExecutorStatistics",
    "TaskEvents",
    "TaskHandle",
    "TaskRunner",
    # thread and ray executors
    "RayExecutor",
    "ThreadExecutor",
)
