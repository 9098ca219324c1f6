"""The task functions of ``bench/modes.py``: module-level, so every pool's workers can
import them by name (this folder is on ``sys.path`` of the script, and child processes
inherit it).

CPU work is counted in iterations of a pure-Python loop calibrated once per run
(:func:`calibrate`), never in wall time: a time-based busy loop would let threads look
parallel while they only take turns holding the GIL.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Generator

from pullpush.demo._analysis import ChunkResult, analyse_chunk


def spin(iterations: int) -> int:
    """Burn CPU in pure Python (holding the GIL) for ``iterations`` steps."""
    total = 0
    for i in range(iterations):
        total += i * i % 7
    return total


def calibrate(seconds: float = 0.05, rounds: int = 5) -> int:
    """Iterations of :func:`spin` that take about ``seconds`` on one core (best of
    ``rounds``, so a busy neighbour makes the tasks shorter, never longer)."""
    probe = 200_000
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        spin(probe)
        best = min(best, time.perf_counter() - start)
    return max(1, round(probe * seconds / best))


async def aspin(iterations: int) -> int:
    """:func:`spin` as a coroutine function (aiomultiprocess runs only those)."""
    return spin(iterations)


async def io_then_cpu(sleep: float, iterations: int) -> int:
    """Wait for ``sleep`` seconds of pretend I/O, then compute."""
    await asyncio.sleep(sleep)
    return spin(iterations)


def io_then_cpu_sync(sleep: float, iterations: int) -> int:
    """:func:`io_then_cpu` for pools that run plain functions: the wait blocks."""
    time.sleep(sleep)
    return spin(iterations)


def analyse(index: int, text: str) -> ChunkResult:
    """The demo's chunk analysis as a plain function (its progress is dropped)."""
    result: list[ChunkResult] = []

    def drain() -> Generator[str, None, None]:
        result.append((yield from analyse_chunk(index, text)))

    for _ in drain():
        pass
    return result[0]


async def aanalyse(index: int, text: str) -> ChunkResult:
    """:func:`analyse` as a coroutine function."""
    return analyse(index, text)


def noop(x: int = 0) -> int:
    """Warm a pool up: one of these per worker before timing starts."""
    return x


async def anoop(x: int = 0) -> int:
    return x
