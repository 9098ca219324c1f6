"""pullpush.map and pullpush.map_sync: results, order, errors, batching, capacity,
progress, timeouts, executors and cleanup."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import threading
import warnings
from collections.abc import AsyncIterator
from typing import Any

import pytest
from _map_tasks import chunk_digest, fail_on_five, length, pid_of, square

import pullpush
from pullpush import CapacitySource, TaskTimeoutError, ThreadExecutor
from pullpush.executors.process import _shm
from pullpush.runners._map_batches import BATCH_BYTES, LARGE_ITEM, MAX_LARGE_BATCH, _Chunk
from pullpush.runners._map_stream import _MapRun
from pullpush.testing import assert_no_leaks

PROCESS = pytest.mark.parametrize("loop_kind", ["uvloop"])  # one loop: workers are slow


async def agen(n: int) -> AsyncIterator[int]:
    for i in range(n):
        if i % 7 == 0:
            await asyncio.sleep(0)
        yield i


@PROCESS
@pytest.mark.timeout(60)
async def test_process_map_in_order_and_leaves_nothing_behind(loop_kind: str) -> None:
    async with assert_no_leaks():
        assert await pullpush.map(square, range(5000), workers=2) == [x * x for x in range(5000)]
        streamed = [r async for r in pullpush.map(square, range(300), workers=1)]
        assert streamed == [x * x for x in range(300)]


@PROCESS
@pytest.mark.timeout(60)
async def test_process_map_raises_the_first_error_after_the_results_before_it(
    loop_kind: str,
) -> None:
    seen: list[int] = []
    async with assert_no_leaks():
        with pytest.raises(ValueError, match="item 5 is five") as raised:
            async for result in pullpush.map(fail_on_five, range(100), workers=2):
                seen.append(result)
    assert seen == [0, 1, 2, 3, 4]
    assert isinstance(raised.value.__cause__, pullpush.RemoteTraceback)
    assert "fail_on_five" in raised.value.__cause__.text
    if hasattr(raised.value, "__notes__"):
        assert "item 5 of the input" in raised.value.__notes__[-1]


def _ids(container: Any) -> str:
    return "range" if container.__name__ == "<lambda>" else str(container.__name__)


@PROCESS
@pytest.mark.timeout(60)
async def test_errors_return_puts_the_exception_in_place_and_goes_on(loop_kind: str) -> None:
    results = await pullpush.map(fail_on_five, range(40), workers=2, errors="return")
    assert results[:5] == [0, 1, 2, 3, 4] and results[6:] == list(range(6, 40))
    assert isinstance(results[5], ValueError)


@pytest.mark.parametrize("container", [lambda r: r, list, tuple, iter], ids=_ids)
async def test_every_item_runs_exactly_once_when_an_item_of_a_batch_fails(
    container: Any,
) -> None:
    calls: list[int] = []
    lock = threading.Lock()

    def record(x: int) -> int:
        with lock:
            calls.append(x)
        if x % 10 == 3:
            raise KeyError(x)
        return -x

    results = await pullpush.map(
        record, container(range(100)), executor="thread", workers=2, errors="return", batch_size=8
    )
    assert sorted(calls) == list(range(100))
    for x, result in enumerate(results):
        if x % 10 == 3:
            assert isinstance(result, KeyError) and result.args == (x,)
        else:
            assert result == -x


async def test_unordered_gives_every_result_once() -> None:
    async def slow_first(x: int) -> int:
        await asyncio.sleep(0.05 if x == 0 else 0)
        return x

    results = [
        r async for r in pullpush.map(slow_first, range(20), executor="inline", ordered=False)
    ]
    assert sorted(results) == list(range(20))
    assert results[0] != 0  # the slow first item did not hold the others back


async def test_an_async_input_and_an_async_function() -> None:
    async def double(x: int) -> int:
        await asyncio.sleep(0)
        return 2 * x

    assert await pullpush.map(double, agen(50), executor="inline") == [2 * x for x in range(50)]
    assert await pullpush.map(square, agen(50), executor="thread", workers=2) == [
        x * x for x in range(50)
    ]


async def test_a_timeout_fails_the_slow_item_only() -> None:
    async def maybe_slow(x: int) -> int:
        await asyncio.sleep(30 if x == 2 else 0)
        return x

    results = await pullpush.map(
        maybe_slow, range(5), executor="inline", timeout=0.2, errors="return"
    )
    assert results[:2] == [0, 1] and results[3:] == [3, 4]
    assert isinstance(results[2], TaskTimeoutError)


async def test_capacity_under_a_shared_parent_is_respected_and_given_back() -> None:
    parent = CapacitySource(3)
    child = CapacitySource(2, parent)
    running = peak = 0

    async def track(x: int) -> int:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.001)
        running -= 1
        return x

    assert await pullpush.map(track, range(30), executor="inline", capacity=child) == list(
        range(30)
    )
    assert peak == 2
    assert child.in_use == 0 and parent.in_use == 0
    assert await pullpush.map(track, range(5), executor="inline", capacity=1) == list(range(5))


async def test_progress_callback_counts_to_the_total() -> None:
    seen: list[tuple[int, int | None]] = []
    await pullpush.map(
        square, range(100), executor="inline", progress=lambda d, t: seen.append((d, t))
    )
    assert seen[-1] == (100, 100)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
    seen.clear()
    await pullpush.map(
        square, agen(10), executor="inline", progress=lambda d, t: seen.append((d, t))
    )
    assert seen[-1] == (10, None)


async def test_tqdm_progress_bar(capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("tqdm")
    assert await pullpush.map(square, range(10), executor="inline", progress=True) == [
        x * x for x in range(10)
    ]
    assert "10/10" in capsys.readouterr().err


@pytest.mark.parametrize("container", [list, tuple, iter], ids=_ids)
async def test_large_items_go_in_batches_by_bytes_and_tiny_ones_by_time(
    monkeypatch: pytest.MonkeyPatch, container: Any
) -> None:
    chunks: list[_Chunk] = []
    issue = _MapRun._issue

    def recording(self: _MapRun, chunk: _Chunk) -> Any:
        chunks.append(chunk)
        return issue(self, chunk)

    monkeypatch.setattr(_MapRun, "_issue", recording)
    big = b"x" * LARGE_ITEM  # at least LARGE_ITEM: large
    items: list[Any] = ["a", "b", big, "c", bytearray(big), "d"]
    assert await pullpush.map(length, container(items), executor="inline", batch_size=10) == [
        1,
        1,
        len(big),
        1,
        len(big),
        1,
    ]
    # The small ones before the first large item, then a tuple from it on.
    assert [(c.start, len(c.items), c.batched) for c in chunks] == [(0, 2, True), (2, 4, True)]
    assert type(chunks[1].items) is tuple  # (the other, a slice of the input or a list)
    chunks.clear()
    third = b"y" * (BATCH_BYTES // 3)  # three fit in BATCH_BYTES, four do not
    huge = b"z" * (2 * BATCH_BYTES)  # more than BATCH_BYTES alone: a batch of one
    items = [third] * 7 + [huge, huge]
    assert await pullpush.map(length, container(items), executor="inline", batch_size=100) == [
        len(item) for item in items
    ]
    assert [len(c.items) for c in chunks] == [3, 3, 1, 1, 1]
    assert all(type(c.items) is tuple and c.batched for c in chunks)
    chunks.clear()
    items = [big] + [b"s"] * 200  # small items after a large one join it, up to 64
    assert await pullpush.map(length, container(items), executor="inline", batch_size=500) == [
        len(item) for item in items
    ]
    assert [len(c.items) for c in chunks] == [MAX_LARGE_BATCH, len(items) - MAX_LARGE_BATCH]
    assert type(chunks[0].items) is tuple  # then the rest, small, in one batch
    chunks.clear()
    assert await pullpush.map(square, range(100_000), executor="inline") == [
        x * x for x in range(100_000)
    ]
    assert chunks[0].batched and len(chunks[0].items) == 1  # nothing measured yet
    assert max(len(c.items) for c in chunks) > 100  # then batches grew
    assert all(type(c.items) is range for c in chunks)  # a range is sent as ranges


def _chunk_items(count: int) -> list[Any]:
    """Large items of each kind, each with bytes of its own."""
    kinds = [bytes, bytearray, lambda b: b.decode("latin-1")]
    return [kinds[i % 3](bytes([i % 251]) * (LARGE_ITEM + i)) for i in range(count)]


def _digest(item: Any) -> tuple[str, str]:
    data = item.encode("utf-8", "surrogatepass") if isinstance(item, str) else bytes(item)
    return type(item).__name__, hashlib.blake2b(data).hexdigest()


@PROCESS
@pytest.mark.timeout(120)
@pytest.mark.parametrize("ordered", [True, False])
async def test_process_map_batches_large_items_each_out_of_band(
    monkeypatch: pytest.MonkeyPatch, loop_kind: str, ordered: bool
) -> None:
    chunks: list[_Chunk] = []
    issue = _MapRun._issue

    def recording(self: _MapRun, chunk: _Chunk) -> Any:
        chunks.append(chunk)
        return issue(self, chunk)

    placed: list[int] = []  # the out-of-band buffers of each call placed in the arena
    place = _shm.Arena.place

    def counting(self: _shm.Arena, blob: Any) -> Any:
        result = place(self, blob)
        if result is not None:
            placed.append(len(result[0][3]) - 1)
        return result

    monkeypatch.setattr(_MapRun, "_issue", recording)
    monkeypatch.setattr(_shm.Arena, "place", counting)
    items = _chunk_items(120)
    with warnings.catch_warnings():
        warnings.simplefilter("error", pullpush.LargeTaskWarning)
        async with assert_no_leaks():
            results = await pullpush.map(chunk_digest, items, workers=2, ordered=ordered)
    expected = [_digest(item) for item in items]
    if ordered:
        assert results == expected  # each item's type and bytes, in order
    else:
        assert sorted(results) == sorted(expected)
    assert len(chunks) < len(items) and max(len(c.items) for c in chunks) > 1
    assert sum(len(c.items) for c in chunks) == len(items)
    # Every batch in the arena, each of its items a buffer of its own.
    assert sorted(placed) == sorted(len(c.items) for c in chunks)


@PROCESS
@pytest.mark.timeout(120)
async def test_process_map_of_large_items_returns_the_failed_items_error_in_place(
    loop_kind: str,
) -> None:
    items = _chunk_items(60)
    failing = {7, 33}
    for index in failing:
        items[index] = b"FAIL" + bytes([index]) + b"." * LARGE_ITEM
    async with assert_no_leaks():
        results = await pullpush.map(chunk_digest, items, workers=2, errors="return")
    for index, (item, result) in enumerate(zip(items, results, strict=True)):
        if index in failing:
            assert isinstance(result, ValueError) and str(result) == f"item {index} failed"
            if hasattr(result, "__notes__"):
                assert f"item {index} of the input" in result.__notes__[-1]
        else:
            assert result == _digest(item)
    with pytest.raises(ValueError, match="item 7 failed"):
        await pullpush.map(chunk_digest, items, workers=2)


@PROCESS
@pytest.mark.timeout(60)
async def test_an_executor_object_is_the_callers_and_workers_is_refused(loop_kind: str) -> None:
    async with pullpush.ProcessExecutor(2) as executor:
        first = await pullpush.map(pid_of, range(8), executor=executor, batch_size=1)
        assert set(first) <= set(executor.pids)
        assert not executor.closed
        with pytest.raises(ValueError, match="has its own size"):
            pullpush.map(square, [1], executor=executor, workers=2)


async def test_leaving_early_cancels_and_closes() -> None:
    started = 0

    async def slow(x: int) -> int:
        nonlocal started
        started += 1
        await asyncio.sleep(0 if x < 3 else 30)
        return x

    stream = pullpush.map(slow, range(1000), executor="inline")
    async with contextlib.aclosing(stream):
        async for result in stream:
            if result == 2:
                break
    assert started < 1000


def test_bad_arguments() -> None:
    with pytest.raises(TypeError, match="fn must be callable"):
        pullpush.map(3, [1])  # type: ignore[call-overload]
    with pytest.raises(TypeError, match="items must be an iterable"):
        pullpush.map(square, 3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="errors must be"):
        pullpush.map(square, [1], errors="ignore")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="capacity must be an int or a CapacitySource"):
        pullpush.map(square, [1], capacity=1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="executor must be"):
        pullpush.map(square, [1], executor="gpu")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="has no worker pool"):
        pullpush.map(square, [1], executor="inline", workers=2)
    with pytest.raises(ValueError, match="map_sync runs its own event loop"):
        pullpush.map_sync(square, [1], executor=ThreadExecutor())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="capacity as an int"):
        pullpush.map_sync(square, [1], capacity=CapacitySource(1))  # type: ignore[arg-type]


async def test_a_map_runs_once() -> None:
    stream = pullpush.map(square, [1, 2], executor="inline")
    assert await stream == [1, 4]
    with pytest.raises(RuntimeError, match="runs once"):
        await stream


@pytest.mark.timeout(60)
def test_map_sync_returns_results_and_raises_in_the_caller() -> None:
    assert list(pullpush.map_sync(square, range(3000), workers=2)) == [x * x for x in range(3000)]
    seen: list[int] = []
    with pytest.raises(ValueError, match="item 5 is five"):
        seen.extend(pullpush.map_sync(fail_on_five, range(50), executor="thread", workers=2))
    assert seen == [0, 1, 2, 3, 4]


@pytest.mark.timeout(60)
def test_map_sync_closed_early_stops_its_thread() -> None:
    before = threading.active_count()
    results = pullpush.map_sync(square, range(100_000), executor="thread", workers=2)
    assert next(results) == 0
    results.close()  # type: ignore[attr-defined]
    assert threading.active_count() == before


async def test_map_sync_refuses_to_block_a_running_loop() -> None:
    with pytest.raises(RuntimeError, match="would block the running event loop"):
        next(pullpush.map_sync(square, [1], executor="inline"))
