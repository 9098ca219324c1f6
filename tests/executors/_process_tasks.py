"""Task runners for the process executor tests. Workers must be able to rebuild them:
the test modules register this module to be pickled by value."""

from __future__ import annotations

import asyncio
import ctypes
import os
import signal
import sys
import time
from collections.abc import AsyncGenerator, Generator
from typing import Any

from pullpush import Final


def identity(x: Any) -> Any:
    return x


def pid() -> int:
    return os.getpid()


async def async_double(x: int) -> int:
    await asyncio.sleep(0)
    return 2 * x


def count(n: int) -> Generator[int, None, str]:
    yield from range(n)
    return f"counted {n}"


async def acount(n: int) -> AsyncGenerator[Any, None]:
    for i in range(n):
        yield i
    yield Final(f"counted {n}")


def fail(message: str) -> None:
    raise ValueError(message)


async def sleep_forever(marker: str | None = None) -> None:
    await asyncio.sleep(3600)


def spin(seconds: float) -> str:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass
    return "spun"


def die(how: str) -> None:
    """Fail the current process the way ``how`` says."""
    if how == "exception":
        raise ValueError(f"{how} in the worker")
    if how == "sys.exit":
        sys.exit(7)
    if how == "os._exit":
        os._exit(7)
    if how == "SIGKILL":
        os.kill(os.getpid(), signal.SIGKILL)
    if how == "segfault":
        ctypes.string_at(0)
    raise AssertionError(how)


class DiesWhenUnpickled:
    """Pickles fine; unpickling it runs ``die``."""

    def __init__(self, how: str) -> None:
        self.how = how

    def __reduce__(self) -> tuple[Any, ...]:
        return (die, (self.how,))


class DiesWhenPickled:
    """Pickling it runs ``die``."""

    def __init__(self, how: str) -> None:
        self.how = how

    def __reduce__(self) -> tuple[Any, ...]:
        die(self.how)
        raise AssertionError("unreachable")


class ErrorDiesWhenPickled(Exception):
    """An exception whose pickling runs ``die``."""

    def __init__(self, how: str) -> None:
        super().__init__(how)
        self.how = how

    def __reduce__(self) -> tuple[Any, ...]:
        die(self.how)
        raise AssertionError("unreachable")


def returns(value: Any) -> Any:
    return value


def raise_error(error: BaseException) -> None:
    raise error


def memory_hog(megabytes: int) -> int:
    block = bytearray(megabytes * 1024 * 1024)
    for i in range(0, len(block), 4096):
        block[i] = 1
    return len(block)


def set_marker(value: str) -> None:
    os.environ["PULLPUSH_TEST_MARKER"] = value


def read_marker() -> str | None:
    return os.environ.get("PULLPUSH_TEST_MARKER")


def failing_initializer() -> None:
    raise RuntimeError("initializer refused")


_leaked: list[bytearray] = []


def leak(megabytes: int) -> int:
    """Keep ``megabytes`` of touched memory alive in this process."""
    block = bytearray(megabytes * 1024 * 1024)
    for i in range(0, len(block), 4096):
        block[i] = 1
    _leaked.append(block)
    return len(block)


def make_dies_when_pickled(how: str) -> DiesWhenPickled:
    return DiesWhenPickled(how)


def raise_error_dies_when_pickled(how: str) -> None:
    raise ErrorDiesWhenPickled(how)


def make_dies_when_unpickled(how: str) -> DiesWhenUnpickled:
    return DiesWhenUnpickled(how)


def spin_ignoring_sigterm(seconds: float) -> str:
    """CPU-bound code that ignores SIGTERM: only SIGKILL stops it."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    return spin(seconds)


async def where_and_when(seconds: float) -> tuple[int, str, float, float]:
    """This worker's pid, its loop's module, and when the task ran (monotonic clock,
    which is system-wide on Linux, so intervals of different tasks compare)."""
    start = time.monotonic()
    await asyncio.sleep(seconds)
    loop = asyncio.get_running_loop()
    return os.getpid(), type(loop).__module__, start, time.monotonic()


async def started_then_waits() -> AsyncGenerator[str, None]:
    yield "started"
    await asyncio.sleep(3600)


async def swallows_cancel() -> str:
    """Catches its cancellation and returns a value instead."""
    try:
        await asyncio.sleep(3600)
    except asyncio.CancelledError:
        return "swallowed"
    return "slept"


class CloseError(Exception):
    """Raised by a generator as it is closed."""


def raises_on_close() -> Generator[int, None, None]:
    try:
        i = 0
        while True:
            time.sleep(0.01)
            yield i
            i += 1
    finally:
        raise CloseError("raised while closing")


def doze(value: Any, seconds: float) -> Any:
    """Blocks (never awaits) for ``seconds``, then returns ``value``."""
    time.sleep(seconds)
    return value


def occupy() -> Generator[int, None, None]:
    """Reports this worker's pid, then keeps it spinning in pure Python forever."""
    yield os.getpid()  # the first value goes out at once (drive())
    while True:
        pass


def record_run(path: str, key: str) -> str:
    """Appends ``key`` to the file at ``path`` each time it runs (counts runs)."""
    with open(path, "a") as file:
        file.write(f"{key}\n")
    return key


def record_stream(path: str, key: str) -> Generator[int, None, str]:
    """Records the run, then yields 0, 1, 2 with pauses between."""
    record_run(path, key)
    yield 0
    time.sleep(0.02)
    yield 1
    time.sleep(0.02)
    yield 2
    return key


def big_values(count: int, size: int, kind: str) -> Generator[Any, None, int]:
    """Yields ``count`` values of about ``size`` bytes: ``bytes``, or (``kind="blob"``)
    dicts holding them, which travel pickled on their own."""
    for i in range(count):
        data = bytes([i % 256]) * size
        yield data if kind == "bytes" else {"i": i, "data": data}
    return count


def hanging_initializer() -> None:
    """An initializer that never returns (in a test's lifetime)."""
    time.sleep(3600)
