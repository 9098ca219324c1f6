"""A push pipeline: parse log lines, batch them, and route batches by severity.

Run: ``python examples/push_pipeline.py``
"""

from __future__ import annotations

import asyncio

from pullpush import PushChainBuilder

LINES = [
    "INFO boot ok",
    "WARN disk 91%",
    "ERROR db timeout",
    "INFO request 200",
    "WARN memory 88%",
    "WARN cpu 97%",
    "INFO request 200",
    "ERROR db timeout",
]


async def main() -> None:
    errors: list[list[str]] = []
    others: list[list[str]] = []

    async def parse(line: str) -> tuple[str, str]:
        level, _, message = line.partition(" ")
        return level, message

    chain = (
        PushChainBuilder.start()
        .map(parse)  # async callables are awaited
        .filter(lambda entry: entry[0] != "INFO")
        .map(lambda entry: f"{entry[0]}: {entry[1]}")
        .window(2)  # partial window flushed on close
        .compile()  # fuse map/filter/map/window into one function
        .distribute(
            lambda batch: 0 if any(s.startswith("ERROR") for s in batch) else 1,
            lambda branch: branch.to_callbacks(errors.append),
            lambda branch: branch.to_callbacks(others.append),
        )
    )
    for line in LINES:
        await chain.asend(line)
    await chain.aclose()
    print("batches with errors:", errors)
    print("other batches:      ", others)


if __name__ == "__main__":
    asyncio.run(main())
