"""The driver of test_ray_cluster.py, run in a process of its own (so that its Ray
settings, RAY_AUTH_MODE included, are the cluster's and not the test process's):

    python _ray_cluster_driver.py TEMP_DIR SIGNAL_DIR

It connects with ``RayExecutor(address="auto")`` (``RAY_ADDRESS`` names the head),
runs one task on each node, kills the second node's raylet (and the worker running
the task there, unless it exits on its own within 2 s) while both run, and
prints what happened as JSON; an assertion that fails exits non-zero.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

from pullpush import CapacitySource, HierarchicalTaskPoolRunner, RayExecutor
from pullpush.testing import collect, run

SECOND_NODE = "127.0.0.2"


def waits_on_its_node(tag: str, signals: Path) -> Callable[[], str]:
    def task() -> str:
        import os

        import ray

        (signals / f"pid-{tag}").write_text(str(os.getpid()))
        (signals / f"started-{tag}").write_text(ray.util.get_node_ip_address())
        while not (signals / "go-on").exists():
            time.sleep(0.02)
        return ray.util.get_node_ip_address()

    return task


def second_raylet(temp_dir: str) -> psutil.Process:
    for process in psutil.process_iter(["cmdline"]):
        line = " ".join(process.info["cmdline"] or [])
        if "raylet/raylet" in line and temp_dir in line and SECOND_NODE in line:
            return process
    raise AssertionError("the second node's raylet is not running")


async def scenario(temp_dir: str, signals: Path) -> dict[str, Any]:
    async with RayExecutor(address="auto", prefetch=0, poll_interval=0.2) as executor:
        assert executor.capacity is not None and executor.capacity.limit == 2, executor
        tasks = [waits_on_its_node(tag, signals) for tag in "ab"]
        runner = HierarchicalTaskPoolRunner("cluster", tasks, CapacitySource(2), executor=executor)
        collected = asyncio.ensure_future(collect(runner.run_tasks()))
        started = [signals / f"started-{tag}" for tag in "ab"]
        while not all(path.exists() and path.read_text() for path in started):
            await asyncio.sleep(0.02)
        nodes = {tag: path.read_text() for tag, path in zip("ab", started, strict=True)}
        assert len(set(nodes.values())) == 2 and SECOND_NODE in nodes.values(), nodes
        # The second node is lost mid-task: its raylet killed, then its worker (which
        # would notice its raylet gone, but may first finish the task).
        (lost,) = [tag for tag, ip in nodes.items() if ip == SECOND_NODE]
        worker = psutil.Process(int((signals / f"pid-{lost}").read_text()))
        second_raylet(temp_dir).kill()
        try:
            worker.wait(2)
            worker_exited_itself = True
        except psutil.TimeoutExpired:
            worker.kill()
            worker_exited_itself = False
        (signals / "go-on").touch()
        envelopes = await collected
        # The lost node's CPU leaves the capacity once Ray's GCS sees the node dead.
        deadline = time.monotonic() + 60
        while executor.capacity.limit != 1 and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        limit_after = executor.capacity.limit
        again = await executor.run(lambda: "again")
    outcomes = {}
    for envelope in envelopes:
        tag = "ab"[envelope.task_id]
        error = envelope.error
        outcomes[tag] = {
            "node": nodes[tag],
            "type": envelope.type.value,
            "value": envelope.value,
            "error": None if error is None else type(error).__name__,
            "message": None if error is None else str(error),
            "cause": None if error is None else type(error.__cause__).__name__,
        }
    return {
        "outcomes": outcomes,
        "limit_after": limit_after,
        "again": again,
        "worker_exited_itself": worker_exited_itself,
    }


def main() -> None:
    temp_dir, signals = sys.argv[1], Path(sys.argv[2])
    print(json.dumps(run(scenario(temp_dir, signals))))


if __name__ == "__main__":
    main()
