"""Pull stages that tee each item into push sinks on its way downstream.

A *tee sink* is a push object (``asend``/``aclose``/``athrow``) or a plain sync or
async callable (decision C20): no generator, no priming.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterable, Callable, Iterable, Mapping
from typing import Any, TypeVar

from .._exceptions import SinkLabelError
from .._obj import PullObj1To1Link, pull_iter
from .._util import PLAIN_TYPES, is_awaitable, make_selector

__all__ = ["PullPushBridgeObj", "PullPushDistributeObj", "TeeSink"]

T = TypeVar("T")

TeeSink = Any
"""A push object, or a sync/async callable taking each item."""


def _is_push(sink: object) -> bool:
    return all(callable(getattr(sink, m, None)) for m in ("asend", "aclose", "athrow"))


def _check_tee_sink(name: str, sink: object) -> Any:
    if not (_is_push(sink) or callable(sink)):
        raise TypeError(f"{name} must be a push object or a callable, got {type(sink).__name__}")
    return sink


async def _send(sink: Any, item: Any) -> bool:
    """Deliver ``item`` to a tee sink; return whether it still accepts items."""
    asend = getattr(sink, "asend", None)
    if asend is not None:  # validated: a push object
        return bool(await asend(item))
    result = sink(item)
    if type(result) not in PLAIN_TYPES and is_awaitable(result):
        await result
    return True


async def _end_sinks(sinks: Iterable[Any], error: BaseException | None) -> None:
    # Close (or fail) the push-object sinks, reaching all even if one raises.
    first: BaseException | None = None
    for sink in sinks:
        if not _is_push(sink):
            continue
        try:
            if error is None:
                await sink.aclose()
            else:
                await sink.athrow(error)
        except Exception as raised:
            if first is None:
                first = raised
    if first is not None:
        raise first


class PullPushBridgeObj(PullObj1To1Link[T, T]):
    """Push each item into every sink, then yield it downstream (a T-junction).

    Sinks are served in order, each awaited before the item is yielded, so the
    consumer's pace is the sinks' pace (backpressure). A push sink that reports done
    is dropped from ``sinks``.

    When the stream ends -- the source is exhausted, or this object is closed
    (``aclose``, leaving an ``async for`` early, cancellation) -- every push-object
    sink is closed; when an error passes through, they get ``athrow(error)``.

    Args:
        source: the upstream pull object or async iterable.
        *sinks: push objects or sync/async callables (mutable list: ``sinks``).
    """

    def __init__(self, source: AsyncIterable[T], *sinks: TeeSink) -> None:
        super().__init__(source)
        self.sinks: list[TeeSink] = [
            _check_tee_sink(f"sinks[{i}]", sink) for i, sink in enumerate(sinks)
        ]

    async def pull_impl(self) -> AsyncGenerator[T, Any]:
        try:
            async for item in pull_iter(self.source):
                for sink in self.sinks:
                    if not await _send(sink, item):
                        self.sinks = [s for s in self.sinks if s is not sink]
                yield item
        except Exception as error:
            await _end_sinks(self.sinks, error)
            raise
        except BaseException:  # GeneratorExit (closed early), CancelledError
            await _end_sinks(self.sinks, None)
            raise
        await _end_sinks(self.sinks, None)


class PullPushDistributeObj(PullObj1To1Link[T, T]):
    """Send each item to the sink named by ``obj2selector(item)``, then yield it.

    The item is yielded downstream whether or not a sink took it. A name with no
    sink in ``sink_map`` is skipped, or raises :class:`~pullpush.SinkLabelError` (a
    ``KeyError``) when ``throw_on_nonexistence`` is set. Ending and failing reach
    the push-object sinks as in :class:`PullPushBridgeObj`.

    Args:
        source: the upstream pull object or async iterable.
        sink_map: name -> push object or sync/async callable (mutable).
        obj2selector: ``item -> name``, sync or async, or a key/attribute name
            (SPEC 6) (mutable).
        throw_on_nonexistence: raise instead of skipping an unknown name.
    """

    def __init__(
        self,
        source: AsyncIterable[T],
        sink_map: Mapping[Any, TeeSink],
        obj2selector: str | Callable[[T], Any],
        *,
        throw_on_nonexistence: bool = False,
    ) -> None:
        super().__init__(source)
        if not isinstance(sink_map, Mapping):
            raise TypeError(f"sink_map must be a mapping of name to sink, got {sink_map!r}")
        self.sink_map: dict[Any, TeeSink] = {
            name: _check_tee_sink(f"sink_map[{name!r}]", sink) for name, sink in sink_map.items()
        }
        self.obj2selector: Callable[[T], Any] = make_selector(obj2selector, "obj2selector")
        self.throw_on_nonexistence = throw_on_nonexistence

    async def pull_impl(self) -> AsyncGenerator[T, Any]:
        try:
            async for item in pull_iter(self.source):
                name = self.obj2selector(item)
                if type(name) not in PLAIN_TYPES and is_awaitable(name):
                    name = await name
                sink = self.sink_map.get(name)
                if sink is not None:
                    await _send(sink, item)
                elif self.throw_on_nonexistence:
                    raise SinkLabelError(name)
                yield item
        except Exception as error:
            await _end_sinks(self.sink_map.values(), error)
            raise
        except BaseException:
            await _end_sinks(self.sink_map.values(), None)
            raise
        await _end_sinks(self.sink_map.values(), None)
