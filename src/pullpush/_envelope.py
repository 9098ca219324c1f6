"""What the task pool runners emit: :class:`TaskProgressEnvelope`, and the :class:`Final`
marker an async-generator task runner yields to give its result."""

from __future__ import annotations

import dataclasses
import enum
from typing import Any, Generic, TypeVar

__all__ = ["EnvelopeType", "Final", "TaskProgressEnvelope"]

T = TypeVar("T")


class EnvelopeType(str, enum.Enum):
    """The kind of a :class:`TaskProgressEnvelope` (a str enum: ``== "FINAL"`` works)."""

    INTERMEDIATE = "INTERMEDIATE"
    """A value the task yielded while running."""
    FINAL = "FINAL"
    """The task's result; its last envelope."""
    ERROR = "ERROR"
    """The task failed; its last envelope."""

    def __str__(self) -> str:
        return self.value


@dataclasses.dataclass(frozen=True, slots=True)
class TaskProgressEnvelope:
    """One event of one task, as the runners stream them.

    Attributes:
        type: INTERMEDIATE, FINAL or ERROR.
        task_id: an int that increases in start order, from 0.
        key: the task's key when it has one (``ScheduledTask.key``), else ``None``.
        value: INTERMEDIATE: the value yielded; FINAL: the task's result.
        error: ERROR: the exception (a worker's traceback chained as ``__cause__``).
    """

    type: EnvelopeType
    task_id: int
    key: Any = None
    value: Any = None
    error: BaseException | None = None

    def __repr__(self) -> str:
        key = "" if self.key is None else f" key={self.key!r}"
        body = (
            f"error={self.error!r}" if self.type is EnvelopeType.ERROR else f"value={self.value!r}"
        )
        return f"<{self.type.value} task={self.task_id}{key} {body}>"


@dataclasses.dataclass(frozen=True, slots=True)
class Final(Generic[T]):
    """Yield ``Final(result)`` as the last item of an async-generator task runner to
    make ``result`` the task's FINAL value (async generators cannot ``return`` one)."""

    value: T
