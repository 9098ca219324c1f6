"""Run the chunk analysis in one mode: an async-generator task source, a capacity-limited
:class:`~pullpush.HierarchicalTaskPoolRunner`, and a live progress display."""

from __future__ import annotations

import dataclasses
import functools
import os
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol

from .. import (
    CapacitySource,
    EnvelopeType,
    Executor,
    HierarchicalTaskPoolRunner,
    InlineExecutor,
    ProcessExecutor,
    ThreadExecutor,
)
from ._analysis import STAGES, Totals, analyse_chunk

__all__ = ["MODES", "ModeRun", "NoProgress", "Progress", "TqdmProgress", "run_mode"]

MODES = ("inline", "thread", "process")

ENVELOPES_PER_CHUNK = len(STAGES) + 1
"""Four INTERMEDIATE envelopes (one per stage) and one FINAL."""


@dataclasses.dataclass
class ModeRun:
    """How one mode did."""

    mode: str
    cores: int
    """Cores the mode can use: 1 inline; in threads or processes, ``workers`` or the
    CPUs this process may use, whichever is fewer."""
    seconds: float
    """Wall time, from starting the pool to merging the last result."""
    envelopes: int
    totals: Totals


class Progress(Protocol):
    """What :func:`run_mode` reports progress to."""

    def start(self, mode: str, chunks: int | None) -> None: ...
    def envelope(self) -> None: ...
    def chunk(self) -> None: ...
    def finish(self) -> None: ...


class NoProgress:
    """Reports nothing."""

    def start(self, mode: str, chunks: int | None) -> None:
        pass

    def envelope(self) -> None:
        pass

    def chunk(self) -> None:
        pass

    def finish(self) -> None:
        pass


class TqdmProgress:
    """Two tqdm bars on stderr: chunks analysed, and envelopes received."""

    def __init__(self) -> None:
        self._bars: list[Any] = []

    def start(self, mode: str, chunks: int | None) -> None:
        from tqdm import tqdm

        envelopes = None if chunks is None else chunks * ENVELOPES_PER_CHUNK
        self._chunks = tqdm(
            total=chunks, desc=f"{mode:>7} {'chunks':<9}", unit="chunk", position=0, leave=False
        )
        self._envelopes = tqdm(
            total=envelopes, desc=f"{mode:>7} {'envelopes':<9}", unit="env", position=1, leave=False
        )
        self._bars = [self._chunks, self._envelopes]

    def envelope(self) -> None:
        self._envelopes.update()

    def chunk(self) -> None:
        self._envelopes.update()
        self._chunks.update()

    def finish(self) -> None:
        for bar in reversed(self._bars):
            bar.close()
        self._bars = []


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity mask), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def make_executor(mode: str, workers: int) -> Executor:
    """The executor of ``mode``: ``"inline"``, ``"thread"`` or ``"process"``."""
    if mode == "inline":
        return InlineExecutor()
    if mode == "thread":
        return ThreadExecutor(workers)
    if mode == "process":
        return ProcessExecutor(workers)
    raise ValueError(f"mode must be one of {', '.join(MODES)}; got {mode!r}")


async def run_mode(
    mode: str,
    chunks: Callable[[], AsyncIterator[str]],
    *,
    workers: int,
    capacity: int,
    progress: Progress | None = None,
    expected_chunks: int | None = None,
) -> ModeRun:
    """Analyse every chunk of ``chunks()`` in ``mode``; merge the results.

    The task source is an async generator that takes the next chunk only when the
    runner asks for the next task, so chunking runs while earlier chunks are analysed
    (pipelined). Each task is ``functools.partial(analyse_chunk, index, text)``.

    Raises:
        Exception: the first task that failed (``stop_on_error=True``), with the
            worker's traceback chained.
    """
    progress = progress if progress is not None else NoProgress()

    async def tasks() -> AsyncIterator[Callable[[], Any]]:
        index = 0
        async for text in chunks():
            yield functools.partial(analyse_chunk, index, text)
            index += 1

    totals = Totals()
    envelopes = 0
    progress.start(mode, expected_chunks)
    started = time.perf_counter()
    try:
        async with make_executor(mode, workers) as executor:
            runner = HierarchicalTaskPoolRunner(
                f"demo-{mode}", tasks(), CapacitySource(capacity), executor=executor
            )
            async for envelope in runner.run_tasks(stop_on_error=True):
                envelopes += 1
                if envelope.type is EnvelopeType.FINAL:
                    totals.add(envelope.value)
                    progress.chunk()
                else:
                    progress.envelope()
        seconds = time.perf_counter() - started
    finally:
        progress.finish()
    cores = 1 if mode == "inline" else min(workers, usable_cpus())
    return ModeRun(mode, cores, seconds, envelopes, totals)
