"""The whole pullpush error hierarchy, in one place.

Every exception the library raises on its own account derives from
:class:`PullPushError`, and also from the built-in exception a Python user would
catch for the same situation (``TimeoutError``, ``ValueError``, ``RuntimeError`` ...),
so ``except TimeoutError`` keeps working.
"""

from __future__ import annotations

import pickle
from typing import Any

__all__ = [
    "BufferFullError",
    "ChainConsumedError",
    "PullPushError",
    "PullTimeoutError",
    "RaceCutoffError",
    "SignalStoppedError",
    "AnyFailedError",
    # capacity
    "AcquireTimeoutError",
    "InsufficientCapacityError",
    "OverReleaseError",
    "UntrackedResourceWarning",
    "LargeTaskWarning",
    # scheduling
    "DependencyCycleError",
    "DuplicateNodeError",
    "MissingTaskError",
    "NodeStateError",
    "SourceClosedError",
    "UnknownNodeError",
    "TaskTimeoutError",
    "ImpossibleCostError",
    # waitable tasks
    "MessageNotReceivedError",
    "NoMessageError",
    "NotWaitableError",
    "UnknownTaskError",
    "WaitLimitError",
    # executors
    "BrokenExecutorError",
    "ExecutorClosedError",
    "FinalNotLastError",
    "RemoteTaskError",
    "RemoteTraceback",
    "TaskPicklingError",
    "WorkerCrashedError",
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


class AnyFailedError(PullPushError):
    """Every source of :meth:`AsyncIteratorCombiner.any` failed; see :attr:`errors`."""

    def __init__(self, errors: list[BaseException]) -> None:
        super().__init__(f"all {len(errors)} sources failed: {errors!r}")
        self.errors = errors


# -- capacity ------------------------------------------------------------------------


class AcquireTimeoutError(PullPushError, TimeoutError):
    """An awaited capacity ``acquire(..., timeout=...)`` timed out; nothing was taken."""


class InsufficientCapacityError(PullPushError, RuntimeError):
    """``acquire_immediate`` was called for a cost that cannot be taken right now.

    Call it only after ``can_acquire`` said yes (with no ``await`` in between), or
    use ``try_acquire``.
    """


class OverReleaseError(PullPushError, ValueError):
    """A release returned more than was acquired (an accounting bug in the caller).

    Raised before anything changes, at any level of the hierarchy, so the books stay
    as they were. The original library absorbed such releases silently.
    """


class UntrackedResourceWarning(UserWarning):
    """A cost names a resource that no level of a capacity hierarchy tracks.

    Such a resource is never limited, which is rarely what was meant (a task cost of
    ``{"capacity": 1}`` against a source tracking only ``{"slots": 4}`` runs
    unbounded). Warned once per resource name per capacity source.
    """


class LargeTaskWarning(UserWarning):
    """A task's pickled call (its runner, or the arguments of a ``functools.partial``)
    is several MiB: it is pickled and sent with every task that carries it. Warned once
    per executor, naming the largest part (an argument, a closure variable, a
    ``__main__`` global that cloudpickle copies by value). Plain ``str``/``bytes``
    arguments of a ``functools.partial`` travel unpickled and are not checked."""


# -- scheduling ----------------------------------------------------------------------


class _KeyErrorMessage(KeyError):
    # KeyError's str() is the repr of its argument; these errors carry sentences.
    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class DependencyCycleError(PullPushError, ValueError):
    """Adding nodes to a ``DependencyGraph`` would create a cycle.

    Attributes:
        cycle: the keys along one cycle, the first repeated at the end
            (``("a", "b", "a")``).
    """

    def __init__(self, cycle: tuple[object, ...]) -> None:
        self.cycle = cycle
        path = " -> ".join(repr(k) for k in cycle)
        super().__init__(f"dependency cycle: {path}")


class DuplicateNodeError(PullPushError, ValueError):
    """A node was added to a ``DependencyGraph`` under a key it already has."""


class UnknownNodeError(PullPushError, _KeyErrorMessage):
    """A ``DependencyGraph`` was asked about, or given as a dependency, a key it lacks."""


class NodeStateError(PullPushError, RuntimeError):
    """A ``DependencyGraph`` transition was asked of a node in the wrong state
    (``start`` of a node that is not ready, ``complete``/``fail`` of one that is not
    running)."""


class MissingTaskError(PullPushError, _KeyErrorMessage):
    """A dependency source found a ready node whose key is not in its ``task_map``.

    Raised when the task is looked up: at ``peek()`` or when the source is pulled
    (decision C7), so the map may be filled after the source is built.
    """


class SourceClosedError(PullPushError, RuntimeError):
    """An item was enqueued into a priority source that was closed."""


class TaskTimeoutError(PullPushError, TimeoutError):
    """A task ran longer than its ``timeout``; it was cancelled."""


class ImpossibleCostError(PullPushError, ValueError):
    """A task's cost exceeds what its capacity chain could ever grant."""


class NoMessageError(PullPushError, LookupError):
    """``TaskContext.receive_nowait()`` found no message waiting for the task."""


class UnknownTaskError(PullPushError, LookupError):
    """A message was sent to a task the runner does not run (now): an id or key it
    never started, or a task that has ended."""


class NotWaitableError(PullPushError, TypeError):
    """A message was sent to a task whose runner is not waitable (it cannot receive),
    or a waitable task runner was given to something that cannot run one (an
    executor without message support, a plain call without a ``TaskContext``)."""


class MessageNotReceivedError(PullPushError, RuntimeError):
    """``await runner.send(...)``: the task ended before it received the message."""


class WaitLimitError(PullPushError, RuntimeError):
    """A task called ``receive`` while its executor already hosted as many waiting
    tasks as it allows (the thread executor's ``max_waiting``)."""


class ExecutorClosedError(PullPushError, RuntimeError):
    """A task was submitted to an executor that is closed (or closing), or was still
    running when the executor closed."""


class FinalNotLastError(ValueError):
    """An async-generator task runner yielded something after ``Final(x)``."""


class BrokenExecutorError(PullPushError, RuntimeError):
    """The executor cannot run tasks any more (its workers cannot start)."""


class TaskPicklingError(PullPushError, pickle.PicklingError):
    """A task runner, its arguments, a value it produced or an exception it raised
    could not cross a process boundary; the message names what and its type."""


class WorkerCrashedError(PullPushError):
    """The worker process running a task died.

    Attributes:
        task_id: the task that was running.
        pid: the worker's process id.
        exitcode: its exit code, or ``None`` if it was killed by a signal.
        signal: the signal that killed it, or ``None``.
        retries: ``None`` if the worker died while running the task. Else it died
            after running it, before sending its result, once more than the executor
            runs such a task again (``max_crash_retries``), and ``retries`` says how
            many times the task had been run again.

    ``message``, when given, replaces the message built from the others (the Ray
    executor says which worker or node Ray lost; ``pid`` etc. are then ``None``).
    """

    def __init__(
        self,
        task_id: int,
        pid: int | None,
        exitcode: int | None,
        signal: int | None,
        retries: int | None = None,
        message: str | None = None,
    ) -> None:
        self.task_id = task_id
        self.pid = pid
        self.exitcode = exitcode
        self.signal = signal
        self.retries = retries
        if message is not None:  # an executor that knows more (Ray: the node died)
            super().__init__(message)
            return
        if signal is not None:
            import signal as signals

            try:
                name = signals.Signals(signal).name
            except ValueError:
                name = str(signal)
            how = f"was killed by signal {name} ({signal})"
        else:
            how = f"exited with code {exitcode}"
        if retries is not None:
            message = (
                f"the worker process (pid {pid}) that ran task {task_id} {how} before "
                "sending its result"
            )
            if retries:
                message += (
                    f"; the workers of all {retries + 1} runs of the task died that way (it "
                    f"was retried {retries} time{'s' if retries != 1 else ''}, the limit)"
                )
            message += ", so it is not run again"
        else:
            message = f"the worker process (pid {pid}) running task {task_id} {how}"
        super().__init__(message)

    def __reduce__(self) -> tuple[object, ...]:
        args = (self.task_id, self.pid, self.exitcode, self.signal, self.retries, str(self))
        return (type(self), args)


class RemoteTraceback(Exception):
    """The traceback of an exception raised in a worker, chained as its ``__cause__``."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text

    def __str__(self) -> str:
        return f'\n"""\n{self.text}"""'


class RemoteTaskError(PullPushError):
    """Stands for an exception raised in a worker that could not be rebuilt in the
    parent (it could not be pickled in the worker or unpickled in the parent: a
    custom ``__init__`` that its ``args`` do not fit, a class the parent cannot
    import...), or for a failed worker initializer; keeps what can be read of it. The
    worker's traceback is its ``__cause__`` (:class:`RemoteTraceback`).

    Attributes:
        type_name: the exception's type, with its module unless a builtin
            (``"mymodule.QuotaError"``).
        remote_message: its ``str()``.
        reason: why it could not be unpickled in the parent (also in the message), or
            ``None``.
        attributes: its ``args`` and its public instance attributes by name
            (``error.attributes["code"]``): ``int``, ``float``, ``str``, ``bytes``,
            ``bool`` and ``None`` values as they were, a tuple item by item,
            anything else as its ``repr()`` (strings, bytes and reprs cut to 1,000
            characters). Empty when the worker sent none (an initializer's failure).
    """

    def __init__(
        self,
        type_name: str,
        message: str,
        reason: str | None = None,
        attributes: dict[str, Any] | None = None,
    ) -> None:
        text = f"{type_name}: {message}"
        if reason is not None:
            text += f" -- and that exception could not be unpickled in the parent: {reason}"
        super().__init__(text)
        self.type_name = type_name
        self.remote_message = message
        self.reason = reason
        self.attributes: dict[str, Any] = dict(attributes) if attributes else {}

    def __reduce__(self) -> tuple[object, ...]:
        return (
            type(self),
            (self.type_name, self.remote_message, self.reason, self.attributes),
        )


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
