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
