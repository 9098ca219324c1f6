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
import statistics
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
    """Run every case ``repeats`` times (interleaved) on a fresh loop per run."""
    import uvloop

    factory = uvloop.new_event_loop if loop == "uvloop" else asyncio.new_event_loop
    timings = {name: Timing(name, group) for name, (group, _) in cases.items()}
    for _ in range(repeats):
        for name, (_, case) in cases.items():
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


def table(timings: dict[str, Timing], baselines: dict[str, str], n: int) -> str:
    """A markdown table: median time, ns per item, ratio to the group's baseline."""
    lines = [
        "| case | median (s) | ns/item | vs baseline |",
        "|---|---:|---:|---:|",
    ]
    for timing in timings.values():
        base = timings.get(baselines.get(timing.group, ""))
        ratio = f"{timing.median / base.median:.2f}x" if base is not None else ""
        lines.append(
            f"| {timing.name} | {timing.median:.3f} | {timing.median / n * 1e9:.0f} | {ratio} |"
        )
    return "\n".join(lines)


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
    return parser.parse_args()
