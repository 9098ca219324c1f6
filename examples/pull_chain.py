"""A pull pipeline: merge two event feeds, parse, dedupe, re-sequence and batch.

The same recipe runs as a fluent ``PullChain`` and compiled into fused generators.

Run: ``python examples/pull_chain.py``
"""

from __future__ import annotations

import asyncio
from typing import Any

from pullpush import DefaultChainMetricsCollector, PullChain, SourceFromIterable

FEED_A = ["3 login alice", "1 click bob", "4 click alice"]
FEED_B = ["2 login bob", "1 click bob", "5 logout alice"]


async def parse(line: str) -> dict[str, Any]:
    # Any callable may be async: its result is awaited.
    seq, kind, user = line.split()
    return {"seq": int(seq), "kind": kind, "user": user}


def recipe(metrics: DefaultChainMetricsCollector) -> PullChain[list[str]]:
    return (
        PullChain.from_source(SourceFromIterable(FEED_A))
        .merge_concat(SourceFromIterable(FEED_B))  # FEED_A, then FEED_B
        .map(parse)
        .dedupe("seq")  # event 1 came twice
        .turnstile("parsed", metrics)
        .in_order("seq", start=1)  # 1, 2, 3, 4, 5
        .map(lambda event: f"{event['seq']}:{event['user']} {event['kind']}")
        .window(2)  # the partial last window is yielded too
    )


async def main() -> None:
    metrics = DefaultChainMetricsCollector()
    chain = recipe(metrics)
    print("links:", " -> ".join(type(link).__name__ for link in chain.links))
    print("first batch:", await chain.first())  # pulls one item, closes nothing
    print("the rest:   ", await chain.collect())

    compiled = recipe(metrics).compile()  # the concat stays; the rest is fused
    print("stages:", compiled.stages)
    async for batch in compiled:
        print("compiled:   ", batch)
    print("events past the turnstile:", metrics.snapshot().turnstiles["parsed"].passed)


if __name__ == "__main__":
    asyncio.run(main())
