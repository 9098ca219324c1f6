"""The payload arena (issue 15): large out-of-band buffers of a call placed in shared
memory. Here the allocator and the placed blobs in one process; the executor's use of
the arena (round trips, fallback, crashes, no leak) is tested through ProcessExecutor."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import os
import pickle
import random
from collections.abc import Iterator
from typing import Any

import _payload_tasks as tasks
import cloudpickle
import pytest

from pullpush import (
    CapacitySource,
    EnvelopeType,
    HierarchicalTaskPoolRunner,
    ProcessExecutor,
    WorkerCrashedError,
)
from pullpush.executors.process import _pickling as wire
from pullpush.executors.process import _shm
from pullpush.testing import assert_no_leaks, collect

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
    too_large = arena.size // _shm._FRACTION + 1
    assert arena.place(_blob(b"x" * too_large)) is None  # the pipe takes it
    assert arena.used == 0


def test_a_full_arena_places_nothing_more(arena: _shm.Arena) -> None:
    size = arena.size // 4
    regions = []
    while (placed := arena.place(_blob(b"x" * (size - 1024)))) is not None:
        regions.append(placed)
    assert len(regions) == 4  # and no room left for a fifth
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


# -- through the executor ------------------------------------------------------------------

cloudpickle.register_pickle_by_value(tasks)


@pytest.fixture
def placements(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The sizes of the calls the executors place in their arenas from now on."""
    placed: list[int] = []
    place = _shm.Arena.place

    def counting(self: _shm.Arena, blob: Any) -> Any:
        result = place(self, blob)
        if result is not None:
            placed.append(result[2])
        return result

    monkeypatch.setattr(_shm.Arena, "place", counting)
    return placed


def _memfds() -> int:
    count = 0
    for name in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            count += "pullpush-payload" in os.readlink(f"/proc/self/fd/{name}")
    return count


def _values() -> list[Any]:
    raw = bytes(i % 251 for i in range(T + 5))
    return [
        raw,
        bytearray(raw),
        raw.decode("latin-1"),
        memoryview(raw),
        memoryview(bytearray(raw)),
        memoryview(bytearray(4 * T)).cast("i", (T // 4, 4)),
        (b"x" * T, "small"),
    ]


def _same(sent: Any, received: Any) -> bool:
    if type(sent) is not type(received):
        return False
    if isinstance(sent, memoryview):
        return bool(
            sent.tobytes() == received.tobytes()
            and (sent.format, sent.shape, sent.readonly)
            == (received.format, received.shape, received.readonly)
        )
    return bool(sent == received)


@pytest.mark.timeout(180)
@pytest.mark.parametrize("method", ["fork", "forkserver", "spawn"])
async def test_values_sent_through_the_arena_arrive_as_sent(
    method: str, placements: list[int]
) -> None:
    before = _memfds()
    async with assert_no_leaks(), ProcessExecutor(2, start_method=method) as executor:
        values = _values()
        calls = [functools.partial(tasks.describe, value, key=value) for value in values]
        calls += [tasks.closure_over(value) for value in values]  # closures: CALL_BLOB
        results = await asyncio.gather(*(executor.run(call) for call in calls))
        for value, (args, kwargs) in zip(values, results, strict=False):
            assert args[0][0] == type(value).__name__
            assert _same(value, args[0][1]) and _same(value, kwargs["key"][1])
        for value, (name, received) in zip(values, results[len(values) :], strict=True):
            assert name == type(value).__name__ and _same(value, received)
        assert len(placements) == len(calls)  # every one of them took the arena
        assert executor._arena is not None and executor._arena.used == 0  # all freed
    assert executor._arena is None
    assert _memfds() == before  # the segment is gone with the executor


@pytest.mark.timeout(120)
async def test_numpy_arrays_through_the_arena_arrive_writable(placements: list[int]) -> None:
    numpy = pytest.importorskip("numpy")
    array = numpy.arange(T, dtype=numpy.float64).reshape(T // 8, 8)
    async with ProcessExecutor(1) as executor:
        received = await executor.run(functools.partial(tasks.describe, array))
        assert placements
        name, value = received[0][0]
        assert name == "ndarray" and (value == array).all()


@pytest.mark.timeout(120)
async def test_calls_take_the_pipe_when_the_arena_is_full(
    monkeypatch: pytest.MonkeyPatch, placements: list[int]
) -> None:
    monkeypatch.setattr(_shm, "ARENA_BYTES", 1 << 20)  # 2 MiB in all: two calls fit
    chunks = [bytes([i]) * (700 * 1024) for i in range(12)]
    async with assert_no_leaks(), ProcessExecutor(2, prefetch=4) as executor:
        runner = HierarchicalTaskPoolRunner(
            "full",
            # Slow tasks: each worker's running call and the ones queued behind it
            # hold their regions together, more than the arena has room for.
            [functools.partial(tasks.digest_slowly, chunk, 0.1) for chunk in chunks],
            CapacitySource(12),
            executor=executor,
        )
        envelopes = await collect(runner.run_tasks())
        finals = sorted(e.value for e in envelopes if e.type is EnvelopeType.FINAL)
        assert finals == sorted(hashlib.blake2b(c).hexdigest() for c in chunks)
        assert 0 < len(placements) < len(chunks)  # some placed, the others piped
        assert executor._arena is not None and executor._arena.used == 0


@pytest.mark.timeout(120)
@pytest.mark.parametrize("method", ["fork", "forkserver"])
async def test_a_worker_crash_frees_its_regions_and_the_pool_goes_on(
    method: str, placements: list[int]
) -> None:
    chunk = b"c" * (2 * T)
    capacity = CapacitySource(4)
    async with assert_no_leaks(), ProcessExecutor(1, start_method=method, prefetch=2) as executor:
        runner = HierarchicalTaskPoolRunner(
            "crash",
            [functools.partial(tasks.digest_or_die, chunk, i == 1) for i in range(4)],
            capacity,
            executor=executor,
        )
        envelopes = await collect(runner.run_tasks())
        ends = [e for e in envelopes if e.type is not EnvelopeType.INTERMEDIATE]
        assert len(ends) == 4  # one terminal envelope per task
        errors = [e for e in ends if e.type is EnvelopeType.ERROR]
        assert len(errors) == 1 and isinstance(errors[0].error, WorkerCrashedError)
        expected = hashlib.blake2b(chunk).hexdigest()
        assert [e.value for e in ends if e.type is EnvelopeType.FINAL] == [expected] * 3
        assert executor._arena is not None and executor._arena.used == 0
        assert await executor.run(functools.partial(tasks.digest, chunk)) == expected
        assert executor._arena.used == 0
        assert len(placements) >= 5
        assert capacity.available == capacity.limit
        assert executor.capacity.available == executor.capacity.limit


def _arena_inodes(pid: int) -> tuple[list[int], set[int]]:
    """The inodes of the arenas process ``pid`` holds: by its fds, by its mappings."""
    fds = []
    for name in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):
            if "pullpush-payload" in os.readlink(f"/proc/{pid}/fd/{name}"):
                fds.append(os.stat(f"/proc/{pid}/fd/{name}").st_ino)
    with open(f"/proc/{pid}/maps") as maps:
        mapped = {int(line.split()[4]) for line in maps if "pullpush-payload" in line}
    return fds, mapped


@pytest.mark.timeout(120)
async def test_a_fork_worker_holds_its_own_arena_only() -> None:
    async with assert_no_leaks(), ProcessExecutor(1, start_method="fork") as first:
        assert first._arena is not None
        own = os.fstat(first._arena.fd).st_ino
        async with ProcessExecutor(1, start_method="fork") as second:
            assert second._arena is not None
            other = os.fstat(second._arena.fd).st_ino
            await second.run(functools.partial(tasks.digest, b"x" * T))
            fds, mapped = _arena_inodes(second.pids[0])
            assert fds == [other] and mapped == {other}  # not the first one's
        fds, mapped = _arena_inodes(first.pids[0])
        assert fds == [own] and mapped == {own}


def _raw_args() -> list[tuple[Any, ...]]:
    """Positional arguments of raw types only, some large: the calls that take the
    shortest pickling path (``dumps_raw_args``)."""
    raw = bytes(i % 251 for i in range(T + 5))
    return [
        (raw,),
        (raw.decode("latin-1"),),  # not ASCII: 2 bytes in UTF-8 for half of them
        ("\ud800" * T,),  # a lone surrogate survives
        (raw, 7, "small", None, 2.5, True, b"tiny", raw.decode("latin-1")),
        ("a" * (T - 1), b"b" * T),  # just under the threshold (inline), and at it
    ]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("arena", [True, False], ids=["arena", "pipe"])
async def test_raw_arguments_with_large_values_arrive_as_sent(
    monkeypatch: pytest.MonkeyPatch, placements: list[int], arena: bool
) -> None:
    if not arena:
        monkeypatch.setattr(_shm.Arena, "create", classmethod(lambda cls, workers: None))
    async with assert_no_leaks(), ProcessExecutor(1) as executor:
        for args in _raw_args():
            for _ in range(2):  # the same arguments again: nothing of the first is reused
                received, kwargs = await executor.run(functools.partial(tasks.describe, *args))
                assert kwargs == {}
                assert [name for name, _ in received] == [type(a).__name__ for a in args]
                assert [value for _, value in received] == list(args)
        assert len(placements) == (2 * len(_raw_args()) if arena else 0)


@pytest.mark.parametrize(
    "value",
    [b"\x00\xffchunk" * (T // 7 + 1), "chunk \u00e9\u20ac\U0001f600 \udc80" * (T // 8)],
    ids=["bytes", "str"],
)
def test_one_large_argument_is_taken_straight_out_of_the_arena(
    arena: _shm.Arena, value: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """partial(fn, chunk): the worker knows the pickle of one large raw argument, so it
    skips unpickling and copies (or decodes) the chunk out of the arena itself."""
    blob, _ = wire.dumps_raw_args((value,))
    placed = arena.place(blob)
    assert placed is not None
    small, offset, size = placed

    def no_unpickling(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("unpickled")

    monkeypatch.setattr(wire, "loads_blob", no_unpickling)
    args, kwargs = wire.loads_args(small)
    monkeypatch.undo()
    assert kwargs is None and len(args) == 1
    assert type(args[0]) is type(value) and args[0] == value
    arena.free(offset, size)
    again = arena.place(_blob(b"\xff" * size))
    assert again is not None and again[1] == offset
    assert args[0] == value  # its own memory: the region's reuse changes nothing


@pytest.mark.parametrize(
    "args",
    [(b"x" * T, 3), (7, "y" * T), (b"x" * T, b"z" * T)],
    ids=["bytes-and-int", "int-and-str", "two-chunks"],
)
def test_other_raw_arguments_take_the_general_path(
    arena: _shm.Arena, args: tuple[Any, ...]
) -> None:
    blob, _ = wire.dumps_raw_args(args)
    placed = arena.place(blob)
    assert placed is not None
    received, kwargs = wire.loads_args(placed[0])
    assert kwargs is None and tuple(received) == args
    assert [type(a) for a in received] == [type(a) for a in args]
