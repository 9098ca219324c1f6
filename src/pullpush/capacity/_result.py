"""What ``try_acquire`` returns (decision C4): a result that is truthy exactly when it
succeeded, so both ``if cap.try_acquire(...):`` and ``result.ok`` read naturally."""

from __future__ import annotations

import dataclasses
from typing import Generic, TypeVar

from ._events import TryAcquireRejectReason

__all__ = ["TryAcquireResult"]

C = TypeVar("C")


@dataclasses.dataclass(frozen=True)
class TryAcquireResult(Generic[C]):
    """The outcome of a ``try_acquire``: truthy exactly when the cost was taken.

    ``C`` is the cost type: ``int`` units for :class:`~pullpush.CapacitySource`, a
    resource mapping for :class:`~pullpush.ResourceCapacitySource`.
    """

    ok: bool
    """Whether the cost was taken."""
    requested: C
    """The cost asked for."""
    available: C
    """The source's available budget: after taking the cost when ``ok``, at the time
    of the refusal otherwise."""
    reason: TryAcquireRejectReason | None = None
    """Why it was refused (``None`` when ``ok``)."""

    def __bool__(self) -> bool:
        return self.ok

    @property
    def available_after(self) -> C | None:
        """The available budget after acquiring, or ``None`` when refused."""
        return self.available if self.ok else None
