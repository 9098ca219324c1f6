"""pullpush's modes (inline, thread, process) against other process pools, on four
workloads, all in one run.

    python bench/modes.py [--repeats 3] [--warmup 1] [--workers N] [--scale 1.0]
        [--workloads chunks,uniform,skewed,mixed] [--contenders process,ProcessPoolExecutor]
    ./scripts/bench modes [--repeats 3]        (installs the bench extra first)

Workloads (the same tasks for every contender):

* ``chunks``:  the demo's chunk analysis (tokenise, count words and bigrams, hash),
  12 MiB of the built-in corpus in 256 KiB chunks;
* ``uniform``: 40 tasks of 50 ms pure-Python CPU work;
* ``skewed``:  40 tasks of lognormal sizes (median 30 ms, a few over 300 ms), in a
  seeded shuffled order;
* ``mixed``:   40 tasks that await 50 ms of pretend I/O, then compute for 25 ms.

Contenders, each given its idiomatic best shot: pullpush ``HierarchicalTaskPoolRunner``
with ``executor="inline"`` (the baseline: one core), a ``ThreadExecutor`` and a
``ProcessExecutor`` (``tasks_per_worker=8`` for the async ``mixed`` tasks, so their
waits overlap in a worker); ``concurrent.futures.ProcessPoolExecutor``, loky's reusable
executor and mpire's ``WorkerPool`` (``map`` with ``chunksize=1``: tasks of tens of ms
are worth one dispatch each, and a larger chunk would unbalance ``skewed``; ``mixed``
runs a plain function whose wait blocks its worker); aiomultiprocess's ``Pool``
(``childconcurrency=1`` for CPU work, 16 for ``mixed``). Threads and processes: 2 by
default (``--workers``); pullpush's thread mode uses 16 threads for ``mixed``.

How numbers are taken: every pool is started and warmed (one no-op task per worker)
before the clock starts, and closed after it stops, so the times are the workload's
alone. Each round runs every contender on every workload, in the same process, one
pool alive at a time, the contenders' order turning by one each round; a first
``--warmup`` round is not counted; the table shows medians over ``--repeats`` rounds,
the spread (max - min) / median, and the paired ratio to ProcessPoolExecutor (the median
over rounds of the contender's time / ProcessPoolExecutor's time in the same round:
below 1.0 is faster), which holds up under a noisy machine better than the medians.
Every run's results are checked against the first one. ``--workloads`` and
``--contenders`` (names or substrings, e.g. ``process``) run a subset; the inline
baseline and ProcessPoolExecutor always run.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import functools
import json
import math
import random
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _harness import RESULTS_DIR, machine, write_json
from _workloads import (
    aanalyse,
    analyse,
    anoop,
    aspin,
    calibrate,
    io_then_cpu,
    io_then_cpu_sync,
    noop,
    spin,
)

from pullpush import (
    CapacitySource,
    EnvelopeType,
    Executor,
    ExecutorSpec,
    HierarchicalTaskPoolRunner,
    ProcessExecutor,
    ThreadExecutor,
)
from pullpush.demo import CorpusSpec
from pullpush.demo._analysis import analyse_chunk
from pullpush.demo._corpus import rechunk
from pullpush.demo._run import usable_cpus

CAPACITY = 64  # the runner's own limit: the executor's slots are the real one


@dataclass
class Workload:
    name: str
    label: str
    items: list[tuple[Any, ...]]
    sync_fn: Callable[..., Any]
    async_fn: Callable[..., Any]
    pullpush_fn: Callable[..., Any]
    asynchronous: bool = False


def fingerprint(results: list[Any]) -> Any:
    """What must be equal between contenders, whatever order results came in."""
    if results and isinstance(results[0], dict):
        return sorted((r["index"], r["digest"], r["tokens"], len(r["words"])) for r in results)
    return sorted(results)


def workloads(scale: float) -> list[Workload]:
    per_50ms = calibrate(0.05)
    count = max(2, round(40 * scale))
    rng = random.Random(7)
    spec = CorpusSpec(max(64 * 1024, round(12 * 1024 * 1024 * scale)))
    chunks = list(rechunk(spec.pages(), 256 * 1024))
    skewed = [min(20.0, rng.lognormvariate(math.log(0.6), 1.0)) for _ in range(count)]
    return [
        Workload(
            "chunks",
            f"chunk analysis\n({len(chunks)} x 256 KiB)",
            list(enumerate(chunks)),
            analyse,
            aanalyse,
            analyse_chunk,
        ),
        Workload(
            "uniform",
            f"uniform CPU\n({count} x 50 ms)",
            [(per_50ms,)] * count,
            spin,
            aspin,
            spin,
        ),
        Workload(
            "skewed",
            f"skewed CPU\n({count}, lognormal)",
            [(round(per_50ms * s),) for s in skewed],
            spin,
            aspin,
            spin,
        ),
        Workload(
            "mixed",
            f"I/O then CPU\n({count} x 50 ms wait + 25 ms)",
            [(0.05, per_50ms // 2)] * count,
            io_then_cpu_sync,
            io_then_cpu,
            io_then_cpu,
            asynchronous=True,
        ),
    ]


PPE = "ProcessPoolExecutor"


class Contender:
    """One way of running the workloads: a pool opened per round, warm before timing."""

    name = ""
    group = ""

    def __init__(self, workers: int) -> None:
        self.workers = workers

    @property
    def cores(self) -> int:
        return min(self.workers, usable_cpus())

    async def open(self) -> None:
        pass

    async def run(self, workload: Workload) -> list[Any]:
        raise NotImplementedError

    async def close(self) -> None:
        pass


class Pullpush(Contender):
    group = "pullpush"

    def __init__(self, workers: int, mode: str) -> None:
        super().__init__(workers)
        self.mode = mode
        self.name = f"pullpush {mode}"
        self._executors: dict[bool, ExecutorSpec] = {}

    @property
    def cores(self) -> int:
        return 1 if self.mode == "inline" else super().cores

    async def open(self) -> None:
        if self.mode == "inline":
            self._executors = {False: "inline", True: "inline"}
            return
        if self.mode == "thread":
            self._executors = {False: ThreadExecutor(self.workers), True: ThreadExecutor(16)}
        else:
            self._executors = {
                False: ProcessExecutor(self.workers),
                True: ProcessExecutor(self.workers, tasks_per_worker=8),
            }
        for executor in self._executors.values():
            assert isinstance(executor, Executor)
            await executor.start()
            await asyncio.gather(*(executor.run(noop, i) for i in range(self.workers)))

    async def run(self, workload: Workload) -> list[Any]:
        tasks = (functools.partial(workload.pullpush_fn, *item) for item in workload.items)
        runner = HierarchicalTaskPoolRunner(
            self.name,
            tasks,
            CapacitySource(CAPACITY),
            executor=self._executors[workload.asynchronous],
        )
        results = []
        async for envelope in runner.run_tasks(stop_on_error=True):
            if envelope.type is EnvelopeType.FINAL:
                results.append(envelope.value)
        return results

    async def close(self) -> None:
        for executor in self._executors.values():
            if isinstance(executor, Executor):
                await executor.aclose()
        self._executors = {}


class StdlibProcessPool(Contender):
    name = PPE
    group = "other"

    async def open(self) -> None:
        self.pool = concurrent.futures.ProcessPoolExecutor(self.workers)
        list(self.pool.map(noop, range(self.workers)))

    async def run(self, workload: Workload) -> list[Any]:
        return list(
            self.pool.map(workload.sync_fn, *zip(*workload.items, strict=True), chunksize=1)
        )

    async def close(self) -> None:
        self.pool.shutdown(wait=True)


class Loky(Contender):
    name = "loky"
    group = "other"

    async def open(self) -> None:
        import loky

        self.pool = loky.get_reusable_executor(max_workers=self.workers, reuse=True)
        list(self.pool.map(noop, range(self.workers)))

    async def run(self, workload: Workload) -> list[Any]:
        return list(
            self.pool.map(workload.sync_fn, *zip(*workload.items, strict=True), chunksize=1)
        )

    async def close(self) -> None:
        self.pool.shutdown(wait=True)


class Mpire(Contender):
    name = "mpire"
    group = "other"

    async def open(self) -> None:
        from mpire import WorkerPool

        self.pool = WorkerPool(n_jobs=self.workers, keep_alive=True)
        self.pool.map(noop, range(self.workers))

    async def run(self, workload: Workload) -> list[Any]:
        # mpire unpacks tuple items into arguments.
        return list(self.pool.map(workload.sync_fn, workload.items, chunk_size=1))

    async def close(self) -> None:
        self.pool.stop_and_join()


class AioMultiprocess(Contender):
    name = "aiomultiprocess"
    group = "other"

    async def open(self) -> None:
        from aiomultiprocess import Pool

        self.pools = {
            False: Pool(processes=self.workers, childconcurrency=1),
            True: Pool(processes=self.workers, childconcurrency=16),
        }
        for pool in self.pools.values():
            await pool.map(anoop, range(self.workers))

    async def run(self, workload: Workload) -> list[Any]:
        pool = self.pools[workload.asynchronous]
        return list(await pool.starmap(workload.async_fn, workload.items))

    async def close(self) -> None:
        for pool in self.pools.values():
            pool.close()
            await pool.join()


def contenders(workers: int) -> list[Contender]:
    return [
        Pullpush(workers, "inline"),
        Pullpush(workers, "thread"),
        Pullpush(workers, "process"),
        StdlibProcessPool(workers),
        Loky(workers),
        Mpire(workers),
        AioMultiprocess(workers),
    ]


async def measure(
    loads: list[Workload], players: list[Contender], repeats: int, warmup: int
) -> dict[str, dict[str, list[float]]]:
    """seconds[workload][contender]: one entry per round (warm-up rounds dropped)."""
    seconds: dict[str, dict[str, list[float]]] = {w.name: {} for w in loads}
    expected: dict[str, Any] = {}
    for round_ in range(-warmup, repeats):
        turn = round_ % len(players)
        for player in players[turn:] + players[:turn]:
            await player.open()
            try:
                for load in loads:
                    start = time.perf_counter()
                    results = await player.run(load)
                    elapsed = time.perf_counter() - start
                    if round_ >= 0:
                        seconds[load.name].setdefault(player.name, []).append(elapsed)
                    mark = fingerprint(results)
                    if expected.setdefault(load.name, mark) != mark:
                        raise AssertionError(f"{player.name} gave other results on {load.name}")
            finally:
                await player.close()
            what = "warm-up" if round_ < 0 else f"round {round_ + 1}/{repeats}"
            print(f"  {what}: {player.name} done", flush=True)
    return seconds


def rows(
    loads: list[Workload], players: list[Contender], seconds: dict[str, dict[str, list[float]]]
) -> list[dict[str, Any]]:
    out = []
    for load in loads:
        base = statistics.median(seconds[load.name]["pullpush inline"])
        for player in players:
            runs = seconds[load.name][player.name]
            median = statistics.median(runs)
            speedup = base / median
            out.append(
                {
                    "workload": load.name,
                    "label": load.label,
                    "contender": player.name,
                    "cores": player.cores,
                    "seconds": runs,
                    "median": median,
                    "spread": (max(runs) - min(runs)) / median,
                    "speedup": speedup,
                    "efficiency": speedup / player.cores,
                    "tasks_per_second": len(load.items) / median,
                    "vs_ppe_paired": paired_ratio(runs, seconds[load.name][PPE]),
                }
            )
    return out


def paired_ratio(runs: list[float], base: list[float]) -> float:
    """The median over rounds of ``runs[i] / base[i]`` (both measured in round ``i``)."""
    return statistics.median(a / b for a, b in zip(runs, base, strict=True))


def table(results: list[dict[str, Any]]) -> str:
    lines = [
        "| workload | contender | cores | median (s) | spread | speedup vs inline "
        "| efficiency | tasks/s | vs PPE, paired |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r['workload']} | {r['contender']} | {r['cores']} | {r['median']:.3f} "
            f"| {r['spread']:.0%} | {r['speedup']:.2f}x | {r['efficiency']:.0%} "
            f"| {r['tasks_per_second']:.1f} | {r['vs_ppe_paired']:.2f}x |"
        )
    return "\n".join(lines)


def plot(results: list[dict[str, Any]], title: str) -> str:
    """Draw the speedups as grouped bars to ``results/modes.png``; return its path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = {
        "pullpush inline": "#c6dbef",
        "pullpush thread": "#6baed6",
        "pullpush process": "#08519c",
        "ProcessPoolExecutor": "#fdae6b",
        "loky": "#e6550d",
        "mpire": "#a1d99b",
        "aiomultiprocess": "#31a354",
    }
    speedups = {(r["workload"], r["contender"]): r["speedup"] for r in results}
    # Whiskers: the speedup of the slowest and of the fastest round.
    ranges = {
        (r["workload"], r["contender"]): (
            r["speedup"] * r["median"] / max(r["seconds"]),
            r["speedup"] * r["median"] / min(r["seconds"]),
        )
        for r in results
    }
    loads = list(dict.fromkeys(r["workload"] for r in results))
    labels = {r["workload"]: r.get("label", r["workload"]) for r in results}
    players = list(dict.fromkeys(r["contender"] for r in results))
    cores = max(r["cores"] for r in results)
    figure, axes = plt.subplots(figsize=(12, 6), dpi=110)
    width = 0.8 / len(players)
    for i, player in enumerate(players):
        xs = [w + (i - (len(players) - 1) / 2) * width for w in range(len(loads))]
        ys = [speedups[(load, player)] for load in loads]
        lows = [y - ranges[(load, player)][0] for y, load in zip(ys, loads, strict=True)]
        highs = [ranges[(load, player)][1] - y for y, load in zip(ys, loads, strict=True)]
        bars = axes.bar(xs, ys, width, label=player, color=colors.get(player))
        axes.errorbar(
            xs, ys, yerr=[lows, highs], fmt="none", elinewidth=0.8, capsize=2, ecolor="#444444"
        )
        axes.bar_label(
            bars,
            labels=[f"{y:.2f}" for y in ys],
            label_type="center",
            fontsize=7,
            bbox={"boxstyle": "round,pad=0.15", "facecolor": "white", "edgecolor": "none"},
        )
    axes.axhline(cores, color="black", linestyle="--", linewidth=1)
    axes.text(len(loads) - 0.5, cores, f" ideal on {cores} cores", va="bottom", ha="right")
    axes.axhline(1, color="grey", linestyle=":", linewidth=1)
    axes.set_xticks(range(len(loads)), [labels[load] for load in loads])
    axes.set_ylabel("speedup vs pullpush inline (higher is better)")
    axes.set_title(title, fontsize=10)
    top = max(high for _, high in ranges.values())
    axes.set_ylim(0, max(top * 1.08, cores * 1.15))
    axes.legend(ncol=len(players), fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.12))
    axes.spines[["top", "right"]].set_visible(False)
    figure.tight_layout()
    RESULTS_DIR.mkdir(exist_ok=True)
    path = RESULTS_DIR / "modes.png"
    figure.savefig(path)
    plt.close(figure)
    return str(path)


def replot(path: str) -> None:
    """Draw the chart again from a JSON file this script wrote (``--plot FILE``)."""
    data = json.loads(Path(path).read_text())
    results = data["results"]
    info = data["machine"]
    print(plot(results, chart_title(data["workers"], len(results[0]["seconds"]), info)))


def chart_title(workers: int, repeats: int, info: dict[str, Any]) -> str:
    return (
        f"pullpush modes vs other pools: {workers} workers; bars: median of {repeats} rounds, "
        f"whiskers: slowest and fastest round\n"
        f"Python {info['python']}, {info['cpus_usable']} usable CPUs, {info['date']}"
    )


def chosen(name: str, wanted: str | None) -> bool:
    return wanted is None or any(part in name for part in wanted.split(","))


async def main_async(args: argparse.Namespace) -> None:
    info = machine()
    print(
        f"python {info['python']}, {info['cpus_usable']} usable CPUs, {info['platform']}, "
        f"{info['date']}; {args.workers} workers; median of {args.repeats}"
    )
    loads = [w for w in workloads(args.scale) if chosen(w.name, args.workloads)]
    players = [
        p
        for p in contenders(args.workers)
        if p.name in ("pullpush inline", PPE) or chosen(p.name, args.contenders)
    ]
    seconds = await measure(loads, players, args.repeats, args.warmup)
    results = rows(loads, players, seconds)
    print()
    print(table(results))
    path = write_json("modes", {"machine": info, "workers": args.workers, "results": results})
    title = chart_title(args.workers, args.repeats, info)
    print(f"\nwrote {path} and {plot(results, title)}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--repeats", type=int, default=3, help="rounds (median), default 3")
    parser.add_argument(
        "--warmup", type=int, default=1, help="rounds run first and not counted, default 1"
    )
    parser.add_argument("--workers", type=int, default=2, help="threads/processes, default 2")
    parser.add_argument(
        "--scale", type=float, default=1.0, help="multiply every workload's size (default 1)"
    )
    parser.add_argument("--workloads", help="comma-separated workload names (default: all)")
    parser.add_argument(
        "--contenders", help="comma-separated names or parts of names (default: all)"
    )
    parser.add_argument("--plot", metavar="JSON", help="only redraw the chart from a JSON file")
    args = parser.parse_args()
    if args.plot:
        replot(args.plot)
    else:
        asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
