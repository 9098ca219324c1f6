"""Small helpers shared by the operators: awaiting maybe-async results, selectors and
argument validation with messages that name the argument."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

T = TypeVar("T")


PLAIN_TYPES: set[type] = {int, float, complex, str, bytes, bool, type(None), tuple, list, dict}
"""Types known not to be awaitable. Hot loops test ``type(v) in PLAIN_TYPES`` (one set
lookup) before calling :func:`is_awaitable`, which learns new plain types as it goes."""

_PLAIN_TYPES_MAX = 4096


def is_awaitable(value: object) -> bool:
    """Return whether ``value`` must be awaited (a coroutine, future or other awaitable).

    Much cheaper than :func:`inspect.isawaitable` on the hot path: the answer for a
    type that is not awaitable is remembered in :data:`PLAIN_TYPES`.
    """
    kind = type(value)
    if kind in PLAIN_TYPES:
        return False
    if hasattr(kind, "__await__"):
        return True
    if len(PLAIN_TYPES) < _PLAIN_TYPES_MAX:
        PLAIN_TYPES.add(kind)
    return False


async def resolve(value: Any) -> Any:
    """Await ``value`` if it is awaitable, else return it unchanged."""
    if type(value) not in PLAIN_TYPES and is_awaitable(value):
        return await value
    return value


def make_selector(selector: str | Callable[[Any], T] | None, name: str) -> Callable[[Any], Any]:
    """Turn a selector argument into a callable.

    A string means a mapping key when the item is a :class:`~collections.abc.Mapping`,
    otherwise an attribute name (SPEC 6). ``None`` means the item itself.
    """
    if selector is None:
        return _identity
    if isinstance(selector, str):
        key = selector

        def by_key_or_attribute(item: Any) -> Any:
            if isinstance(item, Mapping):
                return item[key]
            return getattr(item, key)

        by_key_or_attribute.__qualname__ = f"select[{key!r}]"
        return by_key_or_attribute
    if callable(selector):
        return selector
    raise TypeError(f"{name} must be a callable, a key/attribute name or None, got {selector!r}")


def _identity(item: T) -> T:
    return item


def check_callable(name: str, value: object) -> None:
    """Raise ``TypeError`` naming ``name`` unless ``value`` is callable."""
    if not callable(value):
        raise TypeError(f"{name} must be callable, got {type(value).__name__}: {value!r}")


def check_int(name: str, value: object, *, minimum: int) -> int:
    """Return ``value`` if it is an int >= ``minimum``; else raise with a message naming it."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}: {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def check_index(name: str, index: object, size: int) -> int:
    """Return ``index`` into a chain of ``size`` links as 0..size-1 (negative counts
    from the end); raise ``TypeError``/``IndexError`` naming it."""
    if isinstance(index, bool) or not isinstance(index, int):
        raise TypeError(f"{name} must be an int, got {type(index).__name__}")
    i = index + size if index < 0 else index
    if not 0 <= i < size:
        raise IndexError(f"{name} {index} is out of range for a chain of {size} links")
    return i


def check_seconds(
    name: str,
    value: object,
    *,
    allow_none: bool = False,
    positive: bool = False,
    finite: bool = False,
) -> Any:
    """Return ``value`` if it is a non-negative (or positive; or finite) number of seconds."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(
            f"{name} must be a number of seconds, got {type(value).__name__}: {value!r}"
        )
    if value != value or value < 0 or (positive and value == 0):
        kind = "> 0" if positive else ">= 0"
        raise ValueError(f"{name} must be {kind} seconds, got {value}")
    if finite and value == float("inf"):
        raise ValueError(f"{name} must be a finite number of seconds, got {value}")
    return value
