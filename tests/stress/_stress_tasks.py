"""Task runners for the stress suite, as module-level functions: worker processes
(started by forkserver) import this module by name, so ``functools.partial(f, ...)``
travels as a function id plus its arguments. ``tests/stress/conftest.py`` puts this
directory on ``sys.path`` (workers inherit it)."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import threading
import time
from collections.abc import AsyncGenerator, Generator
from typing import Any

from pullpush import Final

# -- well-behaved tasks -------------------------------------------------------------------


def ok(key: int) -> int:
    return key


def spin(key: int, micros: int) -> int:
    """Busy-wait ``micros`` microseconds (a few µs of CPU work)."""
    end = time.perf_counter() + micros / 1e6
    while time.perf_counter() < end:
        pass
    return key


def doze(key: int, seconds: float) -> int:
    """Block the worker for ``seconds`` (not the CPU)."""
    time.sleep(seconds)
    return key


async def nap(key: int, seconds: float) -> int:
    await asyncio.sleep(seconds)
    return key


def stream(key: int, count: int) -> Generator[int, None, int]:
    """A sync generator: ``count`` INTERMEDIATE envelopes, then FINAL ``key``."""
    yield from range(count)
    return key


async def astream(key: int, count: int) -> AsyncGenerator[Any, None]:
    """An async generator: ``count`` INTERMEDIATE envelopes, then FINAL ``key``."""
    for i in range(count):
        await asyncio.sleep(0)
        yield i
    yield Final(key)


# -- injected faults ----------------------------------------------------------------------


class InjectedError(Exception):
    """An exception type of the suite's own, so it cannot come from anywhere else."""


ERRORS: dict[str, type[Exception]] = {
    "ValueError": ValueError,
    "KeyError": KeyError,
    "RuntimeError": RuntimeError,
    "ZeroDivisionError": ZeroDivisionError,
    "InjectedError": InjectedError,
}
"""The exception types injected, by name."""


def raise_now(key: int, error: str) -> None:
    raise ERRORS[error](f"injected into task {key}")


async def raise_async(key: int, error: str) -> None:
    await asyncio.sleep(0)
    raise ERRORS[error](f"injected into task {key}")


def raise_streaming(key: int, error: str) -> Generator[int, None, None]:
    yield key
    raise ERRORS[error](f"injected into task {key}")


KILL_EXIT_CODE = 13


def kill(how: str) -> None:
    """End the worker process: ``os._exit`` or SIGKILL."""
    if how == "os._exit":
        os._exit(KILL_EXIT_CODE)
    if how == "SIGKILL":
        os.kill(os.getpid(), signal.SIGKILL)
    raise AssertionError(how)


async def hang() -> None:
    """Never end on its own (cancelled in the worker when it times out)."""
    await asyncio.sleep(3600)


def hang_blocking() -> None:
    """Never end on its own, stuck in blocking code (its worker must be terminated)."""
    time.sleep(3600)


# -- bad input ------------------------------------------------------------------------------


def returns(value: Any) -> Any:
    return value


def make_lock() -> Any:
    return threading.Lock()


def nested(depth: int) -> Any:
    """A list nested ``depth`` deep."""
    value: list[Any] = []
    for _ in range(depth):
        value = [value]
    return value


def big(megabytes: int) -> bytes:
    return b"x" * (megabytes * 1024 * 1024)


def length(value: Any) -> int:
    return len(value)


class UnpicklableError(Exception):
    """An exception that holds a lock, so it cannot be pickled."""

    def __init__(self) -> None:
        super().__init__("holds a lock")
        self.lock = threading.Lock()


def raise_unpicklable() -> None:
    raise UnpicklableError()


class CloseError(Exception):
    """Raised by a generator while it is being closed."""


def raises_on_close(interval: float) -> Generator[int, None, None]:
    """Yield forever; raise :class:`CloseError` when closed."""
    try:
        i = 0
        while True:
            time.sleep(interval)
            yield i
            i += 1
    finally:
        raise CloseError("raised while closing")


async def araises_on_close(interval: float) -> AsyncGenerator[int, None]:
    """Yield forever; raise :class:`CloseError` when closed."""
    try:
        i = 0
        while True:
            await asyncio.sleep(interval)
            yield i
            i += 1
    finally:
        raise CloseError("raised while closing")


def ends_then_raises_on_close() -> Generator[int, None, int]:
    """Yield once, return, and raise from ``finally`` as it ends."""
    try:
        yield 1
        return 2
    finally:
        raise CloseError("raised in finally at the end")


# -- parent death ---------------------------------------------------------------------------


def occupy(mode: str) -> Generator[int, None, None]:
    """Report this worker's pid, then keep the worker busy the way ``mode`` says."""
    yield os.getpid()
    spin(0, 50_000)
    yield os.getpid()  # after a while: the worker's loop gets a turn and sends both
    if mode == "spinning":
        while True:
            pass
    if mode == "blocked":
        time.sleep(3600)
    if mode == "streaming":  # the parent's consumer never reads: paused by flow control
        while True:
            yield 0
    if mode == "holding the GIL":  # C code that never releases it: no thread gets a turn
        re.match(r"(a+)+$", "a" * 40 + "b")
    raise AssertionError(mode)


async def aoccupy() -> AsyncGenerator[int, None]:
    """Report this worker's pid, then await forever."""
    yield os.getpid()
    await asyncio.sleep(3600)


async def pid_after(seconds: float) -> int:
    """This worker's pid, after ``seconds`` (so concurrent calls spread over workers)."""
    await asyncio.sleep(seconds)
    return os.getpid()


def yields_nested(depth: int) -> Generator[Any, None, None]:
    """Yield a list nested ``depth`` deep (built in the worker)."""
    yield nested(depth)


def exits(code: int) -> None:
    raise SystemExit(code)


async def yields_after_final() -> AsyncGenerator[Any, None]:
    yield Final("early")
    yield "too late"
