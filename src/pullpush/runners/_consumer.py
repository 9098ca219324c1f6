"""The consumer side of a pool runner: :meth:`PoolRunner.run_tasks` and
:meth:`PoolRunner.run_batches`, which hand the envelopes the tasks reported to the
caller, grant the tasks flow-control credits as their INTERMEDIATE envelopes are
read, and on exit (``break``, ``aclose()``, cancellation, ``stop_on_error``) shut
the run down (:meth:`PoolRunner._shutdown`)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from typing import TYPE_CHECKING, Any, Generic

from .._util import check_int
from ._envelope import (
    EnvelopeBatch,
    EnvelopeType,
    IntermediateRun,
    K,
    TaskProgressEnvelope,
    V,
    make_envelopes,
    take_batch,
)

if TYPE_CHECKING:
    from collections import deque

    from .._sync import ParkingLot
    from ..executors import Executor
    from ._task import Running

_INTERMEDIATE = EnvelopeType.INTERMEDIATE
_ERROR = EnvelopeType.ERROR


class _ConsumerMixin(Generic[V, K]):
    """The runner's envelope stream, as the caller reads it."""

    if TYPE_CHECKING:  # what this room uses of the runner
        max_unread: int
        _running: dict[int, Running]
        _buffer: deque[TaskProgressEnvelope | IntermediateRun]
        _unread: int
        _room: ParkingLot
        _consumer: asyncio.Future[None] | None
        _envelopes: int
        _retried: set[int]

        def _claim(self) -> tuple[Executor, bool]: ...
        async def _open(self, executor: Executor) -> asyncio.Task[None]: ...
        async def _shutdown(
            self, dispatcher: asyncio.Task[None] | None, executor: Executor, owned: bool
        ) -> None: ...

    async def run_tasks(
        self, stop_on_error: bool = False
    ) -> AsyncGenerator[TaskProgressEnvelope[V, K], None]:
        """Run every task of the source; yield their envelopes in completion order.

        Args:
            stop_on_error: ``False`` (default) yields ERROR envelopes and goes on;
                ``True`` cancels the tasks in flight and raises the first task error.

        An error raised by the source itself ends the run after the tasks already
        started have delivered their envelopes.

        Leaving early cancels every task in flight and returns all capacity before the
        generator finishes closing: ``await stream.aclose()``, cancellation, and
        ``async with contextlib.aclosing(runner.run_tasks()) as stream`` wait for that.
        A bare ``break`` leaves the cleanup to Python's async-generator finalizer,
        which runs it on the event loop right after the loop drops the generator.
        """
        executor, owned = self._claim()
        dispatcher: asyncio.Task[None] | None = None
        try:
            dispatcher = await self._open(executor)
            buffer, room, running = self._buffer, self._room, self._running
            max_unread = self.max_unread
            while True:
                if buffer:
                    entry = buffer.popleft()
                    if entry.__class__ is IntermediateRun:
                        # A run of one task's INTERMEDIATE values: yielded one by one,
                        # its credits returned once the consumer has taken them all.
                        run: Any = entry
                        count = len(run.values)
                        unread = self._unread
                        self._unread -= count
                        if unread >= max_unread > self._unread:
                            room.unpark()  # the dispatcher may be parked (it parks at max)
                        self._envelopes += count
                        for envelope in make_envelopes(
                            _INTERMEDIATE, run.task_id, run.key, run.values
                        ):
                            yield envelope
                        record = running.get(run.task_id)
                        if record is not None and record.handle is not None:
                            record.handle.ack(count)
                        continue
                    envelope = entry  # type: ignore[assignment]
                    self._unread -= 1
                    if self._unread == max_unread - 1:
                        room.unpark()
                    kind = envelope.type
                    if kind is _INTERMEDIATE:
                        record = running.get(envelope.task_id)
                        if record is not None and record.handle is not None:
                            record.handle.ack(1)
                    elif kind is _ERROR:
                        retried = envelope.task_id in self._retried
                        self._retried.discard(envelope.task_id)
                        if stop_on_error and not retried:
                            assert envelope.error is not None
                            raise envelope.error
                    self._envelopes += 1
                    yield envelope
                elif dispatcher.done() and not running:
                    dispatcher.result()  # the source's own error, if any
                    return
                else:
                    await self._wait_for_envelopes()
        finally:
            await self._shutdown(dispatcher, executor, owned)

    async def run_batches(
        self, stop_on_error: bool = False, *, max_batch: int = 4096
    ) -> AsyncGenerator[EnvelopeBatch[V, K], None]:
        """Run every task of the source, as :meth:`run_tasks` does, and hand over its
        envelopes in batches: each :class:`EnvelopeBatch` holds every envelope waiting
        when the consumer asks for the next one (at least one, at most ``max_batch``),
        in the order ``run_tasks`` would have yielded them.

        A batch is cheaper than its envelopes one by one: one ``yield`` for all of
        them, and no envelope object built for values that arrived together unless
        the consumer reads the batch as a sequence. Reading ``batch.groups()`` gets
        each task's consecutive INTERMEDIATE values as one
        :class:`IntermediateRun` with a ``values`` list::

            async for batch in runner.run_batches():
                for group in batch.groups():
                    if group.type is EnvelopeType.INTERMEDIATE:
                        progress[group.task_id] += len(group.values)
                    elif group.type is EnvelopeType.FINAL:
                        results[group.task_id] = group.value

        Flow control is that of ``run_tasks`` with a batch for an envelope: the
        envelopes of a batch stop counting towards ``max_unread`` when it is handed
        over, and the tasks get their flow-control credits for its INTERMEDIATE
        envelopes when the consumer asks for the next batch (or the run ends), so a
        slow consumer still holds its producers back. ``stop_on_error``, the end of
        the run and leaving early (``aclose()``, cancellation, ``break``) are as for
        ``run_tasks``; with ``stop_on_error``, the envelopes before the error come as a
        batch of their own, then the error is raised.
        """
        max_batch = check_int("max_batch", max_batch, minimum=1)
        executor, owned = self._claim()
        dispatcher: asyncio.Task[None] | None = None
        try:
            dispatcher = await self._open(executor)
            buffer, room, running = self._buffer, self._room, self._running
            max_unread = self.max_unread
            while True:
                if buffer:
                    groups, count, error = take_batch(
                        buffer, max_batch, self._retried, stop_on_error
                    )
                    if count:
                        unread = self._unread
                        self._unread -= count
                        if unread >= max_unread > self._unread:
                            room.unpark()  # the dispatcher may be parked (it parks at max)
                        self._envelopes += count
                        yield EnvelopeBatch(groups, count)
                        for group in groups:
                            if group.__class__ is IntermediateRun:
                                record = running.get(group.task_id)
                                if record is not None and record.handle is not None:
                                    record.handle.ack(len(group.values))
                    if error is not None:
                        self._unread -= 1
                        if self._unread == max_unread - 1:
                            room.unpark()
                        raise error
                elif dispatcher.done() and not running:
                    dispatcher.result()  # the source's own error, if any
                    return
                else:
                    await self._wait_for_envelopes()
        finally:
            await self._shutdown(dispatcher, executor, owned)

    async def _wait_for_envelopes(self) -> None:
        """Park the consumer until the dispatcher or a task's report wakes it."""
        self._consumer = asyncio.get_running_loop().create_future()
        try:
            await self._consumer
        finally:
            # Woken, cancelled or closed: nothing may resolve this future any more.
            self._consumer = None
