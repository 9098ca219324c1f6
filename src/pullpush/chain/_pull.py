"""Fluent pull chains: :class:`PullChain`, a row of pull objects that is itself one."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterable, Awaitable, Callable, Coroutine
from types import TracebackType
from typing import Any, TypeVar, overload

from .._exceptions import ChainConsumedError
from .._obj import PullObj, check_pull_source
from .._util import check_callable, check_index, check_int, check_seconds, make_selector
from ..pull._batch import TimeoutFrom
from ..pull._combine import (
    AttributedResult,
    PullConcatObj,
    PullRaceObj,
    PullRaceValuesObj,
    PullRoundRobinObj,
    PullZipObj,
)
from ..push._reduce import UNSEEDED
from ._pull_base import PullChainBase, in_flight
from ._pull_compile import CompiledPullChain
from ._pull_ops import PullOpDescriptor, build_pull_link

__all__ = ["PullChain"]

T = TypeVar("T")
U = TypeVar("U")

PullFactory = Callable[[Any], AsyncIterable[Any]]
"""Makes a link from the link before it: ``factory(upstream) -> pull object``."""

DEFAULT_EAGER_BUFFER = 8
"""``PullChain.eager()``'s read-ahead when no size is given (the original left it
unspecified; :class:`PullEagerObj` alone defaults to 1)."""


class PullChain(PullChainBase[T]):
    """A fluent pull pipeline: ``links`` from the source (index 0) to the tail.

    A chain is itself a pull object: iterate it, pass it as a source, nest it.
    Pulling from it pulls straight from the tail link's cycle, so a chain costs
    nothing over its links. Each fluent method appends a link (the pull operator
    named in its docstring) and returns a **new** chain; the old reference is then
    *consumed*: pulling from it, closing it or extending it again raises
    :class:`ChainConsumedError`, so two references never share one iterator. A
    bad argument raises at once (``TypeError``/``ValueError`` naming it) and
    leaves the chain usable.

    Ordering, backpressure and cancellation are the links': everything is pulled
    on demand, one item at a time, in order, except below ``eager()`` and the
    racing combiners, which read ahead. ``aclose()`` closes every link, tail
    first, and the source; ``close()`` asks each to stop after the item in flight.
    Leaving an ``async for`` early (``break``, an error, cancellation of the
    consuming task) closes them all too, as for any pull object. Cancelling a
    pull cancels the await in progress in whichever link it is.

    The links can be changed with :meth:`insert_after`, :meth:`insert_before`,
    :meth:`remove` and :meth:`replace`, which also return a new chain.

    Example::

        chain = (
            PullChain.from_source(SourceBufferObj([1, 2, 3, 4, 5]))
            .filter(lambda n: n % 2 == 0)
            .map(lambda n: n * 10)
        )
        assert await chain.collect() == [20, 40]

    Args:
        source: the first link: any async iterable (wrap a sync one in
            :class:`SourceFromIterable`).
    """

    def __init__(self, source: AsyncIterable[T]) -> None:
        super().__init__([check_pull_source("source", source)])
        # Invariant: _ops[i] is the recipe of _stages[i + 1]; _consumed is True once
        # a successor chain owns the links.
        self._ops: list[PullOpDescriptor] = []
        self._consumed = False

    # -- factories ---------------------------------------------------------------------

    @classmethod
    def from_source(cls, source: AsyncIterable[U]) -> PullChain[U]:
        """Begin a chain at ``source`` (FireFoundry's ``PullChain.from``)."""
        return PullChain(source)

    @classmethod
    def concat(cls, *sources: AsyncIterable[U]) -> PullChain[U]:
        """Begin a chain at :class:`PullConcatObj`: every item of each source in turn."""
        return PullChain(PullConcatObj(sources))

    @classmethod
    def race_attributed(cls, *sources: AsyncIterable[U]) -> PullChain[AttributedResult[U]]:
        """Begin a chain at :class:`PullRaceObj`: items in arrival order, each as
        ``AttributedResult(source, value)`` (FireFoundry's ``PullChain.race``)."""
        return PullChain(PullRaceObj(sources))

    @classmethod
    def race(cls, *sources: AsyncIterable[U]) -> PullChain[U]:
        """Begin a chain at :class:`PullRaceValuesObj`: items in arrival order,
        unwrapped (decision C15: what the original's examples expect of ``race``)."""
        return PullChain(PullRaceValuesObj(sources))

    @classmethod
    def round_robin(cls, *sources: AsyncIterable[U]) -> PullChain[U]:
        """Begin a chain at :class:`PullRoundRobinObj`: one item per source in rotation."""
        return PullChain(PullRoundRobinObj(sources))

    @classmethod
    def zip(cls, *sources: AsyncIterable[Any]) -> PullChain[tuple[Any, ...]]:
        """Begin a chain at :class:`PullZipObj`: a tuple per round, while *any*
        source is alive (exhausted sources drop out of later tuples)."""
        return PullChain(PullZipObj(sources))

    # -- introspection -----------------------------------------------------------------

    @property
    def links(self) -> tuple[Any, ...]:
        """The links, source first (a snapshot)."""
        return tuple(self._stages)

    @property
    def length(self) -> int:
        """The number of links, the source included."""
        return len(self._stages)

    def __len__(self) -> int:
        return len(self._stages)

    def link_at(self, index: int) -> Any:
        """Return the link at ``index`` (0 is the source; negative counts from the tail)."""
        return self._stages[self._index(index)]

    @property
    def consumed(self) -> bool:
        """Whether this reference was extended, mutated, merged or compiled."""
        return self._consumed

    # -- consumed-chain safety -------------------------------------------------------------

    def _check(self) -> None:
        if self._consumed:
            raise ChainConsumedError(
                "this PullChain has been consumed: it was extended, mutated, merged or "
                "compiled; use the chain that call returned"
            )

    def _cycle(self) -> AsyncGenerator[T, Any]:
        if self._consumed:
            self._check()
        return super()._cycle()

    def __aiter__(self) -> AsyncGenerator[T, Any]:
        self._check()
        return super().__aiter__()

    def __anext__(self) -> Coroutine[Any, Any, T]:
        self._check()
        return super().__anext__()

    def asend(self, value: Any) -> Coroutine[Any, Any, T]:
        """Pull the next item, sending ``value`` into the tail's current cycle."""
        self._check()
        return super().asend(value)

    async def athrow(
        self,
        typ: type[BaseException] | BaseException,
        val: object = None,
        tb: TracebackType | None = None,
    ) -> T:
        """Raise an exception in the tail's current cycle; close every link if it escapes."""
        self._check()
        return await super().athrow(typ, val, tb)

    async def aclose(self) -> None:
        """Close at once: every link, tail first, then the source. Idempotent."""
        self._check()
        await super().aclose()

    def close(self) -> None:
        """Stop gracefully: deliver the item in flight, then end; every link is asked."""
        self._check()
        super().close()

    def restart(self) -> None:
        """Give every link, the source included, a new cycle on the next pull
        (reopening a closed or finished chain). A source does not rewind: a drained
        :class:`SourceBufferObj` yields what was added since.

        Raises:
            RuntimeError: a pull is in flight, or an ``eager`` link is still reading
                ahead.
        """
        self._check()
        self._restart_stages()

    # -- building ----------------------------------------------------------------------

    def _successor(self, links: list[Any], ops: list[PullOpDescriptor]) -> PullChain[Any]:
        chain: PullChain[Any] = PullChain(links[0])
        chain._set_stages(links)
        chain._ops = ops
        self._consumed = True
        return chain

    def _extend(self, kind: str, *args: Any, **options: Any) -> PullChain[Any]:
        self._check()
        op = PullOpDescriptor(kind, args, options)
        link = build_pull_link(op, self._tail)
        return self._successor([*self._stages, link], [*self._ops, op])

    @overload
    def map(self, transform: Callable[[T], Awaitable[U]]) -> PullChain[U]: ...
    @overload
    def map(self, transform: Callable[[T], U]) -> PullChain[U]: ...
    def map(self, transform: Callable[[T], Any]) -> PullChain[Any]:
        """Append :class:`PullMapObj`: ``transform(item)`` (sync or async)."""
        check_callable("transform", transform)
        return self._extend("map", transform)

    def flat_map(self, transform: Callable[[T], Any]) -> PullChain[Any]:
        """Append :class:`PullFlatMapObj`: every item of the (async) iterable
        ``transform(item)`` returns, before the next input is pulled."""
        check_callable("transform", transform)
        return self._extend("flat_map", transform)

    def filter(self, predicate: Callable[[T], Any]) -> PullChain[T]:
        """Append :class:`PullFilterObj`: the items ``predicate`` (sync or async) keeps."""
        check_callable("predicate", predicate)
        return self._extend("filter", predicate)

    def dedupe(
        self, obj2id: str | Callable[[T], Any] | None = None, *, consecutive: bool = False
    ) -> PullChain[T]:
        """Append :class:`PullDedupeObj`: drop items whose key was seen before.

        Args:
            obj2id: the key: a callable, a key/attribute name, or ``None`` for the
                item itself.
            consecutive: compare with the previous item's key only (decision C12;
                global by default).
        """
        make_selector(obj2id, "obj2id")
        return self._extend("dedupe", obj2id, consecutive=consecutive)

    def reduce(self, reducer: Callable[[Any, T], Any], accum: Any = UNSEEDED) -> PullChain[Any]:
        """Append :class:`PullReduceObj`: yield every running ``reducer(accum, item)``.

        The order of :func:`functools.reduce` (decision C16). Without ``accum`` (or
        with :data:`UNSEEDED`) the first item is the first accumulator, yielded as is.
        """
        check_callable("reducer", reducer)
        if accum is UNSEEDED:
            return self._extend("reduce", reducer)
        return self._extend("reduce", reducer, accum)

    def window(self, size: int, *, yield_remainder: bool = True) -> PullChain[list[T]]:
        """Append :class:`PullWindowObj`: lists of ``size`` items; the partial last
        window is yielded unless ``yield_remainder=False``."""
        check_int("size", size, minimum=1)
        return self._extend("window", size, yield_remainder=yield_remainder)

    def window_timeout(
        self,
        size: int,
        timeout: float,
        *,
        timeout_from: TimeoutFrom = "batch_start",
        yield_remainder: bool = True,
    ) -> PullChain[list[T]]:
        """Append :class:`PullWindowTimeoutObj`: a batch at ``size`` items or after
        ``timeout`` seconds, counted from the batch's start or (``"last_item"``) the
        latest item (decision C17)."""
        check_int("size", size, minimum=1)
        check_seconds("timeout", timeout, positive=True)
        return self._extend(
            "window_timeout",
            size,
            timeout,
            timeout_from=timeout_from,
            yield_remainder=yield_remainder,
        )

    def buffer(
        self, condition: Callable[[list[T]], Any], *, yield_remainder: bool = True
    ) -> PullChain[list[T]]:
        """Append :class:`PullBufferObj`: yield the buffer when ``condition(buffer)``
        (sync or async) is truthy; a non-empty remainder is yielded (decision C13)."""
        check_callable("condition", condition)
        return self._extend("buffer", condition, yield_remainder=yield_remainder)

    def buffer_reduce(self, reducer: Callable[[T], Any]) -> PullChain[Any]:
        """Append :class:`PullBufferReduceObj`: whatever ``reducer(item)`` yields
        (zero or more values; typically a generator keeping state in a closure)."""
        check_callable("reducer", reducer)
        return self._extend("buffer_reduce", reducer)

    def flatten(self) -> PullChain[Any]:
        """Append :class:`PullFlattenObj`: one level of (async) iterables, not
        ``str``/``bytes`` (decision C11)."""
        return self._extend("flatten")

    def eager(self, buffer_size: int = DEFAULT_EAGER_BUFFER) -> PullChain[T]:
        """Append :class:`PullEagerObj`: read up to ``buffer_size`` items ahead
        (default 8) in a background task, cancelled when the chain closes."""
        check_int("buffer_size", buffer_size, minimum=1)
        return self._extend("eager", buffer_size)

    def callback(self, *callbacks: Callable[[T], Any]) -> PullChain[T]:
        """Append :class:`PullCallbackObj`: call each callback (sync or async) with
        every item, then pass it on unchanged."""
        for i, callback in enumerate(callbacks):
            check_callable(f"callbacks[{i}]", callback)
        return self._extend("callback", *callbacks)

    def timeout(self, seconds: float, throw_on_timeout: bool = True) -> PullChain[T]:
        """Append :class:`PullTimeoutObj`: each pull may take ``seconds``; a slower
        one raises :class:`PullTimeoutError`, or with ``throw_on_timeout=False`` is
        waited for (nothing is lost either way, decision C6)."""
        check_seconds("seconds", seconds, positive=True)
        return self._extend("timeout", seconds, throw_on_timeout)

    def in_order(
        self, obj2index: str | Callable[[T], int], start: int = 0, *, strict: bool = False
    ) -> PullChain[T]:
        """Append :class:`PullInOrderObj`: re-sequence items by an integer index."""
        if obj2index is None:
            raise TypeError("obj2index must be a callable or a key/attribute name, got None")
        make_selector(obj2index, "obj2index")
        check_int("start", start, minimum=-(2**63))
        return self._extend("in_order", obj2index, start, strict=strict)

    def turnstile(
        self, checkpoint: str, collector: Any, *, id: Callable[[T], Any] | None = None
    ) -> PullChain[T]:
        """Report each item passing here to ``collector.on_turnstile_pass(checkpoint,
        item_id)`` (``item_id`` from ``id``, else ``None``); metrics never break the
        stream: errors from ``id`` or the collector are swallowed."""
        check_callable("collector.on_turnstile_pass", getattr(collector, "on_turnstile_pass", None))
        if id is not None:
            check_callable("id", id)
        return self._extend("turnstile", checkpoint, collector, id)

    def pipe(self, factory: PullFactory) -> PullChain[Any]:
        """Append ``factory(tail)``, any pull object reading the current tail (the
        escape hatch). Compilation keeps it as is and fuses around it; it calls
        ``factory`` again, so return a new object each call."""
        check_callable("factory", factory)
        return self._extend("pipe", factory)

    def _merge(self, kind: str, others: tuple[AsyncIterable[Any], ...]) -> PullChain[Any]:
        for i, other in enumerate(others):
            check_pull_source(f"others[{i}]", other)
        return self._extend(kind, *others)

    def merge_race_fair(self, *others: AsyncIterable[Any]) -> PullChain[Any]:
        """Append :class:`PullRaceRobinObj` over the tail and ``others``: each round
        every live source delivers one item, fastest first (FireFoundry's
        ``mergeRace``; raw values)."""
        return self._merge("merge_race_fair", others)

    def merge_race(self, *others: AsyncIterable[Any]) -> PullChain[Any]:
        """Append :class:`PullRaceValuesObj` over the tail and ``others``: items in
        arrival order, unwrapped (decision C15)."""
        return self._merge("merge_race", others)

    def merge_round_robin(self, *others: AsyncIterable[Any]) -> PullChain[Any]:
        """Append :class:`PullRoundRobinObj` over the tail and ``others``."""
        return self._merge("merge_round_robin", others)

    def merge_concat(self, *others: AsyncIterable[Any]) -> PullChain[Any]:
        """Append :class:`PullConcatObj`: the tail's items first, then each of ``others``."""
        return self._merge("merge_concat", others)

    def compile(self) -> CompiledPullChain[T]:
        """Return a :class:`CompiledPullChain` over this chain's source and recipe.

        Runs of map, filter, dedupe, reduce, callback, turnstile, window, buffer,
        in_order, flat_map, flatten and buffer_reduce become one generator each;
        the other links stay as they are and split fusion into segments. Compile
        before iterating: the compiled chain starts its operations afresh.
        """
        self._check()
        compiled: CompiledPullChain[T] = CompiledPullChain(self._stages[0], self._ops)
        self._consumed = True
        return compiled

    # -- dynamic mutation ----------------------------------------------------------------

    def insert_after(self, index: int, factory: PullFactory) -> PullChain[Any]:
        """Return a chain with ``factory(links[index])`` inserted after ``links[index]``.

        The link after it is rewired to read the new link. On a chain that was
        already pulled from, the links after the change start a new cycle so the
        next pull goes through it; a window or buffer among them loses its partly
        filled batch.

        Raises:
            IndexError: ``index`` is out of range.
            TypeError: ``factory`` is not callable, does not return an async
                iterable, or the next link has no ``source`` to rewire.
        """
        i = self._mutation_index(index)
        return self._splice(i + 1, 0, factory)

    def insert_before(self, index: int, factory: PullFactory) -> PullChain[Any]:
        """Return a chain with a link inserted before ``links[index]`` (not before the
        source): ``factory`` receives ``links[index - 1]``, the link it will read."""
        i = self._mutation_index(index)
        if i == 0:
            raise IndexError("cannot insert before the source (index 0)")
        return self._splice(i, 0, factory)

    def remove(self, index: int) -> PullChain[Any]:
        """Return a chain without ``links[index]`` (not the source, index 0); the link
        after it reads the link before it. The removed link is not closed."""
        i = self._mutation_index(index)
        if i == 0:
            raise IndexError("the source (index 0) cannot be removed")
        return self._splice(i, 1, None)

    def replace(self, index: int, factory: PullFactory) -> PullChain[Any]:
        """Return a chain with ``factory(links[index - 1])`` in place of
        ``links[index]`` (not the source). The old link is not closed."""
        i = self._mutation_index(index)
        if i == 0:
            raise IndexError("the source (index 0) cannot be replaced: build a new chain")
        return self._splice(i, 1, factory)

    def as_type(self, tp: type[U]) -> PullChain[U]:
        """Return this chain typed as ``PullChain[tp]`` (FireFoundry's ``as<U>()``).

        For the type checker only, like :func:`typing.cast`: nothing is checked or
        converted at run time. Useful after a merge or a mutation, which type their
        result ``PullChain[Any]``, to go on fluently::

            total = chain.merge_concat(more).as_type(int).reduce(operator.add, 0)

        ``tp`` is a class or a parameterized generic (``int``, ``list[str]``,
        ``tuple[int, str]``); for a union or another type form, which a type
        checker does not accept as ``type[U]``, write
        ``typing.cast("PullChain[int | None]", chain)`` instead. Like every chain
        method it returns a new chain over the same links and consumes this
        reference; a chain pulled from already goes on where it was.
        """
        self._check()
        return self._successor(list(self._stages), list(self._ops))

    def _index(self, index: int) -> int:
        return check_index("index", index, len(self._stages))

    def _mutation_index(self, index: int) -> int:
        self._check()
        return self._index(index)

    def _splice(self, at: int, delete: int, factory: PullFactory | None) -> PullChain[Any]:
        links = list(self._stages)
        ops = list(self._ops)
        new: list[Any] = []
        new_ops: list[PullOpDescriptor] = []
        if factory is not None:
            check_callable("factory", factory)
            op = PullOpDescriptor("pipe", (factory,))
            new, new_ops = [build_pull_link(op, links[at - 1])], [op]
        links[at : at + delete] = new
        ops[at - 1 : at - 1 + delete] = new_ops
        after = at + len(new)
        if after < len(links):
            # The link after the change read the last link removed, or links[at - 1].
            undo = _rewire(links[after], self._stages[at + delete - 1], links[after - 1])
            _restarted(links[after:], undo)
        return self._successor(links, ops)


def _rewire(link: Any, old: Any, new: Any) -> Callable[[], None]:
    """Make ``link`` read ``new`` instead of ``old``; return how to undo it."""
    if getattr(link, "source", None) is old:
        link.source = new

        def undo_source() -> None:
            link.source = old

        return undo_source
    sources = getattr(link, "sources", None)
    if isinstance(sources, list) and any(s is old for s in sources):
        before = list(sources)
        sources[:] = [new if s is old else s for s in sources]

        def undo_sources() -> None:
            sources[:] = before

        return undo_sources
    raise TypeError(
        f"cannot rewire {type(link).__name__}: it has no source or sources reading the "
        "link before it"
    )


def _restarted(links: list[Any], undo: Callable[[], None]) -> None:
    """Restart the links (after a rewired one) that had started, so the next pull
    reads through the change; undo the rewiring if one refuses."""
    started = [link for link in links if isinstance(link, PullObj) and link._agen is not None]
    try:
        for link in started:
            if in_flight(link):
                raise RuntimeError("cannot change a chain while a pull is in flight")
        for link in started:
            link.restart()
    except BaseException:
        undo()
        raise
