"""The "Obj" bases: pull objects, push objects, and the ``Peekable`` protocol.

A **pull object** (:class:`PullObj`) is a long-lived async generator. Each *cycle*
of it is one run of its :meth:`PullObj.pull_impl` async generator; the cycle that
returns ends the stream. :meth:`PullObj.restart` starts a new cycle explicitly, and
*restartable* objects (a non-one-shot :class:`SourceBufferObj`, for instance) start
one by themselves on the next pull after a cycle ended.

Closing:

* ``await obj.aclose()`` is immediate. It closes the current cycle (running its
  ``finally`` blocks) and then every upstream object, recursively.
* ``obj.close()`` is graceful. The item in flight is delivered, then the stream ends;
  the request travels upstream to the sources, which stop producing.
* Leaving an ``async for`` over a pull object early -- ``break``, ``return``, an
  exception, task cancellation -- closes the object and its upstream, as a
  JavaScript ``for await`` does. (``break`` closes through Python's async-generator
  finalizer, on the next event-loop iteration; ``async with obj:`` or ``aclose()``
  close at once.) Pulling with ``anext(obj)`` instead leaves the object open.

Operators read their upstream with :func:`pull_iter`, which hands out the upstream's
raw cycle generator: a chain of *n* operators costs *n* async-generator steps per
item, as a hand-written chain does.

A **push object** (:class:`PushObj`) takes values with ``await obj.asend(value)``,
ends with ``await obj.aclose()`` and fails with ``await obj.athrow(exc)``. There is
no generator priming: the first value sent is delivered.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Coroutine,
    Iterable,
    Mapping,
)
from types import AsyncGeneratorType, TracebackType
from typing import Any, Generic, Protocol, TypeVar, cast, runtime_checkable

__all__ = [
    "Peekable",
    "PullObj",
    "PullObj1To1Link",
    "PullObjLabeledManyTo1Link",
    "PullObjManyTo1Link",
    "PushObj",
    "PushObj1To1",
    "SinkObj",
    "SourceObj",
    "aclose_quietly",
    "check_pull_source",
    "pull_iter",
]

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)
IN = TypeVar("IN")
OUT = TypeVar("OUT")
L = TypeVar("L")


@runtime_checkable
class Peekable(Protocol[T_co]):
    """A source that can show its next item without consuming it."""

    def peek(self) -> T_co | None:
        """Return the next item, or ``None`` when none is available now."""
        ...


async def _no_items() -> AsyncGenerator[Any, None]:
    return
    yield  # pragma: no cover - makes this an async generator


class PullObj(AsyncGenerator[T, Any]):
    """Base of every pull object: a restartable, closable async generator.

    Subclasses override :meth:`pull_impl`. Public configuration fields of
    subclasses stay mutable: callables and scalars take effect on the next item,
    a swapped ``source`` (or ``sources``) on the next cycle. Until then the running
    cycle reads the old one, so closing the object closes the old one too.
    """

    restartable: bool = False
    """Whether the next pull after a finished cycle starts a new cycle by itself."""

    _closes_itself: bool = False
    """Whether this class's cycle generator itself honours a graceful close and closes
    the object when it fails or is closed (then ``async for`` iterates the cycle
    through :class:`_Iteration`, which adds no generator layer per item, instead of
    the generic consumer wrapper)."""

    def __init__(self) -> None:
        # Invariant: _agen is the current cycle (None before the first pull); a cycle
        # is finished exactly when its frame is gone (ag_frame is None).
        self._agen: AsyncGeneratorType[T, Any] | None = None
        self._closing = False
        self._closed = False
        # Invariant: _reading holds the upstreams the current cycle started on. A
        # source swapped out mid-cycle is still read until the cycle ends, so closing
        # reaches it too (see _closing_targets).
        self._reading: tuple[object, ...] = ()

    # -- what subclasses provide ----------------------------------------------------

    async def pull_impl(self) -> AsyncGenerator[T, Any]:
        """Yield this object's items for one cycle; returning ends the cycle.

        Must be an async generator function (``async def`` with ``yield``), or a
        plain method returning an async generator object.
        """
        return
        yield  # pragma: no cover - makes this an async generator

    def _upstreams(self) -> Iterable[object]:
        """The objects that close and graceful-close requests propagate to."""
        return ()

    def _interrupt(self) -> None:
        """Wake this object if it is parked, so a closed object stops waiting."""

    # -- state ------------------------------------------------------------------------

    @property
    def done(self) -> bool:
        """Whether the stream has ended: closed, or its current cycle finished."""
        agen = self._agen
        return self._closed or (agen is not None and agen.ag_frame is None)

    @property
    def closing(self) -> bool:
        """Whether a graceful :meth:`close` was requested."""
        return self._closing

    @property
    def closed(self) -> bool:
        """Whether :meth:`aclose` was called (or an ``async for`` over it was left)."""
        return self._closed

    def __repr__(self) -> str:
        state = (
            "closed"
            if self._closed
            else "closing"
            if self._closing
            else "done"
            if self.done
            else "open"
        )
        return f"<{type(self).__name__} {state}>"

    # -- the cycle ----------------------------------------------------------------------

    def _cycle(self) -> AsyncGenerator[T, Any]:
        agen = self._agen
        if agen is None or (agen.ag_frame is None and self.restartable and not self._closing):
            if self._closed:
                return _no_items()
            self._reading = tuple(self._upstreams())
            agen = self._agen = cast("AsyncGeneratorType[T, Any]", self.pull_impl())
        return agen

    def _closing_targets(self) -> list[object]:
        """The upstreams a close reaches: the current ones, and those the live cycle
        started on (a ``source`` swapped out mid-cycle is still being read)."""
        targets = list(self._upstreams())
        agen = self._agen
        if self._reading and agen is not None and agen.ag_frame is not None:
            current = {id(upstream) for upstream in targets}
            targets.extend(u for u in self._reading if id(u) not in current)
        return targets

    def restart(self) -> None:
        """Start a new cycle on the next pull, reopening a closed or finished object.

        Upstream objects are not restarted. A cycle that was left suspended half-way
        is dropped (Python finalizes it on the event loop).

        Raises:
            RuntimeError: a pull is in flight on this object right now.
        """
        agen = self._agen
        if agen is not None and agen.ag_running:
            raise RuntimeError(f"cannot restart {type(self).__name__} while a pull is in flight")
        self._agen = None
        self._reading = ()
        self._closing = False
        self._closed = False

    # -- AsyncGenerator protocol --------------------------------------------------------

    def __aiter__(self) -> AsyncGenerator[T, Any]:
        if self._closes_itself:
            return _Iteration(self, self._cycle())
        return self._consume()

    async def _consume(self) -> AsyncGenerator[T, Any]:
        # The consumer-facing iteration: closes everything when left early or on error.
        try:
            async for item in self._cycle():
                yield item
                if self._closing:
                    await self.aclose()
                    return
        except BaseException:
            # Interleavings handled: GeneratorExit (break, or finalization after the
            # consumer dropped the loop), CancelledError (consumer task cancelled),
            # and any error raised upstream. The in-flight step has ended in all of
            # them, so the cycle is not running and can be closed.
            await self.aclose()
            raise

    def __anext__(self) -> Coroutine[Any, Any, T]:
        if self._closing:
            return self._end_gracefully()
        return self._cycle().__anext__()

    def asend(self, value: Any) -> Coroutine[Any, Any, T]:
        """Pull the next item, sending ``value`` into the current cycle."""
        if self._closing:
            return self._end_gracefully()
        return self._cycle().asend(value)

    async def _end_gracefully(self) -> T:
        # A graceful close ends here, at the first pull after close(): nothing is in
        # flight any more, so the object and its upstream can be closed outright.
        await self.aclose()
        raise StopAsyncIteration

    async def athrow(
        self,
        typ: type[BaseException] | BaseException,
        val: object = None,
        tb: TracebackType | None = None,
    ) -> T:
        """Raise an exception inside the current cycle; close everything if it escapes."""
        error = typ if isinstance(typ, BaseException) else typ() if val is None else val
        if not isinstance(error, BaseException):
            raise TypeError(f"athrow() needs an exception, got {error!r}")
        if tb is not None:
            error = error.with_traceback(tb)
        try:
            return await self._cycle().athrow(error)
        except BaseException:
            await self.aclose()
            raise

    async def aclose(self) -> None:
        """Close at once: end the current cycle, then close every upstream object.

        Idempotent. When another task is in the middle of pulling from this object,
        the object is marked closed and woken if parked; that pull then ends.
        """
        if self._closed:
            return
        self._closed = True
        self._closing = True
        agen = self._agen
        upstreams = self._closing_targets()  # before the cycle ends
        try:
            if agen is not None:
                if agen.ag_running:
                    self._interrupt()
                else:
                    await agen.aclose()
        finally:
            for upstream in upstreams:
                await aclose_quietly(upstream)

    def close(self) -> None:
        """Stop gracefully: deliver the item in flight, then end; propagate upstream."""
        if self._closing:
            return
        self._closing = True
        self._interrupt()
        for upstream in self._closing_targets():
            if isinstance(upstream, PullObj):
                upstream.close()

    async def __aenter__(self) -> PullObj[T]:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


# Closes scheduled by dropped iterations, kept alive until they ran (the event loop
# holds tasks weakly).
_closing: set[asyncio.Task[None]] = set()


class _Iteration(AsyncGenerator[T, Any]):
    """What ``async for`` iterates over a pull object whose cycle closes itself.

    Each step is the cycle's own ``__anext__``, called from C through the
    ``__anext__`` slot: no generator layer and no Python frame per item. What the
    generic consumer wrapper does on failure and on a graceful close, the cycle
    does itself; what is left is leaving the loop early (``break``, ``return``, an
    error in the loop body): that drops this object while the cycle is suspended
    half-way, and :meth:`__del__` then closes the pull object on the event loop,
    as Python's async-generator finalizer closes the generic wrapper. (Unlike the
    wrapper, dropping an iteration that was never pulled also closes the object if
    its cycle is unfinished.)
    """

    __slots__ = ("__anext__", "_cycle", "_obj")

    def __init__(self, obj: PullObj[T], cycle: AsyncGenerator[T, Any]) -> None:
        self._obj = obj
        self._cycle = cycle
        self.__anext__ = cycle.__anext__  # type: ignore[method-assign]

    def __aiter__(self) -> _Iteration[T]:
        return self

    def asend(self, value: Any) -> Coroutine[Any, Any, T]:
        return self._obj.asend(value)

    async def athrow(
        self,
        typ: type[BaseException] | BaseException,
        val: object = None,
        tb: TracebackType | None = None,
    ) -> T:
        return await self._obj.athrow(typ, val, tb)

    async def aclose(self) -> None:
        await self._obj.aclose()

    def __del__(self) -> None:
        if getattr(self._cycle, "ag_frame", None) is None or self._obj._closed:
            return  # the cycle finished (it closed what it had to) or all is closed
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop here: the cycle's own finalizer closes it when collected
        task = loop.create_task(self._obj.aclose())
        _closing.add(task)
        task.add_done_callback(_closing.discard)


async def aclose_quietly(obj: object) -> None:
    """``await obj.aclose()`` if the object has one (pull objects, async generators)."""
    aclose = getattr(obj, "aclose", None)
    if aclose is not None:
        await aclose()


def pull_iter(source: AsyncIterable[T]) -> AsyncIterator[T]:
    """Return the iterator an operator reads ``source`` through.

    For a :class:`PullObj` this is its raw current cycle (no consumer wrapper, so no
    per-item overhead and no close-on-exit); for anything else, ``aiter(source)``.
    """
    if isinstance(source, PullObj):
        return source._cycle()
    return source.__aiter__()


def check_pull_source(name: str, source: object) -> Any:
    """Return ``source`` if it is an async iterable, else raise ``TypeError`` naming it."""
    if not hasattr(type(source), "__aiter__"):
        hint = (
            " (wrap a sync iterable in SourceFromIterable)" if isinstance(source, Iterable) else ""
        )
        raise TypeError(
            f"{name} must be an async iterable such as a PullObj, got {type(source).__name__}{hint}"
        )
    return source


class SourceObj(PullObj[T]):
    """Base of pull objects with no upstream. ``pull_impl`` loops should stop when
    :attr:`closing` becomes true, so a graceful :meth:`close` ends them."""


class PullObj1To1Link(PullObj[OUT], Generic[IN, OUT]):
    """A pull object with one upstream ``source`` (mutable: a swap takes effect on
    the next cycle). Used directly, it passes items through unchanged."""

    def __init__(self, source: AsyncIterable[IN]) -> None:
        super().__init__()
        self.source: AsyncIterable[IN] = check_pull_source("source", source)

    def _upstreams(self) -> Iterable[object]:
        return (self.source,)

    async def pull_impl(self) -> AsyncGenerator[Any, Any]:
        async for item in pull_iter(self.source):
            yield item


class PullObjManyTo1Link(PullObj[OUT], Generic[IN, OUT]):
    """A pull object over a list of upstream ``sources`` (mutable between cycles)."""

    def __init__(self, sources: Iterable[AsyncIterable[IN]]) -> None:
        super().__init__()
        if isinstance(sources, (str, bytes)) or not isinstance(sources, Iterable):
            raise TypeError(f"sources must be an iterable of async iterables, got {sources!r}")
        self.sources: list[AsyncIterable[IN]] = [
            check_pull_source(f"sources[{i}]", s) for i, s in enumerate(sources)
        ]

    def _upstreams(self) -> Iterable[object]:
        return tuple(self.sources)


class PullObjLabeledManyTo1Link(PullObj[OUT], Generic[L, IN, OUT]):
    """A pull object over labeled upstreams: ``labeled_sources`` maps label to source."""

    def __init__(self, labeled_sources: Mapping[L, AsyncIterable[IN]]) -> None:
        super().__init__()
        if not isinstance(labeled_sources, Mapping):
            raise TypeError(
                f"labeled_sources must be a mapping of label to source, got {labeled_sources!r}"
            )
        self.labeled_sources: dict[L, AsyncIterable[IN]] = {
            label: check_pull_source(f"labeled_sources[{label!r}]", s)
            for label, s in labeled_sources.items()
        }

    @property
    def sources(self) -> list[AsyncIterable[IN]]:
        """The upstream sources, in label order."""
        return list(self.labeled_sources.values())

    def _upstreams(self) -> Iterable[object]:
        return tuple(self.labeled_sources.values())


# ---------------------------------------------------------------------------------------
# Push side
# ---------------------------------------------------------------------------------------


class PushObj(Generic[T]):
    """Base of every push object.

    ``await asend(value)`` returns ``True`` while the object still accepts values and
    ``False`` once it is done (a done object drops the value). Subclasses override
    :meth:`next_impl`, and :meth:`close_impl` / :meth:`throw_impl` for what closing
    and failing mean to them.

    Args:
        forward_errors: whether :meth:`athrow` is forwarded downstream.
        forward_close: whether :meth:`aclose` is forwarded downstream.
    """

    def __init__(self, forward_errors: bool = False, forward_close: bool = False) -> None:
        self.forward_errors = forward_errors
        self.forward_close = forward_close
        self._done = False

    @property
    def done(self) -> bool:
        """Whether the object accepts no more values."""
        return self._done

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {'done' if self._done else 'open'}>"

    async def asend(self, value: T) -> bool:
        """Deliver ``value``; return whether the object still accepts values."""
        if self._done:
            return False
        await self.next_impl(value)
        return not self._done

    async def next_impl(self, value: T) -> None:
        """Handle one value (subclasses override)."""

    async def aclose(self) -> None:
        """End the stream: the object is done afterwards. Idempotent."""
        if self._done:
            return
        self._done = True
        await self.run_end(self.close_impl)

    async def athrow(self, error: BaseException) -> None:
        """Fail the stream with ``error``: the object is done afterwards."""
        if not isinstance(error, BaseException):
            raise TypeError(f"athrow() needs an exception instance, got {error!r}")
        if self._done:
            return
        self._done = True
        await self.run_end(functools.partial(self.throw_impl, error))

    async def run_end(self, action: Callable[[], Awaitable[None]]) -> None:
        """Run the end action of :meth:`aclose` / :meth:`athrow` (``close_impl`` or
        ``throw_impl``). Now, by default; stages that serialise their sends defer
        it until the sends in flight are over."""
        await action()

    async def close_impl(self) -> None:
        """What closing means to this object (subclasses override)."""

    async def throw_impl(self, error: BaseException) -> None:
        """What failing means to this object (subclasses override)."""

    async def __aenter__(self) -> PushObj[T]:
        return self

    async def __aexit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        if isinstance(exc, Exception):
            await self.athrow(exc)
        else:
            await self.aclose()


class SinkObj(PushObj[T]):
    """Base of terminal push objects (no downstream)."""


class PushObj1To1(PushObj[IN], Generic[IN, OUT]):
    """A push object with one downstream ``sink`` (mutable: swap it to redirect).

    When the sink reports done, this object becomes done too. Closing and failing
    are always forwarded to the sink. Used directly, it passes values through.
    """

    def __init__(self, sink: PushObj[OUT]) -> None:
        super().__init__(forward_errors=True, forward_close=True)
        self.sink: PushObj[OUT] = check_push_sink("sink", sink)

    async def next_impl(self, value: IN) -> None:
        await self.forward(value)  # type: ignore[arg-type]

    async def forward(self, value: OUT) -> None:
        """Send ``value`` downstream; become done if the sink is done."""
        if not await self.sink.asend(value):
            self._done = True

    async def close_impl(self) -> None:
        await self.sink.aclose()

    async def throw_impl(self, error: BaseException) -> None:
        await self.sink.athrow(error)


def check_push_sink(name: str, sink: object) -> Any:
    """Return ``sink`` if it has the push protocol, else raise ``TypeError`` naming it."""
    if not all(callable(getattr(sink, m, None)) for m in ("asend", "aclose", "athrow")):
        raise TypeError(
            f"{name} must be a push object (asend/aclose/athrow), got {type(sink).__name__}"
        )
    return sink
