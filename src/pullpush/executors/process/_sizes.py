"""Warn (once per executor) when a task's pickled call is large, naming what made it so."""

from __future__ import annotations

import functools
import warnings
import weakref
from typing import Any

import cloudpickle

from ..._exceptions import LargeTaskWarning

LARGE_CALL = 4 * 2**20
"""Bytes of a pickled call (runner or arguments) above which the executor warns. Values
that travel out of band (see ``_pickling.py``) do not count: they are written from the
objects themselves, never copied into the pickle."""

_warned: weakref.WeakSet[Any] = weakref.WeakSet()


def check_call_size(executor: Any, size: int, runner: Any) -> None:
    """Warn with :class:`LargeTaskWarning` the first time ``executor`` pickles a call
    of more than :data:`LARGE_CALL` bytes (a cheap length check otherwise)."""
    if size <= LARGE_CALL or executor in _warned:
        return
    _warned.add(executor)
    warnings.warn(
        f"a task's pickled call is {size / 2**20:.1f} MiB, sent with every task that "
        f"carries it: {_largest_part(runner)}. Pass big data once per worker "
        "(functools.partial of a module-level function, an initializer, a file) rather "
        "than in each task or a closure.",
        LargeTaskWarning,
        stacklevel=4,
    )


def _parts(runner: Any) -> list[tuple[str, Any]]:
    function, parts = runner, []
    if isinstance(runner, functools.partial):
        function = runner.func
        parts += [(f"argument {i}", a) for i, a in enumerate(runner.args)]
        parts += [(f"keyword argument {k!r}", v) for k, v in (runner.keywords or {}).items()]
    code = getattr(function, "__code__", None)
    closure = getattr(function, "__closure__", None)
    if code is not None and closure:
        for name, cell in zip(code.co_freevars, closure, strict=False):
            try:
                parts.append((f"the closure variable {name!r}", cell.cell_contents))
            except ValueError:  # noqa: PERF203 - an empty cell
                continue
    globals_ = getattr(function, "__globals__", None)
    if code is not None and globals_ is not None and function.__module__ == "__main__":
        parts += [
            (f"the __main__ global {n!r}", globals_[n]) for n in code.co_names if n in globals_
        ]
    defaults = getattr(function, "__defaults__", None) or ()
    parts += [(f"default argument {i}", d) for i, d in enumerate(defaults)]
    return parts


def _largest_part(runner: Any) -> str:
    best: tuple[int, str] | None = None
    for where, value in _parts(runner):
        try:
            size = len(cloudpickle.dumps(value))
        except Exception:  # an error path: size what can be sized
            continue
        if best is None or size > best[0]:
            best = (size, f"{where} ({type(value).__qualname__}, {size / 2**20:.1f} MiB)")
    name = getattr(runner, "__qualname__", type(runner).__qualname__)
    return f"the largest part is {best[1]}" if best else f"{name} itself"
