"""The process executor's wire: message types, frames and non-blocking pipe I/O.

This module knows bytes and message shapes only; what a message *means* is
``_worker.py``'s and ``_executor.py``'s business.

A **frame** is an 8-byte little-endian length followed by that many bytes: a pickle
(protocol 5) of a list of messages. Many small messages travel in one frame, and a
frame is written with one system call where the pipe allows.

A **message** is a tuple whose first item is its type. Values that can fail to
pickle or unpickle travel as separate *blobs* (bytes pickled on their own), so that
one bad value fails one task, never a whole frame; values of the builtin scalar types
travel raw (they cannot fail) to save a pickle round trip per message. Consecutive raw
INTERMEDIATE values of one task share one message (a run), so a task streaming small
values costs a list append per value on the wire, not a message.

Parent to worker, on the **call pipe**::

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

import errno
import io
import linecache
import os
import pickle
import struct
import types
from collections import ChainMap
from collections.abc import Callable
from typing import Any, ClassVar, Final

import cloudpickle

__all__ = [
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
    "dumps",
    "encode_frame",
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
_HEADER = struct.Struct("<Q")
_READ_SIZE = 1 << 20


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


class _Pickler(cloudpickle.Pickler):  # type: ignore[misc]
    dispatch_table: ClassVar[ChainMap[Any, Any]] = ChainMap(
        {types.CodeType: _reduce_code}, cloudpickle.Pickler.dispatch_table
    )


def cloudpickle_dumps(obj: Any) -> bytes:
    """``cloudpickle.dumps(obj, PROTOCOL)``, but functions pickled by value keep their
    file name (see :func:`_reduce_code`)."""
    with io.BytesIO() as file:
        _Pickler(file, protocol=PROTOCOL).dump(obj)
        return file.getvalue()


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


def encode_frame(messages: list[Any]) -> tuple[bytes, bytes]:
    """Return the header and the payload of a frame holding ``messages``."""
    payload = pickle.dumps(messages, PROTOCOL)
    return _HEADER.pack(len(payload)), payload


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
    keeps a partial frame for the next call.
    """

    __slots__ = ("_buffer", "fd")

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._buffer = bytearray()

    def read(self) -> tuple[list[list[Any]], bool]:
        """Read what the pipe holds now; return ``(frames, at_eof)``."""
        frames: list[list[Any]] = []
        buffer = self._buffer
        eof = False
        while True:
            try:
                data = os.read(self.fd, _READ_SIZE)
            except BlockingIOError:
                break
            except OSError as error:
                if error.errno == errno.EINTR:
                    continue
                eof = True
                break
            if not data:
                eof = True
                break
            buffer += data
            if len(data) < _READ_SIZE:
                break
        self._decode(frames)
        return frames, eof

    def _decode(self, frames: list[list[Any]]) -> None:
        buffer = self._buffer
        size = len(buffer)
        position = 0
        header = _HEADER.size
        with memoryview(buffer) as view:
            while size - position >= header:
                (length,) = _HEADER.unpack_from(buffer, position)
                end = position + header + length
                if end > size:
                    break
                frames.append(pickle.loads(view[position + header : end]))
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
            head, payload = encode_frame(self.messages)
            self.messages = []
            self._run = None
            self._chunks.append(memoryview(head))
            self._chunks.append(memoryview(payload))
        return self.write_pending()

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
