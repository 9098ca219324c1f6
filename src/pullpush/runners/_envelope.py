"""What the task pool runners emit: :class:`TaskProgressEnvelope` (one by one from
``run_tasks``), :class:`EnvelopeBatch` and :class:`IntermediateRun` (from
``run_batches``), and the :class:`Final` marker an async-generator task runner yields to
give its result."""

from __future__ import annotations

import dataclasses
import enum
import sys
from collections import deque
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar, overload

__all__ = [
    "EnvelopeBatch",
    "EnvelopeType",
    "Final",
    "IntermediateRun",
    "TaskProgressEnvelope",
    "make_envelope",
    "make_envelopes",
    "take_batch",
]

T = TypeVar("T")
if TYPE_CHECKING:  # type parameter defaults (PEP 696) are for the type checker only
    from typing_extensions import TypeVar as _DefaultTypeVar

    V = _DefaultTypeVar("V", default=Any)
    K = _DefaultTypeVar("K", default=Any)
else:
    V = TypeVar("V")  # an envelope's value type (Any where the runner cannot tell)
    K = TypeVar("K")  # an envelope's key type


class EnvelopeType(str, enum.Enum):
    """The kind of a :class:`TaskProgressEnvelope` (a str enum: ``== "FINAL"`` works)."""

    INTERMEDIATE = "INTERMEDIATE"
    """A value the task yielded while running."""
    FINAL = "FINAL"
    """The task's result; its last envelope."""
    ERROR = "ERROR"
    """The task failed; its last envelope."""
    WAITING = "WAITING"
    """A waitable task waits in ``receive()`` for a message, holding no capacity
    (what a UI shows as "awaiting approval"); ``value``: ``None``."""
    RESUMED = "RESUMED"
    """A task that was WAITING holds its capacity again and goes on (a message came,
    or its ``receive`` timed out); ``value``: ``None``."""

    def __str__(self) -> str:
        return self.value


@dataclasses.dataclass(frozen=True, slots=True)
class TaskProgressEnvelope(Generic[V, K]):
    """One event of one task, as the runners stream them.

    Generic in the type of ``value`` and of ``key`` (for the type checker only; both
    default to ``Any``, so a bare ``TaskProgressEnvelope`` is
    ``TaskProgressEnvelope[Any, Any]``). A :class:`HierarchicalTaskPoolRunner` whose
    tasks return ``int`` yields ``TaskProgressEnvelope[int, None]``; one whose tasks
    are generators ``Generator[str, Any, int]`` yields
    ``TaskProgressEnvelope[str | int, None]``: ``V`` covers the INTERMEDIATE values
    and the FINAL result alike. An ERROR envelope's ``value`` is ``None`` whatever
    ``V`` says.

    Attributes:
        type: INTERMEDIATE, FINAL or ERROR; WAITING and RESUMED for a waitable
            task that parks in ``receive()`` and goes on (never its last envelope).
        task_id: an int that increases in start order, from 0.
        key: the task's key when it has one (``ScheduledTask.key``), else ``None``.
        value: INTERMEDIATE: the value yielded; FINAL: the task's result; ERROR,
            WAITING, RESUMED: ``None``.
        error: ERROR: the exception (a worker's traceback chained as ``__cause__``).
    """

    type: EnvelopeType
    task_id: int
    key: K = None  # type: ignore[assignment]
    value: V = None  # type: ignore[assignment]
    error: BaseException | None = None

    def __repr__(self) -> str:
        key = "" if self.key is None else f" key={self.key!r}"
        body = (
            f"error={self.error!r}" if self.type is EnvelopeType.ERROR else f"value={self.value!r}"
        )
        return f"<{self.type.value} task={self.task_id}{key} {body}>"


class _Unfrozen(Generic[V, K]):
    """The slot layout of :class:`TaskProgressEnvelope` without the frozen guard (and
    without an ``__init__``: calling a class that has none is the cheapest way CPython
    makes an object)."""

    # The same bases and names in the same order: what class assignment requires.
    __slots__ = TaskProgressEnvelope.__slots__


def make_envelope(
    type: EnvelopeType, task_id: int, key: Any, value: Any, error: BaseException | None = None
) -> TaskProgressEnvelope:
    """Build a :class:`TaskProgressEnvelope` about three times faster than its frozen
    ``__init__`` (which sets each field through ``object.__setattr__``): fill a
    same-layout unfrozen twin, then make it an envelope by class assignment, which
    CPython allows between classes with identical slots. The result is a genuine,
    frozen envelope. The runners build one per event, so this is their hot path."""
    envelope: Any = _Unfrozen()
    envelope.type = type
    envelope.task_id = task_id
    envelope.key = key
    envelope.value = value
    envelope.error = error
    envelope.__class__ = TaskProgressEnvelope
    return envelope  # type: ignore[no-any-return]


def make_envelopes(
    type: EnvelopeType, task_id: int, key: Any, values: list[Any]
) -> list[TaskProgressEnvelope]:
    """Build one envelope per value, as :func:`make_envelope` does, with the loop
    inlined (about 2,100 machine instructions an envelope on CPython 3.11, a third
    less than calling :func:`make_envelope` per value)."""
    envelopes: list[Any] = []
    append = envelopes.append
    unfrozen, envelope_class = _Unfrozen, TaskProgressEnvelope
    for value in values:
        envelope: Any = unfrozen()
        envelope.type = type
        envelope.task_id = task_id
        envelope.key = key
        envelope.value = value
        envelope.error = None
        envelope.__class__ = envelope_class
        append(envelope)
    return envelopes


class IntermediateRun(Generic[V, K]):
    """Consecutive INTERMEDIATE values of one task, kept as one list: how a runner
    stores what a task streams until it is read, and what
    :meth:`EnvelopeBatch.groups` hands over, so counting or collecting progress
    builds no object per value.

    Attributes:
        type: always ``EnvelopeType.INTERMEDIATE`` (so code that dispatches on
            ``.type`` reads runs and envelopes alike).
        task_id, key: the task's, as in its envelopes.
        values: the values the task yielded, in order (at least one).
    """

    __slots__ = ("key", "task_id", "values")

    type: ClassVar[EnvelopeType] = EnvelopeType.INTERMEDIATE

    def __init__(self, task_id: int, key: K, values: list[V]) -> None:
        self.task_id = task_id
        self.key = key
        self.values = values

    def __len__(self) -> int:
        return len(self.values)

    def __iter__(self) -> Iterator[TaskProgressEnvelope[V, K]]:
        """The run's envelopes, built now."""
        return iter(self.envelopes())

    def envelopes(self) -> list[TaskProgressEnvelope[V, K]]:
        """One INTERMEDIATE :class:`TaskProgressEnvelope` per value, built now."""
        return make_envelopes(EnvelopeType.INTERMEDIATE, self.task_id, self.key, self.values)

    def __repr__(self) -> str:
        key = "" if self.key is None else f" key={self.key!r}"
        return f"<INTERMEDIATE run task={self.task_id}{key} of {len(self.values)} values>"


class EnvelopeBatch(Sequence[TaskProgressEnvelope[V, K]]):
    """What ``run_batches`` yields: the envelopes that were waiting, in the order
    ``run_tasks`` would have yielded them (at least one, at most its ``max_batch``).

    As a sequence (``for envelope in batch``, ``len(batch)``, ``batch[i]``) it holds
    :class:`TaskProgressEnvelope` objects, each built when it is read. Read
    :meth:`groups` instead to skip building them: each task's consecutive
    INTERMEDIATE values come as one :class:`IntermediateRun` with a ``values`` list.
    Generic, for the type checker, as :class:`TaskProgressEnvelope` is (``V``, ``K``).
    """

    __slots__ = ("_count", "_groups")

    def __init__(
        self, groups: list[TaskProgressEnvelope[V, K] | IntermediateRun[V, K]], count: int
    ) -> None:
        self._groups = groups
        self._count = count

    def groups(self) -> list[TaskProgressEnvelope[V, K] | IntermediateRun[V, K]]:
        """The batch as it is stored, in order: an :class:`IntermediateRun` for each
        task's consecutive INTERMEDIATE values, the :class:`TaskProgressEnvelope`
        itself for each FINAL, ERROR, WAITING and RESUMED. Both have ``type``,
        ``task_id`` and ``key``; a run has ``values``, a FINAL ``value``, an ERROR
        ``error``. A new list each call; no envelope is built."""
        return list(self._groups)

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Iterator[TaskProgressEnvelope[V, K]]:
        for group in self._groups:
            if group.__class__ is IntermediateRun:
                yield from group.envelopes()
            else:
                yield group  # type: ignore[misc]

    @overload
    def __getitem__(self, index: int) -> TaskProgressEnvelope[V, K]: ...

    @overload
    def __getitem__(self, index: slice) -> list[TaskProgressEnvelope[V, K]]: ...

    def __getitem__(self, index: int | slice) -> Any:
        if isinstance(index, slice):
            return list(self)[index]
        position = index + self._count if index < 0 else index
        if not 0 <= position < self._count:
            raise IndexError("EnvelopeBatch index out of range")
        for group in self._groups:
            if isinstance(group, IntermediateRun):
                if position < len(group.values):
                    value = group.values[position]
                    return make_envelope(EnvelopeType.INTERMEDIATE, group.task_id, group.key, value)
                position -= len(group.values)
            elif position == 0:
                return group
            else:
                position -= 1
        raise AssertionError("unreachable: the count and the groups disagree")

    def __repr__(self) -> str:
        return f"<EnvelopeBatch of {self._count} envelopes in {len(self._groups)} groups>"


@dataclasses.dataclass(frozen=True, slots=True)
class Final(Generic[T]):
    """Yield ``Final(result)`` as the last item of an async-generator task runner to
    make ``result`` the task's FINAL value (async generators cannot ``return`` one)."""

    value: T


if sys.version_info < (3, 13):

    def _frozen_setattr(self: object, name: str, value: object) -> None:
        raise dataclasses.FrozenInstanceError(f"cannot assign to field {name!r}")

    # Python 3.10 to 3.12: ``frozen=True, slots=True`` builds a second
    # class, but its ``__setattr__`` still names the first in ``super()``, so
    # ``TaskProgressEnvelope[int, None](...)`` (whose alias sets ``__orig_class__``)
    # raised TypeError instead of the AttributeError it ignores.
    for _cls in (TaskProgressEnvelope, Final):
        _cls.__setattr__ = _frozen_setattr  # type: ignore[method-assign]


def take_batch(
    buffer: deque[TaskProgressEnvelope | IntermediateRun],
    max_batch: int,
    retried: set[int],
    stop_on_error: bool,
) -> tuple[list[TaskProgressEnvelope | IntermediateRun], int, BaseException | None]:
    """Take up to ``max_batch`` envelopes from a runner's buffer's head, stopping
    before an ERROR that ``stop_on_error`` raises (not one whose task id is in
    ``retried``, an attempt that runs again; ids leave ``retried`` as their ERROR is
    taken); return them as groups (one task's consecutive INTERMEDIATE values as one
    run), their count, and that error once it is the head (taken from the buffer,
    still counted as unread by the runner)."""
    groups: list[TaskProgressEnvelope | IntermediateRun] = []
    append = groups.append
    count = 0
    last: Any = None  # the last group when it is a run this batch may extend
    owned = False  # whether last.values is a list of this batch's (not an executor's)
    while buffer and count < max_batch:
        entry: Any = buffer[0]
        if entry.__class__ is IntermediateRun:
            room = max_batch - count
            values = entry.values
            if len(values) > room:  # split: the rest stays at the head
                entry.values = values[room:]
                values = values[:room]
                entry = IntermediateRun(entry.task_id, entry.key, values)
            else:
                buffer.popleft()
            count += len(values)
            if last is not None and last.task_id == entry.task_id:
                if not owned:
                    last.values = list(last.values)
                    owned = True
                last.values += values
            else:
                append(entry)
                last, owned = entry, False
            continue
        kind = entry.type
        if kind is EnvelopeType.INTERMEDIATE:  # reported alone (task_intermediate)
            buffer.popleft()
            count += 1
            if last is not None and last.task_id == entry.task_id:
                if not owned:
                    last.values = list(last.values)
                    owned = True
                last.values.append(entry.value)
            else:
                last, owned = IntermediateRun(entry.task_id, entry.key, [entry.value]), True
                append(last)
            continue
        if kind is EnvelopeType.ERROR:
            again = entry.task_id in retried
            if stop_on_error and not again:
                if count:
                    break  # the envelopes before the error first
                buffer.popleft()
                retried.discard(entry.task_id)
                assert entry.error is not None
                return groups, 0, entry.error
            retried.discard(entry.task_id)
        buffer.popleft()
        count += 1
        append(entry)
        last = None
    return groups, count, None
