"""Compiled pull chains: runs of pull operations fused into one async generator.

:class:`CompiledPullChain` generates, once per run of fusable operations (a
*segment*), the source of one async generator that reads the segment's upstream
and applies every operation inline -- one generator step per item for the whole
segment instead of one per operator -- and compiles it with :func:`exec`
(helpers shared with the push compiler, :mod:`._codegen`).

* **Fast path** -- map, filter, dedupe, reduce, callback, turnstile: straight-line
  code in the loop body; filter and dedupe drop an item with ``continue``.
* **General path** -- window, buffer, in_order, flat_map, flatten, buffer_reduce:
  a window or buffer collects and ``continue``\\ s until it is full; the others
  open a nested loop over their outputs. Partial windows and buffers, and items
  ``in_order`` still holds, are flushed through the rest of the segment when the
  upstream ends, head first, exactly as the uncompiled operators yield them.
* **Barriers** -- eager, timeout, window_timeout, pipe and the merges stay the
  uncompiled operators; they split fusion into segments.
* **Inline source** -- when the chain's source is a :class:`SourceFromIterable`
  over a sync iterable, the head segment's loop is the source's own sync loop
  (``_next_run`` / ``_run_ended``, checking ``_interrupted`` before each item)
  with the operations in its body: no async generator step per source item.
  Peek, graceful and immediate close, restart and exhaustion behave as when the
  source is pulled.

Every callable is applied as the uncompiled operator applies it: a coroutine
function is awaited directly, any other callable's result is awaited when it is
awaitable (so async predicates and reducers work on the fast path).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterable, Callable, Iterable
from typing import Any, Final, TypeVar

from .._obj import PullObj, PullObj1To1Link, check_pull_source, pull_iter
from .._util import make_selector
from ..pull._sources import SourceFromIterable
from ..pull._transform import _NO_INITIAL, is_flattenable
from ._codegen import RUNTIME, CodeWriter, load_factory
from ._ops import turnstile_callback
from ._pull_base import PullChainBase
from ._pull_ops import FAST_KINDS, GENERAL_KINDS, PullOpDescriptor, build_pull_link, check_pull_op

__all__ = ["CompiledPullChain"]

T = TypeVar("T")

_ATOMS = (str, bytes, bytearray)
_END: Final[Any] = object()
_NOTHING: Final[Any] = object()
_FILENAME = "<compiled pull chain>"


def _split(value: Any) -> tuple[Any, Any]:
    """``(async iterator, None)`` or ``(None, sync iterator)`` over the items of
    ``value`` one level deep -- itself alone if it is not iterable (as
    :func:`~pullpush.pull._transform.iterate_flat`, after its await)."""
    if hasattr(type(value), "__aiter__"):
        return value.__aiter__(), None
    if isinstance(value, Iterable) and not isinstance(value, _ATOMS):
        return None, iter(value)
    return None, iter((value,))


def _seen(index: Any) -> ValueError:
    return ValueError(f"PullInOrderObj: index {index!r} was already seen")


def _missing(index: int, held: int) -> ValueError:
    return ValueError(f"PullInOrderObj: index {index} never arrived; {held} item(s) held behind it")


_HELPERS: Final = {
    "_pull_iter": pull_iter,
    "_split": _split,
    "_flattenable": is_flattenable,
    "_END": _END,
    "_NOTHING": _NOTHING,
    "_UNSEEDED": _NO_INITIAL,
    "_seen": _seen,
    "_missing": _missing,
    **RUNTIME,
}


class _Writer(CodeWriter):
    """Write the source of one segment's ``pull_impl``."""

    def __init__(self, ops: tuple[PullOpDescriptor, ...], inline_source: bool = False) -> None:
        super().__init__()
        self.ops = ops
        self.inline_source = inline_source
        # Per-cycle state, set up before the loop (a dict: flushes write ops again).
        self.state: dict[str, None] = {}
        # The indentation of the loop body that reads an inline source (see skip()).
        self.source_pad: str | None = None

    def generate(self) -> str:
        if self.inline_source:
            # SourceFromIterable.pull_impl's sync loop, with the operations in its
            # body: no async generator step per item for the source.
            self.source_pad = "    " * 3
            main = [
                "        _src = _S.source",
                "        while (_run := _src._next_run()) is not None:",
                "            for v in _run:",
                *("    " + line for line in self.body(0, 3)),
                "                if _src._interrupted:",
                "                    break",
                "            else:",
                "                _src._run_ended(_run)",
                "        _src._loop_ended()",
            ]
            self.source_pad = None
        else:
            main = [
                "        async for v in _pull_iter(_S.source):",
                *("    " + line for line in self.body(0, 2)),
            ]
        flushes: list[str] = []
        for k, (kind, _, options) in enumerate(self.ops):
            if kind in ("window", "buffer") and options.get("yield_remainder", True):
                flushes += [
                    f"    if b{k}:",
                    f"        for v in (b{k},):",
                    *self.body(k + 1, 3),
                ]
            elif kind == "in_order":
                strict = options.get("strict", False)
                flushes += [
                    f"    if h{k}:",
                    *([f"        raise _missing(n{k}, len(h{k}))"] if strict else []),
                    f"        for v in [h{k}.pop(j) for j in sorted(h{k})]:",
                    *self.body(k + 1, 3),
                ]
        names = [*_HELPERS, *self.constants]
        lines = [
            f"def _factory(*, _S, {', '.join(names)}):",
            f"    async def pull_impl(_S=_S, {', '.join(f'{n}={n}' for n in names)}):",
            *("        " + line for line in self.state),
            *main,
            *("    " + line for line in flushes),
            "    return pull_impl",
        ]
        return "\n".join(lines) + "\n"

    def skip(self, pad: str) -> list[str]:
        """Lines, in an ``if`` at ``pad``, that drop the value: the innermost loop moves
        on. When that loop reads an inline source, its next item is the source's: a
        peek or a close the source saw first ends the run, as in the source's own
        loop."""
        if pad != self.source_pad:
            return [f"{pad}    continue"]
        return [f"{pad}    if _src._interrupted:", f"{pad}        break", f"{pad}    continue"]

    def body(self, start: int, level: int) -> list[str]:
        """Lines that take ``v`` through ``ops[start:]`` and yield it.

        :meth:`skip` drops the value.
        """
        lines: list[str] = []
        for k in range(start, len(self.ops)):
            kind, args, options = self.ops[k]
            pad = "    " * level
            if kind == "map":
                lines += self.call(pad, "v", args[0], "v")
            elif kind == "filter":
                lines += [
                    *self.call(pad, "r", args[0], "v"),
                    f"{pad}if not r:",
                    *self.skip(pad),
                ]
            elif kind in ("callback", "turnstile"):
                callbacks = args if kind == "callback" else (turnstile_callback(*args),)
                for callback in callbacks:
                    lines += self.call(pad, None, callback, "v")
            elif kind == "dedupe":
                lines += self.dedupe(k, pad, args[0] if args else None, options)
            elif kind == "reduce":
                lines += self.reduce(k, pad, *args)
            elif kind in ("window", "buffer"):
                lines += self.batch(k, pad, kind, args[0])
            elif kind == "in_order":
                lines += self.in_order(k, pad, *args)
                level += 1
            else:  # flat_map, buffer_reduce, flatten
                lines += self.flat(k, pad, kind, args)
                level += 1
        lines.append("    " * level + "yield v")
        return lines

    def dedupe(self, k: int, pad: str, obj2id: Any, options: Any) -> list[str]:
        key = "v"
        lines = []
        if obj2id is not None:
            key = f"key{k}"
            lines.append(f"{pad}{key} = {self.constant(make_selector(obj2id, 'obj2id'))}(v)")
        if options.get("consecutive", False):
            self.state[f"p{k} = _NOTHING"] = None
            return [*lines, f"{pad}if {key} == p{k}:", *self.skip(pad), f"{pad}p{k} = {key}"]
        self.state.update(dict.fromkeys([f"s{k} = set()", f"add{k} = s{k}.add"]))
        return [*lines, f"{pad}if {key} in s{k}:", *self.skip(pad), f"{pad}add{k}({key})"]

    def reduce(self, k: int, pad: str, reducer: Any, accum: Any = _NO_INITIAL) -> list[str]:
        if accum is _NO_INITIAL:
            self.state[f"a{k} = _UNSEEDED"] = None
            return [
                f"{pad}if a{k} is _UNSEEDED:",
                f"{pad}    a{k} = v",
                f"{pad}else:",
                *self.call(pad + "    ", f"a{k}", reducer, f"a{k}, v"),
                f"{pad}v = a{k}",
            ]
        self.state[f"a{k} = {self.constant(accum)}"] = None
        return [*self.call(pad, f"a{k}", reducer, f"a{k}, v"), f"{pad}v = a{k}"]

    def batch(self, k: int, pad: str, kind: str, arg: Any) -> list[str]:
        self.state[f"b{k} = []"] = None
        if kind == "window":
            full = [f"{pad}if len(b{k}) < {int(arg)}:"]
        else:
            full = [*self.call(pad, "r", arg, f"b{k}"), f"{pad}if not r:"]
        return [
            f"{pad}b{k}.append(v)",
            *full,
            *self.skip(pad),
            f"{pad}v = b{k}",
            f"{pad}b{k} = []",
        ]

    def in_order(self, k: int, pad: str, obj2index: Any, start: int = 0) -> list[str]:
        self.state.update(dict.fromkeys([f"n{k} = {int(start)}", f"h{k} = {{}}"]))
        index = self.constant(make_selector(obj2index, "obj2index"))
        return [
            f"{pad}i{k} = {index}(v)",
            f"{pad}if i{k} < n{k} or i{k} in h{k}:",
            f"{pad}    raise _seen(i{k})",
            f"{pad}if i{k} != n{k}:",
            f"{pad}    h{k}[i{k}] = v",
            *self.skip(pad),
            f"{pad}n{k} += 1",
            f"{pad}q{k} = [v]",
            f"{pad}while n{k} in h{k}:",
            f"{pad}    q{k}.append(h{k}.pop(n{k}))",
            f"{pad}    n{k} += 1",
            f"{pad}for v in q{k}:",
        ]

    def flat(self, k: int, pad: str, kind: str, args: tuple[Any, ...]) -> list[str]:
        if kind == "flatten":
            head = [
                f"{pad}x = v",
                f"{pad}if _type(x) not in _plain and _is_awaitable(x) and _flattenable(x):",
                f"{pad}    x = await x",
            ]
        else:
            head = self.call(pad, "x", args[0], "v")
        return [
            *head,
            f"{pad}ia{k}, it{k} = _split(x)",
            f"{pad}while True:",
            f"{pad}    if ia{k} is None:",
            f"{pad}        v = next(it{k}, _END)",
            f"{pad}        if v is _END:",
            f"{pad}            break",
            f"{pad}    else:",
            f"{pad}        try:",
            f"{pad}            v = await ia{k}.__anext__()",
            f"{pad}        except StopAsyncIteration:",
            f"{pad}            break",
        ]


def _reads_inline(source: object) -> bool:
    """Whether a segment's loop can run ``source``'s own loop inline: a
    :class:`SourceFromIterable` (exactly: a subclass may change the loop) over a sync
    iterable."""
    return type(source) is SourceFromIterable and source._sync is not None


class _FusedSegment(PullObj1To1Link[Any, Any]):
    """One run of fusable operations as one pull object (its ``pull_impl`` is
    generated). State lives in the cycle: a new cycle starts from the initial
    state.

    Over a :class:`SourceFromIterable` of a sync iterable (the head segment of a
    chain built with one), the generated loop is the source's own sync loop with
    the operations in its body: the source costs no generator step per item, and
    its peek, close, restart and exhaustion behave as when it is pulled. A swapped
    ``source`` is read with the generic loop.
    """

    def __init__(self, source: AsyncIterable[Any], ops: tuple[PullOpDescriptor, ...]) -> None:
        super().__init__(source)
        self.ops = ops
        # Invariant: _inline is the source the inline variant was built for (None if
        # the first source was not one); _impls caches (code, pull_impl) per variant.
        self._inline: Any = source if _reads_inline(source) else None
        self._impls: dict[bool, tuple[str, Callable[[], AsyncGenerator[Any, Any]]]] = {}
        self.code: str = self._variant(self._inline is not None)[0]
        """The generated Python source (for reading and debugging)."""

    def _variant(self, inline: bool) -> tuple[str, Callable[[], AsyncGenerator[Any, Any]]]:
        impl = self._impls.get(inline)
        if impl is None:
            writer = _Writer(self.ops, inline_source=inline)
            code = writer.generate()
            factory = load_factory(code, _FILENAME)
            impl = self._impls[inline] = (code, factory(_S=self, **_HELPERS, **writer.constants))
        return impl

    def pull_impl(self) -> AsyncGenerator[Any, Any]:
        return self._variant(self.source is self._inline)[1]()

    def __repr__(self) -> str:
        kinds = ", ".join(op.kind for op in self.ops)
        return f"<fused [{kinds}] {'done' if self.done else 'open'}>"


class CompiledPullChain(PullChainBase[T]):
    """A pull chain whose operations are fused into as few generators as possible.

    Made by :meth:`PullChain.compile`, or directly from a source and
    :class:`PullOpDescriptor` tuples. Yields exactly what the uncompiled chain
    yields, raises what it raises, and closes what it closes, with one generator
    step per item for each run of fusable operations instead of one per
    operator. Beyond the original (FEATURES 2.8.4): async predicates, reducers
    and transforms are awaited on the fast path; partial windows and buffers are
    yielded (unless ``yield_remainder=False``), as the uncompiled operators do;
    barriers (``eager``, ``timeout``, ``window_timeout``, ``pipe``, the merges)
    split fusion into segments instead of failing.

    Ordering, backpressure and cancellation are the uncompiled chain's: items are
    pulled on demand and in order; ``aclose()``, ``close()`` and leaving an
    ``async for`` early close every stage and the source; cancelling a pull
    cancels the await in progress. Unlike :meth:`PullChain.first`, :meth:`first`
    closes the chain (FEATURES 2.8.4).

    Stateful operations (dedupe, reduce, window, buffer, in_order) keep their
    state in the generator: :meth:`restart` and assigning :attr:`source` start
    them again from their initial state. Barrier stages are built anew then too
    (a ``pipe`` factory is called again, so it should return a new object). A run
    left with a stage working in the background -- an eager read-ahead, a
    timed-out pull carried over -- should be closed with ``aclose()`` first.

    Args:
        source: the upstream (any async iterable).
        ops: the operations, head first.

    Raises:
        TypeError, ValueError: an operation's argument is invalid, or its kind is
            unknown.
    """

    def __init__(self, source: AsyncIterable[Any], ops: Iterable[PullOpDescriptor]) -> None:
        self._ops = tuple(PullOpDescriptor(*op) for op in ops)
        for op in self._ops:
            check_pull_op(op)
        super().__init__(self._build(check_pull_source("source", source)))

    def _build(self, source: AsyncIterable[Any]) -> list[Any]:
        stages: list[Any] = [source]
        run: list[PullOpDescriptor] = []
        for op in (*self._ops, None):
            if op is not None and (op.kind in FAST_KINDS or op.kind in GENERAL_KINDS):
                run.append(op)
                continue
            if run:
                stages.append(_FusedSegment(stages[-1], tuple(run)))
                run = []
            if op is not None:
                stages.append(build_pull_link(op, stages[-1]))
        return stages

    @property
    def ops(self) -> tuple[PullOpDescriptor, ...]:
        """The operations, head first (read-only)."""
        return self._ops

    @property
    def stages(self) -> tuple[Any, ...]:
        """The pull objects that run them, head first: fused segments and barriers."""
        return tuple(self._stages[1:])

    @property
    def source(self) -> AsyncIterable[Any]:
        """The upstream. Assigning it resets the chain: the next pull starts a new
        run over the new source, every operation in its initial state.

        Raises:
            RuntimeError: a pull is in flight, or an eager stage is still reading
                ahead (``aclose()`` the chain first).
        """
        return self._stages[0]  # type: ignore[no-any-return]

    @source.setter
    def source(self, source: AsyncIterable[Any]) -> None:
        self._reset(check_pull_source("source", source))

    def restart(self) -> None:
        """Start a new run on the next pull: fresh operation state, the source restarted.

        The source does not rewind: a drained :class:`SourceBufferObj` yields what was
        added since, an exhausted iterator nothing.

        Raises:
            RuntimeError: a pull is in flight, or an eager stage is still reading
                ahead (``aclose()`` the chain first).
        """
        source = self._stages[0]
        self._reset(source)
        if isinstance(source, PullObj):
            source.restart()

    def _reset(self, source: AsyncIterable[Any]) -> None:
        self._check_idle("reset")
        for stage in self._stages[1:]:
            if isinstance(stage, PullObj):
                stage.restart()  # refuses while an eager stage reads ahead
        self._set_stages(self._build(source))
        PullObj.restart(self)

    async def first(self) -> T | None:
        """Pull one item and close the chain (FEATURES 2.8.4); ``None`` if it had ended."""
        try:
            return await super().first()
        finally:
            await self.aclose()

    def __repr__(self) -> str:
        kinds = ", ".join(op.kind for op in self._ops)
        state = "closed" if self._closed else "done" if self.done else "open"
        return f"<CompiledPullChain [{kinds}] {state}>"
