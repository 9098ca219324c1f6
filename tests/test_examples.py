"""Keep the examples and the README honest.

* Every ``examples/*.py`` runs in a subprocess and must exit 0 (each asserts its own
  results).
* Every ```python block of README.md is real code: a block whose first line is
  ``# examples/NAME.py`` must appear verbatim in that example (so it is run by the test
  above); any other block is run as a script on its own.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "examples").glob("*.py"))
README = ROOT / "README.md"
BLOCK = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)
MARKER = re.compile(r"# (examples/[\w.]+\.py)\n")


def run_script(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=90
    )


def readme_blocks() -> list[str]:
    return BLOCK.findall(README.read_text(encoding="utf-8"))


def test_there_are_examples_and_readme_blocks() -> None:
    assert len(EXAMPLES) >= 8
    assert len(readme_blocks()) >= 8


@pytest.mark.timeout(120)
@pytest.mark.parametrize("example", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_runs(example: Path) -> None:
    done = run_script([str(example)], ROOT)
    assert done.returncode == 0, f"{example.name} failed:\n{done.stdout}\n{done.stderr}"


@pytest.mark.timeout(120)
@pytest.mark.parametrize("index", range(len(readme_blocks())))
def test_readme_block_is_real_code(index: int, tmp_path: Path) -> None:
    block = readme_blocks()[index]
    marker = MARKER.match(block)
    if marker is not None:
        source = (ROOT / marker.group(1)).read_text(encoding="utf-8")
        excerpt = block[marker.end() :]
        assert excerpt.strip(), f"README block {index} is empty"
        assert excerpt in source, (
            f"README block {index} is not a verbatim excerpt of {marker.group(1)}:\n{excerpt}"
        )
    else:
        script = tmp_path / f"readme_block_{index}.py"
        script.write_text(block, encoding="utf-8")
        done = run_script([str(script)], tmp_path)
        assert done.returncode == 0, f"README block {index} failed:\n{done.stdout}\n{done.stderr}"
