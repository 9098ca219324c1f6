"""Task runners for the process executor tests. Workers must be able to rebuild them:
the test modules register this module to be pickled by value."""

from __future__ import annotations

import asyncio
import ctypes
import os
import re
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
    if how == "libc exit":  # no Python clean-up, stdio flushed
        ctypes.CDLL(None).exit(7)
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


def hold_gil() -> Generator[int, None, None]:
    """Reports this worker's pid, then runs C code that never releases the GIL (a
    regular expression backtracking for ages): no thread of the worker gets a turn."""
    yield os.getpid()
    re.match(r"(a+)+$", "a" * 40 + "b")
    raise AssertionError("the backtracking ended")


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


class DiesWhenCollected:
    """Ends the process that frees an unpickled copy of it (``die(how)``; the
    original, and the copies forked workers inherit, are harmless): as a call's
    argument, it ends the worker as soon as the task returned, before the task's
    result has left the worker."""

    def __init__(self, how: str, armed: bool = False) -> None:
        self.how = how
        self.armed = armed

    def __reduce__(self) -> tuple[Any, ...]:
        return (DiesWhenCollected, (self.how, True))

    def __del__(self) -> None:
        if self.armed:
            die(self.how)


def ignores(argument: Any, value: Any = "done") -> Any:
    """Returns ``value``, dropping ``argument`` (freed once the task returned)."""
    return value


def close_fds() -> str:
    """Closes every file descriptor of this worker beyond stdio (its pipes too)."""
    os.closerange(3, 1000)
    return "closed"


class CustomInterrupt(BaseException):
    """A BaseException that is neither an Exception nor one Python itself raises."""


def raise_base(kind: str) -> None:
    """Raises the BaseException ``kind`` names (called while unpickling, below)."""
    if kind == "BaseException subclass":
        raise CustomInterrupt("custom interrupt while unpickling")
    if kind == "GeneratorExit":
        raise GeneratorExit
    if kind == "KeyboardInterrupt":
        raise KeyboardInterrupt
    raise AssertionError(kind)


class RaisesWhenUnpickled:
    """Pickles fine; unpickling it raises ``raise_base(kind)``."""

    def __init__(self, kind: str) -> None:
        self.kind = kind

    def __reduce__(self) -> tuple[Any, ...]:
        return (raise_base, (self.kind,))


class ErrorRaisesWhenUnpickled(Exception):
    """An exception that pickles fine; unpickling it raises ``raise_base(kind)``, or
    (``kind="not an exception"``) gives a str."""

    def __init__(self, kind: str) -> None:
        super().__init__(f"carries {kind}")
        self.kind = kind

    def __reduce__(self) -> tuple[Any, ...]:
        if self.kind == "not an exception":
            return (str, ("not an exception",))
        return (raise_base, (self.kind,))


def make_raises_when_unpickled(kind: str) -> RaisesWhenUnpickled:
    return RaisesWhenUnpickled(kind)


async def yield_raises_when_unpickled(kind: str) -> AsyncGenerator[Any, None]:
    yield RaisesWhenUnpickled(kind)
    await asyncio.sleep(3600)  # cancelled: the value that failed fails the task


def raise_error_raises_when_unpickled(kind: str) -> None:
    raise ErrorRaisesWhenUnpickled(kind)


class ErrorDiesWhenUnpickled(Exception):
    """An exception whose unpickling runs ``die(how)`` (in the parent)."""

    def __init__(self, how: str) -> None:
        super().__init__(f"dies with {how} when unpickled")
        self.how = how

    def __reduce__(self) -> tuple[Any, ...]:
        return (die, (self.how,))


def raise_error_dies_when_unpickled(how: str) -> None:
    raise ErrorDiesWhenUnpickled(how)


class UnprintableError(Exception):
    """Its ``__str__`` raises."""

    def __str__(self) -> str:
        raise RuntimeError("no text for you")


class UnprintableUnpicklableError(UnprintableError):
    """Its ``__str__`` raises, and so does pickling it."""

    def __reduce__(self) -> tuple[Any, ...]:
        raise TypeError("no pickling either")


def raise_unprintable(picklable: bool) -> None:
    raise UnprintableError() if picklable else UnprintableUnpicklableError()


async def aexit(code: int) -> None:
    await asyncio.sleep(0)
    sys.exit(code)


def yields_dies_when_pickled(how: str) -> Generator[Any, None, str]:
    yield 1
    yield DiesWhenPickled(how)
    return "unreachable"


def open_fds() -> tuple[int, list[str]]:
    """This worker's pid, and what each of its open fds is (``pipe:[inode]``...)."""
    targets = []
    for name in os.listdir("/proc/self/fd"):
        try:
            targets.append(os.readlink(f"/proc/self/fd/{name}"))
        except OSError:  # noqa: PERF203 - the fd listdir itself used
            continue
    return os.getpid(), targets


def hanging_initializer() -> None:
    """An initializer that never returns (in a test's lifetime)."""
    time.sleep(3600)
