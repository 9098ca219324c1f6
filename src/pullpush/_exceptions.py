"""The whole pullpush error hierarchy, in one place.

Every exception the library raises on its own account derives from
:class:`PullPushError`, and also from the built-in exception a Python user would
catch for the same situation (``TimeoutError``, ``ValueError``, ``RuntimeError`` ...),
so ``except TimeoutError`` keeps working.
"""

from __future__ import annotations

__all__ = [
    "BufferFullError",
    "ChainConsumedError",
    "PullPushError",
    "PullTimeoutError",
    "RaceCutoffError",
    "SignalStoppedError",
]


class PullPushError(Exception):
    """Base class of every error raised by pullpush itself."""


class ChainConsumedError(PullPushError, RuntimeError):
    """A chain reference was used after it was extended, mutated or merged."""


class PullTimeoutError(PullPushError, TimeoutError):
    """A pull took longer than the ``time_out`` of a :class:`PullTimeoutObj`."""


class RaceCutoffError(PullPushError):
    """The cutoff source of a :class:`PullRaceCutoffObj` fired before a round finished."""


class BufferFullError(PullPushError):
    """A bounded buffer with ``overflow="error"`` was full when a value arrived."""


class SignalStoppedError(PullPushError):
    """``WaitObject.wait()`` was called on, or woken by, a stopped signal."""
