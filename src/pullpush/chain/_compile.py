"""Compiled push chains: a run of push operations fused into one function.

:class:`CompiledPushChain` generates, once, the source of an ``asend`` that applies
every operation inline -- no push object, coroutine frame or ``await`` per stage --
and compiles it with :func:`exec` (the technique :mod:`dataclasses` uses).

* **Fast path** -- map, filter, reduce, pre/post callbacks, turnstile: straight-line
  code. A filter that drops a value returns early (or skips ahead, when a post
  callback upstream must still run).
* **General path** -- window, buffer, flat_map, flatten, buffer_reduce: the code
  after such an operation becomes a nested *continuation* function, called once per
  output (per flushed window, per flattened element).

Every callable is applied as in the uncompiled stages: a coroutine function is
awaited directly, any other callable's result is awaited when it is awaitable (so
async predicates and reducers work on the fast path, unlike the original).

For the generated source of a chain, read its ``source`` attribute.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from .._obj import PushObj
from ..push._reduce import UNSEEDED
from ..push._serial import PushObjSerial1To1
from ..push._transform import feed, is_flattenable
from ._codegen import RUNTIME, CodeWriter, load_factory
from ._ops import FAST_KINDS, GENERAL_KINDS, PushOpDescriptor, turnstile_callback

__all__ = ["CompiledPushChain"]

_STATEFUL_KINDS = frozenset({"reduce", "window", "buffer", "buffer_reduce"})
_BATCH_KINDS = frozenset({"window", "buffer"})


class CompiledPushChain(PushObjSerial1To1[Any, Any]):
    """Push values through a fused run of operations into ``sink``.

    Behaves like the chain of push objects the operations describe -- same
    outputs, same order, same flush of partial windows and buffers on close (when
    their ``flush_on_close`` is set) -- with one function call per value instead
    of one or more awaits per stage.

    A chain holding state (reduce, window, buffer, buffer_reduce) takes turns like
    every stateful stage (see :class:`~pullpush.push.PushObjSerial1To1`):
    concurrent sends are serialised in arrival order. A chain without state lets
    them run concurrently. The operations are fixed once compiled; ``sink`` may be
    swapped at any time.

    Args:
        sink: the downstream push object (mutable).
        ops: the operations, head first, as :class:`PushOpDescriptor` tuples of
            kind ``map``, ``filter``, ``reduce``, ``pre_callback``,
            ``post_callback``, ``turnstile``, ``window``, ``buffer``, ``flat_map``,
            ``flatten`` or ``buffer_reduce`` (:meth:`PushChainBuilder.compile`
            splits a recipe at the others).

    Raises:
        ValueError: an operation cannot be fused (``serial``, ``pipe``,
            ``window_timeout``: the builder keeps those as separate stages).
    """

    def __init__(self, sink: PushObj[Any], ops: Iterable[PushOpDescriptor]) -> None:
        super().__init__(sink)
        # Invariant: _sink_done is True once the sink reported done. (_done alone
        # does not say it: aclose sets it too, before the deferred flush runs.)
        self._sink_done = False
        self._ops = tuple(PushOpDescriptor(*op) for op in ops)
        for op in self._ops:
            if op.kind not in FAST_KINDS and op.kind not in GENERAL_KINDS:
                raise ValueError(f"cannot fuse a {op.kind!r} operation into a compiled chain")
        # Invariant: _state[k] is operation k's state: the accumulator of a reduce,
        # the list being filled by a window or buffer, None for the rest.
        self._state: list[Any] = [_initial_state(op) for op in self._ops]
        generated = _Generator(self._ops).generate()
        self.source: str = generated.source
        """The generated Python source (for reading and debugging)."""
        asend, self._continuations = generated.bind(self)
        # An instance attribute shadows PushObjSerial1To1.asend: one call per value.
        vars(self)["asend"] = asend

    @property
    def ops(self) -> tuple[PushOpDescriptor, ...]:
        """The fused operations, head first (read-only)."""
        return self._ops

    def __repr__(self) -> str:
        kinds = ", ".join(op.kind for op in self._ops)
        return f"<CompiledPushChain [{kinds}] {'done' if self._done else 'open'}>"

    async def close_impl(self) -> None:
        # Flush partial windows and buffers head first (each flush runs through the
        # operations after it, possibly filling later windows), then close the sink.
        try:
            for k, op in enumerate(self._ops):
                if op.kind in _BATCH_KINDS and op.options.get("flush_on_close", True):
                    buffer = self._state[k]
                    if buffer and not self._sink_done:
                        self._state[k] = []
                        await self._continuations[k + 1](buffer)
        finally:
            await self.sink.aclose()

    def _mark_sink_done(self) -> None:
        self._sink_done = True
        self._done = True


def _initial_state(op: PushOpDescriptor) -> Any:
    if op.kind == "reduce":
        return op.args[1] if len(op.args) > 1 else UNSEEDED
    if op.kind in _BATCH_KINDS:
        return []
    return None


def _check_outputs(outputs: Any) -> Any:
    if not is_flattenable(outputs):
        raise TypeError(
            "reducer must return an iterable or async iterable of outputs (or None), "
            f"got {type(outputs).__name__}"
        )
    return outputs


class _Generated:
    """Generated source plus the constants it refers to; ``bind`` makes the functions."""

    def __init__(self, source: str, constants: dict[str, Any], stateful: bool) -> None:
        self.source = source
        self.constants = constants
        self.stateful = stateful

    def bind(
        self, stage: CompiledPushChain
    ) -> tuple[Callable[[Any], Any], dict[int, Callable[[Any], Any]]]:
        factory = load_factory(self.source, "<compiled push chain>")
        return factory(  # type: ignore[no-any-return]
            _S=stage,
            _turn=stage._turn,
            _state=stage._state,
            _UNSEEDED=UNSEEDED,
            _feed=feed,
            _flattenable=is_flattenable,
            _check_outputs=_check_outputs,
            **RUNTIME,
            **self.constants,
        )


class _Generator(CodeWriter):
    """Write the source of a compiled chain's ``asend`` and its continuations."""

    def __init__(self, ops: tuple[PushOpDescriptor, ...]) -> None:
        super().__init__()
        self.ops = ops
        self.functions: list[list[str]] = []
        self.continuations: dict[int, str] = {}

    def generate(self) -> _Generated:
        ops = self.ops
        stateful = any(op.kind in _STATEFUL_KINDS for op in ops)
        for k, op in enumerate(ops):
            if op.kind in _BATCH_KINDS:
                self.continuation(k + 1)  # close_impl flushes through these
        if stateful:
            head = [
                "async def asend(v):",
                "    if _S._done:",
                "        return False",
                "    if _turn.busy or _turn.queued:",
                "        await _turn.wait()",
                "        if _S._done and _turn.pending is None:",
                "            await _turn.release()",
                "            return False",
                "    else:",
                "        _turn.busy = True",
                "    try:",
                *self.body(0, 2, "return not _S._done"),
                "    finally:",
                "        if _turn.queued or _turn.pending is not None:",
                "            await _turn.release()",
                "        else:",
                "            _turn.busy = False",
                "    return not _S._done",
            ]
        else:
            head = [
                "async def asend(v):",
                "    if _S._done:",
                "        return False",
                *self.body(0, 1, "return not _S._done"),
                "    return not _S._done",
            ]
        names = ", ".join(
            [
                "_S",
                "_turn",
                "_state",
                "_UNSEEDED",
                "_feed",
                "_flattenable",
                "_check_outputs",
                *RUNTIME,
                *self.constants,
            ]
        )
        lines = [f"def _factory(*, {names}):"]
        for function in [*self.functions, head]:
            lines.extend("    " + line for line in function)
        conts = ", ".join(f"{k}: {name}" for k, name in sorted(self.continuations.items()))
        lines.append(f"    return asend, {{{conts}}}")
        return _Generated("\n".join(lines) + "\n", self.constants, stateful)

    def continuation(self, start: int) -> str:
        """The name of the function that runs ``ops[start:]`` on one value."""
        name = self.continuations.get(start)
        if name is None:
            name = self.continuations[start] = f"_rest{start}"
            self.functions.append(
                [
                    f"async def {name}(v):",
                    *self.body(start, 1, "return True"),
                    "    return not _S._sink_done",  # feed() goes on while truthy
                ]
            )
        return name

    def body(self, start: int, level: int, drop: str) -> list[str]:
        """Lines that take ``v`` through ``ops[start:]`` into the sink.

        ``drop`` is the statement that ends the function for a filtered-out value.
        """
        lines: list[str] = []
        posts: list[tuple[int, int, tuple[Any, ...]]] = []
        for k in range(start, len(self.ops)):
            kind, args, _ = self.ops[k]
            pad = "    " * level
            if kind == "map":
                lines += self.call(pad, "v", args[0], "v")
            elif kind == "filter":
                lines += self.call(pad, "r", args[0], "v")
                if posts:  # a post callback upstream must still run: nest instead
                    lines.append(f"{pad}if r:")
                    level += 1
                else:
                    lines += [f"{pad}if not r:", f"{pad}    {drop}"]
            elif kind == "reduce":
                lines += [
                    f"{pad}a = _state[{k}]",
                    f"{pad}if a is _UNSEEDED:",
                    f"{pad}    a = v",
                    f"{pad}else:",
                    *self.call(pad + "    ", "a", args[0], "a, v"),
                    f"{pad}_state[{k}] = a",
                    f"{pad}v = a",
                ]
            elif kind in ("pre_callback", "turnstile"):
                callbacks = args if kind == "pre_callback" else (turnstile_callback(*args),)
                for callback in callbacks:
                    lines += self.call(pad, None, callback, "v")
            elif kind == "post_callback":
                lines.append(f"{pad}p{k} = v")
                posts.append((level, k, args))
            else:
                lines += self.general(k, pad)
                break
        else:
            pad = "    " * level
            lines += [f"{pad}if not await _S.sink.asend(v):", f"{pad}    _S._mark_sink_done()"]
        for post_level, k, callbacks in reversed(posts):
            for callback in callbacks:
                lines += self.call("    " * post_level, None, callback, f"p{k}")
        return lines

    def general(self, k: int, pad: str) -> list[str]:
        """Lines for a cardinality-changing operation ``ops[k]``."""
        kind, args, _ = self.ops[k]
        rest = self.continuation(k + 1)
        if kind == "window":
            return [
                f"{pad}b = _state[{k}]",
                f"{pad}b.append(v)",
                f"{pad}if len(b) >= {int(args[0])}:",
                f"{pad}    _state[{k}] = []",
                f"{pad}    await {rest}(b)",
            ]
        if kind == "buffer":
            return [
                f"{pad}b = _state[{k}]",
                f"{pad}b.append(v)",
                *self.call(pad, "r", args[0], "b"),
                f"{pad}if r:",
                f"{pad}    _state[{k}] = []",
                f"{pad}    await {rest}(b)",
            ]
        lines = self.call(pad, "v", args[0], "v") if kind in ("flat_map", "buffer_reduce") else []
        if kind == "buffer_reduce":
            return [
                *lines,
                f"{pad}if v is not None:",
                f"{pad}    await _feed(_check_outputs(v), {rest})",
            ]
        return [
            *lines,
            f"{pad}if _flattenable(v):",
            f"{pad}    await _feed(v, {rest})",
            f"{pad}else:",
            f"{pad}    await {rest}(v)",
        ]
