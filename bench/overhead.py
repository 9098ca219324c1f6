"""Process executor overhead against the standard library's pools, side by side.

    python bench/overhead.py [--workers 2] [--repeats 5] [--quick]
        [--cases trivial,relay,cpu,cancel,startup] [--relay-windows 256,1024,4096]

Every case runs in this one process, interleaved round by round, each pool warmed up
before its clock starts; medians of ``--repeats``. Where one case's leftovers (exiting
workers, a drained queue) could slow the next, the order turns from round to round:
the relay cases rotate, the CPU-bound and start-up pairs alternate, and their ratios
are medians of per-round ratios. ``--cases`` runs a subset (its JSON is named after
it); ``--relay-windows`` adds relays through executors of other credit windows. Cases:

1. trivial tasks: 50,000 calls of a function returning its small int argument, one
   envelope each, no user-visible chunking -- pullpush runner over a ProcessExecutor,
   ``ProcessPoolExecutor.submit`` + ``as_completed``, ``Pool.imap_unordered(chunksize=1)``;
2. envelope relay: 2 tasks each yielding 200,000 small values -- pullpush INTERMEDIATE
   envelopes read one by one (``run_tasks``) and in batches (``run_batches``, counting
   each batch's runs of values without building envelopes), against
   ProcessPoolExecutor tasks reporting progress through a ``multiprocessing.Queue``
   handed to the workers by their initializer; besides the wall time, the parent's
   CPU time per envelope (``time.process_time``: what relaying costs the parent, not
   the workers), and paired ratios of the batched consumer to the one-by-one one;
3. CPU-bound: 64 tasks of about 50 ms of pure Python -- pullpush process and
   ProcessPoolExecutor (alternating which goes first; the ratio is the median of the
   per-round ratios), and inline (one core) for the speedup; a sampler records the
   share of time every core was busy;
4. start-up: from creating the pool to the first result (same start method; the two
   pools alternate which starts first);
5. unique memory (USS) per worker, pullpush and ProcessPoolExecutor;
6. cancellation: an async task waiting in a worker is cancelled through its handle;
   the time until its ERROR envelope is back (the issue's target: within 100 ms).

The consumers do what a performance-aware user does: they compare ``envelope.type``
with a local alias of ``EnvelopeType.INTERMEDIATE`` (looking an enum member up on its
class costs about 140 ns per access on CPython 3.11, as much as the relay itself).
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures as cf
import functools
import multiprocessing
import statistics
import threading
import time
from collections.abc import AsyncGenerator, Generator
from typing import Any

import psutil
from _harness import machine, paired_ratio, write_json

from pullpush import CapacitySource, EnvelopeType, HierarchicalTaskPoolRunner, ProcessExecutor

START_METHOD = "forkserver"


# -- task functions (module level: the workers import this module) -----------------------


def identity(x: int) -> int:
    return x


def count(n: int) -> Generator[int, None, int]:
    yield from range(n)
    return n


_progress: Any = None


def _init_progress(queue: Any) -> None:
    global _progress
    _progress = queue


def count_to_queue(n: int) -> int:
    put = _progress.put
    for i in range(n):
        put(i)
    put(None)
    return n


def burn(iterations: int) -> int:
    total = 0
    for i in range(iterations):
        total += i * i % 7
    return total


def calibrate(seconds: float) -> int:
    """Iterations of :func:`burn` that take about ``seconds`` on this machine."""
    n = 100_000
    while True:
        start = time.perf_counter()
        burn(n)
        took = time.perf_counter() - start
        if took > 0.05:
            return int(n * seconds / took)
        n *= 2


class BusySampler:
    """Sample per-CPU utilisation in a thread; report the share of samples in which
    every core was at least ``threshold`` percent busy."""

    def __init__(self, interval: float = 0.05, threshold: float = 90.0) -> None:
        self.interval = interval
        self.threshold = threshold
        self.samples: list[list[float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> BusySampler:
        psutil.cpu_percent(percpu=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.samples.append(psutil.cpu_percent(percpu=True))

    @property
    def all_busy_share(self) -> float:
        if not self.samples:
            return 0.0
        busy = sum(all(p >= self.threshold for p in cpus) for cpus in self.samples)
        return busy / len(self.samples)


# -- the cases ----------------------------------------------------------------------------


async def pullpush_trivial(executor: ProcessExecutor, n: int) -> float:
    runner = HierarchicalTaskPoolRunner(
        "trivial",
        (functools.partial(identity, i) for i in range(n)),
        CapacitySource(n),
        executor=executor,
    )
    start = time.perf_counter()
    total = 0
    async for _ in runner.run_tasks():
        total += 1
    took = time.perf_counter() - start
    assert total == n
    return took


def ppe_trivial(pool: cf.ProcessPoolExecutor, n: int) -> float:
    start = time.perf_counter()
    futures = [pool.submit(identity, i) for i in range(n)]
    for future in cf.as_completed(futures):
        future.result()
    return time.perf_counter() - start


def pool_trivial(pool: Any, n: int) -> float:
    start = time.perf_counter()
    got = sum(1 for _ in pool.imap_unordered(identity, range(n), chunksize=1))
    assert got == n
    return time.perf_counter() - start


# The parent's CPU time of the last relay (time.process_time: this process only).
relay_cpu: list[float] = [0.0]


async def pullpush_relay(executor: ProcessExecutor, tasks: int, values: int) -> float:
    runner = HierarchicalTaskPoolRunner(
        "relay",
        [functools.partial(count, values)] * tasks,
        CapacitySource(tasks),
        executor=executor,
    )
    intermediate = EnvelopeType.INTERMEDIATE
    cpu = time.process_time()
    start = time.perf_counter()
    received = 0
    async for envelope in runner.run_tasks():
        if envelope.type is intermediate:
            received += 1
    took = time.perf_counter() - start
    relay_cpu[0] = time.process_time() - cpu
    assert received == tasks * values, received
    return took


async def pullpush_relay_batches(executor: ProcessExecutor, tasks: int, values: int) -> float:
    """The relay read with ``run_batches``: runs of values counted, no envelope built."""
    runner = HierarchicalTaskPoolRunner(
        "relay",
        [functools.partial(count, values)] * tasks,
        CapacitySource(tasks),
        executor=executor,
    )
    intermediate = EnvelopeType.INTERMEDIATE
    cpu = time.process_time()
    start = time.perf_counter()
    received = 0
    async for batch in runner.run_batches():
        for group in batch.groups():
            if group.type is intermediate:
                received += len(group.values)  # type: ignore[union-attr]
    took = time.perf_counter() - start
    relay_cpu[0] = time.process_time() - cpu
    assert received == tasks * values, received
    return took


def ppe_queue_relay(pool: cf.ProcessPoolExecutor, queue: Any, tasks: int, values: int) -> float:
    start = time.perf_counter()
    futures = [pool.submit(count_to_queue, values) for _ in range(tasks)]
    received = finished = 0
    while finished < tasks:
        if queue.get() is None:
            finished += 1
        else:
            received += 1
    for future in futures:
        future.result()
    took = time.perf_counter() - start
    assert received == tasks * values
    return took


async def pullpush_cpu(executor: ProcessExecutor, tasks: int, iterations: int) -> float:
    runner = HierarchicalTaskPoolRunner(
        "cpu",
        [functools.partial(burn, iterations)] * tasks,
        CapacitySource(tasks),
        executor=executor,
    )
    start = time.perf_counter()
    async for _ in runner.run_tasks():
        pass
    return time.perf_counter() - start


def ppe_cpu(pool: cf.ProcessPoolExecutor, tasks: int, iterations: int) -> float:
    start = time.perf_counter()
    list(pool.map(burn, [iterations] * tasks))
    return time.perf_counter() - start


def inline_cpu(tasks: int, iterations: int) -> float:
    start = time.perf_counter()
    for _ in range(tasks):
        burn(iterations)
    return time.perf_counter() - start


async def pullpush_startup(workers: int) -> float:
    start = time.perf_counter()
    executor = ProcessExecutor(workers, start_method=START_METHOD)
    await executor.start()
    await executor.run(identity, 1)
    took = time.perf_counter() - start
    await executor.aclose()
    return took


def ppe_startup(workers: int) -> float:
    start = time.perf_counter()
    context = multiprocessing.get_context(START_METHOD)
    with cf.ProcessPoolExecutor(workers, mp_context=context) as pool:
        pool.submit(identity, 1).result()
        took = time.perf_counter() - start
    return took


async def started_then_waits() -> AsyncGenerator[str, None]:
    yield "started"
    await asyncio.Event().wait()


async def pullpush_cancel_latency(executor: ProcessExecutor) -> float:
    """Seconds from ``cancel()`` to the task's ERROR envelope, for an async task
    waiting in its worker (cancelled there, not by killing the worker)."""
    stream = executor.stream(started_then_waits)
    first = await stream.__anext__()
    assert first.value == "started"
    start = time.perf_counter()
    await stream.aclose()  # cancels the task and waits for its end to be reported
    return time.perf_counter() - start


def uss_mib(pids: list[int]) -> list[float]:
    return [psutil.Process(p).memory_full_info().uss / 2**20 for p in pids]


# -- driver ---------------------------------------------------------------------------------


CASES = ("trivial", "relay", "cpu", "cancel", "startup")


def median(values: list[float]) -> float:
    return statistics.median(values)


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    workers, cases = args.workers, args.cases
    trivial_n = 10_000 if args.quick else 50_000
    relay_values = 50_000 if args.quick else 200_000
    cpu_tasks = 16 if args.quick else 64
    iterations = calibrate(0.05)
    context = multiprocessing.get_context(START_METHOD)
    times: dict[str, list[float]] = {}
    cpu_times: dict[str, list[float]] = {}
    busy: dict[str, list[float]] = {}

    def record(name: str, seconds: float) -> None:
        times.setdefault(name, []).append(seconds)

    async def alternating(round_number: int, pair: list[tuple[str, Any]], sample: bool) -> None:
        """Run both cases of ``pair``, in turns first: one that runs right after
        another competes with what that one left behind (exiting workers, caches)."""
        for name, case in pair if round_number % 2 == 0 else pair[::-1]:
            if sample:
                with BusySampler() as sampler:
                    record(name, await case())
                busy.setdefault(name, []).append(sampler.all_busy_share)
            else:
                record(name, await case())

    loop = asyncio.get_running_loop()
    executor = ProcessExecutor(workers, start_method=START_METHOD)
    windowed = {
        window: ProcessExecutor(workers, start_method=START_METHOD, credit_window=window)
        for window in args.relay_windows
    }
    # Started first: the forkserver starts with the first process of any pool, and only
    # then does it preload what ProcessExecutor asks for (pullpush's worker module).
    await executor.start()
    progress: Any = context.Queue()
    ppe = cf.ProcessPoolExecutor(workers, mp_context=context)
    ppe_progress = cf.ProcessPoolExecutor(
        workers, mp_context=context, initializer=_init_progress, initargs=(progress,)
    )
    pool = context.Pool(workers)
    try:
        # warm-up: every pool has its workers up and this module imported
        for pullpush_pool in [executor, *windowed.values()]:
            await pullpush_pool.start()
            await pullpush_pool.run(identity, 0)
        ppe.submit(identity, 0).result()
        ppe_progress.submit(identity, 0).result()
        pool.apply(identity, (0,))
        # ProcessPoolExecutor starts forkserver workers as work needs them: all of them
        # up, for the memory comparison even when the cases run leave some idle
        list(ppe.map(time.sleep, [0.05] * workers))
        for round_number in range(args.repeats):
            if "trivial" in cases:
                record(
                    "trivial: pullpush process runner", await pullpush_trivial(executor, trivial_n)
                )
                record(
                    "trivial: ProcessPoolExecutor.submit",
                    await loop.run_in_executor(None, ppe_trivial, ppe, trivial_n),
                )
                record(
                    "trivial: Pool.imap_unordered(chunksize=1)",
                    await loop.run_in_executor(None, pool_trivial, pool, trivial_n),
                )
            if "relay" in cases:
                relays: list[tuple[str, Any]] = [
                    (
                        "relay: pullpush envelopes",
                        lambda: pullpush_relay(executor, 2, relay_values),
                    ),
                    (
                        "relay: pullpush run_batches",
                        lambda: pullpush_relay_batches(executor, 2, relay_values),
                    ),
                    (
                        "relay: ProcessPoolExecutor + multiprocessing.Queue",
                        lambda: loop.run_in_executor(
                            None, ppe_queue_relay, ppe_progress, progress, 2, relay_values
                        ),
                    ),
                ]
                relays += [
                    (
                        f"relay: pullpush, credit_window={window}",
                        functools.partial(pullpush_relay, windowed_pool, 2, relay_values),
                    )
                    for window, windowed_pool in windowed.items()
                ]
                # rotated: each case comes first, and after each other one, in turn
                shift = round_number % len(relays)
                for name, relay in relays[shift:] + relays[:shift]:
                    relay_cpu[0] = float("nan")
                    record(name, await relay())
                    if name.startswith("relay: pullpush"):
                        cpu_times.setdefault(name, []).append(relay_cpu[0])
            if "cpu" in cases:
                cpu_pair = [
                    (
                        "cpu: pullpush process",
                        lambda: pullpush_cpu(executor, cpu_tasks, iterations),
                    ),
                    (
                        "cpu: ProcessPoolExecutor.map",
                        lambda: loop.run_in_executor(None, ppe_cpu, ppe, cpu_tasks, iterations),
                    ),
                ]
                await alternating(round_number, cpu_pair, sample=True)
                record("cpu: inline (one core)", inline_cpu(cpu_tasks, iterations))
            if "cancel" in cases:
                for _ in range(10):
                    record(
                        "cancel: async task in a worker", await pullpush_cancel_latency(executor)
                    )
            if "startup" in cases:
                startup_pair = [
                    ("startup: pullpush ProcessExecutor", lambda: pullpush_startup(workers)),
                    (
                        "startup: ProcessPoolExecutor",
                        lambda: loop.run_in_executor(None, ppe_startup, workers),
                    ),
                ]
                await alternating(round_number, startup_pair, sample=False)
        uss = {
            "pullpush ProcessExecutor": uss_mib(executor.pids),
            "ProcessPoolExecutor": uss_mib([p.pid for p in ppe._processes.values()]),
        }
    finally:
        for pullpush_pool in [executor, *windowed.values()]:
            await pullpush_pool.aclose()
        ppe.shutdown()
        ppe_progress.shutdown()
        pool.close()
        pool.join()
    return {
        "times": times,
        "parent_cpu": cpu_times,
        "busy": busy,
        "uss": uss,
        "n": {"trivial": trivial_n, "relay": 2 * relay_values, "cpu": cpu_tasks},
        "iterations_per_task": iterations,
    }


def report(result: dict[str, Any], workers: int) -> str:
    times = result["times"]
    t = {name: median(values) for name, values in times.items()}
    n = result["n"]
    lines = ["| case | median (s) | rate | ratio |", "|---|---:|---:|---:|"]

    def row(name: str, rate: str, ratio: str) -> None:
        lines.append(f"| {name} | {t[name]:.3f} | {rate} | {ratio} |")

    def paired(name: str, base: str) -> float:
        return paired_ratio(times[name], times[base])

    if "trivial: pullpush process runner" in t:
        ours = t["trivial: pullpush process runner"]
        row("trivial: pullpush process runner", f"{n['trivial'] / ours:,.0f} tasks/s", "1.0x")
        for name in [
            "trivial: ProcessPoolExecutor.submit",
            "trivial: Pool.imap_unordered(chunksize=1)",
        ]:
            rate = f"{n['trivial'] / t[name]:,.0f} tasks/s"
            row(name, rate, f"pullpush {t[name] / ours:.1f}x faster")
    if "relay: pullpush envelopes" in t:
        ours = t["relay: pullpush envelopes"]
        row("relay: pullpush envelopes", f"{n['relay'] / ours:,.0f} envelopes/s", "1.0x")
        for name in [k for k in t if k.startswith("relay: pullpush, credit_window=")]:
            row(
                name,
                f"{n['relay'] / t[name]:,.0f} envelopes/s",
                f"{paired(name, 'relay: pullpush envelopes'):.2f}x the time (paired)",
            )
        cpu = result["parent_cpu"]
        base = "relay: pullpush envelopes"
        for name in [base, "relay: pullpush run_batches"]:
            per = median(cpu[name]) / n["relay"] * 1e6
            seconds = median(cpu[name])
            lines.append(f"| {name}: parent CPU | {seconds:.3f} | {per:.2f} us/envelope | |")
        name = "relay: pullpush run_batches"
        row(
            name,
            f"{n['relay'] / t[name]:,.0f} envelopes/s",
            f"{paired(name, base):.2f}x the time (paired)",
        )
        lines.append(
            f"| {name}: parent CPU per envelope | | | "
            f"{paired_ratio(cpu[name], cpu[base]):.2f}x run_tasks' (paired) |"
        )
        name = "relay: ProcessPoolExecutor + multiprocessing.Queue"
        row(
            name,
            f"{n['relay'] / t[name]:,.0f} envelopes/s",
            f"pullpush {t[name] / ours:.1f}x faster",
        )
    if "cpu: inline (one core)" in t:
        inline = t["cpu: inline (one core)"]
        for name in [
            "cpu: pullpush process",
            "cpu: ProcessPoolExecutor.map",
            "cpu: inline (one core)",
        ]:
            speedup = inline / t[name]
            busy = result["busy"].get(name)
            busy_text = f", all cores busy {median(busy):.0%} of the time" if busy else ""
            rate = f"speedup {speedup:.2f}, efficiency {speedup / workers:.0%}{busy_text}"
            row(
                name,
                rate,
                f"{paired(name, 'cpu: ProcessPoolExecutor.map'):.3f}x the PPE time (paired)",
            )
    if "cancel: async task in a worker" in t:
        cancels = times["cancel: async task in a worker"]
        lines.append(
            f"| cancel: async task in a worker | {t['cancel: async task in a worker']:.4f} | "
            f"max {max(cancels) * 1000:.1f} ms of {len(cancels)} | target 100 ms |"
        )
    if "startup: ProcessPoolExecutor" in t:
        for name in ["startup: pullpush ProcessExecutor", "startup: ProcessPoolExecutor"]:
            row(
                name,
                "",
                f"{paired(name, 'startup: ProcessPoolExecutor'):.2f}x the PPE time (paired)",
            )
    for pool_name, values in result["uss"].items():
        mib = ", ".join(f"{v:.1f} MiB" for v in values)
        lines.append(f"| USS per worker: {pool_name} | | {mib} | |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run")
    parser.add_argument(
        "--cases",
        type=lambda text: text.split(","),
        default=list(CASES),
        help=f"comma-separated subset of {','.join(CASES)} (default: all)",
    )
    parser.add_argument(
        "--relay-windows",
        type=lambda text: [int(w) for w in text.split(",")],
        default=[],
        metavar="N,N",
        help="also relay through executors with these credit windows, side by side",
    )
    args = parser.parse_args()
    unknown = set(args.cases) - set(CASES)
    if unknown:
        parser.error(f"--cases: unknown {', '.join(map(repr, sorted(unknown)))}")
    if any(window < 1 for window in args.relay_windows):
        parser.error("--relay-windows: each window must be >= 1")
    if args.relay_windows and "relay" not in args.cases:
        parser.error("--relay-windows needs the relay case")
    result = asyncio.run(main_async(args))
    print(f"workers={args.workers}, start method {START_METHOD}, median of {args.repeats}")
    print(f"machine: {machine()}")
    print(report(result, args.workers))
    name = "overhead" if set(args.cases) == set(CASES) else f"overhead-{'-'.join(args.cases)}"
    write_json(name, {"machine": machine(), "args": vars(args), **result})


if __name__ == "__main__":
    main()
