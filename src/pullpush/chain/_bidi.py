"""Bidirectional chains: request in, response out, through composed processors."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable
from types import TracebackType
from typing import Any, Generic, NamedTuple, TypeVar

from .._util import PLAIN_TYPES, check_callable, is_awaitable
from ..push._turn import Turn

__all__ = ["BidiProcessor", "BidiProcessorFactory", "BidirectionalChain"]

IN = TypeVar("IN")
OUT = TypeVar("OUT")
NEW = TypeVar("NEW")
T = TypeVar("T")

BidiProcessor = Callable[[Any], Any]
"""A stage: input -> output, sync or async."""

BidiProcessorFactory = Callable[[], Any]
"""Makes a stage's processor (sync or async); called once per chain, lazily."""


class _Stage(NamedTuple):
    kind: str  # "fn" (a processor), "factory", "generator" or "tap"
    fn: Callable[..., Any]


class BidirectionalChain(AsyncGenerator[OUT, IN], Generic[IN, OUT]):
    """A request/response pipeline: ``await chain.asend(x)`` returns the output.

    Each stage is a processor (input -> output, sync or async: awaitable results are
    awaited). Stateful stages come from factories, which are called lazily, on the
    first ``asend`` of each chain object. Every fluent method (:meth:`map`,
    :meth:`then`, :meth:`tap`) returns a new chain with its own stages; the original
    is unchanged and reusable.

    Protocol (FEATURES 2.8.3, in Python terms):

    * ``asend(x)`` runs ``x`` through every stage and returns the result.
    * ``aclose()`` ends the chain (closing generator stages); afterwards ``asend``
      raises ``StopAsyncIteration``, like a finished async generator.
    * ``athrow(exc)`` closes the chain, then raises ``exc``.
    * A stage's exception propagates to the caller and **the chain stays open**:
      later calls still work (a stateful stage keeps whatever state it had).

    Concurrency (beyond the original): concurrent ``asend`` calls take turns, in
    arrival order, so stateful stages never see two calls at once. A close that
    arrives during calls takes effect at once for new calls, and the stages are
    closed after the calls in progress or queued finish. Cancelling a call that
    waits for its turn withdraws it; cancelling one in progress interrupts its
    stage. ``async for`` is not meaningful (it would send ``None``).

    FireFoundry's deprecated generator utilities are not ported; their replacements
    need no initial value and no priming:

    * ``TwoWayIdentity(initial)``: :meth:`identity`;
    * ``TwoWayMap(fn, initial)``: :meth:`of`;
    * ``TwoWayForward(factory, initialIn, initialOut)``: :meth:`from_generator`;
    * ``TwoWayCompose(a, b)``: :meth:`then` (it also takes a chain) or :meth:`map`.
    """

    def __init__(self, stages: Iterable[_Stage] = ()) -> None:
        self._stages: tuple[_Stage, ...] = tuple(stages)
        # Invariant: _processors is None until the first asend builds the stages;
        # _closers holds the aclose of every generator stage built.
        self._processors: list[Callable[[Any], Any]] | None = None
        self._closers: list[Callable[[], Awaitable[Any]]] = []
        self._closed = False
        self._turn = Turn()

    # -- factories --------------------------------------------------------------------------

    @classmethod
    def of(cls, processor: Callable[[IN], Any]) -> BidirectionalChain[IN, Any]:
        """A chain of one stateless stage."""
        check_callable("processor", processor)
        return BidirectionalChain([_Stage("fn", processor)])

    @classmethod
    def from_factory(cls, factory: BidiProcessorFactory) -> BidirectionalChain[Any, Any]:
        """A chain of one stateful stage, built by ``factory()`` on the first call."""
        check_callable("factory", factory)
        return BidirectionalChain([_Stage("factory", factory)])

    @classmethod
    def identity(cls) -> BidirectionalChain[T, T]:
        """A chain of one stage returning its input (length 1)."""
        return BidirectionalChain([_Stage("fn", _identity)])

    @classmethod
    def from_generator(
        cls, factory: Callable[[], AsyncGenerator[Any, Any]]
    ) -> BidirectionalChain[Any, Any]:
        """A chain of one async-generator stage, primed automatically.

        On the first call the generator is created and advanced once (its first
        yield is discarded); then each input is sent in with ``asend`` and the value
        it yields next is the output. The generator is closed with the chain.
        """
        check_callable("factory", factory)
        return BidirectionalChain([_Stage("generator", factory)])

    # -- fluent composition -----------------------------------------------------------------

    def map(self, processor: Callable[[OUT], NEW]) -> BidirectionalChain[IN, NEW]:
        """Append a stateless stage."""
        check_callable("processor", processor)
        return BidirectionalChain([*self._stages, _Stage("fn", processor)])

    def then(
        self, factory: BidiProcessorFactory | BidirectionalChain[OUT, NEW]
    ) -> BidirectionalChain[IN, Any]:
        """Append a stateful stage made by ``factory()``, or every stage of another
        chain (composition)."""
        if isinstance(factory, BidirectionalChain):
            return BidirectionalChain([*self._stages, *factory._stages])
        check_callable("factory", factory)
        return BidirectionalChain([*self._stages, _Stage("factory", factory)])

    def tap(self, callback: Callable[[OUT], Any]) -> BidirectionalChain[IN, OUT]:
        """Append a side-effect stage: ``callback(value)`` runs, the value passes on."""
        check_callable("callback", callback)
        return BidirectionalChain([*self._stages, _Stage("tap", callback)])

    # -- introspection ------------------------------------------------------------------------

    @property
    def length(self) -> int:
        """The number of stages."""
        return len(self._stages)

    def __len__(self) -> int:
        return len(self._stages)

    @property
    def closed(self) -> bool:
        """Whether :meth:`aclose` (or :meth:`athrow`) was called."""
        return self._closed

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<BidirectionalChain stages={len(self._stages)} {state}>"

    # -- the protocol ---------------------------------------------------------------------------

    async def asend(self, value: IN) -> OUT:
        """Run ``value`` through every stage; return the output.

        Raises:
            StopAsyncIteration: the chain is closed.
            BaseException: whatever a stage raised (the chain stays open).
        """
        if self._closed:
            raise StopAsyncIteration
        turn = self._turn
        if turn.busy or turn.queued:
            await turn.wait()
        else:
            turn.busy = True
        try:
            processors = self._processors
            if processors is None:
                processors = await self._build()
            result: Any = value
            for processor in processors:
                result = processor(result)
                if type(result) not in PLAIN_TYPES and is_awaitable(result):
                    result = await result
            return result  # type: ignore[no-any-return]
        finally:
            if turn.queued or turn.pending is not None:
                await turn.release()
            else:
                turn.busy = False

    async def __anext__(self) -> OUT:
        return await self.asend(None)  # type: ignore[arg-type]

    async def aclose(self) -> None:
        """End the chain and close its generator stages. Idempotent."""
        if self._closed:
            return
        self._closed = True
        await self._turn.run_or_defer(self._close_stages)

    async def athrow(
        self,
        typ: type[BaseException] | BaseException,
        val: object = None,
        tb: TracebackType | None = None,
    ) -> OUT:
        """Close the chain, then raise the exception."""
        error = typ if isinstance(typ, BaseException) else typ() if val is None else val
        if not isinstance(error, BaseException):
            raise TypeError(f"athrow() needs an exception, got {error!r}")
        await self.aclose()
        raise error.with_traceback(tb) if tb is not None else error

    # -- stages -----------------------------------------------------------------------------------

    async def _build(self) -> list[Callable[[Any], Any]]:
        processors: list[Callable[[Any], Any]] = []
        try:
            for kind, fn in self._stages:
                if kind == "fn":
                    processors.append(fn)
                elif kind == "tap":
                    processors.append(_tapping(fn))
                elif kind == "factory":
                    processor = fn()
                    if type(processor) not in PLAIN_TYPES and is_awaitable(processor):
                        processor = await processor
                    check_callable("factory result", processor)
                    processors.append(processor)
                else:  # generator
                    generator = fn()
                    self._closers.append(generator.aclose)
                    await generator.asend(None)  # prime: the first yield is discarded
                    processors.append(generator.asend)
        except BaseException:
            # A stage failed to build: close what was built; the next call retries.
            await self._close_stages()
            raise
        self._processors = processors
        return processors

    async def _close_stages(self) -> None:
        closers, self._closers = self._closers, []
        first: BaseException | None = None
        for close in closers:
            try:
                await close()
            except Exception as error:  # noqa: PERF203 - every stage must be closed
                if first is None:
                    first = error
        if first is not None:
            raise first


def _identity(value: T) -> T:
    return value


def _tapping(callback: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def tap(value: Any) -> Any:
        result = callback(value)
        if type(result) not in PLAIN_TYPES and is_awaitable(result):
            return _after(result, value)
        return value

    return tap


async def _after(awaitable: Awaitable[Any], value: T) -> T:
    await awaitable
    return value
