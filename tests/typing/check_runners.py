"""Type checks of the task pool runners' envelopes, run by mypy (``[tool.mypy] files``),
never by pytest (the name does not match ``test_*.py``)."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable, Coroutine, Generator
from typing import Any

from typing_extensions import assert_type

from pullpush import (
    DependencyGraph,
    DependencySourceObj,
    EnvelopeBatch,
    HierarchicalTaskPoolRunner,
    ScheduledTask,
    ScheduledTaskPoolRunner,
    SourceBufferObj,
    TaskContext,
    TaskProgressEnvelope,
    Waitable,
    waitable,
)


def square() -> int:
    return 4


async def fetch() -> str:
    return "page"


def progress() -> Generator[float, None, str]:
    yield 0.5
    return "done"


async def tasks() -> AsyncGenerator[Callable[[], int], None]:
    yield square


async def value_types() -> None:
    runner = HierarchicalTaskPoolRunner("r", [square, square], 2)
    assert_type(runner, HierarchicalTaskPoolRunner[int])
    async for envelope in runner.run_tasks():
        assert_type(envelope, TaskProgressEnvelope[int, None])
        assert_type(envelope.value, int)
        assert_type(envelope.key, None)
    async for batch in runner.run_batches():
        assert_type(batch, EnvelopeBatch[int, None])
        assert_type(batch[0].value, int)

    assert_type(HierarchicalTaskPoolRunner("r", [fetch], 2), HierarchicalTaskPoolRunner[str])
    lambdas = HierarchicalTaskPoolRunner("r", [lambda: 1.5], 2)
    assert_type(lambdas, HierarchicalTaskPoolRunner[float])
    assert_type(
        HierarchicalTaskPoolRunner("r", [progress], 2), HierarchicalTaskPoolRunner[float | str]
    )
    assert_type(HierarchicalTaskPoolRunner("r", tasks(), 2), HierarchicalTaskPoolRunner[int])
    buffer = SourceBufferObj([square], True)
    assert_type(HierarchicalTaskPoolRunner("r", buffer, 2), HierarchicalTaskPoolRunner[int])
    untyped: list[Callable[[], Any]] = []
    assert_type(HierarchicalTaskPoolRunner("r", untyped, 2), HierarchicalTaskPoolRunner[Any])
    # Where inference cannot tell, the annotation states it.
    spelled: HierarchicalTaskPoolRunner[int] = HierarchicalTaskPoolRunner("r", untyped, 2)
    assert_type(spelled, HierarchicalTaskPoolRunner[int])


async def key_types() -> None:
    source = [ScheduledTask("a", square), ScheduledTask("b", square)]
    runner = ScheduledTaskPoolRunner("s", source, 2)
    assert_type(runner, ScheduledTaskPoolRunner[str])
    async for envelope in runner.run_tasks():
        assert_type(envelope, TaskProgressEnvelope[Any, str])
        assert_type(envelope.key, str)

    graph: DependencyGraph[int] = DependencyGraph()
    dependent = DependencySourceObj(graph, {1: ScheduledTask(1, square)})
    assert_type(ScheduledTaskPoolRunner("s", dependent, 2), ScheduledTaskPoolRunner[int])


def bare_means_any(envelope: TaskProgressEnvelope) -> None:
    assert_type(envelope, TaskProgressEnvelope[Any, Any])


async def negatives() -> None:
    runner = HierarchicalTaskPoolRunner("r", [square], 2)
    async for envelope in runner.run_tasks():
        text: str = envelope.value  # type: ignore[assignment]
        del text
    HierarchicalTaskPoolRunner("r", [1, 2], 2)  # type: ignore[list-item]
    ScheduledTaskPoolRunner("s", [square], 2)  # type: ignore[arg-type]


async def review(ctx: TaskContext, doc: str, *, strict: bool = False) -> int:
    answer: int = await ctx.receive()
    return len(doc) + answer


async def waitable_types() -> None:
    # The arguments after the context are checked; the result types the envelopes.
    task = waitable(review, "doc", strict=True)
    assert_type(task, Waitable[Coroutine[Any, Any, int]])
    runner = HierarchicalTaskPoolRunner("w", [task], 2)
    async for envelope in runner.run_tasks():
        assert_type(envelope, TaskProgressEnvelope[int, None])
    await runner.send(0, "approved")
    runner.send_nowait(0, "approved")
    waitable(review, 3)  # type: ignore[arg-type]
