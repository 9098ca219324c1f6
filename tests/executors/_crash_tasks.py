"""Task runners and booby-trapped objects for the crash matrix (``test_crash_matrix.py``).

Workers import this module by name (``tests/executors`` is on ``sys.path`` through
``conftest.py``, and worker processes inherit ``sys.path``); nothing here is pickled
by value, so every class and function travels by reference, as user code does.

A *failure* is one of :data:`FAILURES`; :func:`fail` commits it wherever it is called:
in the task's body, or in the ``__reduce__`` of an object being pickled, or in the
function an unpickled object's ``__reduce__`` names (so unpickling commits it).
"""

from __future__ import annotations

import asyncio
import ctypes
import faulthandler
import os
import signal
import sys
import time
from collections.abc import AsyncGenerator, Generator
from typing import Any, NoReturn

FAILURES = (
    "exception",
    "sys.exit",
    "os._exit",
    "SIGKILL",
    "segfault",
    "bad __str__",
    "BaseException",
)
"""Every way a stage can fail, as :func:`fail` commits it."""

EXIT_STATUS = 3
"""The status ``fail("sys.exit")`` passes to ``sys.exit``."""
EXIT_CODE = 7
"""The code ``fail("os._exit")`` passes to ``os._exit``."""


class CrashMatrixError(ValueError):
    """The exception ``fail("exception")`` raises."""


class BadStrError(Exception):
    """An exception whose ``__str__`` raises: any code that formats it without care
    fails while reporting it. It pickles normally (``repr`` works)."""

    def __str__(self) -> str:
        raise RuntimeError("BadStrError.__str__ refuses")


class Abort(BaseException):
    """A ``BaseException`` that is neither ``Exception`` nor ``SystemExit`` (as
    ``KeyboardInterrupt`` or ``GeneratorExit``): what ``except Exception`` misses."""


def fail(how: str, where: str = "") -> NoReturn:
    """Fail the current process the way ``how`` (one of :data:`FAILURES`) says."""
    if how == "exception":
        raise CrashMatrixError(f"exception {where}".strip())
    if how == "sys.exit":
        sys.exit(EXIT_STATUS)
    if how == "os._exit":
        os._exit(EXIT_CODE)
    if how == "SIGKILL":
        os.kill(os.getpid(), signal.SIGKILL)
        time.sleep(60)  # the signal is pending: never reached
    if how == "segfault":
        faulthandler.disable()  # no traceback dump on stderr; the signal stays fatal
        faulthandler._sigsegv()  # type: ignore[attr-defined]
    if how == "bad __str__":
        raise BadStrError(where)
    if how == "BaseException":
        raise Abort(where)
    if how == "libc exit(0)":
        # A C library calling exit(): atexit handlers run, the process ends with
        # status 0 while a task was running (loky's c_exit).
        ctypes.CDLL(None).exit(0)
    raise AssertionError(f"unknown failure {how!r}")


# -- objects that fail as they cross a process boundary ----------------------------------


class PickleBomb:
    """Pickling it commits the failure (in whichever process pickles it)."""

    def __init__(self, how: str) -> None:
        self.how = how

    def __reduce__(self) -> tuple[Any, ...]:
        fail(self.how, "while pickling a PickleBomb")


class UnpickleBomb:
    """Pickles fine; unpickling it commits the failure."""

    def __init__(self, how: str) -> None:
        self.how = how

    def __reduce__(self) -> tuple[Any, ...]:
        return (fail, (self.how, "while unpickling an UnpickleBomb"))


class PickleBombError(Exception):
    """An exception whose pickling commits the failure."""

    def __init__(self, how: str) -> None:
        super().__init__(f"raised by the task ({how} when pickled)")
        self.how = how

    def __reduce__(self) -> tuple[Any, ...]:
        fail(self.how, "while pickling a PickleBombError")


class UnpickleBombError(Exception):
    """An exception that pickles fine; unpickling it commits the failure."""

    def __init__(self, how: str) -> None:
        super().__init__(f"raised by the task ({how} when unpickled)")
        self.how = how

    def __reduce__(self) -> tuple[Any, ...]:
        return (fail, (self.how, "while unpickling an UnpickleBombError"))


class Doomed:
    """A result that pickles to a plain string, and commits the failure when the worker
    drops it: after the task returned and its result was pickled, before it left the
    worker (loky's crash at call-item garbage collection). An exception raised in
    ``__del__`` is ignored by the interpreter; a process death is not."""

    def __init__(self, how: str) -> None:
        self.how = how

    def __reduce__(self) -> tuple[Any, ...]:
        return (str, ("doomed",))

    def __del__(self) -> None:
        fail(self.how, "while a Doomed result was collected")


# -- task runners ----------------------------------------------------------------------------


def identity(x: Any) -> Any:
    return x


def innocent(i: int) -> tuple[str, int]:
    """A task that does nothing wrong (and takes a moment, so that others queue)."""
    time.sleep(0.05)
    return ("ok", i)


def run_and_fail(how: str) -> None:
    fail(how, "in the task")


def return_pickle_bomb(how: str) -> PickleBomb:
    return PickleBomb(how)


def return_unpickle_bomb(how: str) -> UnpickleBomb:
    return UnpickleBomb(how)


def raise_pickle_bomb_error(how: str) -> None:
    raise PickleBombError(how)


def raise_unpickle_bomb_error(how: str) -> None:
    raise UnpickleBombError(how)


def yield_bomb(kind: str, how: str) -> Generator[Any, None, str]:
    """Streams 0, then a bomb (``kind``: ``"pickle"`` or ``"unpickle"``), then 2."""
    yield 0
    yield PickleBomb(how) if kind == "pickle" else UnpickleBomb(how)
    yield 2
    return "streamed"


async def yield_then_fail(how: str) -> AsyncGenerator[int, None]:
    """Streams 0, waits long enough for it to leave the worker, then fails."""
    yield 0
    await asyncio.sleep(0.1)
    fail(how, "after the task yielded")
    yield 1  # pragma: no cover - never reached


def record_run(path: str) -> None:
    with open(path, "a") as file:
        file.write(f"{os.getpid()}\n")


def return_doomed(path: str, how: str) -> Doomed:
    """Records each run in the file at ``path``, then returns a :class:`Doomed`."""
    record_run(path)
    return Doomed(how)


# -- probes ------------------------------------------------------------------------------------


def fail_with_data(data: bytes, how: str) -> None:
    """Fails with a large argument in hand (CPython gh-94777)."""
    fail(how, f"holding {len(data)} bytes")


def echo_size(data: bytes) -> int:
    return len(data)


def big_result(size: int) -> bytes:
    return b"x" * size


def sleep_then(value: Any, seconds: float) -> Any:
    time.sleep(seconds)
    return value


async def async_sleep_then(value: Any, seconds: float) -> Any:
    await asyncio.sleep(seconds)
    return value


def worker_pid_then_sleep(seconds: float) -> int:
    time.sleep(seconds)
    return os.getpid()


async def fail_later(how: str, seconds: float) -> None:
    """Fails after ``seconds`` (leaves the loop free meanwhile)."""
    await asyncio.sleep(seconds)
    fail(how, f"after {seconds} s")


def noop_arg(value: Any) -> bool:
    return True


def report_pid_then_sleep(seconds: float) -> Generator[int, None, str]:
    """Streams this worker's pid (it leaves at once), then blocks for ``seconds``."""
    yield os.getpid()
    time.sleep(seconds)
    return "slept"
