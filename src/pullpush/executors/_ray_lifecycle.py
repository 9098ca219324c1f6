"""The local Ray that pullpush starts (or the cluster connection it opens), shared by
every :class:`~pullpush.RayExecutor` of the process, reference-counted, and kept up
for a while after its last executor closed when asked to (``keep_alive``).

Module state, guarded by ``_LOCK`` (a ``threading.Lock``, held only for bookkeeping,
never across an await): ``_CURRENT`` is the Ray pullpush started and not yet began
stopping, with its user count; ``_STOPPING`` the one being shut down, which a new
start waits for. Futures are ``concurrent.futures``, so executors on any loop or
thread may wait for them.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import threading
import time
from collections.abc import Mapping
from typing import Any

__all__ = ["acquire_ray", "release_ray", "stop_idle_ray"]


class SharedRay:
    """The Ray pullpush started, and the thread that hosts it.

    Ray starts its processes with ``PR_SET_PDEATHSIG``, which Linux ties to the
    *thread* that started them: if that thread ended, the Ray processes would be
    killed. So ``ray.init`` runs on a thread of its own (no caller's loop is blocked
    for the seconds it takes) that then waits until the last user is gone (and its
    ``keep_alive`` passed without a new user), runs ``ray.shutdown`` and ends.
    """

    def __init__(self, ray: Any, init_kwargs: dict[str, Any]) -> None:
        self.ray = ray
        self.init_kwargs = init_kwargs
        self.users = 1
        # While users == 0: when the host stops Ray (None: not before stop_idle_ray
        # or the interpreter's exit). Guarded by _LOCK.
        self.idle_until: float | None = None
        self.stop_now = False  # guarded by _LOCK
        self.started: concurrent.futures.Future[None] = concurrent.futures.Future()
        self.stopped: concurrent.futures.Future[None] = concurrent.futures.Future()
        self.wake = threading.Event()
        self.thread = threading.Thread(target=self._main, name="pullpush-ray", daemon=True)
        self.thread.start()

    def _main(self) -> None:
        global _CURRENT
        try:
            self.ray.init(**self.init_kwargs)
        except BaseException as error:
            with _LOCK:
                if _CURRENT is self:
                    _CURRENT = None
            self.started.set_exception(error)
            self.stopped.set_result(None)
            return
        self.started.set_result(None)
        self._wait_until_unused()
        try:
            self.ray.shutdown()
        except BaseException as error:
            self.stopped.set_exception(error)
        else:
            self.stopped.set_result(None)

    def _wait_until_unused(self) -> None:
        """Block until Ray is to stop; then it is ``_STOPPING``, no longer ``_CURRENT``."""
        global _CURRENT, _STOPPING
        timeout: float | None = None
        while True:
            self.wake.wait(timeout)
            with _LOCK:
                self.wake.clear()
                now = time.monotonic()
                if self.stop_now or (
                    self.users == 0 and self.idle_until is not None and now >= self.idle_until
                ):
                    if _CURRENT is self:
                        _CURRENT = None
                    _STOPPING = self
                    return
                idle = self.users == 0 and self.idle_until is not None
                timeout = self.idle_until - now if idle else None  # type: ignore[operator]

    def stop(self) -> None:
        """Caller holds ``_LOCK``: make the host shut Ray down now."""
        self.stop_now = True
        self.wake.set()


_LOCK = threading.Lock()
_CURRENT: SharedRay | None = None
_STOPPING: SharedRay | None = None


def _differences(have: Mapping[str, Any], want: Mapping[str, Any]) -> list[str]:
    return [key for key in sorted(want) if key not in have or have[key] != want[key]]


async def acquire_ray(ray: Any, init_kwargs: dict[str, Any]) -> SharedRay | None:
    """Make sure Ray is up for one more executor; return the :class:`SharedRay` it
    now holds a share of, or ``None`` when this process connected to Ray itself.

    A Ray kept up after its last executor closed (``keep_alive``) is taken again,
    or, if ``init_kwargs`` do not apply to it, stopped first.

    Raises ``ValueError`` when ``init_kwargs`` cannot apply to the Ray that is up.
    """
    global _CURRENT, _STOPPING
    while True:
        with _LOCK:
            stopping = _STOPPING
            shared = _CURRENT
            if (
                shared is not None
                and shared.users == 0
                and _differences(shared.init_kwargs, init_kwargs)
            ):
                # Kept up idle, with other options: it makes way for this start.
                shared.stop()
                _CURRENT = None
                stopping = _STOPPING = shared
            elif stopping is None or shared is not None:
                if shared is not None:
                    differ = _differences(shared.init_kwargs, init_kwargs)
                    if differ:
                        raise ValueError(
                            f"Ray is already running for another RayExecutor of this "
                            f"process, started with {shared.init_kwargs!r}; "
                            f"{', '.join(differ)}={{...}} cannot apply to it: give every "
                            "RayExecutor of a process the same Ray options, or none"
                        )
                    shared.users += 1
                    shared.idle_until = None
                elif ray.is_initialized():
                    _check_foreign_ray(ray, init_kwargs)
                    return None
                else:
                    shared = _CURRENT = SharedRay(ray, init_kwargs)
                    _register_atexit()
                break
        # A Ray pullpush started is shutting down: start afresh once it is gone.
        await asyncio.wrap_future(stopping.stopped)
        with _LOCK:
            _clear_stopping(stopping)
    try:
        await asyncio.shield(asyncio.wrap_future(shared.started))
    except BaseException:
        await release_ray(shared)
        raise
    return shared


def _clear_stopping(stopping: SharedRay) -> None:
    global _STOPPING
    if _STOPPING is stopping:
        _STOPPING = None


def _check_foreign_ray(ray: Any, init_kwargs: Mapping[str, Any]) -> None:
    """This process connected to Ray itself: only options that match it may be given."""
    context = ray.get_runtime_context()
    problems = []
    address = init_kwargs.get("address")
    if address is not None and address != "auto" and address != context.gcs_address:
        problems.append(f"address={address!r} (connected to {context.gcs_address!r})")
    runtime_env = init_kwargs.get("runtime_env")
    if runtime_env is not None and dict(runtime_env) != dict(context.runtime_env or {}):
        problems.append(f"runtime_env={runtime_env!r} (the job has {context.runtime_env!r})")
    others = sorted(set(init_kwargs) - {"address", "runtime_env", "num_cpus"})
    if others:
        problems.append(f"{', '.join(others)} (options of ray.init)")
    if problems:
        raise ValueError(
            "this process is already connected to Ray (ray.init ran outside pullpush), "
            f"so these RayExecutor options cannot apply: {'; '.join(problems)}. Pass none "
            "of them to use that Ray as it is, or ray.shutdown() first"
        )


async def release_ray(shared: SharedRay, keep_alive: float | None = 0.0) -> None:
    """One executor is done with ``shared``. The last one stops it and waits until
    Ray is down and its host thread ended -- unless ``keep_alive`` (seconds; ``None``:
    until :func:`stop_idle_ray` or the interpreter's exit) is not 0: then Ray stays up
    that long for a next executor, and this returns at once."""
    with _LOCK:
        shared.users -= 1
        if shared.users > 0:
            return
        if keep_alive != 0 and not shared.stop_now and shared.started.done():
            failed = shared.started.exception() is not None
            if not failed:
                shared.idle_until = None if keep_alive is None else time.monotonic() + keep_alive
                if keep_alive is not None:
                    shared.wake.set()
                return
        shared.stop()
    await _wait_stopped(shared)


async def _wait_stopped(shared: SharedRay) -> None:
    try:
        await asyncio.shield(asyncio.wrap_future(shared.stopped))
    finally:
        while shared.thread.is_alive():  # noqa: ASYNC110 - a thread has no awaitable end
            await asyncio.sleep(0.001)
        shared.thread.join()
        with _LOCK:
            _clear_stopping(shared)


def stop_idle_ray(timeout: float | None = 60.0) -> bool:
    """Stop the local Ray pullpush started if no executor uses it (it was kept up by
    ``keep_alive``), blocking until it is down (a second or so); return whether one
    was stopped. A Ray in use is left alone."""
    with _LOCK:
        shared = _CURRENT
        if shared is None or shared.users > 0:
            return False
        shared.stop()
    shared.thread.join(timeout)
    with _LOCK:
        _clear_stopping(shared)
    return not shared.thread.is_alive()


_ATEXIT = [False]


def _register_atexit() -> None:
    """Caller holds ``_LOCK``: at the interpreter's exit, stop a Ray kept up idle
    (registered after ``import ray``, so it runs before Ray's own exit hook)."""
    if not _ATEXIT[0]:
        _ATEXIT[0] = True
        atexit.register(stop_idle_ray)
