"""Resolve ``executor=`` arguments: an :class:`Executor`, or a name."""

from __future__ import annotations

import importlib
from typing import Literal

from ._base import Executor

__all__ = ["ExecutorSpec", "check_executor_spec", "make_executor"]

ExecutorSpec = Executor | Literal["inline", "thread", "process", "ray"]

_BUILT_IN = {
    "inline": ("._inline", "InlineExecutor"),
    "thread": ("._thread", "ThreadExecutor"),
    "process": (".process", "ProcessExecutor"),
    "ray": ("._ray", "RayExecutor"),
}


def check_executor_spec(spec: object) -> None:
    """Raise ``ValueError`` unless ``spec`` is an :class:`Executor` or a known name
    (without building anything: ``"ray"`` imports Ray only when a run starts)."""
    if not isinstance(spec, Executor) and spec not in _BUILT_IN:
        raise ValueError(
            f"executor must be an Executor or one of 'inline', 'thread', 'process', 'ray'; "
            f"got {spec!r}"
        )


def make_executor(spec: ExecutorSpec) -> tuple[Executor, bool]:
    """Return ``(executor, owned)``: the executor for ``spec`` and whether the caller
    created it (and so must close it). Names build one with default settings."""
    if isinstance(spec, Executor):
        return spec, False
    where = _BUILT_IN.get(spec) if isinstance(spec, str) else None
    if where is not None:
        module, name = where
        cls = getattr(importlib.import_module(module, __package__), name)
        return cls(), True
    raise ValueError(
        f"executor must be an Executor or one of 'inline', 'thread', 'process', 'ray'; got {spec!r}"
    )
