"""Task functions for the map tests: module level, so worker processes import them."""

from __future__ import annotations

import os
import time


def square(x: int) -> int:
    return x * x


def fail_on_five(x: int) -> int:
    if x == 5:
        raise ValueError(f"item {x} is five")
    return x


def pid_of(_: object) -> int:
    return os.getpid()


def length(item: bytes | str) -> int:
    return len(item)


def sleepy(x: int) -> int:
    time.sleep(0.001)
    return x


def chunk_digest(item: bytes | bytearray | str) -> tuple[str, str]:
    """The item's type and BLAKE2b digest (a ``str``'s of its UTF-8); an item that
    starts with ``FAIL`` raises, naming the byte after it."""
    import hashlib

    data = item.encode("utf-8", "surrogatepass") if isinstance(item, str) else bytes(item)
    if data[:4] == b"FAIL":
        raise ValueError(f"item {data[4]} failed")
    return type(item).__name__, hashlib.blake2b(data).hexdigest()
