"""The private loop of :func:`pullpush.map_sync`: the map runs on an event loop of its
own in a background thread, which hands the pieces of results over to the caller's
thread, at most ``_AHEAD`` ahead of it."""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import Generator
from typing import Any

from ._map_stream import _MapRun

_AHEAD = 8  # pieces the background loop may have ready before the caller takes them
_PIECE, _RAISED, _END = 0, 1, 2


def _in_thread(run: _MapRun) -> Generator[Any, None, None]:
    """The results of ``run``, which a :class:`_Pump` thread runs (from the first
    ``next()``); closing the generator stops the map and waits for the thread."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        raise RuntimeError("pullpush.map_sync would block the running event loop; use pullpush.map")
    handoff: queue.SimpleQueue[tuple[int, Any]] = queue.SimpleQueue()
    state = _Pump(run, handoff)
    thread = threading.Thread(target=state.main, name="pullpush-map", daemon=True)
    thread.start()
    try:
        while True:
            kind, payload = handoff.get()
            if kind == _PIECE:
                state.took()
                yield from payload
            elif kind == _RAISED:
                raise payload
            else:
                return
    finally:
        state.stop()
        thread.join()


class _Pump:
    """The background thread of :func:`~pullpush.map_sync`: runs the map on its own loop and
    hands the pieces over, at most ``_AHEAD`` ahead of the caller."""

    def __init__(self, run: _MapRun, handoff: queue.SimpleQueue[tuple[int, Any]]) -> None:
        self.run = run
        self.handoff = handoff
        self.loop: asyncio.AbstractEventLoop | None = None
        self.main_task: asyncio.Task[None] | None = None
        self.ahead = 0
        self.room: asyncio.Future[None] | None = None
        self.lock = threading.Lock()
        self.stopped = False

    def main(self) -> None:
        try:
            self._main()
        except BaseException as error:  # the caller waits for a word from this thread
            self.handoff.put((_RAISED, error))

    def _main(self) -> None:
        import uvloop

        loop = uvloop.new_event_loop()
        try:
            with self.lock:
                if self.stopped:
                    return
                self.loop = loop
                self.main_task = loop.create_task(self.pump())
            loop.run_until_complete(asyncio.gather(self.main_task, return_exceptions=True))
        finally:
            try:
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.run_until_complete(loop.shutdown_default_executor())
            finally:
                loop.close()

    async def pump(self) -> None:
        pieces = self.run.pieces()
        try:
            async for piece in pieces:
                self.handoff.put((_PIECE, piece))
                self.ahead += 1
                while self.ahead >= _AHEAD:
                    self.room = asyncio.get_running_loop().create_future()
                    await self.room
        except asyncio.CancelledError:
            raise
        except BaseException as error:  # handed to the caller's thread
            self.handoff.put((_RAISED, error))
            return
        finally:
            await pieces.aclose()
        self.handoff.put((_END, None))

    def _took(self) -> None:
        self.ahead -= 1
        if self.room is not None and not self.room.done():
            self.room.set_result(None)

    def took(self) -> None:
        """The caller took a piece (called on its thread)."""
        with self.lock:
            if self.loop is not None and not self.stopped:
                with contextlib.suppress(RuntimeError):  # the loop already closed
                    self.loop.call_soon_threadsafe(self._took)

    def stop(self) -> None:
        """Cancel the map unless it ended (called on the caller's thread)."""
        with self.lock:
            self.stopped = True
            if self.loop is not None and self.main_task is not None:
                with contextlib.suppress(RuntimeError):  # the loop already closed
                    self.loop.call_soon_threadsafe(self.main_task.cancel)
