"""Chunks of real data through the process executor, one source tree against another
in the same run: the previous commit's code against this one's.

    python bench/payload_ab.py OLD_SRC NEW_SRC [--mib 512] [--chunk-mib 4] [--rounds 3]

Each round runs, for each tree in turn (order alternating), a child Python with that
tree first on ``sys.path``: ``ProcessExecutor(2)`` + ``HierarchicalTaskPoolRunner``
(``CapacitySource(4)``) over ``functools.partial(blake2b_chunk, chunk)`` for every chunk
of ``--mib`` MiB of seeded random bytes, on a fresh pool and on a pool that first ran
10,000 trivial tasks. Prints the medians, the paired ratio new/old per case, and the
parent's CPU seconds per GiB. Uses only the API both trees have.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

CHILD = r"""
import asyncio, functools, hashlib, json, random, sys, time
from pullpush import CapacitySource, HierarchicalTaskPoolRunner, ProcessExecutor
sys.path.insert(0, BENCH)
from _chunk_tasks import blake2b_chunk, noop

async def main(mib, chunk_mib):
    rng, size = random.Random(0), chunk_mib * 2**20
    chunks = [rng.randbytes(size) for _ in range(mib // chunk_mib)]
    out = {}
    for case in ("fresh", "warm"):
        async with ProcessExecutor(2) as ex:
            if case == "warm":
                trivial = [noop] * 10_000
                runner = HierarchicalTaskPoolRunner("w", trivial, CapacitySource(64), executor=ex)
                async for _ in runner.run_tasks():
                    pass
            else:
                await ex.run(noop)
            tasks = [functools.partial(blake2b_chunk, c) for c in chunks]
            runner = HierarchicalTaskPoolRunner("c", tasks, CapacitySource(4), executor=ex)
            cpu, wall = time.process_time(), time.perf_counter()
            n = 0
            async for env in runner.run_tasks(stop_on_error=True):
                n += env.type == "FINAL"
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            assert n == len(chunks)
            out[case] = (wall, cpu / (mib / 1024))
    print(json.dumps(out))

asyncio.run(main(MIB, CHUNK))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("old")
    parser.add_argument("new")
    parser.add_argument("--mib", type=int, default=512)
    parser.add_argument("--chunk-mib", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    bench = os.path.dirname(os.path.abspath(__file__))
    code = CHILD.replace("BENCH", repr(bench)).replace(
        "MIB, CHUNK", f"{args.mib}, {args.chunk_mib}"
    )
    trees = {"old": os.path.abspath(args.old), "new": os.path.abspath(args.new)}
    times: dict[str, dict[str, list[tuple[float, float]]]] = {t: {} for t in trees}
    for round_ in range(args.rounds):
        order = list(trees) if round_ % 2 == 0 else list(reversed(trees))
        for tree in order:
            env = {**os.environ, "PYTHONPATH": trees[tree]}
            done = subprocess.run(
                [sys.executable, "-c", code], env=env, capture_output=True, text=True
            )
            if done.returncode:
                sys.exit(f"{tree} ({trees[tree]}) failed:\n{done.stderr}")
            for case, value in json.loads(done.stdout.splitlines()[-1]).items():
                times[tree].setdefault(case, []).append(tuple(value))
        print(f"round {round_ + 1}/{args.rounds} done", file=sys.stderr)
    print(
        f"{args.mib} MiB in {args.chunk_mib} MiB chunks, blake2b, 2 workers, {args.rounds} rounds"
    )
    print("| case | old s | new s | new/old (paired) | parent CPU s/GiB old | new |")
    print("|---|---:|---:|---:|---:|---:|")
    for case in times["old"]:
        old, new = times["old"][case], times["new"][case]
        ratio = statistics.median(n[0] / o[0] for o, n in zip(old, new, strict=True))
        print(
            f"| {case} | {statistics.median(o[0] for o in old):.3f} "
            f"| {statistics.median(n[0] for n in new):.3f} | {ratio:.2f}x "
            f"| {statistics.median(o[1] for o in old):.2f} "
            f"| {statistics.median(n[1] for n in new):.2f} |"
        )


if __name__ == "__main__":
    main()
