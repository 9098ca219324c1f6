"""Fluent push chains: an immutable recipe builder, and the chain it builds."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine, Iterable, MutableSequence, Sequence
from typing import Any, Generic, NamedTuple, TypeVar, overload

from .._obj import PushObj, check_push_sink
from .._util import check_callable, check_index, check_int, check_seconds, make_selector
from ..push._fanout import PushDistributeObj, PushForkObj, PushRoundRobinObj
from ..push._reduce import UNSEEDED
from ..push._sinks import SinkCallbacksObj, SinkCollectObj
from ..push._timeout import TimeoutFrom
from ._compile import CompiledPushChain
from ._ops import BARRIER_KINDS, PushOpDescriptor, build_link

__all__ = ["PushChain", "PushChainBuilder", "ToArrayResult"]

IN = TypeVar("IN")
OUT = TypeVar("OUT")
T = TypeVar("T")
U = TypeVar("U")

BranchFn = Callable[["PushChainBuilder[Any, Any]"], PushObj[Any]]
"""A fork/distribute branch: receives a fresh builder, returns a chain (or sink)."""


class ToArrayResult(NamedTuple):
    """What :meth:`PushChainBuilder.to_array` returns."""

    chain: PushChain[Any]
    """The chain; send into it."""
    buffer: MutableSequence[Any]
    """The list its sink appends to."""


class PushChain(PushObj[T]):
    """A push pipeline: ``links`` from ``head`` (which takes values) to ``tail``.

    ``asend`` goes to the head; ``aclose`` and ``athrow`` go to the head and travel
    through every link (each one-to-one stage forwards them; fan-out terminals built
    by :class:`PushChainBuilder` forward them to their branches). Once the head is
    done, ``asend`` drops values and returns ``False``.

    Backpressure and ordering are the links': ``await chain.asend(v)`` returns once
    ``v`` has gone as far as it goes (through every one-to-one link, into the
    tail). Concurrent senders overlap in stateless links and take turns, in
    arrival order, in stateful ones. Cancelling a sender interrupts the link it is
    in; serialised links release their turn, so the chain stays usable.

    The chain can be changed in place while in use: :meth:`insert_after`,
    :meth:`insert_before`, :meth:`remove` and :meth:`replace` rewire the
    neighbouring links' ``sink``; a value already past the change is unaffected.

    Args:
        links: the push objects, head first, each one-to-one link's ``sink`` being
            the next link (this is what the builder makes).
    """

    def __init__(self, links: Sequence[PushObj[Any]]) -> None:
        super().__init__(forward_errors=True, forward_close=True)
        checked = [check_push_sink(f"links[{i}]", link) for i, link in enumerate(links)]
        if not checked:
            raise ValueError("links must not be empty")
        for i in range(len(checked) - 1):
            if getattr(checked[i], "sink", None) is not checked[i + 1]:
                raise ValueError(f"links[{i}].sink must be links[{i + 1}]")
        # Invariant: _links[i].sink is _links[i + 1] for every link but the tail.
        self._links: list[PushObj[Any]] = checked

    # -- introspection -------------------------------------------------------------------

    @property
    def head(self) -> PushObj[T]:
        """The first link: where values enter."""
        return self._links[0]

    @property
    def tail(self) -> PushObj[Any]:
        """The last link: the terminal sink or fan-out."""
        return self._links[-1]

    @property
    def links(self) -> tuple[PushObj[Any], ...]:
        """The links, head first (a snapshot)."""
        return tuple(self._links)

    @property
    def length(self) -> int:
        """The number of links."""
        return len(self._links)

    def __len__(self) -> int:
        return len(self._links)

    def link_at(self, index: int) -> PushObj[Any]:
        """Return the link at ``index`` (negative counts from the tail)."""
        return self._links[self._index("index", index)]

    @property
    def done(self) -> bool:
        """Whether the chain accepts no more values (its head is done)."""
        return self._done or bool(getattr(self._links[0], "done", False))

    def __repr__(self) -> str:
        names = " -> ".join(type(link).__name__ for link in self._links)
        return f"<PushChain {names} {'done' if self.done else 'open'}>"

    # -- the push protocol ---------------------------------------------------------------

    def asend(self, value: T) -> Coroutine[Any, Any, bool]:
        """Send ``value`` into the head; return whether the chain still accepts values."""
        return self._links[0].asend(value)

    async def close_impl(self) -> None:
        await self._links[0].aclose()

    async def throw_impl(self, error: BaseException) -> None:
        await self._links[0].athrow(error)

    # -- in-place mutation ---------------------------------------------------------------

    def insert_after(self, index: int, link: Any) -> PushObj[Any]:
        """Insert ``link`` right after ``links[index]`` (not after the tail).

        Args:
            index: the link to insert after.
            link: a one-to-one push object (its ``sink`` is rewired), or a factory
                ``sink -> push object``.

        Returns:
            The inserted push object.
        """
        i = self._index("index", index)
        if i == len(self._links) - 1:
            raise IndexError("cannot insert after the tail: it has no downstream")
        new = _make_link(link, self._links[i + 1])
        self._links[i].sink = new  # type: ignore[attr-defined]
        self._links.insert(i + 1, new)
        return new

    def insert_before(self, index: int, link: Any) -> PushObj[Any]:
        """Insert ``link`` right before ``links[index]`` (before the head: a new head).

        Args:
            index: the link to insert before.
            link: a one-to-one push object (its ``sink`` is rewired), or a factory
                ``sink -> push object``.

        Returns:
            The inserted push object.
        """
        i = self._index("index", index)
        new = _make_link(link, self._links[i])
        if i > 0:
            self._links[i - 1].sink = new  # type: ignore[attr-defined]
        self._links.insert(i, new)
        return new

    def remove(self, index: int) -> PushObj[Any]:
        """Take ``links[index]`` out (not the tail); return it, unclosed."""
        i = self._index("index", index)
        if i == len(self._links) - 1:
            raise IndexError("cannot remove the tail: replace() it instead")
        removed = self._links.pop(i)
        if i > 0:
            self._links[i - 1].sink = self._links[i]  # type: ignore[attr-defined]
        return removed

    def replace(self, index: int, link: Any) -> PushObj[Any]:
        """Put ``link`` in place of ``links[index]``; return the old link, unclosed.

        Args:
            index: the link to replace.
            link: for an inner link, a one-to-one push object (its ``sink`` is
                rewired) or a factory ``sink -> push object``; for the tail, any
                push object.
        """
        i = self._index("index", index)
        if i == len(self._links) - 1:
            new = check_push_sink("link", link)
        else:
            new = _make_link(link, self._links[i + 1])
        old = self._links[i]
        self._links[i] = new
        if i > 0:
            self._links[i - 1].sink = new  # type: ignore[attr-defined]
        return old

    def _index(self, name: str, index: int) -> int:
        return check_index(name, index, len(self._links))


def _make_link(link: Any, sink: PushObj[Any]) -> PushObj[Any]:
    if all(callable(getattr(link, m, None)) for m in ("asend", "aclose", "athrow")):
        if not hasattr(link, "sink"):
            raise TypeError(f"link must be a one-to-one push object, got {type(link).__name__}")
        link.sink = sink
        return link  # type: ignore[no-any-return]
    if callable(link):
        return check_push_sink("link factory result", link(sink))  # type: ignore[no-any-return]
    raise TypeError(
        f"link must be a one-to-one push object or a factory, got {type(link).__name__}"
    )


class PushChainBuilder(Generic[IN, OUT]):
    """An immutable recipe for a push chain; every method returns a new builder.

    Start with :meth:`start`, add operations, then end with a terminal (:meth:`into`,
    :meth:`to_array`, :meth:`to_callbacks`, :meth:`fork`, :meth:`distribute`,
    :meth:`round_robin_to`), which builds the push objects backwards from the sink
    and returns a :class:`PushChain`. A builder can be reused: each terminal call
    builds fresh objects.

    Every callable may be sync or async. Arguments are checked when the operation is
    added (``TypeError``/``ValueError`` naming the argument).

    Example::

        chain, out = PushChainBuilder.start().map(str.upper).window(2).to_array()
        for word in ["a", "b", "c"]:
            await chain.asend(word)
        await chain.aclose()            # flushes the partial window
        assert out == [["A", "B"], ["C"]]
    """

    __slots__ = ("_compiled", "_ops")

    def __init__(self, ops: tuple[PushOpDescriptor, ...] = (), compiled: bool = False) -> None:
        self._ops = ops
        self._compiled = compiled

    @classmethod
    def start(cls) -> PushChainBuilder[Any, Any]:
        """Begin an empty recipe."""
        return cls()

    @property
    def ops(self) -> tuple[PushOpDescriptor, ...]:
        """The recorded operations, head first."""
        return self._ops

    @property
    def compiled(self) -> bool:
        """Whether the terminal fuses the operations (:meth:`compile`)."""
        return self._compiled

    def __repr__(self) -> str:
        kinds = ".".join(op.kind for op in self._ops) or "(empty)"
        return f"<PushChainBuilder {kinds}{' compiled' if self._compiled else ''}>"

    def _add(self, kind: str, *args: Any, **options: Any) -> PushChainBuilder[IN, Any]:
        return PushChainBuilder((*self._ops, PushOpDescriptor(kind, args, options)), self._compiled)

    # -- operations ------------------------------------------------------------------------

    @overload
    def map(self, transform: Callable[[OUT], Awaitable[U]]) -> PushChainBuilder[IN, U]: ...
    @overload
    def map(self, transform: Callable[[OUT], U]) -> PushChainBuilder[IN, U]: ...
    def map(self, transform: Callable[[OUT], Any]) -> PushChainBuilder[IN, Any]:
        """Add :class:`~pullpush.push.PushMapObj` (its output type is ``transform``'s
        result, awaited for an async one)."""
        check_callable("transform", transform)
        return self._add("map", transform)

    def flat_map(self, transform: Callable[[OUT], Any]) -> PushChainBuilder[IN, Any]:
        """Add :class:`~pullpush.push.PushFlatMapObj` (map, then flatten one level)."""
        check_callable("transform", transform)
        return self._add("flat_map", transform)

    def filter(self, predicate: Callable[[OUT], Any]) -> PushChainBuilder[IN, OUT]:
        """Add :class:`~pullpush.push.PushFilterObj` (sync or async predicate)."""
        check_callable("predicate", predicate)
        return self._add("filter", predicate)

    def reduce(
        self, reducer: Callable[[Any, OUT], Any], initial: Any = UNSEEDED
    ) -> PushChainBuilder[IN, Any]:
        """Add :class:`~pullpush.push.PushReduceObj`: ``reducer(accumulator, value)``."""
        check_callable("reducer", reducer)
        return self._add("reduce", reducer, initial)

    def buffer_reduce(self, reducer: Callable[[OUT], Any]) -> PushChainBuilder[IN, Any]:
        """Add :class:`~pullpush.push.PushBufferReduceObj`."""
        check_callable("reducer", reducer)
        return self._add("buffer_reduce", reducer)

    def window(self, size: int, *, flush_on_close: bool = True) -> PushChainBuilder[IN, Any]:
        """Add :class:`~pullpush.push.PushWindowObj` (partial window flushed on close)."""
        check_int("size", size, minimum=1)
        return self._add("window", size, flush_on_close=flush_on_close)

    def window_timeout(
        self,
        size: int,
        timeout: float,
        *,
        timeout_from: TimeoutFrom = "batch_start",
        flush_on_close: bool = True,
    ) -> PushChainBuilder[IN, Any]:
        """Add :class:`~pullpush.push.PushWindowTimeoutObj` (``timeout`` in seconds)."""
        check_int("size", size, minimum=1)
        check_seconds("timeout", timeout, positive=True)
        if timeout_from not in ("batch_start", "last_item"):
            raise ValueError(
                f"timeout_from must be 'batch_start' or 'last_item', got {timeout_from!r}"
            )
        return self._add(
            "window_timeout",
            size,
            timeout,
            timeout_from=timeout_from,
            flush_on_close=flush_on_close,
        )

    def buffer(
        self, check_buffer: Callable[[list[Any]], Any], *, flush_on_close: bool = True
    ) -> PushChainBuilder[IN, Any]:
        """Add :class:`~pullpush.push.PushBufferObj`."""
        check_callable("check_buffer", check_buffer)
        return self._add("buffer", check_buffer, flush_on_close=flush_on_close)

    def flatten(self) -> PushChainBuilder[IN, Any]:
        """Add :class:`~pullpush.push.PushFlattenObj` (one level; not str/bytes)."""
        return self._add("flatten")

    def serial(self) -> PushChainBuilder[IN, OUT]:
        """Add :class:`~pullpush.push.PushSerialObj`: later stages see one value at a time."""
        return self._add("serial")

    def pre_callback(self, *callbacks: Callable[[OUT], Any]) -> PushChainBuilder[IN, OUT]:
        """Add :class:`~pullpush.push.PushPreCallbacksObj` (callbacks, then forward)."""
        for i, callback in enumerate(callbacks):
            check_callable(f"callbacks[{i}]", callback)
        return self._add("pre_callback", *callbacks)

    def post_callback(self, *callbacks: Callable[[OUT], Any]) -> PushChainBuilder[IN, OUT]:
        """Add :class:`~pullpush.push.PushPostCallbacksObj` (forward, then callbacks)."""
        for i, callback in enumerate(callbacks):
            check_callable(f"callbacks[{i}]", callback)
        return self._add("post_callback", *callbacks)

    def turnstile(
        self, checkpoint: Any, collector: Any, *, id: Callable[[OUT], Any] | None = None
    ) -> PushChainBuilder[IN, OUT]:
        """Report each value passing here to ``collector.on_turnstile_pass(checkpoint,
        item_id)`` (``item_id`` from ``id``, else ``None``); errors are swallowed."""
        check_callable("collector.on_turnstile_pass", getattr(collector, "on_turnstile_pass", None))
        if id is not None:
            check_callable("id", id)
        return self._add("turnstile", checkpoint, collector, id)

    def pipe(self, factory: Callable[[PushObj[Any]], PushObj[Any]]) -> PushChainBuilder[IN, Any]:
        """Add a custom stage: ``factory(sink)`` must return a push object sending to
        ``sink``. Compilation fuses the runs before and after it."""
        check_callable("factory", factory)
        return self._add("pipe", factory)

    def compile(self) -> PushChainBuilder[IN, OUT]:
        """Make the terminal fuse the operations into :class:`CompiledPushChain` links.

        Position-independent: it applies to the whole recipe. ``serial``, ``pipe``
        and ``window_timeout`` stay separate stages and split the fusion into
        segments (the original disabled fusion altogether).
        """
        return PushChainBuilder(self._ops, compiled=True)

    # -- terminals ---------------------------------------------------------------------------

    def into(self, sink: PushObj[OUT]) -> PushChain[IN]:
        """Build the chain, ending in ``sink``."""
        links: list[PushObj[Any]] = [check_push_sink("sink", sink)]
        ops = self._ops
        if self._compiled:
            end = len(ops)
            for k in range(len(ops) - 1, -2, -1):
                if k == -1 or ops[k].kind in BARRIER_KINDS:
                    if k + 1 < end:
                        links.append(CompiledPushChain(links[-1], ops[k + 1 : end]))
                    if k >= 0:
                        links.append(build_link(ops[k], links[-1]))
                    end = k
        else:
            for op in reversed(ops):
                links.append(build_link(op, links[-1]))
        links.reverse()
        return PushChain(links)

    def to_array(self, buffer: MutableSequence[Any] | None = None) -> ToArrayResult:
        """Build the chain into a :class:`~pullpush.push.SinkCollectObj`; return
        ``(chain, buffer)``."""
        sink: SinkCollectObj[Any] = SinkCollectObj(buffer)
        return ToArrayResult(self.into(sink), sink.buffer)

    def to_callbacks(self, *callbacks: Callable[[OUT], Any]) -> PushChain[IN]:
        """Build the chain into a :class:`~pullpush.push.SinkCallbacksObj`."""
        return self.into(SinkCallbacksObj(*callbacks))

    def fork(self, *branches: BranchFn, concurrent: bool = False) -> PushChain[IN]:
        """Build the chain into a :class:`~pullpush.push.PushForkObj` (broadcast).

        Each branch function receives a fresh builder and returns a chain (or any
        push object). Closing and failing reach every branch.
        """
        return self.into(PushForkObj(_branches(branches), True, True, concurrent=concurrent))

    def distribute(
        self, selector: str | Callable[[OUT], Any], *branches: BranchFn
    ) -> PushChain[IN]:
        """Build the chain into a :class:`~pullpush.push.PushDistributeObj`:
        ``selector(value)`` is the index of the branch that gets it."""
        make_selector(selector, "selector")
        return self.into(PushDistributeObj(_branches(branches), selector, True, True))

    def round_robin_to(self, *branches: BranchFn) -> PushChain[IN]:
        """Build the chain into a :class:`~pullpush.push.PushRoundRobinObj`."""
        return self.into(PushRoundRobinObj(_branches(branches), True, True))


def _branches(branches: Iterable[BranchFn]) -> list[PushObj[Any]]:
    built = []
    for i, branch in enumerate(branches):
        check_callable(f"branches[{i}]", branch)
        built.append(check_push_sink(f"branches[{i}] result", branch(PushChainBuilder.start())))
    if not built:
        raise ValueError("at least one branch is needed")
    return built
