"""The process executor's wire: message types, frames and non-blocking pipe I/O.

This module knows bytes and message shapes only; what a message *means* is
``_worker.py``'s and ``_executor.py``'s business.

A **frame** is a 12-byte little-endian header (the body's length, 8 bytes, and its
count of out-of-band buffers, 4 bytes) followed by the body. A body without buffers
is a pickle (protocol 5) of a list of messages. A body with n buffers is a table of
n + 1 lengths (8 bytes each: the pickle's, then each buffer's), the pickle, then the
buffers' bytes, which the pickle refers to (``pickle.PickleBuffer``, unpickled as
``memoryview`` slices of the body). Many small messages travel in one frame, and a
frame is written with one system call where the pipe allows; a buffer is written from
the object that holds it (``os.writev``), never copied into the frame.

**Large values travel out of band** (:func:`dumps_blob`). A ``bytes``, ``str``,
``bytearray`` or ``memoryview`` of at least :data:`OOB_THRESHOLD` bytes (characters
for a ``str``) at the top of a call's arguments, keyword arguments, closure variables,
``functools.partial`` arguments or a task's result or yielded value -- or an item of a
tuple there -- and any object whose protocol-5 pickling gives ``pickle.PickleBuffer``
(a contiguous numpy array) at any depth, leaves the pickle stream: its bytes are
written to the pipe from the object itself. What arrives is what was sent: ``bytes``
as ``bytes`` and ``bytearray`` as ``bytearray`` (one copy in the receiver, none in the
sender), ``str`` as ``str`` (encoded to UTF-8 in the sender, decoded in the receiver),
a ``memoryview`` as a ``memoryview`` of the received bytes (read-only if the sent one
was; its format and shape kept where ``memoryview.cast`` allows), a numpy array as an
array over the received bytes (no copy). A mutable buffer (``bytearray``, a writable
view, a numpy array) is copied once when its call is pickled, so that changing it
afterwards does not change what the task receives; ``bytes`` are never copied.
A large value nested deeper (a list of ``bytes``) stays in the pickle stream, which is
itself written without a copy when it is large.

A **message** is a tuple whose first item is its type. Values that can fail to
pickle or unpickle travel as separate *blobs* (bytes pickled on their own), so that
one bad value fails one task, never a whole frame; values of the builtin scalar types
travel raw (they cannot fail) to save a pickle round trip per message. Consecutive raw
INTERMEDIATE values of one task share one message (a run), so a task streaming small
values costs a list append per value on the wire, not a message.

Parent to worker, on the **call pipe**::

A *blob* is ``bytes`` (a pickle), or, when it has out-of-band buffers or is large, a
tuple ``(pickle, buffer, ...)`` (see :func:`dumps_blob`, :func:`loads_blob`).

    (DEFINE, fn_id, fn_blob)                the function fn_id stands for (cloudpickle)
    (FORGET, fn_id)                         drop it from the worker's cache
    (CALL, task_id, fn_id, args)            run fn(*args); args a tuple of raw scalars
    (CALL_ARGS, task_id, fn_id, args_blob)  run fn(*args, **kwargs); blob of (args, kwargs)
    (CALL_BLOB, task_id, runner_blob)       run the unpickled runner (cloudpickle)
    (CANCEL, task_id)
    (CREDIT, task_id, count)                the consumer read count more INTERMEDIATEs
    (STOP,)                                 finish what you have, then exit
    (WATCH, task_id)                        say STARTED when task_id starts (sent just
                                            before its CALL, only for a task queued
                                            behind others whose submitter listens)

Worker to parent, on the **result pipe**::

    (READY, pid)
    (INTERMEDIATE, task_id, values)         a list of raw values, in the order yielded
    (INTERMEDIATE_BLOB, task_id, blob, type_name)
    (FINAL, task_id, value, seconds, peak_mib)    value raw; seconds the task ran;
                                                  peak_mib the worker's peak resident
                                                  memory during it, or None
    (FINAL_BLOB, task_id, blob, type_name, seconds, peak_mib)
    (ERROR, task_id, error_blob | reason, type_name, message, traceback_text, peak_mib,
     attributes)                            reason: a str, why the exception could not
                                            be pickled (then only its text travels);
                                            attributes: the error's args and public
                                            attributes, plain values or reprs (for a
                                            RemoteTaskError if error_blob fails to load)
    (RETIRE, reason)                        replace me (e.g. over max_worker_memory)
    (STARTED, task_id)                      a watched task began running
    (INIT_FAILED, type_name, message, traceback_text)
"""

from __future__ import annotations

import contextlib
import copyreg
import errno
import functools
import io
import linecache
import os
import pickle
import struct
import types
from collections import ChainMap
from collections.abc import Callable
from typing import Any, ClassVar, Final, TypeAlias

import cloudpickle

__all__ = [
    "ALONE_THRESHOLD",
    "OOB_THRESHOLD",
    "CALL",
    "CALL_ARGS",
    "CALL_BLOB",
    "CANCEL",
    "CREDIT",
    "DEFINE",
    "ERROR",
    "FINAL",
    "FINAL_BLOB",
    "FORGET",
    "INIT_FAILED",
    "INTERMEDIATE",
    "INTERMEDIATE_BLOB",
    "RAW_TYPES",
    "READY",
    "RETIRE",
    "STARTED",
    "STOP",
    "WATCH",
    "FrameReader",
    "FrameWriter",
    "decode_frame",
    "dumps",
    "dumps_blob",
    "encode_frame",
    "is_large",
    "large_raw",
    "loads_blob",
    "wrap_large",
    "wrap_values",
    "error_text",
    "failure_reason",
    "set_pipe_size",
]

# parent -> worker
DEFINE: Final = 1
FORGET: Final = 2
CALL: Final = 3
CALL_ARGS: Final = 4
CALL_BLOB: Final = 5
CANCEL: Final = 6
CREDIT: Final = 7
STOP: Final = 8
WATCH: Final = 9
# worker -> parent
READY: Final = 20
INTERMEDIATE: Final = 21
INTERMEDIATE_BLOB: Final = 22
FINAL: Final = 23
FINAL_BLOB: Final = 24
ERROR: Final = 25
RETIRE: Final = 26
INIT_FAILED: Final = 27
STARTED: Final = 28

RAW_TYPES: Final[frozenset[type]] = frozenset({int, float, str, bytes, bool, type(None)})
"""Types whose values travel inside a frame as they are: unpickling them cannot fail."""

PROTOCOL: Final = 5
HEADER: Final = struct.Struct("<QI")
"""A frame's header: its body's length in bytes, and its count of buffers."""
_READ_SIZE = 1 << 20
_OWN_BUFFER = 1 << 20
"""Bytes of a frame's body from which it is read into a buffer of its own."""

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
        return bytearray, (pickle.PickleBuffer(value),)


def _str_from(buffer: Any) -> str:
    return str(buffer, "utf-8", "surrogatepass")


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


def loads_blob(blob: Blob) -> Any:
    """Unpickle what :func:`dumps_blob` made (after a trip through a frame)."""
    if isinstance(blob, bytes):
        return pickle.loads(blob)
    return pickle.loads(blob[0], buffers=blob[1:])


ALONE_THRESHOLD: Final = 1 << 20
"""Bytes of a blob from which its message travels in a frame of its own (see
:func:`is_large`). Smaller out-of-band calls share frames: measured with 64 KiB
chunks, a frame per call cost the parent 30% more CPU than batching them."""


def is_large(blob: Blob) -> bool:
    """Whether a blob carries at least :data:`ALONE_THRESHOLD` bytes: its message
    travels in a frame of its own (never with other calls)."""
    return type(blob) is tuple and blob_size(blob) >= ALONE_THRESHOLD


def blob_size(blob: Blob) -> int:
    """The bytes a blob carries."""
    if isinstance(blob, bytes):
        return len(blob)
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


def encode_frame(messages: list[Any]) -> list[Any]:
    """Return the parts of a frame holding ``messages``, to be written in order: the
    header, the pickle, then the out-of-band buffers (``pickle.PickleBuffer`` objects
    in the messages), each a buffer of the object that holds it (not copied)."""
    buffers: list[pickle.PickleBuffer] = []
    payload = pickle.dumps(messages, PROTOCOL, buffer_callback=buffers.append)
    if not buffers:
        return [HEADER.pack(len(payload), 0), payload]
    raws = [buffer.raw() for buffer in buffers]
    sizes = [len(payload), *(raw.nbytes for raw in raws)]
    count = len(raws)
    table = struct.pack(f"<{count + 1}Q", *sizes)
    return [HEADER.pack(len(table) + sum(sizes), count) + table, payload, *raws]


def decode_frame(body: Any, count: int) -> list[Any]:
    """The messages of a frame's ``body`` (bytes-like, without its header) holding
    ``count`` buffers (see :data:`HEADER`). With buffers, the messages hold
    ``memoryview`` slices of ``body``: it must be the frame's own buffer, left as it
    is while they live. Raises what unpickling raises (the frame is corrupt)."""
    if not count:
        return pickle.loads(body)  # type: ignore[no-any-return]
    view = memoryview(body)
    sizes = struct.unpack_from(f"<{count + 1}Q", view)
    position = 8 * (count + 1)
    end = position + sizes[0]
    main = view[position:end]
    buffers = []
    for size in sizes[1:]:
        position, end = end, end + size
        buffers.append(view[position:end])
    return pickle.loads(main, buffers=buffers)  # type: ignore[no-any-return]


def set_pipe_size(fd: int, size: int = 1 << 20) -> None:
    """Grow a pipe's kernel buffer (Linux ``F_SETPIPE_SZ``), where allowed."""
    try:
        import fcntl

        fcntl.fcntl(fd, getattr(fcntl, "F_SETPIPE_SZ", 1031), size)
    except (ImportError, OSError):
        pass


class FrameReader:
    """Turn the bytes read from a pipe into lists of messages.

    Reads are non-blocking; :meth:`read` returns every complete frame's messages and
    keeps a partial frame for the next call. A frame with buffers, or of at least
    1 MiB, is read into a buffer of its own, of its exact size (its messages' buffers
    are views of it).
    """

    __slots__ = ("_buffer", "_count", "_filled", "_frame", "fd")

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._buffer = bytearray()
        # Invariant: when _frame is not None, the body of the frame being read into
        # its own buffer, _filled bytes of it read so far, holding _count buffers.
        self._frame: bytearray | None = None
        self._filled = 0
        self._count = 0

    def read(self) -> tuple[list[list[Any]], bool]:
        """Read what the pipe holds now; return ``(frames, at_eof)``."""
        frames: list[list[Any]] = []
        while True:
            frame = self._frame
            try:
                if frame is not None:
                    with memoryview(frame) as view:
                        size = os.readv(self.fd, [view[self._filled :]])
                else:
                    data = os.read(self.fd, _READ_SIZE)
                    size = len(data)
            except BlockingIOError:
                return frames, False
            except OSError as error:
                if error.errno == errno.EINTR:
                    continue
                return frames, True
            if not size:
                return frames, True
            if frame is not None:
                self._filled += size
                if self._filled == len(frame):
                    self._frame = None
                    frames.append(decode_frame(frame, self._count))
                continue
            self._buffer += data
            self._decode(frames)
            if size < _READ_SIZE and self._frame is None:
                return frames, False

    def _decode(self, frames: list[list[Any]]) -> None:
        buffer = self._buffer
        size = len(buffer)
        position = 0
        header = HEADER.size
        with memoryview(buffer) as view:
            while size - position >= header:
                length, count = HEADER.unpack_from(buffer, position)
                start = position + header
                end = start + length
                if count or length >= _OWN_BUFFER:
                    # Its own buffer: the messages may keep views of it.
                    frame = bytearray(length)
                    have = min(end, size) - start
                    frame[:have] = view[start : start + have]
                    position = start + have
                    if have < length:
                        self._frame, self._filled, self._count = frame, have, count
                        break
                    frames.append(decode_frame(frame, count))
                    continue
                if end > size:
                    break
                frames.append(pickle.loads(view[start:end]))
                position = end
        if position:
            del buffer[:position]


class FrameWriter:
    """Queue messages, then write them as frames through a non-blocking pipe.

    :meth:`send` and :meth:`send_intermediates` only queue. :meth:`flush` encodes
    everything queued into one frame and writes what the pipe takes now; when it
    returns ``False`` bytes are left, and the owner calls :meth:`write_pending` once
    the fd is writable again.
    """

    __slots__ = ("_chunks", "_run", "_run_task", "fd", "messages")

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.messages: list[Any] = []
        # Invariant: the encoded bytes not yet written, in order.
        self._chunks: list[memoryview] = []
        # Invariant: when _run is not None, it is the value list of the last message
        # queued, an INTERMEDIATE of task _run_task: a raw value of that task may join
        # it without reordering anything.
        self._run: list[Any] | None = None
        self._run_task = -1

    @property
    def pending(self) -> bool:
        """Whether encoded bytes wait for the pipe to become writable."""
        return bool(self._chunks)

    def send(self, message: Any) -> None:
        """Queue ``message`` for the next frame."""
        self._run = None
        self.messages.append(message)

    def send_intermediates(self, task_id: int, values: list[Any]) -> None:
        """Queue raw INTERMEDIATE ``values`` of ``task_id`` (the list is taken over):
        appended to the last message when that is a run of the same task's values,
        else queued as a new run."""
        run = self._run
        if run is not None and self._run_task == task_id:
            run.extend(values)
            return
        self._run = values
        self._run_task = task_id
        self.messages.append((INTERMEDIATE, task_id, values))

    def flush(self) -> bool:
        """Encode the queued messages into one frame and write as much as possible;
        return whether everything was written.

        Raises:
            BrokenPipeError: the reading end is gone.
        """
        if self.messages:
            self._encode()
        return self.write_pending()

    def send_alone(self, message: Any) -> None:
        """Queue ``message`` (a large one) in a frame of its own: what was queued
        before goes in a frame before it, what is queued after in a frame after it."""
        if self.messages:
            self._encode()
        self._chunks.extend(map(memoryview, encode_frame([message])))

    def _encode(self) -> None:
        parts = encode_frame(self.messages)
        self.messages = []
        self._run = None
        self._chunks.extend(map(memoryview, parts))

    def write_pending(self) -> bool:
        """Write queued bytes until the pipe is full; return whether all were written.

        Raises:
            BrokenPipeError: the reading end is gone.
        """
        chunks = self._chunks
        while chunks:
            try:
                written = os.writev(self.fd, chunks[:64])
            except BlockingIOError:
                return False
            except InterruptedError:
                continue
            while written:
                first = chunks[0]
                if written >= len(first):
                    written -= len(first)
                    del chunks[0]
                else:
                    chunks[0] = first[written:]
                    written = 0
        return True
