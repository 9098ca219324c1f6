"""How values become bytes for the process executor's wire: cloudpickle that keeps the
user's file names in tracebacks, values pickled on their own (*blobs*, so that one bad
value fails one task), and large values out of band.

A *blob* is ``bytes`` (a pickle), or, when it has out-of-band buffers or is large, a
tuple ``(pickle, buffer, ...)`` (see :func:`dumps_blob`, :func:`loads_blob`).

**Large values travel out of band** (:func:`dumps_blob`). A ``bytes``, ``str``,
``bytearray`` or ``memoryview`` of at least :data:`OOB_THRESHOLD` bytes (characters
for a ``str``) at the top of a call's arguments, keyword arguments, closure variables,
``functools.partial`` arguments or a task's result or yielded value -- or an item of a
tuple there -- and any object whose protocol-5 pickling gives ``pickle.PickleBuffer``
(a contiguous numpy array) at any depth, leaves the pickle stream. In a call, its
bytes are copied into the executor's payload arena (shared memory, ``_shm.py``) when
the call is sent to a worker; in a result, or a call the arena has no room for, they
are written to the pipe from the object itself. What arrives is what was sent, by
either way: ``bytes`` as ``bytes`` and ``bytearray`` as ``bytearray`` (one copy in
the receiver), ``str`` as ``str`` (encoded to UTF-8 in the sender, decoded in the receiver),
a ``memoryview`` as a ``memoryview`` of the received bytes (read-only if the sent one
was; its format and shape kept where ``memoryview.cast`` allows), a numpy array as an
array over the received bytes (no copy). A mutable buffer (``bytearray``, a writable
view, a numpy array) is copied once when its call is pickled, so that changing it
afterwards does not change what the task receives; ``bytes`` are never copied.
A large value nested deeper (a list of ``bytes``) stays in the pickle stream, which is
itself written without a copy when it is large.
"""

from __future__ import annotations

import contextlib
import copyreg
import functools
import io
import linecache
import os
import pickle
import types
from collections import ChainMap
from collections.abc import Callable
from typing import Any, ClassVar, Final, TypeAlias

import cloudpickle

from . import _shm
from ._protocol import PROTOCOL

__all__ = [
    "ALONE_THRESHOLD",
    "OOB_THRESHOLD",
    "Blob",
    "blob_size",
    "cloudpickle_dumps",
    "dumps",
    "dumps_blob",
    "dumps_raw_args",
    "error_text",
    "failure_reason",
    "is_large",
    "large_raw",
    "loads_args",
    "loads_blob",
    "raw_args",
    "stream_size",
    "wrap_large",
    "wrap_values",
]

OOB_THRESHOLD: Final = 64 * 1024
"""Bytes (characters for a ``str``) from which a value travels out of band. Below it,
copying the value into the pickle stream costs less than a separate buffer does
(measured on Linux: an out-of-band buffer costs about 2 us more per message; copying
64 KiB costs about as much); it is also the size from which the pickle module itself
stops buffering a payload."""


_code_reduce: Callable[[types.CodeType], tuple[Any, tuple[Any, ...]]] = (
    cloudpickle.Pickler.dispatch_table[types.CodeType]
)


def _reduce_code(code: types.CodeType) -> tuple[Any, tuple[Any, ...]]:
    """cloudpickle's reduction of a code object (a function pickled by value: one of
    ``__main__``, a notebook, a lambda), keeping its file name, which cloudpickle
    replaces with ``"<dynamic-code>"``, so the worker's tracebacks name the user's file
    and line, and show the source line when the worker can read the file. A file
    that exists only in this process's ``linecache`` (a notebook cell) travels with
    its lines."""
    rebuild, args = _code_reduce(code)
    filename = code.co_filename
    lines: list[str] | None = None
    if not filename.startswith("<") and not os.path.isfile(filename):
        lines = linecache.getlines(filename) or None
    return _code_in_file, (rebuild, args, filename, lines)


def _code_in_file(
    rebuild: Callable[..., types.CodeType],
    args: tuple[Any, ...],
    filename: str,
    lines: list[str] | None,
) -> types.CodeType:
    """Unpickle what :func:`_reduce_code` made: the code object, in its file."""
    if lines is not None and filename not in linecache.cache:
        # No modification time: linecache.checkcache keeps the entry.
        linecache.cache[filename] = (sum(map(len, lines)), None, lines, filename)
    return rebuild(*args).replace(co_filename=filename)


_cell_reduce: Callable[[types.CellType], tuple[Any, tuple[Any, ...]]] = (
    cloudpickle.Pickler.dispatch_table[types.CellType]
)


def _reduce_cell(cell: types.CellType) -> tuple[Any, tuple[Any, ...]]:
    """cloudpickle's reduction of a closure's cell, its large contents out of band."""
    rebuild, args = _cell_reduce(cell)
    return rebuild, tuple(map(wrap_large, args))


def _reduce_partial(partial: functools.partial[Any]) -> Any:
    """A ``functools.partial``'s reduction, its large arguments out of band."""
    reduced: Any = partial.__reduce__()
    kind, func, (function, args, keywords, attributes) = reduced
    return kind, func, (function, tuple(map(wrap_large, args)), wrap_values(keywords), attributes)


def _reduce_memoryview(view: memoryview) -> tuple[Any, tuple[Any, ...]]:
    """A ``memoryview`` (which pickle refuses) travels as its bytes, out of band when
    large, and arrives as a ``memoryview`` of them, of the same format and shape."""
    shape = view.shape or ()
    if not view.c_contiguous:
        flat: Any = memoryview(view.tobytes())
        view = flat.cast(view.format, shape) if shape else flat
    return _memoryview_from, (pickle.PickleBuffer(view), view.format, shape)


def _memoryview_from(buffer: Any, format: str, shape: tuple[int, ...]) -> memoryview:
    view: Any = memoryview(buffer)
    if format != "B" or len(shape) != 1:
        with contextlib.suppress(TypeError, ValueError):
            view = view.cast("B").cast(format, shape)
    return view  # type: ignore[no-any-return]


_DISPATCH: Final[dict[Any, Any]] = {
    functools.partial: _reduce_partial,
    memoryview: _reduce_memoryview,
}


class _Pickler(cloudpickle.Pickler):  # type: ignore[misc]
    dispatch_table: ClassVar[ChainMap[Any, Any]] = ChainMap(
        {types.CodeType: _reduce_code, types.CellType: _reduce_cell, **_DISPATCH},
        cloudpickle.Pickler.dispatch_table,
    )


class _PlainPickler(pickle.Pickler):
    dispatch_table: Any = ChainMap(_DISPATCH, copyreg.dispatch_table)  # noqa: RUF012


def cloudpickle_dumps(obj: Any) -> bytes:
    """``cloudpickle.dumps(obj, PROTOCOL)``, but functions pickled by value keep their
    file name (see :func:`_reduce_code`)."""
    with io.BytesIO() as file:
        _Pickler(file, protocol=PROTOCOL).dump(obj)
        return file.getvalue()


# -- out-of-band values --------------------------------------------------------------------

Blob: TypeAlias = bytes | tuple[Any, ...]
"""What :func:`dumps_blob` returns."""


class _OutOfBand:
    """Pickles the large ``bytes``, ``str`` or ``bytearray`` it wraps as a
    ``pickle.PickleBuffer`` (taken out of band by :func:`dumps_blob`); unpickles as
    the value itself."""

    __slots__ = ("value",)

    def __init__(self, value: bytes | str | bytearray) -> None:
        self.value = value

    def __reduce_ex__(self, protocol: Any) -> tuple[Any, tuple[Any, ...]]:
        value: Any = self.value
        if type(value) is str:
            return _str_from, (pickle.PickleBuffer(value.encode("utf-8", "surrogatepass")),)
        if type(value) is bytes:
            return bytes, (pickle.PickleBuffer(value),)
        return _bytearray_from, (pickle.PickleBuffer(value),)


def _str_from(buffer: Any) -> str:
    return str(buffer, "utf-8", "surrogatepass")


def _bytearray_from(buffer: Any) -> bytearray:
    # A bytearray is the copy the arena's reader made for this value alone: no second.
    return buffer if type(buffer) is bytearray else bytearray(buffer)


_WRAPPED: Final = frozenset({bytes, str, bytearray})


def wrap_large(value: Any) -> Any:
    """``value``, or what pickles it out of band if it is a large ``bytes``, ``str``
    or ``bytearray`` (or a tuple holding such values: a tuple of their wrappers). Only
    :func:`dumps_blob` takes them out of band; another pickler copies them inline."""
    kind = type(value)
    if kind in _WRAPPED:
        return _OutOfBand(value) if len(value) >= OOB_THRESHOLD else value
    if kind is tuple and len(value) <= 64:
        wrapped = tuple(map(_wrap_item, value))
        if any(map(_is_wrapper, wrapped)):
            return wrapped
    return value


def _wrap_item(value: Any) -> Any:
    if type(value) in _WRAPPED and len(value) >= OOB_THRESHOLD:
        return _OutOfBand(value)
    return value


def _is_wrapper(value: Any) -> bool:
    return type(value) is _OutOfBand


def wrap_values(mapping: dict[str, Any] | None) -> dict[str, Any] | None:
    """``mapping`` with its values passed through :func:`wrap_large`."""
    if not mapping:
        return mapping
    return {key: wrap_large(value) for key, value in mapping.items()}


def large_raw(values: tuple[Any, ...] | list[Any]) -> bool:
    """Whether one of ``values`` is a ``str`` or ``bytes`` that travels out of band."""
    for value in values:
        kind = type(value)
        if (kind is bytes or kind is str) and len(value) >= OOB_THRESHOLD:
            return True
    return False


def _collector(buffers: list[pickle.PickleBuffer]) -> Callable[[pickle.PickleBuffer], bool]:
    def collect(buffer: pickle.PickleBuffer) -> bool:
        try:
            raw = buffer.raw()
        except BufferError:  # not contiguous: pickled inline (or refused) as usual
            return True
        if raw.nbytes < OOB_THRESHOLD:
            return True
        if type(raw.obj) is not bytes:  # mutable: the task gets it as it is now
            buffer = pickle.PickleBuffer(bytes(raw) if raw.readonly else bytearray(raw))
        buffers.append(buffer)
        return False

    return collect


def dumps_blob(obj: Any, cloud: bool = False) -> Blob:
    """Pickle ``obj`` (protocol 5) into a blob, its buffers out of band (see the
    module's docstring; wrap values with :func:`wrap_large` first). A blob is the
    pickle's ``bytes``, or ``(pickle, buffer, ...)`` where there are buffers or the
    pickle is large: then the pickle and each buffer are ``pickle.PickleBuffer``
    objects, which a frame carries out of band (the pickle a ``bytes`` when small).

    ``cloud``: pickle with cloudpickle (a runner or a function) rather than trying
    plain pickle first.

    Raises:
        pickle.PicklingError: neither could pickle it; the message names the type.
    """
    buffers: list[pickle.PickleBuffer] = []
    collect = _collector(buffers)
    stream: bytes | None = None
    if not cloud:
        try:
            with io.BytesIO() as file:
                _PlainPickler(file, PROTOCOL, buffer_callback=collect).dump(obj)
                stream = file.getvalue()
        except Exception:
            buffers.clear()
    if stream is None:
        try:
            with io.BytesIO() as file:
                _Pickler(file, protocol=PROTOCOL, buffer_callback=collect).dump(obj)
                stream = file.getvalue()
        except Exception as error:
            if cloud:
                raise
            raise pickle.PicklingError(
                f"cannot pickle {type(obj).__qualname__} object: {error_text(error)}"
            ) from error
    if len(stream) >= OOB_THRESHOLD:
        return (pickle.PickleBuffer(stream), *buffers)
    if buffers:
        return (stream, *buffers)
    return stream


def dumps_raw_args(args: tuple[Any, ...]) -> tuple[Blob, int]:
    """The blob of a call's arguments when every one is of a raw type
    (``wire.RAW_TYPES``) and some are large ``bytes`` or ``str`` (see
    :func:`large_raw`), and the bytes it carries. The shortest path for the common
    case of chunk analysis (``partial(fn, chunk)``): the C pickler alone, nothing that
    can fail, and no reducer or global in the stream -- each large value is a bare
    out-of-band buffer (a ``str`` its UTF-8), which :func:`raw_args` turns back into
    the value sent.

    The blob holds ``(values, large)``, where a call's other blobs hold ``(args,
    kwargs)``: ``large`` a tuple (not a dict), the index of each large value, ``~``
    the index for a ``str``."""
    values = list(args)
    large: list[int] = []
    for index, value in enumerate(args):
        kind = type(value)
        if kind is bytes and len(value) >= OOB_THRESHOLD:
            values[index] = pickle.PickleBuffer(value)
            large.append(index)
        elif kind is str and len(value) >= OOB_THRESHOLD:
            values[index] = pickle.PickleBuffer(value.encode("utf-8", "surrogatepass"))
            large.append(~index)
    buffers: list[pickle.PickleBuffer] = []
    stream = pickle.dumps((values, tuple(large)), PROTOCOL, buffer_callback=buffers.append)
    size = len(stream)
    for buffer in buffers:
        size += buffer.raw().nbytes
    if len(stream) >= OOB_THRESHOLD:
        return (pickle.PickleBuffer(stream), *buffers), size
    return (stream, *buffers), size


def raw_args(values: list[Any], large: tuple[int, ...]) -> list[Any]:
    """The arguments :func:`dumps_raw_args` pickled, from what its blob unpickled to:
    each large value, a ``bytes`` (taken out of the arena) or a read-only
    ``memoryview`` (of a frame), made the ``bytes`` or ``str`` it was."""
    for index in large:
        if index < 0:
            values[~index] = str(values[~index], "utf-8", "surrogatepass")
        elif type(values[index]) is not bytes:
            values[index] = bytes(values[index])
    return values


def _one_large_stream(value: bytes | str) -> bytes:
    stream = dumps_raw_args((value,))[0][0]
    assert type(stream) is bytes
    return stream


_ONE_BYTES: Final = _one_large_stream(bytes(OOB_THRESHOLD))
"""The pickle of :func:`dumps_raw_args` for one large ``bytes`` argument (it does not
depend on the bytes: they travel out of band): ``partial(fn, chunk)``."""
_ONE_STR: Final = _one_large_stream("\0" * OOB_THRESHOLD)
"""The same for one large ``str`` argument."""


def loads_args(blob: Blob) -> tuple[Any, dict[str, Any] | None]:
    """The ``(args, kwargs)`` of a CALL_ARGS blob (``kwargs`` ``None`` when there are
    none): of :func:`dumps_raw_args` (raw arguments, some large, made the values sent
    by :func:`raw_args`) or of :func:`dumps_blob`. The common case of chunk analysis,
    one large argument placed in the payload arena, skips unpickling: its pickle does
    not depend on the chunk (which travels out of band), so the worker knows it, and
    takes the chunk straight out of the arena (a ``str`` decoded from there, with no
    ``bytes`` in between).

    Raises:
        Exception: what unpickling raises (a corrupt blob), RuntimeError where a
            placed blob reaches a process without the arena.
    """
    if type(blob) is tuple and blob[0] is None and len(blob[3]) == 2:
        stream = blob[1]
        if stream == _ONE_BYTES:
            return (_shm.load_bytes(blob[2], blob[3][1]),), None
        if stream == _ONE_STR:
            return (_shm.load_str(blob[2], blob[3][1]),), None
    args, kwargs = loads_blob(blob)
    if type(kwargs) is tuple:  # raw arguments, the large ones bare buffers
        return raw_args(args, kwargs), None
    return args, kwargs or None


def loads_blob(blob: Blob) -> Any:
    """Unpickle what :func:`dumps_blob` made (after a trip through a frame), or what
    the payload arena placed (``_shm.py``: its buffers copied out of the arena)."""
    if isinstance(blob, bytes):
        return pickle.loads(blob)
    if blob[0] is None:
        return _shm.loads_placed(blob)
    return pickle.loads(blob[0], buffers=blob[1:])


ALONE_THRESHOLD: Final = 1 << 20
"""Bytes of a blob from which its message travels in a frame of its own (see
:func:`is_large`). Smaller out-of-band calls share frames: measured with 64 KiB
chunks, a frame per call cost the parent 30% more CPU than batching them."""


def is_large(blob: Blob) -> bool:
    """Whether a blob carries at least :data:`ALONE_THRESHOLD` bytes through the pipe:
    its message travels in a frame of its own (never with other calls). A placed blob
    (its bytes in the payload arena) is small."""
    return type(blob) is tuple and blob[0] is not None and blob_size(blob) >= ALONE_THRESHOLD


def blob_size(blob: Blob) -> int:
    """The bytes a blob carries (a placed blob: in the arena too)."""
    if isinstance(blob, bytes):
        return len(blob)
    if blob[0] is None:
        return sum(blob[3])
    return sum(memoryview(part).nbytes for part in blob)


def stream_size(blob: Blob) -> int:
    """The bytes of a blob's pickle stream (what is copied: not its buffers)."""
    stream = blob if isinstance(blob, bytes) else blob[0]
    return memoryview(stream).nbytes


def dumps(obj: Any) -> bytes:
    """Pickle ``obj`` (protocol 5), falling back to cloudpickle for what plain pickle
    cannot handle (lambdas, closures, classes defined in ``__main__``).

    Raises:
        pickle.PicklingError: neither could pickle it; the message names the type.
    """
    try:
        return pickle.dumps(obj, PROTOCOL)
    except Exception:
        pass
    try:
        return cloudpickle_dumps(obj)
    except Exception as error:
        raise pickle.PicklingError(
            f"cannot pickle {type(obj).__qualname__} object: {error_text(error)}"
        ) from error


def error_text(error: BaseException) -> str:
    """``str(error)``, never raising: an exception whose ``__str__`` raises gives
    ``<unprintable TypeName: str() raised OtherType>``."""
    try:
        return str(error)
    except BaseException as failure:
        return (
            f"<unprintable {type(error).__qualname__}: str() raised {type(failure).__qualname__}>"
        )


def failure_reason(error: BaseException, doing: str) -> str:
    """Why ``doing`` (``"pickling it"``...) failed, for a message, never raising:
    ``TypeName: text``, or ``<doing> called sys.exit(code)``."""
    if isinstance(error, SystemExit):
        try:
            code = repr(error.code)
        except BaseException:
            code = "..."
        return f"{doing} called sys.exit({code})"
    return f"{type(error).__name__}: {error_text(error)}"
