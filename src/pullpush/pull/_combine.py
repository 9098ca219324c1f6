"""Many-to-one pull combiners. The concurrency lives in :class:`AsyncIteratorCombiner`;
each class here only shapes its output.

``eager=True`` (construction only) wraps every source in :class:`PullEagerObj` and
starts all of them reading ahead when a cycle starts, so they prefetch concurrently.

The racing combiners (zip, race, race-robin, race-cutoff and their labeled variants)
pull their sources concurrently, each at most ``read_ahead`` values ahead of the
consumer (default ``DEFAULT_READ_AHEAD``, 64; ``0`` pulls a source again only once its
value was taken, as FireFoundry does). Concatenation and round-robin pull strictly on demand.
"""

from __future__ import annotations

import contextlib
import sys
import types
from collections.abc import AsyncGenerator, AsyncIterable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Generic, NamedTuple, TypeVar

from .._exceptions import RaceCutoffError
from .._obj import (
    PullObjLabeledManyTo1Link,
    PullObjManyTo1Link,
    aclose_quietly,
    check_pull_source,
    pull_iter,
)
from .._util import check_int
from ._combiner import DEFAULT_READ_AHEAD, AsyncIteratorCombiner
from ._flow import PullEagerObj

__all__ = [
    "AttributedResult",
    "LabeledValue",
    "PullConcatObj",
    "PullLabeledRaceObj",
    "PullLabeledRaceRobinObj",
    "PullLabeledRoundRobinObj",
    "PullLabeledZipObj",
    "PullRaceCutoffObj",
    "PullRaceObj",
    "PullRaceRobinObj",
    "PullRaceValuesObj",
    "PullRoundRobinObj",
    "PullZipObj",
]

T = TypeVar("T")
L = TypeVar("L")
R = TypeVar("R")


if TYPE_CHECKING or sys.version_info >= (3, 11):

    class AttributedResult(NamedTuple, Generic[T]):
        """A raced value and the source object it came from."""

        source: Any
        value: T

    class LabeledValue(NamedTuple, Generic[L, T]):
        """A value and the label of the source it came from."""

        key: L
        value: T

else:  # Python 3.10 cannot make a NamedTuple generic: subscripting gives an alias.

    class AttributedResult(NamedTuple):
        """A raced value and the source object it came from."""

        source: Any
        value: T

        __class_getitem__ = classmethod(types.GenericAlias)

    class LabeledValue(NamedTuple):
        """A value and the label of the source it came from."""

        key: L
        value: T

        __class_getitem__ = classmethod(types.GenericAlias)


def _eager(sources: Iterable[AsyncIterable[T]], eager: bool) -> list[AsyncIterable[T]]:
    return [PullEagerObj(s) for s in sources] if eager else list(sources)


def _prefetch(sources: Iterable[object]) -> None:
    for source in sources:
        if isinstance(source, PullEagerObj):
            source.prefetch()


class _Combining(PullObjManyTo1Link[Any, T]):
    def __init__(
        self,
        sources: Iterable[AsyncIterable[Any]],
        eager: bool,
        read_ahead: int = DEFAULT_READ_AHEAD,
    ) -> None:
        super().__init__(sources)
        self._eager = eager
        self.read_ahead = check_int("read_ahead", read_ahead, minimum=0)
        # The PullEagerObj wrappers made here, by id, each with the source it wraps:
        # a race attributes values to what the caller passed, not to a wrapper.
        self._wrapped: dict[int, tuple[AsyncIterable[Any], AsyncIterable[Any]]] = {}
        if eager:
            originals = self.sources
            self.sources = _eager(originals, True)
            self._wrapped = {id(w): (w, s) for w, s in zip(self.sources, originals, strict=True)}

    @property
    def eager(self) -> bool:
        """Whether every source reads ahead (construction only)."""
        return self._eager

    def _combiner(self) -> AsyncIteratorCombiner[Any]:
        _prefetch(self.sources)
        return AsyncIteratorCombiner(*self.sources, read_ahead=self.read_ahead)

    def _attributions(self) -> list[AsyncIterable[Any]]:
        """The sources as the caller knows them (eager wrappers made here unwrapped)."""
        wrapped = self._wrapped
        attributions = []
        for source in self.sources:
            pair = wrapped.get(id(source))
            attributions.append(pair[1] if pair is not None and pair[0] is source else source)
        return attributions


class PullConcatObj(_Combining[T]):
    """Yield every item of each source in turn; a source is not pulled before the
    previous one is exhausted (with ``eager``, all of them read ahead meanwhile)."""

    def __init__(self, sources: Iterable[AsyncIterable[T]], *, eager: bool = False) -> None:
        super().__init__(sources, eager)

    async def pull_impl(self) -> AsyncGenerator[T, Any]:
        _prefetch(self.sources)
        for source in list(self.sources):
            async for item in pull_iter(source):
                yield item


class PullZipObj(_Combining[tuple[Any, ...]]):
    """Yield a tuple with one item from each source per round (pulled concurrently).

    Continues while *any* source is alive: an exhausted source drops out and later
    tuples are shorter (not "stop at the shortest").
    """

    def __init__(
        self,
        sources: Iterable[AsyncIterable[Any]],
        *,
        eager: bool = False,
        read_ahead: int = DEFAULT_READ_AHEAD,
    ) -> None:
        super().__init__(sources, eager, read_ahead)

    async def pull_impl(self) -> AsyncGenerator[tuple[Any, ...], Any]:
        async with self._combiner() as combiner:
            while combiner.size:
                values = await combiner.all()
                if values:
                    yield tuple(values)


class PullRoundRobinObj(_Combining[T]):
    """Yield one item per source in rotation, dropping exhausted sources.

    ``yield_return``: also yield a source's final value (the argument of the
    ``StopAsyncIteration`` that ended it) when it ends.
    """

    def __init__(
        self,
        sources: Iterable[AsyncIterable[T]],
        *,
        yield_return: bool = False,
        eager: bool = False,
    ) -> None:
        super().__init__(sources, eager)
        self.yield_return = yield_return

    async def pull_impl(self) -> AsyncGenerator[T, Any]:
        combiner = self._combiner()
        async with contextlib.aclosing(combiner.round_robin_generator(self.yield_return)) as items:
            async for item in items:
                yield item


class _Racing(_Combining[R]):
    def __init__(
        self,
        sources: Iterable[AsyncIterable[Any]],
        *,
        yield_return: bool = False,
        eager: bool = False,
        read_ahead: int = DEFAULT_READ_AHEAD,
    ) -> None:
        super().__init__(sources, eager, read_ahead)
        self.yield_return = yield_return


class PullRaceObj(_Racing[AttributedResult[T]]):
    """Yield items in arrival order, each as ``AttributedResult(source, value)``.

    Every source is pulled concurrently; ordering is nondeterministic.
    ``yield_return`` as for :class:`PullRoundRobinObj`; ``read_ahead`` as in the
    module docs.
    """

    _closes_itself = True

    def pull_impl(self) -> AsyncGenerator[AttributedResult[T], Any]:
        # The combiner's generator is this object's cycle: no extra layer per item.
        return self._combiner().race_shaped(
            self._attributions(), AttributedResult, self.yield_return, self
        )


class PullRaceValuesObj(_Racing[T]):
    """Yield items in arrival order, unwrapped: like :class:`PullRaceObj` without
    the :class:`AttributedResult` (decision C15; ``PullChain.race`` and
    ``PullChain.merge_race`` are built on it)."""

    _closes_itself = True

    def pull_impl(self) -> AsyncGenerator[T, Any]:
        # The combiner's generator is this object's cycle: no extra layer per item.
        return self._combiner().race_shaped(None, tuple, self.yield_return, self)


class PullRaceRobinObj(_Combining[T]):
    """Race with round fairness: in each round every live source delivers exactly
    one item, fastest first, before the next round starts."""

    def __init__(
        self,
        sources: Iterable[AsyncIterable[T]],
        *,
        eager: bool = False,
        read_ahead: int = DEFAULT_READ_AHEAD,
    ) -> None:
        super().__init__(sources, eager, read_ahead)

    async def pull_impl(self) -> AsyncGenerator[T, Any]:
        combiner = self._combiner()
        async with contextlib.aclosing(combiner.race_robin_indexed()) as pairs:
            async for pair in pairs:
                assert pair is not None
                yield pair[1]


class PullRaceCutoffObj(_Combining[T]):
    """Race-robin rounds, each cut short when ``cutoff_source`` yields first.

    Each round pulls the cutoff source once. If it yields before every source has
    delivered, the round ends (decision C14): with ``throw_on_cutoff`` a
    :class:`RaceCutoffError` is raised, otherwise the next round starts. Pulls in
    flight carry over to the next round, so no item is lost. When the sources are
    exhausted, the cutoff source is closed.
    """

    def __init__(
        self,
        sources: Iterable[AsyncIterable[T]],
        cutoff_source: AsyncIterable[Any],
        throw_on_cutoff: bool = False,
        *,
        read_ahead: int = DEFAULT_READ_AHEAD,
    ) -> None:
        super().__init__(sources, False, read_ahead)
        self.cutoff_source = check_pull_source("cutoff_source", cutoff_source)
        self.throw_on_cutoff = throw_on_cutoff

    def _upstreams(self) -> Iterable[object]:
        return (*self.sources, self.cutoff_source)

    async def pull_impl(self) -> AsyncGenerator[T, Any]:
        combiner = self._combiner()
        async with contextlib.aclosing(combiner.race_robin_indexed(self.cutoff_source)) as pairs:
            async for pair in pairs:
                if pair is not None:
                    yield pair[1]
                elif self.throw_on_cutoff:
                    raise RaceCutoffError("PullRaceCutoffObj: the cutoff fired before the round")
        # The sources are exhausted; the cutoff (typically an endless timer) is done too.
        await aclose_quietly(self.cutoff_source)


class _LabeledCombining(PullObjLabeledManyTo1Link[L, Any, T]):
    def __init__(
        self,
        labeled_sources: Mapping[L, AsyncIterable[Any]],
        *,
        read_ahead: int = DEFAULT_READ_AHEAD,
    ) -> None:
        super().__init__(labeled_sources)
        self.read_ahead = check_int("read_ahead", read_ahead, minimum=0)

    def _combiner(self) -> tuple[list[L], AsyncIteratorCombiner[Any]]:
        labels = list(self.labeled_sources)
        sources = self.labeled_sources.values()
        return labels, AsyncIteratorCombiner(*sources, read_ahead=self.read_ahead)


class PullLabeledZipObj(_LabeledCombining[L, dict[L, Any]]):
    """Yield ``{label: item}`` with one item from each live source per round."""

    async def pull_impl(self) -> AsyncGenerator[dict[L, Any], Any]:
        labels, combiner = self._combiner()
        async with combiner:
            while combiner.size:
                pairs = await combiner.all_indexed()
                if pairs:
                    yield {labels[index]: value for index, value in pairs}


class PullLabeledRoundRobinObj(_LabeledCombining[L, LabeledValue[L, Any]]):
    """Yield ``LabeledValue(label, item)`` from each source in rotation."""

    async def pull_impl(self) -> AsyncGenerator[LabeledValue[L, Any], Any]:
        labels, combiner = self._combiner()
        async with contextlib.aclosing(combiner.round_robin_indexed()) as pairs:
            async for index, value in pairs:
                yield LabeledValue(labels[index], value)


class PullLabeledRaceObj(_LabeledCombining[L, LabeledValue[L, Any]]):
    """Yield ``LabeledValue(label, item)`` in arrival order."""

    _closes_itself = True

    def pull_impl(self) -> AsyncGenerator[LabeledValue[L, Any], Any]:
        labels, combiner = self._combiner()
        return combiner.race_shaped(labels, LabeledValue, False, self)


class PullLabeledRaceRobinObj(_LabeledCombining[L, LabeledValue[L, Any]]):
    """Race-robin rounds, yielding ``LabeledValue(label, item)``."""

    async def pull_impl(self) -> AsyncGenerator[LabeledValue[L, Any], Any]:
        labels, combiner = self._combiner()
        async with contextlib.aclosing(combiner.race_robin_indexed()) as pairs:
            async for pair in pairs:
                assert pair is not None
                yield LabeledValue(labels[pair[0]], pair[1])
