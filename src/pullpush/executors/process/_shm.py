"""The payload arena: large out-of-band buffers of calls through shared memory.

A call's large values leave the pickle stream as ``pickle.PickleBuffer`` objects (see
``_pickling.py``). Through the call pipe they cost the parent a ``writev`` per pipe's
worth (1 MiB), each waiting for the worker to read the last one, and the worker reads
its pipe only between tasks. The **arena** instead is one shared-memory segment per
executor (a ``memfd``: anonymous, it disappears with the last process that maps it, so
nothing outlives a crash of the parent or of a worker), mapped by the parent and by
every worker at its start. When a call is sent, the parent copies its buffers (and its
pickle, if large) into a region of the arena with one ``memcpy`` each and sends a
small *placed blob* naming the region in the pipe; the call's payload is in place
before the worker reads the message, however busy the worker is.

Lifetime of a region: allocated when its call is sent (:meth:`Arena.place`), freed
when the parent learns the task ended (its FINAL or ERROR arrived, or its worker
died): by then the worker has copied out what it needed, or never will. A call sent
again after its worker died reuses its region as it is. When the arena has no room
(or a call is larger than half of it), the call travels through the pipe as
before: the arena only ever makes a call cheaper, never refuses one. Results and
streamed values take the result pipe (out of band, see ``_pickling.py``).

Memory: the arena's pages a worker has read count in its resident memory (shared
with the parent and the other workers; at most the arena's size, in practice what
was in flight at most), and so in ``max_worker_memory``. A child forked from the
parent (a ``fork`` worker of another executor, or any ``os.fork``) neither maps nor
holds the arena (see :func:`_after_fork_in_child`).

What the worker receives (:func:`loads_placed`): every buffer is copied once out of the
segment into memory of the task's own, so nothing the task holds refers to the arena:
a buffer that was read-only when sent (``bytes``, a ``str``'s UTF-8, a read-only
``memoryview``) into ``bytes``, a writable one (``bytearray``, a writable
``memoryview``, a numpy array) into a ``bytearray`` (a call whose one argument is a
large ``str`` has it decoded from the segment straight into the ``str``: see
:func:`load_str`). The values rebuilt from them are
those of the pipe path: ``bytes`` as ``bytes`` (the copy itself, no second one),
``str`` as ``str``, ``bytearray`` as ``bytearray``, a ``memoryview`` as a
``memoryview`` of the copy (read-only if the sent one was), a numpy array as a
writable array over the copy.

A placed blob is the tuple ``(None, stream, offset, sizes, writable)``: ``stream`` the
pickle's ``bytes`` when small, else ``None`` (then the pickle is the region's first
``sizes[0]`` bytes); ``sizes`` the lengths of the pickle and of each buffer, packed
in that order from ``offset``; ``writable`` one flag per buffer. A blob from
``dumps_blob`` never starts with ``None`` (its first item is the pickle), so
``loads_blob`` tells the two apart by that.
"""

from __future__ import annotations

import bisect
import contextlib
import mmap
import operator
import os
import pickle
import sys
import threading
import weakref
from typing import Any, Final

__all__ = [
    "ARENA_BYTES",
    "Arena",
    "SegmentHandle",
    "attach",
    "detach",
    "is_placed",
    "load_bytes",
    "load_str",
    "loads_placed",
]

ARENA_BYTES: Final = 16 * 2**20
"""Bytes of arena per worker (at least 32 MiB in all). It is address space, and shared
memory once touched: a page stays resident while the executor lives, but first fit
reuses the lowest free offsets, so what is touched is about the most ever in flight.
A worker holds its running calls and at most a few MiB queued beyond one ahead (the
prefetch's byte bound), so this holds what is in flight with 4 MiB chunks; beyond
it, calls take the pipe."""
ALIGN: Final = 64
"""Regions start on cache-line boundaries."""
_ALIGN_MASK: Final = ALIGN - 1
_block_offset = operator.itemgetter(0)
_FRACTION: Final = 2
"""A call of more than ``1 / _FRACTION`` of the arena takes the pipe: one huge call
must not starve the others of room."""


class Arena:
    """The parent's side of an executor's shared-memory segment, and its allocator.

    First fit over a free list sorted by offset, coalesced on free. Not thread-safe:
    used from the executor's loop only.

    Raises:
        OSError: the segment could not be created (no ``memfd_create``, no memory);
            the executor then sends everything through its pipes.
    """

    __slots__ = ("__weakref__", "_free", "_map", "_pid", "_view", "fd", "size", "used")

    def __init__(self, size: int = 2 * ARENA_BYTES) -> None:
        fd = os.memfd_create("pullpush-payload", os.MFD_CLOEXEC)
        try:
            os.ftruncate(fd, size)
            self._map = mmap.mmap(fd, size)
            # A forked child does not inherit the mapping (see _after_fork_in_child).
            self._map.madvise(mmap.MADV_DONTFORK)
        except BaseException:
            os.close(fd)
            raise
        self.fd = fd
        self._pid = os.getpid()
        self.size = size
        self._view = memoryview(self._map)
        # Invariant: the free blocks, [offset, size], sorted by offset, none adjacent.
        self._free: list[list[int]] = [[0, size]]
        self.used = 0
        _arenas.add(self)

    @classmethod
    def create(cls, workers: int) -> Arena | None:
        """An arena for ``workers`` workers, or ``None`` where there is no shared
        memory to be had (no ``memfd_create``, no memory): calls then take the pipes."""
        try:
            return cls(max(2, workers) * ARENA_BYTES)
        except (AttributeError, OSError, ValueError):
            return None

    def __repr__(self) -> str:
        return f"<Arena {self.used}/{self.size} bytes used, {len(self._free)} free blocks>"

    @property
    def closed(self) -> bool:
        return self.fd < 0

    def handle(self) -> SegmentHandle:
        """What a worker process is given to map the segment (see :func:`attach`)."""
        return SegmentHandle(self.fd, self.size)

    def alloc(self, size: int) -> int | None:
        """The offset of a free region of ``size`` bytes, or ``None`` if none is free."""
        size = ((size or 1) + _ALIGN_MASK) & ~_ALIGN_MASK
        for index, block in enumerate(self._free):
            if block[1] >= size:
                offset = block[0]
                if block[1] == size:
                    del self._free[index]
                else:
                    block[0] += size
                    block[1] -= size
                self.used += size
                return offset
        return None

    def free(self, offset: int, size: int) -> None:
        """Give back the region :meth:`alloc` returned for ``size`` bytes at ``offset``."""
        size = ((size or 1) + _ALIGN_MASK) & ~_ALIGN_MASK
        self.used -= size
        blocks = self._free
        low = bisect.bisect_left(blocks, offset, key=_block_offset)  # the block after it
        end = offset + size
        after = blocks[low] if low < len(blocks) and blocks[low][0] == end else None
        before = blocks[low - 1] if low else None
        if before is not None and before[0] + before[1] != offset:
            before = None
        if before is not None:
            before[1] += size
            if after is not None:
                before[1] += after[1]
                del blocks[low]
        elif after is not None:
            after[0] = offset
            after[1] += size
        else:
            blocks.insert(low, [offset, size])

    def place(self, blob: Any) -> tuple[tuple[Any, ...], int, int] | None:
        """Copy a blob's buffers (and its pickle, when it is not small ``bytes``) into
        a new region; return ``(placed_blob, offset, size)``, or ``None`` when the
        blob has nothing to place or there is no room (it then takes the pipe)."""
        if type(blob) is not tuple or self.fd < 0:
            return None
        stream = blob[0]
        inline = type(stream) is bytes
        if inline and len(blob) == 2:  # the common case: one buffer (a chunk)
            part = blob[1].raw()
            size = part.nbytes
            if size * _FRACTION > self.size:
                return None
            offset = self.alloc(size)
            if offset is None:
                return None
            self._view[offset : offset + size] = part
            return (None, stream, offset, (len(stream), size), (not part.readonly,)), offset, size
        parts: list[memoryview] = [part.raw() for part in blob[1:]]
        if not inline:
            parts.insert(0, stream.raw())
        sizes = [part.nbytes for part in parts]
        total = sum(sizes)
        if total * _FRACTION > self.size:
            return None
        offset = self.alloc(total)
        if offset is None:
            return None
        view = self._view
        position = offset
        for part, size in zip(parts, sizes, strict=True):
            view[position : position + size] = part
            position += size
        writable = tuple(not part.readonly for part in parts[0 if inline else 1 :])
        if inline:
            sizes.insert(0, len(stream))
        return (None, stream if inline else None, offset, tuple(sizes), writable), offset, total

    def close(self) -> None:
        """Unmap the segment and close its fd (once the workers are gone)."""
        if self.fd < 0:
            return
        fd, self.fd = self.fd, -1
        self._view.release()
        self._map.close()
        os.close(fd)

    def __del__(self) -> None:
        # An executor dropped unclosed. Only in the process that made it: a forked
        # child holds a copy of this object, and the fd number may be another's there.
        if self.fd >= 0 and os.getpid() == self._pid:
            self.close()


class SegmentHandle:
    """What a worker needs to map the arena: its fd and size. Pickled for a ``spawn``
    or ``forkserver`` worker, the fd travels as multiprocessing passes a pipe's (the
    child gets a duplicate); a ``fork`` worker inherits the object and the fd."""

    __slots__ = ("fd", "size")

    def __init__(self, fd: int, size: int) -> None:
        self.fd = fd
        self.size = size

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        from multiprocessing import reduction

        return _rebuild_handle, (reduction.DupFd(self.fd), self.size)


def _rebuild_handle(duplicate: Any, size: int) -> SegmentHandle:
    return SegmentHandle(duplicate.detach(), size)


_arenas: weakref.WeakSet[Arena] = weakref.WeakSet()
_inherited: list[Arena] = []
"""In a forked child: the arenas of the parent, kept forever (see below)."""


def _after_fork_in_child() -> None:
    """In a child forked from this process: the parent's arenas are not mapped here
    (``MADV_DONTFORK``), so their objects must never unmap or close anything (their
    range may hold another mapping later): each is kept, marked closed. Their fds (and
    those their ``mmap`` objects hold) are closed but the one a ``fork`` worker maps
    (``keep`` of ``_forks``), so that no child holds an arena's memory after its
    executor closed it."""
    if not _arenas:
        return
    forks = sys.modules.get(__package__ + "._forks") if __package__ else None
    keep = getattr(getattr(forks, "_forking", None), "keep", ())
    for arena in list(_arenas):
        arena.fd = -1
        _inherited.append(arena)
    _arenas.clear()
    with contextlib.suppress(OSError):
        for name in os.listdir("/proc/self/fd"):
            fd = int(name)
            if fd in keep:
                continue
            with contextlib.suppress(OSError):
                if os.readlink(f"/proc/self/fd/{name}").startswith("/memfd:pullpush-payload"):
                    os.close(fd)


os.register_at_fork(after_in_child=_after_fork_in_child)


# -- the worker's side ---------------------------------------------------------------------

_segment: memoryview | None = None
_segment_map: mmap.mmap | None = None
_lock = threading.Lock()


def attach(handle: SegmentHandle | None) -> None:
    """In a worker: map the arena read-only and close the fd it came as."""
    global _segment, _segment_map
    if handle is None:
        return
    with _lock:
        try:
            _segment_map = mmap.mmap(handle.fd, handle.size, prot=mmap.PROT_READ)
        finally:
            os.close(handle.fd)
        _segment = memoryview(_segment_map)


def detach() -> None:
    """Unmap the arena (tests; a worker's exit does it anyway)."""
    global _segment, _segment_map
    with _lock:
        if _segment is not None:
            _segment.release()
            _segment = None
        if _segment_map is not None:
            _segment_map.close()
            _segment_map = None


def is_placed(blob: Any) -> bool:
    """Whether ``blob`` is a placed blob (see the module's docstring)."""
    return type(blob) is tuple and blob[0] is None


def loads_placed(blob: tuple[Any, ...]) -> Any:
    """Unpickle a placed blob from the mapped arena, each buffer copied out of it.

    Raises:
        RuntimeError: this process has no arena mapped.
    """
    segment, mapped = _segment, _segment_map
    if segment is None or mapped is None:
        raise RuntimeError("a call placed in shared memory reached a process without the arena")
    _, stream, position, sizes, writable = blob
    if stream is None:
        end = position + sizes[0]
        stream = segment[position:end]
        position = end
    buffers: list[bytes | bytearray] = []
    for size, mutable in zip(sizes[1:], writable, strict=True):
        end = position + size
        # A slice of the mmap is the bytes, made with one copy (no view in between).
        buffers.append(bytearray(segment[position:end]) if mutable else mapped[position:end])
        position = end
    return pickle.loads(stream, buffers=buffers)


def load_bytes(position: int, size: int) -> bytes:
    """The ``size`` bytes at ``position`` of the mapped arena, copied out (the fast path
    of a call whose one argument is a large ``bytes``, see ``_pickling.loads_args``).

    Raises:
        RuntimeError: this process has no arena mapped.
    """
    mapped = _segment_map
    if mapped is None or _segment is None:
        raise RuntimeError("a call placed in shared memory reached a process without the arena")
    return mapped[position : position + size]


def load_str(position: int, size: int) -> str:
    """The UTF-8 at ``position`` of the mapped arena decoded straight into a ``str``
    (no ``bytes`` copy in between).

    Raises:
        RuntimeError: this process has no arena mapped.
    """
    segment = _segment
    if segment is None:
        raise RuntimeError("a call placed in shared memory reached a process without the arena")
    return str(segment[position : position + size], "utf-8", "surrogatepass")
