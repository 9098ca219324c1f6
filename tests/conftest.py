"""The project's tests use pullpush's own pytest plugin (``pullpush.testing.plugin``,
which an installed pullpush registers through its ``pytest11`` entry point; named here
too, so a checkout on ``PYTHONPATH`` works the same).

With ``pullpush_async = true`` (pyproject.toml) every ``async def`` test runs on both
event loops, asyncio's default and uvloop, each on a fresh loop, and fails if it leaves
an asyncio task pending. Sync tests that need a loop (hypothesis properties) take the
``loop_kind`` fixture and call :func:`pullpush.testing.run`. A test that parametrizes
``loop_kind`` itself (``@pytest.mark.parametrize("loop_kind", ["uvloop"])``) runs on
the loops it names only: heavy stress tests pick one loop each, and the suite as a
whole covers both.
"""

pytest_plugins = ["pullpush.testing.plugin", "pytester"]
