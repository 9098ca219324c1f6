"""Resolve ``executor=`` arguments: an :class:`Executor`, or a name."""

from __future__ import annotations

import importlib
from typing import Literal

from .._util import check_int
from ._base import Executor

__all__ = ["ExecutorSpec", "check_executor_spec", "make_executor"]

ExecutorSpec = Executor | Literal["inline", "thread", "process", "ray"]

_BUILT_IN = {
    "inline": ("._inline", "InlineExecutor"),
    "thread": ("._thread", "ThreadExecutor"),
    "process": (".process", "ProcessExecutor"),
    "ray": ("._ray", "named_ray_executor"),  # keeps its local Ray up between runs
}


# The names whose executor is a pool of a size ``workers=`` sets (its ``max_workers``).
_SIZED = ("thread", "process")


def check_executor_spec(spec: object, workers: object = None) -> None:
    """Raise ``ValueError`` unless ``spec`` is an :class:`Executor` or a known name
    (without building anything: ``"ray"`` imports Ray only when a run starts), and
    ``workers`` is ``None`` or a worker count (an int >= 1) for ``"thread"`` or
    ``"process"``."""
    if not isinstance(spec, Executor) and spec not in _BUILT_IN:
        raise ValueError(
            f"executor must be an Executor or one of 'inline', 'thread', 'process', 'ray'; "
            f"got {spec!r}"
        )
    if workers is None:
        return
    if spec not in _SIZED:
        what = (
            f"a {type(spec).__name__} has its own size"
            if isinstance(spec, Executor)
            else f"executor={spec!r} has no worker pool"
        )
        raise ValueError(
            f"workers= sizes the executor built for executor='thread' or 'process'; {what}"
        )
    check_int("workers", workers, minimum=1)


def make_executor(spec: ExecutorSpec, workers: int | None = None) -> tuple[Executor, bool]:
    """Return ``(executor, owned)``: the executor for ``spec`` and whether the caller
    created it (and so must close it). Names build one with default settings, but
    ``workers`` (for ``"thread"`` and ``"process"`` only) sets its ``max_workers``."""
    check_executor_spec(spec, workers)
    if isinstance(spec, Executor):
        return spec, False
    where = _BUILT_IN.get(spec) if isinstance(spec, str) else None
    if where is not None:
        module, name = where
        cls = getattr(importlib.import_module(module, __package__), name)
        return (cls() if workers is None else cls(max_workers=workers)), True
    raise ValueError(
        f"executor must be an Executor or one of 'inline', 'thread', 'process', 'ray'; got {spec!r}"
    )
