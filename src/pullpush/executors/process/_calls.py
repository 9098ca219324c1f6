"""Call encoding: a task runner pickled into its CALL message, and the function
cache (a function pickled once, then sent by id, once per worker)."""

from __future__ import annotations

import functools
import pickle
import sys
import types
import weakref
from typing import TYPE_CHECKING, Any

from ..._exceptions import TaskPicklingError
from .._base import TaskRunner
from . import _pickling as pickling
from . import _protocol as wire
from ._handle import _Call
from ._sizes import check_call_size


class _CallsMixin:
    """The executor's call encoding and function cache."""

    if TYPE_CHECKING:  # what this room uses of the executor
        _functions: dict[int, tuple[int, pickling.Blob, Any]]
        _seen_once: dict[int, weakref.ref[Any]]
        _last_function: Any
        _last_function_id: tuple[int, pickling.Blob] | None
        _next_fn_id: int

    def _encode(self, wire_id: int, runner: TaskRunner) -> tuple[_Call, int]:
        """The call of ``runner`` as task ``wire_id``, and the bytes it carries (its
        pickle and out-of-band buffers; 0 for a CALL of small raw arguments).

        Raises:
            TaskPicklingError: the runner or its arguments could not be pickled.
        """
        function: Any = runner
        args: tuple[Any, ...] = ()
        kwargs: dict[str, Any] | None = None
        if type(runner) is functools.partial:
            function, args, kwargs = runner.func, runner.args, runner.keywords or None
        cached = self._function_id(function)
        if cached is None:
            try:
                blob = pickling.dumps_blob(runner, cloud=True)
            except KeyboardInterrupt:
                raise
            except BaseException as error:
                raise TaskPicklingError(
                    f"the task runner ({type(runner).__qualname__}) could not be pickled: "
                    f"{pickling.failure_reason(error, 'pickling it')}"
                ) from error
            check_call_size(self, pickling.stream_size(blob), runner)
            return ((wire.CALL_BLOB, wire_id, blob), None, None), pickling.blob_size(blob)
        fn_id, fn_blob = cached
        if kwargs is None and wire.RAW_TYPES.issuperset(map(type, args)):
            if not pickling.large_raw(args):
                return ((wire.CALL, wire_id, fn_id, args), fn_id, fn_blob), 0
            # Raw arguments, some large (a chunk of bytes or str): the common case of
            # chunk analysis, pickled by the shortest path (nothing there can fail).
            args_blob, size = pickling.dumps_raw_args(args)
            check_call_size(self, pickling.stream_size(args_blob), runner)
            return ((wire.CALL_ARGS, wire_id, fn_id, args_blob), fn_id, fn_blob), size
        try:
            args_blob = pickling.dumps_blob(
                (tuple(map(pickling.wrap_large, args)), pickling.wrap_values(kwargs) or {})
            )
        except KeyboardInterrupt:
            raise
        except BaseException as error:
            name = getattr(function, "__qualname__", repr(function))
            where, why = _culprit(args, kwargs or {}, error)
            raise TaskPicklingError(f"{where} of {name} could not be pickled: {why}") from error
        check_call_size(self, pickling.stream_size(args_blob), runner)
        return (
            ((wire.CALL_ARGS, wire_id, fn_id, args_blob), fn_id, fn_blob),
            pickling.blob_size(args_blob),
        )

    def _function_id(self, function: Any) -> tuple[int, pickling.Blob] | None:
        """The cache id and blob of ``function``, or ``None`` if it is not cacheable."""
        if function is self._last_function:
            return self._last_function_id
        found = self._cached_function_id(function)
        if found is not None:
            # Held strongly while it is the last one: its id cannot be reused meanwhile.
            self._last_function, self._last_function_id = function, found
        return found

    def _cached_function_id(self, function: Any) -> tuple[int, pickling.Blob] | None:
        """Cache ``function`` if it is importable (pickled by reference: cheap to keep
        in a worker) or submitted for the second time; a closure, lambda or bound
        method seen once is not cached (``None``): it travels with its call, and the
        worker frees it with the call, along with the data it captured."""
        key = id(function)
        entry = self._functions.get(key)
        if entry is not None:
            fn_id, blob, held = entry
            if (held() if isinstance(held, weakref.ref) else held) is function:
                return fn_id, blob
        try:
            held = weakref.ref(function, self._forget_function)
        except TypeError:
            # Not weak-referenceable: only module-level builtins (immortal in practice)
            # are safe to cache by id; a fresh builtin method could reuse the id.
            if not (
                isinstance(function, types.BuiltinFunctionType)
                and isinstance(function.__self__, types.ModuleType)
            ):
                return None
            held = function
        if not _importable(function):
            seen = self._seen_once.get(key)
            if seen is None or seen() is not function:
                self._seen_once[key] = weakref.ref(
                    function, functools.partial(_drop_seen, self._seen_once, key)
                )
                return None
            del self._seen_once[key]
        try:
            blob = pickling.dumps_blob(function, cloud=True)
        except KeyboardInterrupt:
            raise
        except BaseException:  # the whole runner is pickled instead, and fails there
            return None
        check_call_size(self, pickling.stream_size(blob), function)
        fn_id = self._next_fn_id
        self._next_fn_id += 1
        self._functions[key] = (fn_id, blob, held)
        return fn_id, blob

    def _forget_function(self, reference: weakref.ref[Any]) -> None:
        for key, (_, _, held) in list(self._functions.items()):
            if held is reference:
                del self._functions[key]


def _runner_kind(runner: Any) -> int:
    """What tells the kind of a task whose runner is pickled whole (a CALL_BLOB) from
    others, for the prefetch: the code its function runs (shared by every closure of
    one ``def``), else its type (a CALL or CALL_ARGS: its function's id in the cache)."""
    function = runner.func if type(runner) is functools.partial else runner
    code = getattr(function, "__code__", None)
    return ~id(code if code is not None else type(function))


def _culprit(
    args: tuple[Any, ...], kwargs: dict[str, Any], error: BaseException
) -> tuple[str, str]:
    """Which argument cannot be pickled (with its type) and why, for the message;
    ``error`` is what pickling them all raised."""
    named = [(f"argument {i}", a) for i, a in enumerate(args)]
    named += [(f"keyword argument {k!r}", v) for k, v in kwargs.items()]
    for where, value in named:
        try:
            pickling.dumps(value)
        except KeyboardInterrupt:  # noqa: PERF203 - an error path, not a hot one
            raise
        except BaseException as own:
            error = own
            where = f"{where} ({type(value).__qualname__})"
            break
    else:
        where = "the arguments"
    if not isinstance(error, pickle.PicklingError):  # what pickling raised, as it was
        return where, pickling.failure_reason(error, "pickling it")
    cause = error.__cause__
    if isinstance(cause, BaseException) and pickling.error_text(cause):
        return where, pickling.failure_reason(cause, "pickling it")
    return where, pickling.error_text(error)


def _importable(function: Any) -> bool:
    """Whether pickle sends ``function`` by reference: its module (not ``__main__``)
    holds it under its qualified name, so a worker imports it rather than keeping a
    copy of its code and data."""
    module = getattr(function, "__module__", None)
    name = getattr(function, "__qualname__", None)
    if not isinstance(module, str) or not isinstance(name, str) or module == "__main__":
        return False
    found: Any = sys.modules.get(module)
    for part in name.split("."):
        found = getattr(found, part, None)
    return found is function


def _drop_seen(table: dict[int, weakref.ref[Any]], key: int, reference: weakref.ref[Any]) -> None:
    if table.get(key) is reference:
        del table[key]
