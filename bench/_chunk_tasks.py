"""The work of ``chunks.py``, in a module of its own so that every pool's workers
import it by name (nothing here runs at import).

Each task function times the work it does on its chunk (``time.perf_counter`` around
the hash or the count, not around reading the chunk) and returns ``(value, seconds)``:
the parent sums the seconds to get how busy the workers were.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections import Counter
from multiprocessing import shared_memory
from typing import Any

DIGEST_SIZE = 16


def blake2b_chunk(chunk: Any) -> tuple[bytes, float]:
    """BLAKE2b of the chunk (bytes or any buffer): about 1 GiB/s of CPU."""
    start = time.perf_counter()
    digest = hashlib.blake2b(chunk, digest_size=DIGEST_SIZE).digest()
    return digest, time.perf_counter() - start


def touch_chunk(chunk: Any) -> tuple[int, float]:
    """Almost no CPU: the length and three of the chunk's bytes (so a contender that
    delivers the wrong bytes gets a different answer)."""
    start = time.perf_counter()
    size = len(chunk)
    value = size + chunk[0] + chunk[size // 2] + chunk[-1]
    return value, time.perf_counter() - start


WORK = {"blake2b": blake2b_chunk, "touch": touch_chunk}


def blake2b_file(path: str, offset: int, length: int) -> tuple[bytes, float]:
    """:func:`blake2b_chunk` of ``length`` bytes at ``offset`` of the file at ``path``."""
    with open(path, "rb") as handle:
        handle.seek(offset)
        chunk = handle.read(length)
    return blake2b_chunk(chunk)


def touch_file(path: str, offset: int, length: int) -> tuple[int, float]:
    """:func:`touch_chunk` of ``length`` bytes at ``offset`` of the file at ``path``."""
    with open(path, "rb") as handle:
        handle.seek(offset)
        chunk = handle.read(length)
    return touch_chunk(chunk)


FILE_WORK = {"blake2b": blake2b_file, "touch": touch_file}


def closure(work: Any, chunk: Any) -> Any:
    """A task that captures its chunk (cloudpickle sends it by value)."""

    def task() -> Any:
        return work(chunk)

    return task


_WORD = re.compile(r"\w+")


def analyse(text: str) -> tuple[dict[str, int], float]:
    """The user's program: the word counts of a text chunk, as a plain dict (and the
    seconds it took)."""
    start = time.perf_counter()
    counts = dict(Counter(_WORD.findall(text.lower())))
    return counts, time.perf_counter() - start


def noop(x: int = 0) -> int:
    return x


def limit_worker(conn: Any, shm_name: str, counter: Any) -> None:
    """A worker of "the limit": the data sits in shared memory; for each job
    ``(kind, chunk_size, size)`` take the next chunk index from the shared counter
    until the data is done, hash or touch a zero-copy view of that chunk, then send
    back ``(values, busy seconds)``. ``None`` ends the worker."""
    shm = shared_memory.SharedMemory(name=shm_name)
    buffer = shm.buf
    lock = counter.get_lock()
    try:
        while True:
            job = conn.recv()
            if job is None:
                return
            kind, chunk_size, size = job
            work = WORK[kind]
            values: list[Any] = []
            busy = 0.0
            while True:
                with lock:
                    index = counter.value
                    counter.value = index + 1
                offset = index * chunk_size
                if offset >= size:
                    break
                view = buffer[offset : min(offset + chunk_size, size)]
                value, seconds = work(view)
                view.release()
                values.append(value)
                busy += seconds
            conn.send((values, busy))
    finally:
        del buffer
        shm.close()
        conn.close()
