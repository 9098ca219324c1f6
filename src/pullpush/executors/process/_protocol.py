"""The process executor's wire: message types, frames and non-blocking pipe I/O.

This module knows bytes and message shapes only; what a message *means* is
``_worker.py``'s and the parent modules' business (see the package docstring).

A **frame** is a 12-byte little-endian header (the body's length, 8 bytes, and its
count of out-of-band buffers, 4 bytes) followed by the body. A body without buffers
is a pickle (protocol 5) of a list of messages. A body with n buffers is a table of
n + 1 lengths (8 bytes each: the pickle's, then each buffer's), the pickle, then the
buffers' bytes, which the pickle refers to (``pickle.PickleBuffer``, unpickled as
``memoryview`` slices of the body). Many small messages travel in one frame, and a
frame is written with one system call where the pipe allows; a buffer is written from
the object that holds it (``os.writev``), never copied into the frame.

**Large values travel out of band**: see ``_pickling.py``.

A **message** is a tuple whose first item is its type. Values that can fail to
pickle or unpickle travel as separate *blobs* (bytes pickled on their own), so that
one bad value fails one task, never a whole frame; values of the builtin scalar types
(and a task's result that is a small tuple of them) travel raw (they cannot fail) to
save a pickle round trip per message. Consecutive raw INTERMEDIATE values of one task
share one message (a run), so a task streaming small values costs a list append per
value on the wire, not a message.

Parent to worker, on the **call pipe**::

A *blob* is a value pickled on its own (see ``_pickling.py``); the blob of a
CALL_ARGS or CALL_BLOB may be *placed*: its bytes in the payload arena, only their
offset and sizes in the message (see ``_shm.py``).

    (DEFINE, fn_id, fn_blob)                the function fn_id stands for (cloudpickle)
    (FORGET, fn_id)                         drop it from the worker's cache
    (CALL, task_id, fn_id, args)            run fn(*args); args a tuple of raw scalars
    (CALL_ARGS, task_id, fn_id, args_blob)  run fn(*args, **kwargs); blob of (args, kwargs),
                                            or of (values, large) for raw arguments
                                            (``_pickling.dumps_raw_args``)
    (CALL_BLOB, task_id, runner_blob)       run the unpickled runner (cloudpickle)
    (CANCEL, task_id)
    (CREDIT, task_id, count)                the consumer read count more INTERMEDIATEs
    (STOP,)                                 finish what you have, then exit
    (WATCH, task_id)                        say STARTED when task_id starts (sent just
                                            before its CALL, only for a task queued
                                            behind others whose submitter listens)
    (MESSAGE, task_id, value)               a message for a waitable task (after its
                                            CALL), raw
    (MESSAGE_BLOB, task_id, blob)           the same, pickled on its own
    (RESUME, task_id, timed_out)            a PARKED task goes on (its capacity is held
                                            again): with its next message, or, none there
                                            and timed_out, with TimeoutError
    (AFTER, task_id, before_id)             start task_id only once before_id ended
                                            (sent just before its CALL, with
                                            tasks_per_worker > 1: the capacity
                                            hand-off's successor)

Worker to parent, on the **result pipe**::

    (READY, pid)
    (INTERMEDIATE, task_id, values)         a list of raw values, in the order yielded
    (INTERMEDIATE_BLOB, task_id, blob, type_name)
    (FINAL, task_id, value, seconds, peak_mib)    value raw (or a tuple of at most 16
                                                  raw values); seconds the task ran;
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
    (PARKED, task_id, received, timeout)    a waitable task waits in receive(), its
                                            inbox empty, having taken ``received``
                                            messages; it runs no more until RESUME
    (RECEIVED, task_id, received)           it has taken ``received`` messages in all
"""

from __future__ import annotations

import errno
import os
import pickle
import struct
from typing import Any, Final

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
    "MESSAGE",
    "MESSAGE_BLOB",
    "PARKED",
    "RECEIVED",
    "RESUME",
    "RAW_TYPES",
    "READY",
    "RETIRE",
    "STARTED",
    "STOP",
    "WATCH",
    "AFTER",
    "FrameReader",
    "FrameWriter",
    "decode_frame",
    "encode_frame",
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
MESSAGE: Final = 10
MESSAGE_BLOB: Final = 11
RESUME: Final = 12
AFTER: Final = 13
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
PARKED: Final = 29
RECEIVED: Final = 30

RAW_TYPES: Final[frozenset[type]] = frozenset({int, float, str, bytes, bool, type(None)})
"""Types whose values travel inside a frame as they are: unpickling them cannot fail."""

PROTOCOL: Final = 5
HEADER: Final = struct.Struct("<QI")
"""A frame's header: its body's length in bytes, and its count of buffers."""
_READ_SIZE = 256 * 1024
"""Bytes a read of a pipe takes at most (a frame's body of its own buffer aside)."""
_OWN_BUFFER = 1 << 20
"""Bytes of a frame's body from which it is read into a buffer of its own."""


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

    Reads are non-blocking, into a buffer of this reader's, reused (so a read
    allocates nothing); :meth:`read` returns every complete frame's messages and
    keeps a partial frame for the next call. A frame with buffers, or of at least
    1 MiB, is read into a buffer of its own, of its exact size (its messages' buffers
    are views of it).
    """

    __slots__ = ("_buffer", "_count", "_filled", "_frame", "_scratch", "fd")

    def __init__(self, fd: int) -> None:
        self.fd = fd
        # Invariant: the start of a frame read but not decoded yet (it is incomplete).
        self._buffer = bytearray()
        # What each read fills: made at the first read, then reused.
        self._scratch: memoryview | None = None
        # Invariant: when _frame is not None, the body of the frame being read into
        # its own buffer, _filled bytes of it read so far, holding _count buffers.
        self._frame: bytearray | None = None
        self._filled = 0
        self._count = 0

    def read(self) -> tuple[list[list[Any]], bool]:
        """Read what the pipe holds now; return ``(frames, at_eof)``."""
        frames: list[list[Any]] = []
        scratch = self._scratch
        if scratch is None:
            scratch = self._scratch = memoryview(bytearray(_READ_SIZE))
        while True:
            frame = self._frame
            try:
                if frame is not None:
                    with memoryview(frame) as view:
                        size = os.readv(self.fd, [view[self._filled :]])
                else:
                    size = os.readv(self.fd, [scratch])
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
            buffer = self._buffer
            if buffer:
                buffer += scratch[:size]
                del buffer[: self._decode(frames, buffer, len(buffer))]
            else:
                # The common case: whole frames, decoded from the scratch buffer itself.
                used = self._decode(frames, scratch, size)
                if used < size:
                    buffer += scratch[used:size]
            if size < _READ_SIZE and self._frame is None:
                return frames, False

    def _decode(self, frames: list[list[Any]], data: Any, size: int) -> int:
        """Decode the complete frames of ``data[:size]`` into ``frames`` (a frame of
        its own buffer started there goes on in ``_frame``); return the bytes used."""
        position = 0
        header = HEADER.size
        with memoryview(data) as view:
            while size - position >= header:
                length, count = HEADER.unpack_from(view, position)
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
        return position


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
