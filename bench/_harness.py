"""Shared benchmark plumbing: run cases side by side, take medians, print a table,
write JSON. Every case runs in the same process, interleaved round by round, so
machine noise hits all of them alike."""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

Case = Callable[[int], Awaitable[object]]

RESULTS_DIR = Path(__file__).resolve().parent / "results"


@dataclass
class Timing:
    name: str
    group: str
    seconds: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)


def machine() -> dict[str, Any]:
    """Where the numbers came from."""
    return {
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "date": time.strftime("%Y-%m-%d"),
    }


def run_cases(
    cases: dict[str, tuple[str, Case]], n: int, repeats: int, loop: str = "asyncio"
) -> dict[str, Timing]:
    """Run every case ``repeats`` times (interleaved) on a fresh loop per run.

    Rounds alternate their order (A B C, then C B A, ...), so a drift of the machine's
    speed during a round does not favour the cases that come early in it.
    """
    import uvloop

    factory = uvloop.new_event_loop if loop == "uvloop" else asyncio.new_event_loop
    timings = {name: Timing(name, group) for name, (group, _) in cases.items()}
    order = list(cases.items())
    for round_number in range(repeats):
        for name, (_, case) in order if round_number % 2 == 0 else reversed(order):
            event_loop = factory()
            try:
                gc.collect()
                start = time.perf_counter()
                event_loop.run_until_complete(case(n))
                timings[name].seconds.append(time.perf_counter() - start)
            finally:
                event_loop.run_until_complete(event_loop.shutdown_asyncgens())
                event_loop.close()
    return timings


def paired_ratio(seconds: list[float], base: list[float]) -> float:
    """The median over rounds of ``seconds / base`` within each round: both ran within
    seconds of each other, so this is steadier than a ratio of medians when the
    machine's speed drifts during the run."""
    return statistics.median(t / b for t, b in zip(seconds, base, strict=True))


def table(timings: dict[str, Timing], baselines: dict[str, str], n: int) -> str:
    """A markdown table: median time, ns per item, and the ratio to the group's
    baseline (the median of the per-round ratios, see :func:`paired_ratio`)."""
    lines = [
        "| case | median (s) | ns/item | vs baseline |",
        "|---|---:|---:|---:|",
    ]
    for timing in timings.values():
        base = timings.get(baselines.get(timing.group, ""))
        ratio = f"{paired_ratio(timing.seconds, base.seconds):.2f}x" if base is not None else ""
        lines.append(
            f"| {timing.name} | {timing.median:.3f} | {timing.median / n * 1e9:.0f} | {ratio} |"
        )
    return "\n".join(lines)


def count_instructions(
    script: str, cases: dict[str, tuple[str, Case]], n: int, loop: str
) -> dict[str, float]:
    """Machine instructions per item of each case, counted by ``valgrind --tool=callgrind``
    (repeatable whatever else the machine does): the script is run once per case with
    ``--only CASE`` for ``n`` items and for none, and the difference divided by ``n``."""

    def run(name: str, items: int) -> int:
        command = [
            "valgrind",
            "--tool=callgrind",
            "--callgrind-out-file=/dev/null",
            sys.executable,
            script,
            "--only",
            name,
            "--n",
            str(items),
            "--loop",
            loop,
        ]
        done = subprocess.run(command, capture_output=True, text=True, check=True)
        found = re.search(r"Collected : (\d+)", done.stderr)
        if found is None:
            raise RuntimeError(f"no instruction count from valgrind: {done.stderr[-500:]}")
        return int(found.group(1))

    return {name: (run(name, n) - run(name, 0)) / n for name in cases}


def run_benchmark(
    script: str,
    cases: dict[str, tuple[str, Case]],
    baselines: dict[str, str],
    args: argparse.Namespace,
    title: str,
    json_name: str,
) -> None:
    """The main of a benchmark script: with ``--only CASE`` run that case once (for
    :func:`count_instructions`); with ``--instructions`` count instructions per item;
    else time every case side by side and print the table."""
    if args.only is not None:
        run_cases({args.only: cases[args.only]}, args.n, 1, args.loop)
        return
    print(f"{title}, loop={args.loop}")
    print(f"machine: {machine()}")
    if args.instructions:
        counts = count_instructions(script, cases, args.n, args.loop)
        lines = ["| case | instructions/item | vs baseline |", "|---|---:|---:|"]
        for name, (group, _) in cases.items():
            base = baselines.get(group)
            ratio = f"{counts[name] / counts[base]:.2f}x" if base in counts else ""
            lines.append(f"| {name} | {counts[name]:,.0f} | {ratio} |")
        print(f"n={args.n:,}, valgrind --tool=callgrind (instructions, not seconds)")
        print("\n".join(lines))
        write_json(f"{json_name}-{args.loop}-instructions", {"machine": machine(), **counts})
        return
    timings = run_cases(cases, args.n, args.repeats, args.loop)
    print(f"n={args.n:,}, median of {args.repeats} rounds (alternating order)")
    print(table(timings, baselines, args.n))
    seconds = {t.name: t.seconds for t in timings.values()}
    write_json(f"{json_name}-{args.loop}", {"machine": machine(), "n": args.n, "timings": seconds})


def write_json(name: str, payload: dict[str, Any]) -> Path:
    RESULTS_DIR.mkdir(exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2))
    return path


def arguments(description: str, default_n: int) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--n", type=int, default=default_n, help="items per run")
    parser.add_argument("--repeats", type=int, default=5, help="runs per case (median)")
    parser.add_argument("--loop", choices=["asyncio", "uvloop"], default="asyncio")
    parser.add_argument(
        "--instructions",
        action="store_true",
        help="count machine instructions per item with valgrind instead of timing",
    )
    parser.add_argument("--only", metavar="CASE", help=argparse.SUPPRESS)
    return parser.parse_args()
