"""Human-in-the-loop approvals, in parallel: the seed guide's section 4 pattern
("run waitable entities one after another") without giving up the pool.

100 documents, capacity 4. Each document is analysed in two halves; between them its
task waits for an approval from an approver (a coroutine standing in for a person)
that answers after a random delay. While a task waits in ``ctx.receive()`` it holds
no capacity: the runner emits a WAITING envelope ("awaiting approval") and starts
other documents in its place; the approval makes the runner re-acquire the task's
capacity (ahead of new documents) and the task resumes (a RESUMED envelope).
"""

from __future__ import annotations

import asyncio
import random
import time

from pullpush import (
    CapacitySource,
    EnvelopeType,
    HierarchicalTaskPoolRunner,
    TaskContext,
    waitable,
)

DOCUMENTS = [f"doc-{i:03}" for i in range(100)]
WORK = 0.005  # seconds of analysis per half
active = 0  # documents being analysed right now (never above the capacity)
peak = 0


async def analyse_half(doc: str, half: int) -> str:
    global active, peak
    active += 1
    peak = max(peak, active)
    try:
        await asyncio.sleep(WORK)
        return f"{doc} half {half}: ok"
    finally:
        active -= 1


async def review(ctx: TaskContext, doc: str) -> dict[str, str]:
    first = await analyse_half(doc, 1)
    verdict = await ctx.receive()  # WAITING: holds no capacity until the answer comes
    if verdict != "approved":
        return {"doc": doc, "status": "rejected", "first": first}
    second = await analyse_half(doc, 2)
    return {"doc": doc, "status": "approved", "first": first, "second": second}


async def approver(
    runner: HierarchicalTaskPoolRunner[dict[str, str]], requests: asyncio.Queue[int]
) -> None:
    """A person: answers each request after a while; rejects about one in ten."""
    rng = random.Random(7)
    answers: set[asyncio.Task[None]] = set()

    async def answer(task_id: int, delay: float, verdict: str) -> None:
        await asyncio.sleep(delay)
        await runner.send(task_id, verdict)  # returns once the task has taken it

    while True:
        task_id = await requests.get()
        if task_id < 0:
            break
        verdict = "rejected" if rng.random() < 0.1 else "approved"
        answers.add(asyncio.ensure_future(answer(task_id, rng.uniform(0.0, 0.05), verdict)))
    await asyncio.gather(*answers)


async def main() -> None:
    capacity = CapacitySource(4)
    runner = HierarchicalTaskPoolRunner(
        "approvals", (waitable(review, doc) for doc in DOCUMENTS), capacity
    )
    requests: asyncio.Queue[int] = asyncio.Queue()
    person = asyncio.ensure_future(approver(runner, requests))
    results: dict[str, dict[str, str]] = {}
    most_waiting = 0
    started = time.perf_counter()
    async for envelope in runner.run_tasks():
        if envelope.type is EnvelopeType.WAITING:  # a UI shows "awaiting approval"
            requests.put_nowait(envelope.task_id)
            most_waiting = max(most_waiting, runner.waiting)
        elif envelope.type is EnvelopeType.FINAL:
            results[envelope.value["doc"]] = envelope.value
        elif envelope.type is EnvelopeType.ERROR:
            raise RuntimeError(f"task {envelope.task_id} failed") from envelope.error
    requests.put_nowait(-1)
    await person
    elapsed = time.perf_counter() - started

    approved = sum(r["status"] == "approved" for r in results.values())
    print(
        f"{len(results)} documents in {elapsed:.2f}s: {approved} approved, "
        f"{len(results) - approved} rejected"
    )
    print(f"at most {peak} analysed at once (capacity 4), up to {most_waiting} awaiting approval")
    assert sorted(results) == DOCUMENTS
    assert peak <= 4 and capacity.available == 4
    assert most_waiting > 4  # more documents in flight than the capacity: waiting is free


if __name__ == "__main__":
    asyncio.run(main())
