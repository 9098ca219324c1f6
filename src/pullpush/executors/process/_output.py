"""A worker process's output: the INTERMEDIATE, FINAL and ERROR messages it queues on
the result pipe (a value of no raw type pickled on its own, a large one alone in its
frame), and the flushes that send them: once per turn of the loop in which something
was queued, at once past ``FLUSH_EVERY`` queued values or half a credit window, and,
the pipe full, from a writer callback."""

from __future__ import annotations

import contextlib
import os
import pickle
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ._child import PEAK
from ._pickling import (
    blob_size,
    dumps,
    dumps_blob,
    error_text,
    failure_reason,
    is_large,
    large_raw,
    wrap_large,
)
from ._protocol import (
    ERROR,
    FINAL,
    FINAL_BLOB,
    INTERMEDIATE_BLOB,
    RAW_TYPES,
    FrameWriter,
)
from ._report import attributes, format_error, pickling_error, type_name

if TYPE_CHECKING:
    import asyncio
    from collections import deque

    from ._worker import _Task

FLUSH_EVERY = 4096
"""Messages and values queued that force a flush at once."""
CREDIT_BYTES = 16 * 1024
"""Bytes of a streamed value one credit covers: a value of n bytes takes
``n // CREDIT_BYTES`` credits beyond its own (see :meth:`Credits.charge`)."""
_SIZED_RAW: frozenset[type] = frozenset({str, bytes})
RAW_TUPLE = 16
"""Items of a tuple result of raw values (none large) that travels raw in its FINAL."""


class _OutputMixin:
    """The worker's output queue and its flushes."""

    if TYPE_CHECKING:  # what this room uses of the worker
        loop: asyncio.AbstractEventLoop
        writer: FrameWriter
        credit_window: int
        measure_memory: bool
        queue: deque[tuple[Any, ...]]
        blocks: dict[int, int]
        unflushed: int
        flush_scheduled: bool
        writer_waiting: bool

        def ended(self, task_id: int) -> None: ...
        def end(self) -> None: ...

    def emitter(self, task_id: int, task: _Task) -> Callable[[list[Any]], None]:
        send_intermediates = self.writer.send_intermediates
        note = self.note_output
        half_window = max(1, self.credit_window // 2)

        credits = task.credits

        def emit(values: list[Any]) -> None:
            task.streamed = True
            position = credits.emitted
            credits.emitted = position + len(values)
            types = set(map(type, values))
            if types <= RAW_TYPES and (types.isdisjoint(_SIZED_RAW) or not large_raw(values)):
                send_intermediates(task_id, values)
                if not types.isdisjoint(_SIZED_RAW):  # numbers and None take one credit
                    for value in values:
                        if type(value) in _SIZED_RAW:
                            credits.charge(position, len(value) // CREDIT_BYTES)
                        position += 1
            else:
                for value in values:
                    if type(value) in RAW_TYPES and not large_raw((value,)):
                        send_intermediates(task_id, [value])
                        if type(value) in _SIZED_RAW:
                            credits.charge(position, len(value) // CREDIT_BYTES)
                    else:
                        credits.charge(position, self.send_blob(task_id, value) // CREDIT_BYTES)
                    position += 1
            if len(values) >= half_window:
                # drive() emits half a window at a time while a generator runs on:
                # out now, so the parent consumes it while the next half is computed.
                self.flush()
            else:
                note(len(values))

        return emit

    def send_blob(self, task_id: int, value: Any) -> int:
        """Queue an INTERMEDIATE value that is not of a raw type, pickled on its own;
        return its pickled size."""
        try:
            blob = dumps_blob(wrap_large(value))
        except BaseException as error:  # sys.exit included: the task fails with this
            raise pickling_error("a value the task yielded", error, value) from None
        message = (INTERMEDIATE_BLOB, task_id, blob, type_name(value))
        if is_large(blob):
            self.writer.send_alone(message)
        else:
            self.writer.send(message)
        return blob_size(blob)

    def peak_mib(self) -> float | None:
        """The process's peak resident memory since the last reset, in MiB."""
        return PEAK.read_mib() if self.measure_memory else None

    def send_final(self, task_id: int, value: Any, seconds: float) -> None:
        if self.blocks:
            self.ended(task_id)
        kind = type(value)
        if (
            # A small tuple of raw values (a chunk's digest and its time): unpickling it
            # cannot fail either, so it needs no pickle of its own.
            (kind is tuple and len(value) <= RAW_TUPLE and RAW_TYPES.issuperset(map(type, value)))
            or kind in RAW_TYPES
        ) and not large_raw(value if kind is tuple else (value,)):
            peak = PEAK.read_mib() if self.measure_memory else None
            self.writer.send((FINAL, task_id, value, seconds, peak))
        else:
            try:
                blob = dumps_blob(wrap_large(value))
            except BaseException as error:  # sys.exit included
                self.send_error(task_id, pickling_error("the task's result", error, value))
                return
            message = (FINAL_BLOB, task_id, blob, type_name(value), seconds, self.peak_mib())
            if is_large(blob):
                self.writer.send_alone(message)
            else:
                self.writer.send(message)
        # note_output(), inlined: the hot path of a worker running short calls.
        self.unflushed = unflushed = self.unflushed + 1
        if unflushed >= FLUSH_EVERY:
            self.flush()
        elif not self.flush_scheduled:
            self.flush_scheduled = True
            self.loop.call_soon(self.flush)

    def send_error(self, task_id: int, error: BaseException) -> None:
        """Queue the task's ERROR. Total: an exception that cannot be printed, or
        whose pickling raises anything (``sys.exit`` included), still ends the task
        (as its type name and text, with why it could not be pickled)."""
        if self.blocks:
            self.ended(task_id)
        text = format_error(error)
        try:
            blob: bytes | str = dumps(error)
        except pickle.PicklingError as failure:
            blob = error_text(failure)
        except BaseException as failure:
            blob = failure_reason(failure, "pickling it")
        self.writer.send(
            (
                ERROR,
                task_id,
                blob,
                type_name(error),
                error_text(error),
                text,
                self.peak_mib(),
                attributes(error),
            )
        )
        self.note_output()

    def note_output(self, count: int = 1) -> None:
        """``count`` more messages or values are queued: make sure they leave soon.

        A flush is scheduled for the loop's next turn (a streaming task gives the loop
        a turn every ``YIELD_EVERY`` seconds at least); ``FLUSH_EVERY`` queued values
        force one at once.
        """
        self.unflushed = unflushed = self.unflushed + count
        if unflushed >= FLUSH_EVERY:
            self.flush()
        else:
            self.schedule_flush()

    def schedule_flush(self) -> None:
        if not self.flush_scheduled:
            self.flush_scheduled = True
            self.loop.call_soon(self.flush)

    def flush(self) -> None:
        self.flush_scheduled = False
        self.unflushed = 0
        try:
            done = self.writer.flush()
        except OSError:  # the parent is gone
            self.queue.clear()
            self.end()
            return
        if not done and not self.writer_waiting:
            self.writer_waiting = True
            self.loop.add_writer(self.writer.fd, self.on_writable)

    def on_writable(self) -> None:
        try:
            done = self.writer.write_pending()
        except OSError:
            done = True
            self.end()
        if done:
            self.writer_waiting = False
            self.loop.remove_writer(self.writer.fd)

    def flush_blocking(self) -> None:
        """Write everything still queued, waiting for the pipe (used when exiting)."""
        with contextlib.suppress(OSError):
            os.set_blocking(self.writer.fd, True)
            self.writer.flush()
