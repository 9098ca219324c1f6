"""RayExecutor on a real two-node Ray cluster on this machine: a head and a second
raylet started with ``ray start`` on loopback addresses, 1 CPU each (marked
``ray_cluster`` and ``stress``: CI's stress step runs it; skipped when ray is not
installed, unless PULLPUSH_REQUIRE_RAY is set).

The driver runs in a process of its own (``_ray_cluster_driver.py``), so that its
Ray settings are the cluster's: ``RAY_AUTH_MODE=disabled`` for every Ray process of
the test (Ray 2.60's token authentication must be set alike everywhere), and
``RAY_ADDRESS`` naming the head, so that ``address="auto"`` finds this cluster and
not another engineer's. Every port is a free one, and the cluster's files live in a
temporary folder of its own; the cluster is stopped by killing the processes started
for it (found by that folder in their command lines, with their descendants), never
with ``ray stop``, which would stop every Ray of the machine's user.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from _ray_support import need_ray

pytestmark = [pytest.mark.ray_cluster, pytest.mark.stress, pytest.mark.timeout(240)]

HERE = Path(__file__).resolve().parent


_TAKEN: set[int] = set()


def free_port() -> int:
    """A port free now and not handed out before in this process: the kernel may give
    a closed probe's port again at once, and Ray refuses one port for two components
    (seen once in CI: the object manager's and the dashboard agent's)."""
    while True:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = int(probe.getsockname()[1])
        if port not in _TAKEN:
            _TAKEN.add(port)
            return port


def node_ports() -> list[str]:
    return [
        f"--dashboard-agent-listen-port={free_port()}",
        f"--dashboard-agent-grpc-port={free_port()}",
        f"--metrics-export-port={free_port()}",
        f"--runtime-env-agent-port={free_port()}",
        f"--node-manager-port={free_port()}",
        f"--object-manager-port={free_port()}",
    ]


def processes_of(temp_dir: str) -> set[psutil.Process]:
    """The cluster's processes: those naming ``temp_dir``, and their descendants
    (Ray renames some of them, ``ray::DashboardAgent``...); not this process or
    its ancestors."""
    mine = {psutil.Process().pid, *(p.pid for p in psutil.Process().parents())}
    found: set[psutil.Process] = set()
    for process in psutil.process_iter(["cmdline"]):
        try:
            if process.pid not in mine and temp_dir in " ".join(process.info["cmdline"] or []):
                found.add(process)
                found.update(process.children(recursive=True))
        except psutil.Error:  # noqa: PERF203 - gone meanwhile
            pass
    return {p for p in found if p.pid not in mine}


def stop(temp_dir: str) -> list[str]:
    """Kill the cluster's processes; return those still alive after (none, we hope)."""
    for _ in range(3):  # a process may start another while we kill
        procs = processes_of(temp_dir)
        for process in procs:
            try:
                process.kill()
            except psutil.Error:  # noqa: PERF203 - gone meanwhile
                pass
        psutil.wait_procs(list(procs), timeout=10)
    left = []
    for process in processes_of(temp_dir):
        try:
            if process.status() != psutil.STATUS_ZOMBIE:
                left.append(f"{process.pid} {' '.join(process.cmdline())[:100]}")
        except psutil.Error:  # noqa: PERF203 - gone meanwhile
            pass
    return left


@pytest.fixture
def cluster() -> Iterator[tuple[str, dict[str, str]]]:
    """A head (127.0.0.1) and a second node (127.0.0.2), 1 CPU each; yields the
    temporary folder and the environment a driver needs."""
    need_ray()
    ray_cli = Path(sys.executable).parent / "ray"
    if not ray_cli.exists():
        pytest.skip(f"no ray command next to {sys.executable}")
    try:
        with socket.socket() as probe:
            probe.bind(("127.0.0.2", 0))
    except OSError as error:
        pytest.skip(f"this machine cannot host a second node on 127.0.0.2: {error}")
    # Ray's socket paths must stay short: a folder directly under /tmp.
    temp_dir = tempfile.mkdtemp(prefix="pp-ray-", dir="/tmp")
    port = free_port()
    env = {
        **os.environ,
        "RAY_AUTH_MODE": "disabled",
        "RAY_ADDRESS": f"127.0.0.1:{port}",
        "RAY_USAGE_STATS_ENABLED": "0",
    }
    common = ["--num-cpus=1", "--object-store-memory=100000000", "--disable-usage-stats"]
    head = [
        str(ray_cli),
        "start",
        "--head",
        "--node-ip-address=127.0.0.1",
        f"--port={port}",
        f"--temp-dir={temp_dir}",
        "--include-dashboard=false",
        f"--dashboard-port={free_port()}",
        '--system-config={"health_check_period_ms": 500, "health_check_failure_threshold": 4}',
        *common,
        *node_ports(),
    ]
    second = [
        str(ray_cli),
        "start",
        f"--address=127.0.0.1:{port}",
        "--node-ip-address=127.0.0.2",
        *common,
        *node_ports(),
    ]
    try:
        for command in (head, second):
            done = subprocess.run(
                command, env=env, capture_output=True, text=True, timeout=120, check=False
            )
            if done.returncode != 0:
                pytest.fail(
                    f"{' '.join(command[1:3])} failed ({done.returncode}): "
                    f"{(done.stdout + done.stderr)[-3000:]}"
                )
        yield temp_dir, env
    finally:
        left = stop(temp_dir)
        subprocess.run(["rm", "-rf", temp_dir], check=False)
        assert left == [], f"Ray processes of the test's cluster left behind: {left}"


def test_a_lost_node_fails_only_its_task_with_worker_crashed_error(
    cluster: tuple[str, dict[str, str]], tmp_path: Path
) -> None:
    """Tasks run on both nodes; the second node's raylet killed mid-task fails only
    the task it ran, with WorkerCrashedError (Ray's error as its cause); the other
    task ends FINAL; the executor's capacity drops to the CPU left, it runs another
    task, and the cluster stops with no process left (the fixture checks)."""
    temp_dir, env = cluster
    done = subprocess.run(
        [sys.executable, str(HERE / "_ray_cluster_driver.py"), temp_dir, str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=200,
        check=False,
    )
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    print(json.dumps(result, indent=1))
    outcomes = result["outcomes"]
    (lost,) = [tag for tag, outcome in outcomes.items() if outcome["node"] == "127.0.0.2"]
    (kept,) = [tag for tag in outcomes if tag != lost]
    assert outcomes[kept]["type"] == "FINAL" and outcomes[kept]["value"] == outcomes[kept]["node"]
    assert outcomes[lost]["type"] == "ERROR", outcomes[lost]
    assert outcomes[lost]["error"] == "WorkerCrashedError", outcomes[lost]
    assert outcomes[lost]["cause"] in (
        "WorkerCrashedError",
        "NodeDiedError",
        "LocalRayletDiedError",
        "ActorDiedError",
        "ActorUnavailableError",  # an actor's node lost (RayExecutor's actors)
    ), outcomes[lost]
    assert result["limit_after"] == 1
    assert result["again"] == "again"
