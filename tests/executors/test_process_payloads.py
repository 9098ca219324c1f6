"""Large values travel out of band (issue 15): they arrive as they were sent, in
arguments, keyword arguments, closures, partials, results and streamed values; a
large call has a frame of its own and is written from the caller's object; closures
seen once are not kept by workers."""

from __future__ import annotations

import asyncio
import functools
import hashlib
import os
from typing import Any

import _payload_tasks as tasks
import cloudpickle
import psutil
import pytest

from pullpush import CapacitySource, EnvelopeType, HierarchicalTaskPoolRunner, ProcessExecutor
from pullpush.executors.process import _pickling as pickling
from pullpush.executors.process import _protocol as wire
from pullpush.testing import assert_no_leaks, collect

cloudpickle.register_pickle_by_value(tasks)

T = pickling.OOB_THRESHOLD


def _values() -> list[Any]:
    """Each kind of value, below, at and above the threshold."""
    values: list[Any] = []
    for size in (T - 1, T, T + 1, (1 << 20) + 3):
        raw = bytes(i % 251 for i in range(size))
        values += [
            raw,
            bytearray(raw),
            raw.decode("latin-1"),  # not ASCII: 2 bytes in UTF-8 for half of them
            "a" * size,
            memoryview(raw),
        ]
    values.append(memoryview(bytearray(4 * T)).cast("i", (T // 4, 4)))  # format, shape kept
    values.append("\ud800" * T)  # a lone surrogate survives
    values.append((b"x" * T, "small", b"y" * 10))  # a tuple's items travel out of band
    return values


def _same(sent: Any, received: Any) -> bool:
    if type(sent) is not type(received):
        return False
    if isinstance(sent, memoryview):
        return bool(
            sent.tobytes() == received.tobytes()
            and (sent.format, sent.shape, sent.readonly)
            == (received.format, received.shape, received.readonly)
        )
    if isinstance(sent, tuple):
        return len(sent) == len(received) and all(map(_same, sent, received))
    return bool(sent == received)


def _received(description: tuple[Any, ...]) -> tuple[list[Any], dict[str, Any]]:
    args, kwargs = description
    return [value for _, value in args], {key: value for key, (_, value) in kwargs.items()}


@pytest.mark.timeout(120)
async def test_values_round_trip_in_arguments_and_keyword_arguments() -> None:
    async with ProcessExecutor(1) as executor:
        for value in _values():
            description = await executor.run(functools.partial(tasks.describe, value, key=value))
            args, kwargs = _received(description)
            assert _same(value, args[0]), type(value)
            assert _same(value, kwargs["key"]), type(value)
            assert description[0][0][0] == type(value).__name__


@pytest.mark.timeout(120)
async def test_values_round_trip_in_closures_and_partials_of_closures() -> None:
    async with ProcessExecutor(1) as executor:
        for value in _values():
            name, received = await executor.run(tasks.closure_over(value))
            assert name == type(value).__name__ and _same(value, received)
            # A partial of a closure (seen once: pickled whole, with its arguments).
            description = await executor.run(functools.partial(lambda *a: a, value))
            assert _same((value,), description)


@pytest.mark.timeout(120)
async def test_values_round_trip_as_results_and_streamed_values() -> None:
    async with ProcessExecutor(1) as executor:
        for value in _values():
            if isinstance(value, memoryview) and not value.readonly:
                continue  # a worker's writable view arrives as one too; sent read-only here
            assert _same(value, await executor.run(functools.partial(tasks.returns, value)))
            envelopes = await collect(
                HierarchicalTaskPoolRunner(
                    "stream",
                    [functools.partial(tasks.yields, value, 1, value)],
                    CapacitySource(1),
                    executor=executor,
                ).run_tasks()
            )
            streamed = [e.value for e in envelopes if e.type is EnvelopeType.INTERMEDIATE]
            assert len(streamed) == 3 and streamed[1] == 1
            assert _same(value, streamed[0]) and _same(value, streamed[2])
            assert [e.value for e in envelopes if e.type is EnvelopeType.FINAL] == ["end"]


@pytest.mark.timeout(120)
async def test_numpy_arrays_travel_out_of_band_and_stay_writable() -> None:
    numpy = pytest.importorskip("numpy")
    array = numpy.arange(T, dtype=numpy.float64).reshape(-1, 8)
    blob = pickling.dumps_blob(array)
    assert type(blob) is tuple and pickling.stream_size(blob) < 1024
    async with ProcessExecutor(1) as executor:
        back = await executor.run(functools.partial(tasks.returns, array))
        assert back.dtype == array.dtype and (back == array).all() and back.flags.writeable


@pytest.mark.timeout(120)
async def test_a_mutable_buffer_is_sent_as_it_was_when_submitted() -> None:
    buffer = bytearray(b"a" * (2 * T))
    expected = hashlib.blake2b(buffer).hexdigest()
    async with ProcessExecutor(1) as executor:
        handle = executor.run(functools.partial(tasks.digest, buffer))
        view = memoryview(bytearray(b"b" * (2 * T)))
        expected_view = hashlib.blake2b(view).hexdigest()
        closure = executor.run(tasks.digest_of(view))
        first, second = asyncio.ensure_future(handle), asyncio.ensure_future(closure)
        await asyncio.sleep(0)  # submitted, not yet written to the pipe
        buffer[:] = b"z" * len(buffer)
        view[:] = b"z" * len(view)
        assert await first == expected
        assert await second == expected_view


def test_a_large_call_has_a_frame_of_its_own_written_from_the_callers_object() -> None:
    read_fd, write_fd = os.pipe()
    try:
        os.set_blocking(read_fd, False)
        os.set_blocking(write_fd, False)
        reader, writer = wire.FrameReader(read_fd), wire.FrameWriter(write_fd)
        chunk = b"c" * pickling.ALONE_THRESHOLD
        blob = pickling.dumps_blob(((pickling.wrap_large(chunk),), {}))
        assert pickling.is_large(blob)
        parts = wire.encode_frame([(wire.CALL_ARGS, 1, 7, blob)])
        assert any(isinstance(p, memoryview) and p.obj is chunk for p in parts)  # no copy
        writer.send((wire.CANCEL, 0))
        writer.send_alone((wire.CALL_ARGS, 1, 7, blob))
        writer.send((wire.CANCEL, 2))
        frames: list[list[Any]] = []
        while writer.pending or writer.messages or len(frames) < 3:
            writer.flush()
            frames += reader.read()[0]
        assert [[m[:2] for m in frame] for frame in frames] == [
            [(wire.CANCEL, 0)],
            [(wire.CALL_ARGS, 1)],
            [(wire.CANCEL, 2)],
        ]
        (args, _) = pickling.loads_blob(frames[1][0][3])
        assert args == (chunk,) and type(args[0]) is bytes
    finally:
        os.close(read_fd)
        os.close(write_fd)


@pytest.mark.timeout(120)
async def test_closures_seen_once_are_not_kept_by_workers() -> None:
    """256 closures each capturing 4 MiB: the workers free each with its call."""
    base = os.urandom(1 << 10) * (4 << 10)  # 4 MiB

    def closures() -> Any:
        for i in range(256):
            yield tasks.digest_of(base[:-8] + i.to_bytes(8, "little"))

    async with assert_no_leaks(), ProcessExecutor(2) as executor:
        runner = HierarchicalTaskPoolRunner(
            "closures", closures(), CapacitySource(4), executor=executor
        )
        envelopes = await collect(runner.run_tasks())
        digests = {e.value for e in envelopes if e.type is EnvelopeType.FINAL}
        assert len(digests) == 256
        assert executor.statistics().functions_cached == 0
        rss = [psutil.Process(pid).memory_info().rss for pid in executor.pids]
        assert rss and max(rss) < 100 * 2**20, [r >> 20 for r in rss]


@pytest.mark.timeout(60)
async def test_importable_and_repeated_functions_are_cached_others_are_not() -> None:
    async with ProcessExecutor(1) as executor:
        for _ in range(3):  # importable (pickled by reference): cached at once
            assert await executor.run(functools.partial(len, "abc")) == 3
        assert executor.statistics().functions_cached == 1
        for i in range(3):  # a fresh closure each time: never cached
            assert await executor.run(tasks.closure_over(i)) == ("int", i)
        assert executor.statistics().functions_cached == 1
        again = tasks.closure_over("x")
        for _ in range(3):  # the same closure: cached from its second call
            assert await executor.run(again) == ("str", "x")
        assert executor.statistics().functions_cached == 2


@pytest.mark.timeout(60)
async def test_small_tuples_of_raw_values_come_back_raw_and_others_as_blobs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from pullpush.executors.process import _results

    kinds: list[int] = []
    on_message = _results._ResultsMixin._on_message

    def recording(self: Any, worker: Any, message: tuple[Any, ...]) -> None:
        if message[0] in (wire.FINAL, wire.FINAL_BLOB):
            kinds.append(message[0])
        on_message(self, worker, message)

    monkeypatch.setattr(_results._ResultsMixin, "_on_message", recording)
    results = [
        (b"digest", 0.5),  # raw
        (1, "two", None, True, 2.5),  # raw
        tuple(range(16)),  # raw: at the limit
        tuple(range(17)),  # a blob: too many items
        (b"x" * T, 1),  # a blob: a large item travels out of band
        ([1], 2),  # a blob: not all raw
        (),  # raw
    ]
    async with ProcessExecutor(1) as executor:
        for value in results:
            received = await executor.run(functools.partial(tasks.returns, value))
            assert type(received) is tuple and received == value
    raw, blob = wire.FINAL, wire.FINAL_BLOB
    assert kinds == [raw, raw, raw, blob, blob, blob, raw]
