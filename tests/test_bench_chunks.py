"""bench/chunks.py runs end to end at a tiny size, and its answer check has teeth.

No timing is asserted here: the benchmark's numbers are read by people, not tests.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"


def bench_module() -> ModuleType:
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    return importlib.import_module("chunks")


@pytest.mark.timeout(300)
def test_chunks_benchmark_runs_and_writes_its_json(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    command = [sys.executable, "chunks.py", "--size-mib", "8", "--text-mb", "1"]
    command += ["--repeats", "1", "--quick", "--out", str(tmp_path)]
    done = subprocess.run(command, cwd=BENCH, env=env, capture_output=True, text=True, timeout=280)
    assert done.returncode == 0, f"chunks.py failed:\n{done.stdout}\n{done.stderr}"
    # The shared memory and the limit's workers were cleaned up (no resource_tracker warning).
    assert "leaked" not in done.stderr, done.stderr
    result = json.loads((tmp_path / "chunks.json").read_text())
    assert result["machine"]["python"]
    workloads = result["workloads"]
    expected = {f"{kind}-{size}KiB" for kind in ("blake2b", "touch") for size in (4096, 64)}
    assert set(workloads) == expected | {"wordcount"}
    for key, workload in workloads.items():
        cases = (
            {"partial", "map", "ppe"}
            if key == "wordcount"
            else {"limit", "partial", "closure", "path", "map", "warm", "ppe", "pool"}
        )
        assert cases <= set(workload["raw"]), key
        for case, raw in workload["raw"].items():
            assert len(raw["seconds"]) == 1, (key, case)
            assert raw["busy"][0] > 0, (key, case)
        assert workload["summary"]["ppe"]["vs_ppe"] == 1.0
    assert "| pullpush partial(work, chunk) |" in done.stdout


def test_a_wrong_answer_fails_the_check() -> None:
    chunks = bench_module()
    data = bytes(range(256)) * 1024  # 256 KiB
    blake, touch = chunks.byte_workloads(data, ["blake2b", "touch"], [64 * 1024])
    right = [chunks.work.blake2b_chunk(c)[0] for c in blake.chunks]
    chunks.check(blake, list(reversed(right)), "in any order")
    with pytest.raises(AssertionError, match="differ"):
        chunks.check(blake, right[:-1], "a chunk lost")
    with pytest.raises(AssertionError, match="differ"):
        chunks.check(
            touch,
            [v + 1 for v in (chunks.work.touch_chunk(c)[0] for c in touch.chunks)],
            "off by one",
        )
    text = chunks.Workload("wordcount", "wordcount", 8, ["a b", "b"], 4)
    chunks.check(text, {"a": 1, "b": 2}, "first")
    with pytest.raises(AssertionError, match="differ"):
        chunks.check(text, {"a": 1, "b": 1}, "second")
