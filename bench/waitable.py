"""Waitable tasks against tasks that hold their slot while they wait.

The workload of examples/approval_workflow.py: ``--n`` documents, capacity 4, each
analysed in two halves of ``--work`` seconds (I/O-bound: an ``await`` standing for a
model or service call), with an approval between them that an approver answers
``delay`` seconds after it is asked, for ``delay`` = 1x and 10x the work time.

* **holding**: the original runner's behaviour. The task asks for its approval and
  waits for it with a plain ``await`` on an event inside the task, so it keeps its
  capacity slot (and its executor slot) while it waits.
* **waitable**: ``waitable(review, doc)``; the task waits in ``await ctx.receive()``,
  holding nothing; the approver answers each WAITING envelope with ``runner.send``.

Both run on the inline, thread and process executors, interleaved round by round;
the table shows documents per second (median of ``--repeats`` rounds) and the paired
ratio waitable / holding. (On the process executor the holding task cannot await an
event of the parent's: it sleeps for the approval delay instead, which holds its slot
for the same time.)

Then the CPU a waiting task costs: ``--parked`` tasks park at once and CPU time is
read over ``--idle`` seconds while they all wait (inline: asyncio tasks awaiting a
future, the caller's process; thread: seceded threads blocked in their loops, the
caller's process; process: tasks resident in one worker's loop, that worker's CPU).

    python bench/waitable.py [--n 100] [--work 0.005] [--repeats 3]
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import psutil
from _harness import machine, paired_ratio, write_json

from pullpush import (
    CapacitySource,
    EnvelopeType,
    HierarchicalTaskPoolRunner,
    InlineExecutor,
    ProcessExecutor,
    TaskContext,
    ThreadExecutor,
    waitable,
)
from pullpush.executors.process._spawn import _READY

CAPACITY = 4


def make_executor(kind: str) -> Any:
    if kind == "process":
        return ProcessExecutor(2, tasks_per_worker=CAPACITY // 2, prefetch=0)
    return InlineExecutor() if kind == "inline" else ThreadExecutor(CAPACITY)


async def warm(executor: Any) -> None:
    """Wait until a process executor's workers are up (not part of the timing)."""
    if isinstance(executor, ProcessExecutor):
        while not all(w.state == _READY for w in executor._workers):
            await asyncio.sleep(0.01)


async def review_sleeping(doc: int, work: float, delay: float) -> int:
    """The holding task in a worker process: its approval comes after ``delay``."""
    await asyncio.sleep(work)
    await asyncio.sleep(delay)  # holds its slot while it waits
    await asyncio.sleep(work)
    return doc


async def run_holding(kind: str, n: int, work: float, delay: float) -> float:
    """Each task awaits its approval inside itself, holding its slot."""
    main = asyncio.get_running_loop()
    answers: set[asyncio.Task[None]] = set()

    async def approve(loop: asyncio.AbstractEventLoop, event: asyncio.Event) -> None:
        await asyncio.sleep(delay)
        loop.call_soon_threadsafe(event.set)

    def ask(loop: asyncio.AbstractEventLoop, event: asyncio.Event) -> None:
        answers.add(asyncio.ensure_future(approve(loop, event)))

    async def review(doc: int) -> int:
        await asyncio.sleep(work)
        event = asyncio.Event()
        main.call_soon_threadsafe(ask, asyncio.get_running_loop(), event)
        await event.wait()  # holds its capacity while it waits
        await asyncio.sleep(work)
        return doc

    def task(doc: int) -> Any:
        if kind == "process":
            return functools.partial(review_sleeping, doc, work, delay)
        return lambda: review(doc)

    executor = make_executor(kind)
    async with executor:
        await warm(executor)
        started = time.perf_counter()
        runner = HierarchicalTaskPoolRunner(
            "holding", [task(d) for d in range(n)], CAPACITY, executor=executor
        )
        done = [e.value async for e in runner.run_tasks() if e.type is EnvelopeType.FINAL]
        elapsed = time.perf_counter() - started
        await asyncio.gather(*answers)
    assert sorted(done) == list(range(n)), "holding: every document done"
    return elapsed


async def review_waitable(ctx: TaskContext, doc: int, work: float) -> int:
    await asyncio.sleep(work)
    await ctx.receive()  # holds nothing while it waits
    await asyncio.sleep(work)
    return doc


async def run_waitable(kind: str, n: int, work: float, delay: float) -> float:
    answers: set[asyncio.Task[None]] = set()
    executor = make_executor(kind)
    async with executor:
        await warm(executor)
        started = time.perf_counter()
        runner = HierarchicalTaskPoolRunner(
            "waitable",
            [waitable(review_waitable, d, work) for d in range(n)],
            CAPACITY,
            executor=executor,
        )

        async def approve(task_id: int) -> None:
            await asyncio.sleep(delay)
            runner.send_nowait(task_id, "approved")

        done = []
        async for envelope in runner.run_tasks():
            if envelope.type is EnvelopeType.WAITING:
                answers.add(asyncio.ensure_future(approve(envelope.task_id)))
            elif envelope.type is EnvelopeType.FINAL:
                done.append(envelope.value)
        elapsed = time.perf_counter() - started
        await asyncio.gather(*answers)
    assert sorted(done) == list(range(n)), "waitable: every document done"
    return elapsed


async def parked_cpu(kind: str, parked: int, idle: float) -> tuple[float, float]:
    """CPU seconds spent per second while ``parked`` tasks wait (the caller's process;
    with the process executor, the worker hosting them), and the same with none
    waiting (the loop idling alone)."""
    executor = make_executor(kind)
    if kind == "process":
        executor = ProcessExecutor(1, prefetch=0, max_waiting=parked)
    async with executor:
        if kind == "process":
            await executor.run(abs, 0)  # the worker is up
            worker = psutil.Process(executor._workers[0].pid)

            def clock() -> float:
                times = worker.cpu_times()
                return float(times.user + times.system)

            base = clock()
            await asyncio.sleep(idle)
            baseline = (clock() - base) / idle
        else:
            clock = time.process_time
        capacity = CapacitySource(CAPACITY)
        runner = HierarchicalTaskPoolRunner(
            "parked", [waitable(park_once) for _ in range(parked)], capacity, executor=executor
        )
        measured: list[float] = []
        async for envelope in runner.run_tasks():
            if envelope.type is EnvelopeType.WAITING and runner.waiting == parked and not measured:
                assert capacity.available == CAPACITY
                cpu = clock()
                await asyncio.sleep(idle)
                measured.append((clock() - cpu) / idle)
                for task_id in range(parked):
                    runner.send_nowait(task_id, "go")
    if kind != "process":
        cpu = clock()
        await asyncio.sleep(idle)
        baseline = (clock() - cpu) / idle
    return measured[0], baseline


async def park_once(ctx: TaskContext) -> Any:
    return await ctx.receive()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100, help="documents per run")
    parser.add_argument("--work", type=float, default=0.005, help="seconds per half")
    parser.add_argument("--repeats", type=int, default=3, help="rounds (median)")
    parser.add_argument("--parked", type=int, default=200, help="tasks parked at once")
    parser.add_argument("--idle", type=float, default=1.0, help="seconds the CPU is read")
    parser.add_argument("--executors", default="inline,thread,process")
    args = parser.parse_args()
    kinds = args.executors.split(",")
    factors = (1, 10)
    raw: dict[str, list[float]] = {}
    for round_ in range(args.repeats):
        for kind in kinds:
            for factor in factors:
                delay = factor * args.work
                order = ("holding", "waitable") if round_ % 2 == 0 else ("waitable", "holding")
                for case in order:
                    run = run_holding if case == "holding" else run_waitable
                    seconds = asyncio.run(run(kind, args.n, args.work, delay))
                    raw.setdefault(f"{kind} {factor}x {case}", []).append(seconds)

    print(f"{args.n} documents, capacity {CAPACITY}, work {args.work * 1000:g} ms per half,")
    print(f"median of {args.repeats} rounds; {machine()['cpus_usable']} usable CPUs\n")
    print("| executor | approval delay | holding (docs/s) | waitable (docs/s) | ratio |")
    print("|---|---|---:|---:|---:|")
    ratios: dict[str, float] = {}
    for kind in kinds:
        for factor in factors:
            hold = raw[f"{kind} {factor}x holding"]
            wait = raw[f"{kind} {factor}x waitable"]
            ratio = paired_ratio(hold, wait)  # holding seconds / waitable seconds
            ratios[f"{kind} {factor}x"] = ratio
            print(
                f"| {kind} | {factor}x work | {args.n / statistics.median(hold):.0f} "
                f"| {args.n / statistics.median(wait):.0f} | {ratio:.2f}x |"
            )
    print()
    cpu: dict[str, dict[str, float]] = {}
    for kind in kinds:
        parked, idle = asyncio.run(parked_cpu(kind, args.parked, args.idle))
        per_task = max(0.0, parked - idle) / args.parked
        cpu[kind] = {"with_parked": parked, "idle": idle, "per_task": per_task}
        where = "their worker" if kind == "process" else "the process"
        print(
            f"{kind}: {args.parked} tasks parked: {where} "
            f"used {parked * 100:.2f}% of a CPU (idle loop alone: {idle * 100:.2f}%), i.e. "
            f"{per_task * 1e6:.2f} µs of CPU per waiting task per second"
        )
    path = write_json(
        "waitable",
        {"machine": machine(), "args": vars(args), "seconds": raw, "ratios": ratios, "cpu": cpu},
    )
    print(f"\nraw timings: {path}")


if __name__ == "__main__":
    main()
