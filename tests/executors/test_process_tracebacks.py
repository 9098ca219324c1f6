"""What comes back of a worker's exception: tracebacks that name the user's file and
line for functions pickled by value (``__main__``, notebook cells), and a
RemoteTaskError that keeps the type name, message and attributes of an exception the
parent cannot rebuild."""

from __future__ import annotations

import functools
import linecache
import pickle
import subprocess
import sys
import textwrap
import types
from pathlib import Path
from typing import Any

import cloudpickle
import pytest

from pullpush import (
    EnvelopeType,
    HierarchicalTaskPoolRunner,
    ProcessExecutor,
    RemoteTaskError,
    RemoteTraceback,
)
from pullpush.executors.process._report import attributes as _attributes
from pullpush.testing import assert_no_leaks, collect

cloudpickle.register_pickle_by_value(sys.modules[__name__])

pytestmark = pytest.mark.timeout(120)

SCRIPT = """\
import asyncio
import sys

from pullpush import ProcessExecutor


def task(x):
    doubled = x * 2
    raise ValueError(f"bad {doubled}")


async def main():
    async with ProcessExecutor(1, start_method=sys.argv[1]) as executor:
        try:
            await executor.run(task, 21)
        except ValueError as error:
            print(error.__cause__.text)


if __name__ == "__main__":
    asyncio.run(main())
"""


@pytest.mark.parametrize("start_method", ["forkserver", "spawn"])
def test_a_main_function_traceback_names_the_script_and_line(
    tmp_path: Path, start_method: str
) -> None:
    script = tmp_path / "user_script.py"
    script.write_text(SCRIPT)
    done = subprocess.run(
        [sys.executable, str(script), start_method],
        capture_output=True,
        text=True,
        timeout=90,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    text = done.stdout
    assert "<dynamic-code>" not in text
    assert f'File "{script}", line 9, in task' in text, text
    assert 'raise ValueError(f"bad {doubled}")' in text  # the source line, read by the worker
    assert text.rstrip().endswith("ValueError: bad 42")


def notebook_function() -> Any:
    """A function as a notebook defines it: compiled from a cell whose file name
    exists only in this process's linecache, in a module nobody can import."""
    filename = "/nonexistent/ipykernel_4242/1234567.py"
    source = textwrap.dedent(
        """\
        def cell_task(x):
            total = x + 1
            raise KeyError(f"no {total}")
        """
    )
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    module = types.ModuleType("notebook_cell_module")
    exec(compile(source, filename, "exec"), module.__dict__)
    return module.cell_task


async def test_a_notebook_function_traceback_names_its_cell_and_shows_its_line() -> None:
    cell_task = notebook_function()
    async with assert_no_leaks(), ProcessExecutor(1) as executor:
        with pytest.raises(KeyError, match="no 2") as raised:
            await executor.run(cell_task, 1)
        cause = raised.value.__cause__
        assert isinstance(cause, RemoteTraceback)
        assert 'File "/nonexistent/ipykernel_4242/1234567.py", line 3, in cell_task' in cause.text
        assert 'raise KeyError(f"no {total}")' in cause.text
        assert await executor.run(functools.partial(abs, -3)) == 3


class CodedError(Exception):
    """An exception whose ``__init__`` its ``args`` do not fit: it pickles, but
    cannot be unpickled (a common shape of user exceptions)."""

    def __init__(self, code: int, detail: dict[str, Any]) -> None:
        super().__init__(f"quota exceeded with code {code}")
        self.code = code
        self.detail = detail
        self._private = "not shown"


def raise_coded(code: int) -> None:
    raise CodedError(code, {"limit": 10})


async def test_an_exception_that_cannot_be_rebuilt_keeps_its_attributes() -> None:
    async with assert_no_leaks(), ProcessExecutor(2) as executor:
        runners = [functools.partial(abs, -i) for i in range(4)]
        runners[2] = functools.partial(raise_coded, 7)
        runner = HierarchicalTaskPoolRunner("coded", runners, 2, executor=executor)
        envelopes = await collect(runner.run_tasks())
        terminal = {e.task_id: e for e in envelopes if e.type is not EnvelopeType.INTERMEDIATE}
        assert sorted(terminal) == [0, 1, 2, 3] and len(envelopes) == 4
        error = terminal[2].error
        assert isinstance(error, RemoteTaskError), repr(error)
        assert error.type_name == f"{__name__}.CodedError"
        assert error.remote_message == "quota exceeded with code 7"
        assert error.attributes == {
            "args": ("quota exceeded with code 7",),
            "code": 7,
            "detail": "{'limit': 10}",
        }
        assert isinstance(error.__cause__, RemoteTraceback)
        assert "raise CodedError(code" in error.__cause__.text
        assert isinstance(error.__context__, TypeError)  # why it could not be rebuilt
        copy = pickle.loads(pickle.dumps(error))
        assert (copy.type_name, copy.attributes) == (error.type_name, error.attributes)
        assert [terminal[i].value for i in (0, 1, 3)] == [0, 1, 3]
        assert runner.capacity.available == 2
        assert await executor.run(functools.partial(abs, -5)) == 5


class _BadRepr:
    def __repr__(self) -> str:
        raise RuntimeError("no repr")


def test_attributes_are_plain_values_or_reprs() -> None:
    error = ValueError("message", 3, ("nested",), _BadRepr())
    error.long = "x" * 5000  # type: ignore[attr-defined]
    error.blob = b"y" * 5000  # type: ignore[attr-defined]
    error.items = [1, 2]  # type: ignore[attr-defined]
    found = _attributes(error)
    assert found["args"][:3] == ("message", 3, "('nested',)")
    assert found["args"][3] == "<_BadRepr object (its repr failed)>"
    assert found["long"] == "x" * 1000 + "..." and found["blob"] == b"y" * 1000 + b"..."
    assert found["items"] == "[1, 2]"
    assert pickle.loads(pickle.dumps(found)) == found
