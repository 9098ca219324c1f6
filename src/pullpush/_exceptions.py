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
    "SinkIndexError",
    "SinkLabelError",
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


class SinkIndexError(PullPushError, IndexError):
    """A distribute selector returned an index with no sink behind it."""

    def __init__(self, index: object, size: int) -> None:
        super().__init__(f"selector returned index {index!r}, which has no sink ({size} sinks)")
        self.index = index
        self.size = size


class SinkLabelError(PullPushError, KeyError):
    """A labeled fan-out was asked to route to a label it has no sink for."""

    def __init__(self, label: object) -> None:
        super().__init__(label)
        self.label = label

    def __str__(self) -> str:
        return f"no sink is labeled {self.label!r}"
