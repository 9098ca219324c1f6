"""How a worker reports what went wrong: exception type names, tracebacks and
attributes as text that always pickles, and the errors of a value that would not
(un)pickle."""

from __future__ import annotations

import pickle
import traceback
from typing import Any

from ..._exceptions import TaskPicklingError
from ._pickling import error_text, failure_reason

__all__ = ["attributes", "format_error", "pickling_error", "type_name", "unpickling_error"]


def type_name(obj: object) -> str:
    kind = type(obj)
    module = kind.__module__
    return kind.__qualname__ if module == "builtins" else f"{module}.{kind.__qualname__}"


PLAIN = frozenset({int, float, str, bytes, bool, type(None)})


def attributes(error: BaseException) -> dict[str, Any]:
    """``error``'s ``args`` and public instance attributes, in a form that always
    pickles and unpickles (see ``RemoteTaskError.attributes``)."""
    try:
        found: dict[str, Any] = {"args": error.args}
        found.update(
            (name, value)
            for name, value in getattr(error, "__dict__", {}).items()
            if isinstance(name, str) and not name.startswith("_")
        )
        return {name: readable(value) for name, value in found.items()}
    except BaseException:  # an exception with hostile attributes: send none
        return {}


def readable(value: Any, nested: bool = False) -> Any:
    kind = type(value)
    if kind in PLAIN:
        if (kind is str or kind is bytes) and len(value) > 1000:
            return value[:1000] + (b"..." if kind is bytes else "...")
        return value
    if kind is tuple and not nested:
        return tuple(readable(item, nested=True) for item in value)
    try:
        text = repr(value)
    except (Exception, SystemExit):
        text = f"<{type(value).__qualname__} object (its repr failed)>"
    return text if len(text) <= 1000 else text[:1000] + "..."


def format_error(error: BaseException) -> str:
    """The traceback of ``error`` as text, never raising."""
    try:
        return "".join(traceback.format_exception(type(error), error, error.__traceback__))
    except BaseException as failure:
        return (
            f"{type_name(error)}: {error_text(error)}\n"
            f"(its traceback could not be formatted: {failure_reason(failure, 'formatting it')})\n"
        )


def pickling_error(what: str, error: BaseException, value: Any) -> Exception:
    """``what`` (``value``) could not be pickled: ``dumps`` raised ``error``."""
    if isinstance(error, pickle.PicklingError):  # dumps' own: it names the type
        why = error_text(error)
    else:
        why = f"cannot pickle {type(value).__qualname__} object: "
        why += failure_reason(error, "pickling it")
    return TaskPicklingError(f"{what} could not be pickled: {why}")


def unpickling_error(what: str, error: BaseException) -> Exception:
    why = failure_reason(error, "unpickling it")
    return TaskPicklingError(f"the {what} could not be unpickled in the worker: {why}")
