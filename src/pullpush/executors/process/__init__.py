"""The process executor: task runners in worker processes, each with its own uvloop.

The modules, one role each: ``_executor`` (``ProcessExecutor``: its API,
lifecycle and submit), ``_endings`` (a task's end and cancellation: forget, fail,
stop), ``_calls`` (call encoding, the per-worker function cache), ``_dispatch``
(least-loaded dispatch, adaptive prefetch, flushes), ``_results`` (result messages
to ``TaskEvents`` calls), ``_handle`` (the task handle), ``_spawn`` (worker processes:
start, watch, reap, escalate, respawn), ``_forks`` (fds, forks, starter threads),
``_protocol`` (messages, frames, pipe I/O), ``_pickling`` (values to bytes, out of
band when large), ``_shm`` (the payload arena: large buffers of calls in shared
memory), ``_sizes`` (what a call weighs); in the worker: ``_worker`` (its
loop: calls in, tasks run), ``_output`` (its results out: queued messages and
flushes), ``_child`` (dying with the parent, memory), ``_report`` (errors as text),
``_mailbox`` (a waitable task's messages, and its wait in ``receive()``).

Data flow (the module holding each step in brackets)::

    caller's event loop (parent)                             worker process i
    ----------------------------                             ----------------
    runner.submit(task) --> ProcessExecutor.submit [_executor]
        pickle the call (function cached per worker) [_calls]
        pending queue --> _dispatch: least-loaded worker
        with room (tasks_per_worker + prefetch) [_dispatch]
        worker.writer: queue CALL                           call pipe
        flush once per loop turn  ==== frames =========>   on_readable: decode
                        [_protocol, _pickling]               run (sync) or create
                                                            a task (async/streams)
                                                            queue FINAL, and runs of
                                                            INTERMEDIATE values [_worker;
                                                            _output, _child, _report]
    on_readable (add_reader)   <=== frames ============   flush: once per loop turn,
        decode, unpickle blobs                 result pipe  and each half window
        events.task_intermediates (a run) / final / error [_results]
    ack(n) -> CREDIT (batched) [_handle] ==============>    credits: a stream pauses
                                                            when its window is spent
    pidfd or sentinel readable -> _on_exit: drain the result pipe,
        fail the task(s) that were running (shared array),
        re-queue the tasks sent but not started, respawn [_spawn; fds, forks: _forks]

Steps of a task:

1. ``submit`` pickles the call. A ``functools.partial`` (or plain function) of an
   importable function (one pickled by reference), or of a function submitted before,
   travels as a function id plus its arguments; the function itself is cloudpickled
   once and sent to a worker once (``DEFINE``), the first time that worker needs it.
   Small scalar arguments travel raw. Anything else -- a closure, lambda or bound
   method seen for the first time -- is cloudpickled whole with its call, and the
   worker frees it with the call. Large values (arguments, closure variables,
   results) travel out of band: see ``_pickling.py``. When the call is sent, a
   call's out-of-band buffers are copied into the executor's payload arena (shared
   memory mapped by every worker, ``_shm.py``) and only their place travels in the
   pipe; without room there, a call carrying one travels in a frame of its own.
2. The task waits in the parent's pending queue until a ready worker (its start-up
   and initializer done) has room, then its CALL is queued on that worker's call
   pipe; all calls queued during one turn of the event loop go out as one frame.
3. The worker runs it and streams envelopes back (see ``_worker.py``).
4. The parent turns each message into a ``TaskEvents`` call, on the loop: no thread
   and no asyncio task per task; a run of values is one call.

Failures: a worker that dies fails only the task(s) it was running, with
:class:`WorkerCrashedError`; tasks it held but had not started go to another worker,
and so does a plain task that had run there but whose result was lost with it, up to
``max_crash_retries`` times. A message that cannot be decoded, or whose report raises,
fails its own task only: the other messages of the read are handled as usual.
A task cancelled in its worker ends within one read of the call pipe if it is
asynchronous; one stuck in CPU-bound code gets SIGTERM after ``cancel_grace`` and
SIGKILL after ``kill_grace`` more, and its worker is replaced.
"""

from ._executor import ProcessExecutor as ProcessExecutor
from ._executor import ProcessExecutorStatistics as ProcessExecutorStatistics

__all__ = ("ProcessExecutor", "ProcessExecutorStatistics")
