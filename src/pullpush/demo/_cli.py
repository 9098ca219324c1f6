"""The command line of ``python -m pullpush.demo`` (also installed as ``pullpush-demo``)."""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import platform
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path

from ._analysis import TOP_BIGRAMS_PER_CHUNK
from ._corpus import CorpusSpec, corpus_chunks, file_chunks
from ._run import MODES, ModeRun, NoProgress, Progress, TqdmProgress, run_mode, usable_cpus

__all__ = ["main"]

DEFAULT_SIZE_MIB = 128
"""About a minute for all three modes on 2 cores (measured: see the CHANGELOG)."""
DEFAULT_CHUNK_KIB = 512
MIB = 1024 * 1024

DESCRIPTION = """\
Analyse a text in chunks with pullpush, in three modes, and compare them.

An async-generator task source cuts the document into chunks lazily while earlier
chunks are analysed. Each chunk is analysed by a sync-generator task runner that
yields its progress (tokenised, words counted, bigrams counted, hashed) and returns
its counts; the results are merged into word counts, top bigrams and a combined hash
that does not depend on the order chunks finish in.

Modes: inline (on the event loop, one core), thread (a ThreadExecutor: the GIL
keeps pure-Python work on about one core), process (a ProcessExecutor: worker
processes with their own uvloop loops). All modes must give identical results; the
demo checks that and prints a table of wall time, speedup, efficiency and envelopes/s.
"""

EPILOG = """\
examples:
  python -m pullpush.demo                     all modes, built-in corpus
  python -m pullpush.demo --mode process --size 500 --workers 4
  python -m pullpush.demo --input book.txt --chunk-kib 256

exit status: 0 when every mode gave the same results, 1 when a mode failed or
the results differ, 2 for bad arguments, 130 when interrupted (Ctrl-C).
"""


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def program_name() -> str:
    """How the demo was started: ``pullpush-demo`` (the console script) or
    ``python -m pullpush.demo``, for its usage line."""
    started_as = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    if started_as.startswith("pullpush-demo"):
        return "pullpush-demo"
    return "python -m pullpush.demo"


def build_parser() -> argparse.ArgumentParser:
    """The demo's argument parser."""
    parser = argparse.ArgumentParser(
        prog=program_name(),
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--mode",
        choices=[*MODES, "all"],
        default="all",
        help="where the chunk analyses run (default: all, in the order inline, thread, process)",
    )
    parser.add_argument(
        "--workers",
        type=_positive_int,
        metavar="N",
        help="threads or worker processes (default: the CPUs this process may use, "
        f"here {usable_cpus()})",
    )
    parser.add_argument(
        "--capacity",
        type=_positive_int,
        metavar="N",
        help="chunks in flight at once, a CapacitySource limit (default: 2 x workers, so "
        "each worker has its next chunk ready)",
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--size",
        type=_positive_float,
        metavar="MB",
        help=f"size of the built-in corpus in MiB (default: {DEFAULT_SIZE_MIB}, about a "
        "minute for all three modes on 2 cores; hundreds work, memory stays flat)",
    )
    source.add_argument(
        "--input",
        type=Path,
        metavar="FILE",
        help="analyse this UTF-8 text file instead of the built-in corpus",
    )
    parser.add_argument(
        "--chunk-kib",
        type=_positive_int,
        default=DEFAULT_CHUNK_KIB,
        metavar="KIB",
        help=f"chunk size in KiB, cut at whitespace (default: {DEFAULT_CHUNK_KIB})",
    )
    parser.add_argument(
        "--seed", type=int, default=2024, help="seed of the built-in corpus (default: 2024)"
    )
    parser.add_argument(
        "--top", type=_positive_int, default=10, metavar="N", help="top words to show (10)"
    )
    parser.add_argument(
        "--no-progress",
        action="store_true",
        help="no progress bars (they are off anyway when stderr is not a terminal)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the demo; return the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    size = 0
    if args.input is not None:
        try:
            size = args.input.stat().st_size
            with args.input.open("rb"):
                pass
        except OSError as error:
            parser.error(f"--input: cannot read {str(args.input)!r}: {error.strerror}")
        if not args.input.is_file():
            parser.error(f"--input: {str(args.input)!r} is not a regular file")
        if size == 0:
            parser.error(f"--input: {str(args.input)!r} is empty")
    try:
        return asyncio.run(_demo(args, size))
    except KeyboardInterrupt:
        print("\ninterrupted: the pool was shut down, no worker is left behind", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader of stdout went away (``| head``): stop quietly, as Unix tools do.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1


def _size(chars: int) -> str:
    return f"{chars / MIB:.1f} MiB" if chars >= MIB else f"{chars / 1024:.1f} KiB"


async def _demo(args: argparse.Namespace, input_size: int) -> int:
    workers: int = args.workers or usable_cpus()
    capacity: int = args.capacity or 2 * workers
    chunk_chars: int = args.chunk_kib * 1024
    modes = list(MODES) if args.mode == "all" else [args.mode]

    chunks: Callable[[], AsyncIterator[str]]
    if args.input is not None:
        path: Path = args.input
        size = input_size
        what = f"{str(path)!r} ({_size(size)})"
        chunks = lambda: file_chunks(path, chunk_chars)  # noqa: E731
    else:
        size = max(1, round((args.size or DEFAULT_SIZE_MIB) * MIB))
        spec = CorpusSpec(size, args.seed)
        what = f"built-in corpus of {_size(size)} (seed {args.seed})"
        chunks = lambda: corpus_chunks(spec, chunk_chars)  # noqa: E731
    # Chunks end at whitespace, so they are a little short of chunk_chars: one more.
    expected: int | None = size // chunk_chars + 1

    print(f"pullpush demo: {what}, chunks of {args.chunk_kib} KiB")
    print(
        f"modes: {', '.join(modes)}; {workers} worker(s), capacity {capacity}; "
        f"{usable_cpus()} usable CPU(s), Python {platform.python_version()} "
        f"on {platform.system()} {platform.machine()}"
    )
    progress: Progress = NoProgress()
    if not args.no_progress and sys.stderr.isatty():
        try:
            import tqdm  # noqa: F401
        except ImportError:
            print("(no progress bars: install tqdm, e.g. pip install 'pullpush[demo]')")
        else:
            progress = TqdmProgress()

    runs: list[ModeRun] = []
    for mode in modes:
        try:
            run = await run_mode(
                mode,
                chunks,
                workers=workers,
                capacity=capacity,
                progress=progress,
                expected_chunks=expected,
            )
        except Exception as error:
            print(
                f"error: the {mode} mode failed: {type(error).__name__}: {error}", file=sys.stderr
            )
            if error.__cause__ is not None:  # a worker's traceback
                print(f"caused by: {error.__cause__}", file=sys.stderr)
            return 1
        expected = run.totals.chunks  # exact for the next modes
        runs.append(run)
        print(
            f"{mode:>7}: {run.totals.chunks} chunks, {run.envelopes} envelopes "
            f"in {run.seconds:.2f} s"
        )
    print()
    print(results_table(runs))
    print()
    return report(runs, args.top)


def results_table(runs: list[ModeRun]) -> str:
    """The markdown table of the modes: wall time, speedup, efficiency, envelopes/s."""
    inline = next((r for r in runs if r.mode == "inline"), None)
    lines = [
        "| mode | cores | wall (s) | speedup vs inline | efficiency | envelopes/s | MiB/s |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for run in runs:
        if inline is not None:
            speedup = inline.seconds / run.seconds
            speed, efficiency = f"{speedup:.2f}x", f"{speedup / run.cores:.0%}"
        else:
            speed = efficiency = "n/a"
        lines.append(
            f"| {run.mode} | {run.cores} | {run.seconds:.2f} | {speed} | {efficiency} "
            f"| {run.envelopes / run.seconds:,.0f} | {run.totals.chars / MIB / run.seconds:.1f} |"
        )
    return "\n".join(lines)


def report(runs: list[ModeRun], top: int) -> int:
    """Print the identical-results check and the top words; return the exit status."""
    first = runs[0].totals
    different = [r.mode for r in runs[1:] if not r.totals.same_as(first)]
    if different:
        print(
            f"RESULTS DIFFER: {', '.join(different)} did not give the same results as "
            f"{runs[0].mode}; this is a bug, please report it",
            file=sys.stderr,
        )
        return 1
    names = ", ".join(r.mode for r in runs)
    check = "identical results in " + names if len(runs) > 1 else f"results of {names}"
    print(
        f"{check}: {first.chunks} chunks, {first.tokens:,} words "
        f"({len(first.words):,} distinct), digest {first.digest()[:16]}"
    )
    print()
    print(f"top {top} words:")
    width = max((len(w) for w, _ in first.top_words(top)), default=0)
    for rank, (word, count) in enumerate(first.top_words(top), 1):
        print(f"  {rank:>2}. {word:<{width}}  {count:>12,}  {count / first.tokens:6.2%}")
    print()
    print(f"top 5 bigrams (each chunk sends its top {TOP_BIGRAMS_PER_CHUNK}):")
    for bigram, count, upper in first.top_bigrams(5):
        bound = "  exact" if upper == count else f"  at most {upper:,}"
        print(f"      {bigram:<16} {count:>12,}{bound}")
    return 0
