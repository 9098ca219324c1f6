"""The chunk-analysis demo: corpus, chunking, analysis, merge, modes and command line."""

from __future__ import annotations

import functools
import random
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pullpush.demo import (
    CorpusSpec,
    ModeRun,
    Totals,
    analyse_chunk,
    corpus_chunks,
    file_chunks,
    run_mode,
)
from pullpush.demo._analysis import STAGES, ChunkResult
from pullpush.demo._cli import main, report, results_table
from pullpush.demo._corpus import rechunk
from pullpush.demo._run import TqdmProgress


def run_analysis(index: int, text: str) -> tuple[list[str], ChunkResult]:
    result: list[ChunkResult] = []

    def drain() -> Iterator[str]:
        result.append((yield from analyse_chunk(index, text)))

    stages = list(drain())
    return stages, result[0]


def test_corpus_is_deterministic_and_sized() -> None:
    first = "".join(CorpusSpec(200_000, seed=7).pages())
    assert first == "".join(CorpusSpec(200_000, seed=7).pages())
    assert first != "".join(CorpusSpec(200_000, seed=8).pages())
    assert 199_000 < len(first) <= 200_000
    assert first.isascii()


def test_rechunk_cuts_at_whitespace_and_loses_nothing() -> None:
    rng = random.Random(1)
    words = ["".join(rng.choices("abcdef", k=rng.randint(1, 9))) for _ in range(5000)]
    text = " ".join(words)
    pieces = [text[i : i + 777] for i in range(0, len(text), 777)]
    chunks = list(rechunk(pieces, 1000))
    assert "".join(chunks) == text
    assert all(len(c) <= 1000 for c in chunks)
    assert [w for c in chunks for w in c.split()] == words


def test_rechunk_cuts_text_without_whitespace() -> None:
    assert list(rechunk(["x" * 10_000], 4096)) == ["x" * 4096, "x" * 4096, "x" * 1808]


async def test_file_chunks_read_the_whole_file(tmp_path: Path) -> None:
    path = tmp_path / "book.txt"
    text = "".join(CorpusSpec(50_000).pages())
    path.write_text(text, encoding="utf-8")
    assert "".join([c async for c in file_chunks(path, 4096)]) == text


def test_analyse_chunk_yields_its_stages_and_counts() -> None:
    stages, result = run_analysis(3, "The cat saw the cat. The end!")
    assert stages == list(STAGES)
    assert result["index"] == 3
    assert result["tokens"] == 7
    assert result["words"] == {"the": 3, "cat": 2, "saw": 1, "end": 1}
    assert result["bigrams"]["the cat"] == 2


def test_totals_do_not_depend_on_completion_order() -> None:
    text = "".join(CorpusSpec(300_000).pages())
    results = [run_analysis(i, c)[1] for i, c in enumerate(rechunk([text], 20_000))]
    forward, backward = Totals(), Totals()
    for result in results:
        forward.add(result)
    for result in reversed(results):
        backward.add(result)
    assert forward.same_as(backward)
    assert forward.digest() == backward.digest()
    assert forward.words == Counter(run_analysis(0, text)[1]["words"])
    for _, count, upper in forward.top_bigrams(5):
        assert upper >= count


def test_totals_refuse_a_chunk_twice() -> None:
    totals = Totals()
    result = run_analysis(0, "a b c")[1]
    totals.add(result)
    with pytest.raises(ValueError, match="twice"):
        totals.add(result)


@pytest.mark.timeout(60)
async def test_every_mode_gives_the_same_results() -> None:
    spec = CorpusSpec(400_000)
    chunks = functools.partial(corpus_chunks, spec, 32 * 1024)
    runs = [
        await run_mode(m, chunks, workers=2, capacity=3) for m in ("inline", "thread", "process")
    ]
    assert runs[0].totals.chunks == 13
    assert all(r.envelopes == 13 * (len(STAGES) + 1) for r in runs)
    assert all(r.totals.same_as(runs[0].totals) for r in runs[1:])


@pytest.mark.timeout(60)
async def test_tqdm_progress_counts_every_chunk_and_envelope_then_closes_its_bars(
    capsys: pytest.CaptureFixture[str],
) -> None:
    spec = CorpusSpec(100_000)
    chunks = functools.partial(corpus_chunks, spec, 32 * 1024)
    progress = TqdmProgress()
    counted: list[tuple[int, int]] = []
    finish = progress.finish

    bars: list[Any] = []

    def record_then_finish() -> None:
        counted.append((progress._chunks.n, progress._envelopes.n))
        bars.extend(progress._bars)
        finish()

    progress.finish = record_then_finish  # type: ignore[method-assign]
    run = await run_mode("inline", chunks, workers=1, capacity=2, progress=progress)
    assert counted == [(run.totals.chunks, run.envelopes)]
    assert len(bars) == 2 and all(bar.disable for bar in bars)  # closed (tqdm disables)
    assert progress._bars == []  # so the next mode starts clean
    assert "chunks" in capsys.readouterr().err


@pytest.mark.timeout(60)
def test_command_line_runs_every_mode(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--size", "0.3", "--chunk-kib", "64", "--no-progress", "--top", "3"]) == 0
    out = capsys.readouterr().out
    assert "identical results in inline, thread, process" in out
    assert "| process | " in out
    assert "top 3 words:" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--input", "/no/such/file.txt"], "cannot read '/no/such/file.txt'"),
        (["--size", "0"], "must be a positive number"),
        (["--workers", "zero"], "expected a whole number"),
        (["--mode", "gpu"], "invalid choice: 'gpu'"),
        (["--size", "1", "--input", "x.txt"], "not allowed with argument --size"),
    ],
)
def test_command_line_errors_say_what_was_wrong(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit:
        main(argv)
    assert exit.value.code == 2
    assert message in capsys.readouterr().err


def test_empty_input_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    with pytest.raises(SystemExit):
        main(["--input", str(empty)])
    assert "is empty" in capsys.readouterr().err


@pytest.mark.timeout(60)
def test_module_entry_point_help() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pullpush.demo", "--help"],
        capture_output=True,
        text=True,
        timeout=50,
        check=True,
    )
    assert "--chunk-kib" in done.stdout


def test_differing_results_are_reported(capsys: pytest.CaptureFixture[str]) -> None:
    one, other = Totals(), Totals()
    one.add(run_analysis(0, "a b c")[1])
    other.add(run_analysis(0, "a b d")[1])
    runs = [ModeRun("inline", 1, 1.0, 5, one), ModeRun("process", 2, 0.5, 5, other)]
    assert report(runs, 3) == 1
    assert "RESULTS DIFFER: process" in capsys.readouterr().err
    assert "| process | 2 | 0.50 | 2.00x | 100% |" in results_table(runs)


def test_the_usage_line_names_how_the_demo_was_started(monkeypatch: pytest.MonkeyPatch) -> None:
    from pullpush.demo._cli import build_parser

    monkeypatch.setattr(sys, "argv", ["/venv/bin/pullpush-demo", "--help"])
    assert build_parser().format_usage().startswith("usage: pullpush-demo ")
    monkeypatch.setattr(sys, "argv", ["/src/pullpush/demo/__main__.py", "--help"])
    assert build_parser().format_usage().startswith("usage: python -m pullpush.demo ")
