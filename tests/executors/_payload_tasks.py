"""Task runners for the payload tests (pickled by value: see test_process_payloads)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Generator
from typing import Any


def describe(*args: Any, **kwargs: Any) -> tuple[Any, ...]:
    """What the worker received: each value with its type's name."""
    return (
        [(type(a).__name__, a) for a in args],
        {k: (type(v).__name__, v) for k, v in kwargs.items()},
    )


def returns(value: Any) -> Any:
    return value


def yields(*values: Any) -> Generator[Any, None, str]:
    yield from values
    return "end"


def closure_over(value: Any) -> Callable[[], Any]:
    return lambda: (type(value).__name__, value)


def digest_of(value: Any) -> Callable[[], str]:
    return lambda: hashlib.blake2b(value).hexdigest()


def digest(value: Any) -> str:
    return hashlib.blake2b(value).hexdigest()


def digest_or_die(value: Any, die: bool) -> str:
    """The digest of ``value``, or this worker's death (``os._exit``) when ``die``."""
    if die:
        import os

        os._exit(3)
    return hashlib.blake2b(value).hexdigest()


def digest_slowly(value: Any, seconds: float) -> str:
    """The digest of ``value``, after blocking ``seconds`` (so calls pile up behind it)."""
    import time

    time.sleep(seconds)
    return hashlib.blake2b(value).hexdigest()
