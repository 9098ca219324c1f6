"""The payload arena (issue 15): large out-of-band buffers of a call placed in shared
memory. Here the allocator and the placed blobs in one process; the executor's use of
the arena (round trips, fallback, crashes, no leak) is tested through ProcessExecutor."""

from __future__ import annotations

import os
import pickle
import random
from collections.abc import Iterator
from typing import Any

import pytest

from pullpush.executors.process import _protocol as wire
from pullpush.executors.process import _shm

T = wire.OOB_THRESHOLD


@pytest.fixture
def arena() -> Iterator[_shm.Arena]:
    """An arena, attached in this process as a worker attaches it."""
    arena = _shm.Arena(16 * 2**20)
    _shm.attach(_shm.SegmentHandle(os.dup(arena.fd), arena.size))
    try:
        yield arena
    finally:
        _shm.detach()
        arena.close()


def _fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def test_the_allocator_coalesces_what_is_freed_in_any_order() -> None:
    arena = _shm.Arena(1 << 20)
    try:
        rng = random.Random(0)
        held: list[tuple[int, int]] = []
        for _ in range(2000):
            if held and (rng.random() < 0.5 or arena.used > arena.size // 2):
                offset, size = held.pop(rng.randrange(len(held)))
                arena.free(offset, size)
                continue
            size = rng.choice([1, 63, 64, 65, 4096, 70_000])
            offset = arena.alloc(size)
            assert offset is not None
            assert offset % _shm.ALIGN == 0
            for other, other_size in held:  # no two live regions overlap
                assert offset + size <= other or other + other_size <= offset
            held.append((offset, size))
        for offset, size in held:
            arena.free(offset, size)
        assert arena.used == 0
        assert arena._free == [[0, arena.size]]
    finally:
        arena.close()


def test_alloc_says_none_when_full_and_room_comes_back_when_freed() -> None:
    arena = _shm.Arena(1 << 20)
    try:
        first = arena.alloc(600_000)
        assert first is not None
        assert arena.alloc(600_000) is None
        arena.free(first, 600_000)
        assert arena.alloc(600_000) == first
    finally:
        arena.close()


def _blob(value: Any) -> Any:
    return wire.dumps_blob((tuple(map(wire.wrap_large, (value,))), {}))


@pytest.mark.parametrize(
    "value",
    [
        b"\x01" * T,
        bytearray(b"\x02" * (T + 1)),
        "é" * T,
        "a" * (3 * T),
        memoryview(bytes(range(256)) * 1024),
        memoryview(bytearray(4 * T)).cast("i", (T // 4, 4)),
        (b"x" * T, "small", b"y" * 10),
        [b"z" * T] * 3,  # nested: in the (large) pickle stream, which is placed too
    ],
    ids=["bytes", "bytearray", "str-2-bytes", "str", "memoryview", "shaped", "tuple", "nested"],
)
def test_placed_values_come_back_as_sent_and_hold_nothing_of_the_arena(
    arena: _shm.Arena, value: Any
) -> None:
    blob = _blob(value)
    placed = arena.place(blob)
    assert placed is not None
    small, offset, size = placed
    assert _shm.is_placed(small)
    assert len(pickle.dumps(small, 5)) < 200  # only a reference travels in the pipe
    (received,), _ = _shm.loads_placed(small)
    assert type(received) is type(value)
    if isinstance(value, memoryview):
        assert received.tobytes() == value.tobytes()
        assert (received.format, received.shape, received.readonly) == (
            value.format,
            value.shape,
            value.readonly,
        )
    else:
        assert received == value
    arena.free(offset, size)
    # The region is reused and overwritten: what was received does not change.
    again = arena.place(_blob(b"\xff" * size))
    assert again is not None and again[1] == offset
    if isinstance(value, memoryview):
        assert received.tobytes() == value.tobytes()
    else:
        assert received == value


def test_numpy_arrays_arrive_writable_over_their_own_copy(arena: _shm.Arena) -> None:
    numpy = pytest.importorskip("numpy")
    array = numpy.arange(T, dtype=numpy.float64).reshape(T // 8, 8)
    placed = arena.place(wire.dumps_blob(((array,), {})))
    assert placed is not None
    (received,), _ = _shm.loads_placed(placed[0])
    assert received.flags.writeable and (received == array).all()
    received[0, 0] = -1.0  # its own memory, not the (read-only) arena


def test_small_or_too_large_blobs_are_not_placed(arena: _shm.Arena) -> None:
    assert arena.place(_blob(b"x" * 100)) is None  # all inline: nothing to place
    assert arena.place(_blob(b"x" * (arena.size // 4 + 1))) is None  # the pipe takes it
    assert arena.used == 0


def test_a_full_arena_places_nothing_more(arena: _shm.Arena) -> None:
    size = arena.size // 4
    regions = []
    while (placed := arena.place(_blob(b"x" * (size - 1024)))) is not None:
        regions.append(placed)
    assert len(regions) == 4
    assert arena.place(_blob(b"y" * T)) is None
    arena.free(regions[0][1], regions[0][2])
    assert arena.place(_blob(b"y" * T)) is not None


def test_a_closed_arena_places_nothing_and_leaves_no_fd() -> None:
    before = _fds()
    arena = _shm.Arena(1 << 20)
    assert len(_fds() - before) == 2  # its fd, and the mapping's own duplicate
    arena.close()
    arena.close()  # idempotent
    assert _fds() <= before
    assert arena.place(_blob(b"x" * T)) is None


def test_loads_placed_without_an_arena_says_so() -> None:
    with pytest.raises(RuntimeError, match="without the arena"):
        _shm.loads_placed((None, b"", 0, (0,), ()))
