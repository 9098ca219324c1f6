"""The task pool: the runners' shared dispatcher and consumer (``_pool``), the
hierarchical and scheduled runners, :class:`ScheduledTask`, the envelopes they
stream, and :func:`~pullpush.map`, the parallel map built on them. A runner never
touches a pipe: it hands tasks to an executor and hears back through
:class:`~pullpush.executors.TaskEvents`.

The public names are re-exported by :mod:`pullpush`. This package imports nothing
itself: the executors import its envelope module, and the runners import the
executors.
"""
