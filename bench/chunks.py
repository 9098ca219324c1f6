"""Chunk analysis: 1 GiB cut into chunks through process pools, against the machine's limit.

    python bench/chunks.py [--size-mib 1024] [--workers 2] [--repeats 3] [--quick]
        [--cases limit,partial,closure,path,map,warm,ppe,pool,joblib]
        [--workloads blake2b,touch,wordcount] [--chunk-kib 4096,64]

Two workloads, every contender in the same run, on ``--workers`` worker processes:

* **Chunks of bytes.** ``--size-mib`` of seeded random bytes (built once per run), cut
  into chunks of each ``--chunk-kib`` size, with BLAKE2b per chunk (``blake2b``) and with
  almost no CPU per chunk (``touch``: the length and three bytes). Contenders:

  - ``limit``: the time the machine needs. Two processes read the data from
    ``multiprocessing.shared_memory`` by offset (a zero-copy view), taking the next
    chunk index from a shared counter; nothing is pickled or piped.
  - ``partial``: ``HierarchicalTaskPoolRunner`` (capacity 64: the executor's own
    slots are the real limit) over a ``ProcessExecutor``, each task
    ``functools.partial(work, chunk)``.
  - ``closure``: the same, each task a closure that captured its chunk.
  - ``path``: the same, each task ``functools.partial(work_file, path, offset,
    length)``: the worker reads its chunk from a file (in the page cache) itself.
  - ``map``: ``await pullpush.map(work, chunks, executor=...)``.
  - ``warm``: ``partial`` on an executor that first ran 10,000 trivial tasks (its
    adaptive prefetch learned from them), against ``partial`` on a fresh one.
  - ``ppe``: ``concurrent.futures.ProcessPoolExecutor.map(work, chunks,
    chunksize=--chunksize)``.
  - ``pool``: ``multiprocessing.Pool.imap_unordered(work, chunks, chunksize=--chunksize)``.
  - ``joblib``: ``joblib.Parallel(n_jobs=workers, backend="loky")`` with
    ``delayed(work)(chunk)`` (skipped when joblib is not installed).

  Every pool is created, and runs one no-op per worker, before the clock starts, and is
  closed after it stops (joblib's reusable loky executor stays up, as joblib keeps
  it); the limit's workers and its shared memory are set up once per run.

* **The user's program** (``wordcount``): a ~126 MB text from the demo's corpus
  generator (``--text-mb``), cut at whitespace into 512 KiB ``str`` chunks; the task
  returns the chunk's word counts (``Counter`` -> ``dict``), merged in the parent.
  Written as a newcomer would, each building its pool inside the clock:
  ``HierarchicalTaskPoolRunner(..., capacity 4, executor="process", workers=workers)``
  over ``partial(analyse, chunk)`` (``partial``), ``await pullpush.map(analyse, chunks,
  workers=workers)`` (``map``), and ``with ProcessPoolExecutor(workers) as pool:
  pool.map(analyse, chunks)`` (``ppe``).

All pools start their workers with forkserver (ProcessExecutor's default). Rounds
run every contender of a workload in an order that turns (reversed every other round,
rotated by one every two), so a drift of the machine favours no contender.
Reported per case: the median wall time and its spread ((max - min) / median), the
paired ratios to the limit and to ``ppe`` (median over rounds of the ratio within
the round), the parent's CPU time per GiB of input (``time.process_time``, all its
threads), and the workers' idle share: 1 - (the seconds the task functions spent on
their work, measured in the workers) / (workers x wall time). Every contender's
answer is checked: the sorted per-chunk digests or values against ones computed in
the parent, and the merged word counts against each other.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures as cf
import functools
import gc
import json
import multiprocessing
import os
import random
import shutil
import statistics
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from multiprocessing import shared_memory
from pathlib import Path
from typing import Any

import _chunk_tasks as work
from _harness import machine, paired_ratio, write_json

import pullpush
from pullpush import (
    CapacitySource,
    EnvelopeType,
    HierarchicalTaskPoolRunner,
    ProcessExecutor,
)
from pullpush.demo._corpus import CorpusSpec, rechunk

START_METHOD = "forkserver"
CAPACITY = 64  # the runner's own limit: the executor's slots are the real one
NEWCOMER_CAPACITY = 4
TEXT_CHUNK = 512 * 1024  # characters per word-count chunk (the demo's default)
MIB = 1 << 20
GIB = 1 << 30
ALL_CASES = ("limit", "partial", "closure", "path", "map", "warm", "ppe", "pool", "joblib")
WORDCOUNT_CASES = ("partial", "map", "ppe")
LABELS = {
    "limit": "the limit (shared memory, as many processes as workers)",
    "partial": "pullpush partial(work, chunk)",
    "closure": "pullpush closure",
    "path": "pullpush partial(work, path, offset, length)",
    "map": "pullpush.map",
    "warm": "pullpush partial, pool warmed by trivial tasks",
    "ppe": "ProcessPoolExecutor.map",
    "pool": "Pool.imap_unordered",
    "joblib": "joblib (loky)",
}
WORDCOUNT_LABELS = {
    "partial": 'pullpush runner, partial(analyse, chunk), capacity 4, executor="process"',
    "map": "await pullpush.map(analyse, chunks)",
    "ppe": "with ProcessPoolExecutor() as pool: pool.map(analyse, chunks)",
}


@dataclass
class Workload:
    key: str
    kind: str  # "blake2b", "touch" or "wordcount"
    chunk_size: int
    chunks: list[Any]
    nbytes: int
    expected: Any = None  # sorted values (bytes workloads); the first answer (wordcount)
    spans: list[tuple[int, int]] = field(default_factory=list)

    @property
    def title(self) -> str:
        if self.kind == "wordcount":
            return (
                f"wordcount: {self.nbytes / 1e6:.0f} MB of text in {len(self.chunks)} str "
                f"chunks of {self.chunk_size // 1024} KiB, a dict of word counts back"
            )
        size = (
            f"{self.chunk_size // MIB} MiB"
            if self.chunk_size >= MIB
            else (f"{self.chunk_size // 1024} KiB")
        )
        return (
            f"{self.kind}, {size} chunks ({len(self.chunks)} chunks, {self.nbytes / MIB:.0f} MiB)"
        )


@dataclass
class Record:
    seconds: list[float] = field(default_factory=list)
    parent_cpu: list[float] = field(default_factory=list)
    busy: list[float] = field(default_factory=list)


Outcome = tuple[Any, float]  # (what to check, busy seconds in the workers)


class Contender:
    """A pool set up before the clock (``setup``), timed in ``run``, closed after it."""

    def __init__(self, key: str, loop: asyncio.AbstractEventLoop, args: argparse.Namespace):
        self.key = key
        self.loop = loop
        self.args = args

    def setup(self, workload: Workload) -> None:
        pass

    def run(self, workload: Workload) -> Outcome:
        raise NotImplementedError

    def teardown(self) -> None:
        pass


def values_and_busy(pairs: Any) -> Outcome:
    values = []
    busy = 0.0
    for value, seconds in pairs:
        values.append(value)
        busy += seconds
    return values, busy


# -- the limit --------------------------------------------------------------------------------


class Limit(Contender):
    """Two processes hashing views of shared memory, a shared counter handing out chunks."""

    def __init__(self, *a: Any, data: shared_memory.SharedMemory, size: int) -> None:
        super().__init__(*a)
        context = multiprocessing.get_context(START_METHOD)
        self.size = size
        self.counter = context.Value("q", 0)
        self.conns = []
        self.processes = []
        for _ in range(self.args.workers):
            parent, child = context.Pipe()
            process = context.Process(
                target=work.limit_worker, args=(child, data.name, self.counter), daemon=True
            )
            process.start()
            child.close()
            self.conns.append(parent)
            self.processes.append(process)

    def run(self, workload: Workload) -> Outcome:
        self.counter.value = 0
        for conn in self.conns:
            conn.send((workload.kind, workload.chunk_size, self.size))
        values: list[Any] = []
        busy = 0.0
        for conn in self.conns:
            got, seconds = conn.recv()
            values += got
            busy += seconds
        return values, busy

    def close(self) -> None:
        for conn in self.conns:
            conn.send(None)
        for process in self.processes:
            process.join(10)
        for conn in self.conns:
            conn.close()


# -- pullpush ----------------------------------------------------------------------------------


async def run_runner(tasks: Any, capacity: int, executor: Any, workers: int | None) -> list[Any]:
    runner = HierarchicalTaskPoolRunner(
        "chunks", tasks, CapacitySource(capacity), executor=executor, workers=workers
    )
    results = []
    async for envelope in runner.run_tasks(stop_on_error=True):
        if envelope.type is EnvelopeType.FINAL:
            results.append(envelope.value)
    return results


class Pullpush(Contender):
    """A fresh ProcessExecutor per run (``warm``: after 10,000 trivial tasks)."""

    executor: ProcessExecutor

    def setup(self, workload: Workload) -> None:
        async def start() -> ProcessExecutor:
            executor = ProcessExecutor(self.args.workers, start_method=START_METHOD)
            await executor.start()
            workers = self.args.workers
            await asyncio.gather(*(executor.run(work.noop, i) for i in range(workers)))
            if self.key == "warm":
                trivial = (functools.partial(work.noop, i) for i in range(self.args.warm_tasks))
                done = await run_runner(trivial, 1024, executor, None)
                assert len(done) == self.args.warm_tasks
            return executor

        self.executor = self.loop.run_until_complete(start())

    def run(self, workload: Workload) -> Outcome:
        fn = work.WORK[workload.kind]
        chunks = workload.chunks
        tasks: Any
        if self.key in ("partial", "warm"):
            tasks = (functools.partial(fn, chunk) for chunk in chunks)
        elif self.key == "closure":
            tasks = (work.closure(fn, chunk) for chunk in chunks)
        elif self.key == "path":
            file_fn, path = work.FILE_WORK[workload.kind], str(self.args.data_path)
            tasks = (functools.partial(file_fn, path, o, n) for o, n in workload.spans)
        else:
            assert self.key == "map"
            pairs = self.loop.run_until_complete(pullpush.map(fn, chunks, executor=self.executor))
            return values_and_busy(pairs)
        pairs = self.loop.run_until_complete(run_runner(tasks, CAPACITY, self.executor, None))
        return values_and_busy(pairs)

    def teardown(self) -> None:
        self.loop.run_until_complete(self.executor.aclose())


# -- the other pools ---------------------------------------------------------------------------


class Stdlib(Contender):
    """ProcessPoolExecutor.map or Pool.imap_unordered, a fresh pool per run."""

    pool: Any

    def setup(self, workload: Workload) -> None:
        context = multiprocessing.get_context(START_METHOD)
        if self.key == "ppe":
            self.pool = cf.ProcessPoolExecutor(self.args.workers, mp_context=context)
            list(self.pool.map(work.noop, range(self.args.workers)))
        else:
            self.pool = context.Pool(self.args.workers)
            self.pool.map(work.noop, range(self.args.workers), chunksize=1)

    def run(self, workload: Workload) -> Outcome:
        fn = work.WORK[workload.kind]
        size = self.args.chunksize
        if self.key == "ppe":
            return values_and_busy(self.pool.map(fn, workload.chunks, chunksize=size))
        return values_and_busy(self.pool.imap_unordered(fn, workload.chunks, chunksize=size))

    def teardown(self) -> None:
        if self.key == "ppe":
            self.pool.shutdown()
        else:
            self.pool.close()
            self.pool.join()


class Joblib(Contender):
    def setup(self, workload: Workload) -> None:
        import joblib

        self.joblib = joblib
        self.parallel = joblib.Parallel(n_jobs=self.args.workers, backend="loky")
        self.parallel(joblib.delayed(work.noop)(i) for i in range(self.args.workers))

    def run(self, workload: Workload) -> Outcome:
        fn = self.joblib.delayed(work.WORK[workload.kind])
        return values_and_busy(self.parallel(fn(chunk) for chunk in workload.chunks))


# -- the user's program -------------------------------------------------------------------------


class Newcomer(Contender):
    """The word count written plainly: the pool is built (and closed) inside the clock."""

    def run(self, workload: Workload) -> Outcome:
        workers = self.args.workers
        if self.key == "partial":
            tasks = (functools.partial(work.analyse, chunk) for chunk in workload.chunks)
            pairs = self.loop.run_until_complete(
                run_runner(tasks, NEWCOMER_CAPACITY, "process", workers)
            )
        elif self.key == "map":
            pairs = self.loop.run_until_complete(
                pullpush.map(work.analyse, workload.chunks, workers=workers)
            )
        else:
            context = multiprocessing.get_context(START_METHOD)
            with cf.ProcessPoolExecutor(workers, mp_context=context) as pool:
                return merge(pool.map(work.analyse, workload.chunks))
        return merge(pairs)


def merge(pairs: Any) -> Outcome:
    total: Counter[str] = Counter()
    busy = 0.0
    for counts, seconds in pairs:
        total.update(counts)
        busy += seconds
    return total, busy


# -- data ----------------------------------------------------------------------------------------


def random_bytes(size: int) -> bytearray:
    """``size`` bytes from ``random.Random(0)``, the same in every run."""
    rng = random.Random(0)
    data = bytearray(size)
    block = 4 * MIB
    for offset in range(0, size, block):
        n = min(block, size - offset)
        data[offset : offset + n] = rng.randbytes(n)
    return data


def byte_workloads(data: bytes | bytearray, kinds: list[str], sizes: list[int]) -> list[Workload]:
    """One workload per (chunk size, kind); the expected values computed here, once."""
    workloads = []
    total = len(data)
    for chunk_size in sizes:
        spans = [(o, min(chunk_size, total - o)) for o in range(0, total, chunk_size)]
        chunks = [bytes(data[o : o + n]) for o, n in spans]
        for kind in kinds:
            fn = work.WORK[kind]
            expected = sorted(fn(chunk)[0] for chunk in chunks)
            key = f"{kind}-{chunk_size // 1024}KiB"
            workloads.append(Workload(key, kind, chunk_size, chunks, total, expected, spans))
    return workloads


def text_workload(text_bytes: int) -> Workload:
    spec = CorpusSpec(text_bytes)
    chunks = list(rechunk(spec.pages(), TEXT_CHUNK))
    nbytes = sum(len(c) for c in chunks)  # ASCII: characters are bytes
    return Workload("wordcount", "wordcount", TEXT_CHUNK, chunks, nbytes)


def check(workload: Workload, answer: Any, label: str) -> None:
    if workload.kind == "wordcount":
        if workload.expected is None:
            if not answer or sum(answer.values()) == 0:
                raise AssertionError(f"{label}: no words counted")
            workload.expected = answer
        elif answer != workload.expected:
            raise AssertionError(f"{label}: word counts differ from another contender's")
        return
    if sorted(answer) != workload.expected:
        raise AssertionError(f"{label}: per-chunk results differ from the parent's")


# -- the run -------------------------------------------------------------------------------------


def turned(items: list[Any], round_number: int) -> list[Any]:
    """Reversed every other round, rotated by one every two rounds."""
    order = list(reversed(items)) if round_number % 2 else list(items)
    shift = (round_number // 2) % len(order) if order else 0
    return order[shift:] + order[:shift]


def timed(contender: Contender, workload: Workload, record: Record, label: str) -> None:
    contender.setup(workload)
    try:
        gc.collect()
        cpu = time.process_time()
        start = time.perf_counter()
        answer, busy = contender.run(workload)
        wall = time.perf_counter() - start
        cpu = time.process_time() - cpu
    finally:
        contender.teardown()
    check(workload, answer, label)
    record.seconds.append(wall)
    record.parent_cpu.append(cpu)
    record.busy.append(busy)


def summary(
    records: dict[str, Record], workers: int, nbytes: int
) -> dict[str, dict[str, float | None]]:
    out: dict[str, dict[str, float | None]] = {}
    for key, record in records.items():
        median = statistics.median(record.seconds)
        idle = [1 - b / (workers * s) for b, s in zip(record.busy, record.seconds, strict=True)]
        limit, ppe = records.get("limit"), records.get("ppe")
        out[key] = {
            "median_s": median,
            "spread": (max(record.seconds) - min(record.seconds)) / median,
            "vs_limit": paired_ratio(record.seconds, limit.seconds) if limit else None,
            "vs_ppe": paired_ratio(record.seconds, ppe.seconds) if ppe else None,
            "parent_cpu_s_per_gib": statistics.median(record.parent_cpu) / (nbytes / GIB),
            "worker_idle": statistics.median(idle),
        }
    return out


def print_table(
    workload: Workload, rows: dict[str, dict[str, float | None]], labels: dict[str, str]
) -> None:
    def ratio(value: float | None) -> str:
        return "" if value is None else f"{value:.2f}x"

    print(f"\n### {workload.title}\n")
    print("| case | median s (spread) | vs limit | vs PPE.map | parent CPU s/GiB | worker idle |")
    print("|---|---:|---:|---:|---:|---:|")
    for key, row in rows.items():
        print(
            f"| {labels[key]} | {row['median_s']:.3f} ({row['spread']:.0%}) | "
            f"{ratio(row['vs_limit'])} | {ratio(row['vs_ppe'])} | "
            f"{row['parent_cpu_s_per_gib']:.3f} | {row['worker_idle']:.0%} |"
        )


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size-mib", type=int, default=None, help="bytes data (1024; quick 32)")
    parser.add_argument("--text-mb", type=float, default=None, help="text (126; quick 4)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3, help="rounds (median)")
    parser.add_argument("--cases", default=",".join(ALL_CASES), help="contenders to run")
    parser.add_argument("--workloads", default="blake2b,touch,wordcount")
    parser.add_argument("--chunk-kib", default="4096,64", help="chunk sizes of the bytes")
    parser.add_argument(
        "--chunksize", type=int, default=1, help="chunksize of PPE.map and Pool.imap_unordered"
    )
    parser.add_argument(
        "--warm-tasks", type=int, default=None, help="trivial tasks before 'warm' (10,000)"
    )
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument(
        "--out", type=Path, default=None, help="folder of chunks.json (default: bench/results)"
    )
    args = parser.parse_args()
    if args.size_mib is None:
        args.size_mib = 32 if args.quick else 1024
    if args.text_mb is None:
        args.text_mb = 4 if args.quick else 126
    if args.warm_tasks is None:
        args.warm_tasks = 1000 if args.quick else 10_000
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = set(cases) - set(ALL_CASES)
    if unknown:
        parser.error(f"unknown cases {sorted(unknown)}; known: {', '.join(ALL_CASES)}")
    if "joblib" in cases:
        try:
            import joblib  # noqa: F401
        except ImportError:
            print("joblib is not installed: skipping it (pip install joblib)")
            cases.remove("joblib")
    wanted = [w.strip() for w in args.workloads.split(",") if w.strip()]
    kinds = [w for w in wanted if w in work.WORK]
    sizes = [int(k) * 1024 for k in args.chunk_kib.split(",")]

    info = machine()
    print("Chunk analysis through process pools, against the machine's limit")
    print(f"machine: {info}")
    print(f"load average before building the data: {load()}")
    loop = asyncio.new_event_loop()
    temp = Path(tempfile.mkdtemp(prefix="pullpush-chunks-"))
    args.data_path = temp / "data.bin"
    shm: shared_memory.SharedMemory | None = None
    limit: Limit | None = None
    try:
        # Started first, so the forkserver preloads pullpush (see ProcessExecutor's docs).
        loop.run_until_complete(pullpush.map(work.noop, range(2), workers=1))
        workloads: list[Workload] = []
        if kinds:
            size = args.size_mib * MIB
            built = time.perf_counter()
            data = random_bytes(size)
            args.data_path.write_bytes(data)
            shm = shared_memory.SharedMemory(create=True, size=size)
            shm.buf[:size] = data
            workloads += byte_workloads(data, kinds, sizes)
            del data
            print(f"built {args.size_mib} MiB of bytes in {time.perf_counter() - built:.1f} s")
            if "limit" in cases:
                limit = Limit("limit", loop, args, data=shm, size=size)
        if "wordcount" in wanted:
            built = time.perf_counter()
            workloads.append(text_workload(int(args.text_mb * 1e6)))
            print(f"built {args.text_mb} MB of text in {time.perf_counter() - built:.1f} s")

        def contender(key: str) -> Contender:
            if key == "limit":
                assert limit is not None
                return limit
            if key in ("partial", "closure", "path", "map", "warm"):
                return Pullpush(key, loop, args)
            if key in ("ppe", "pool"):
                return Stdlib(key, loop, args)
            return Joblib(key, loop, args)

        records: dict[str, dict[str, Record]] = {}
        for workload in workloads:
            if workload.kind == "wordcount":
                keys = [k for k in WORDCOUNT_CASES if k in cases]
            else:
                keys = list(cases)
            records[workload.key] = {k: Record() for k in keys}
        loads = [load()]
        for round_number in range(args.repeats):
            for workload in workloads:
                entries = records[workload.key]
                for key in turned(list(entries), round_number):
                    if workload.kind == "wordcount":
                        runner: Contender = Newcomer(key, loop, args)
                        label = WORDCOUNT_LABELS[key]
                    else:
                        runner, label = contender(key), LABELS[key]
                    timed(runner, workload, entries[key], f"{workload.key}: {label}")
            loads.append(load())
            print(f"round {round_number + 1}/{args.repeats} done, load average {loads[-1]}")
    finally:
        if limit is not None:
            limit.close()
        if shm is not None:
            shm.close()
            shm.unlink()
        shutil.rmtree(temp, ignore_errors=True)
        if "joblib" in cases:
            from joblib.externals.loky import get_reusable_executor

            get_reusable_executor().shutdown(wait=True)
        loop.close()

    print(
        f"\nworkers={args.workers}, {START_METHOD}, median of {args.repeats} rounds "
        f"(order turns each round), ratios paired, chunksize={args.chunksize} for "
        "PPE.map and imap_unordered"
    )
    results: dict[str, Any] = {}
    for workload in workloads:
        entries = records[workload.key]
        rows = summary(entries, args.workers, workload.nbytes)
        labels = WORDCOUNT_LABELS if workload.kind == "wordcount" else LABELS
        print_table(workload, rows, labels)
        if "warm" in entries and "partial" in entries:
            warm = paired_ratio(entries["warm"].seconds, entries["partial"].seconds)
            print(f"\nwarmed pool / fresh pool (paired): {warm:.2f}x")
        results[workload.key] = {
            "title": workload.title,
            "chunks": len(workload.chunks),
            "bytes": workload.nbytes,
            "summary": rows,
            "raw": {k: vars(r) for k, r in entries.items()},
        }
    print(f"\nload average after each round: {loads}")
    saved = vars(args) | {"data_path": None, "out": None}
    payload = {"machine": info, "args": saved, "load": loads, "workloads": results}
    if args.out is None:
        path = write_json("chunks", payload)
    else:
        args.out.mkdir(parents=True, exist_ok=True)
        path = args.out / "chunks.json"
        path.write_text(json.dumps(payload, indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
