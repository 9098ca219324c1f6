"""What the Ray executor asks of Ray for a task, decided in the driver: the resources
a task's cost maps to (:func:`ray_resources`), whether a runner streams, and about
how much it captures (a big runner is pickled off the loop)."""

from __future__ import annotations

import functools
import importlib
import inspect
import itertools
import sys
from collections.abc import Mapping
from typing import Any

__all__ = [
    "BIG_RUNNER",
    "captured_bytes",
    "cluster_cpus",
    "ray_client_connected",
    "ray_resources",
    "streams",
]


def ray_resources(cost: Mapping[str, float] | None, known: Mapping[str, float]) -> dict[str, Any]:
    """The Ray task options for a task's ``cost`` (a :class:`ScheduledTask` cost).

    * ``cpu`` -> ``num_cpus`` (default 1), ``gpu`` -> ``num_gpus``,
      ``memory_mb`` -> ``memory`` (bytes);
    * any other key the cluster has as a resource (``known``, Ray's
      ``cluster_resources()``; e.g. ``licence`` for ``ray start --resources``) -> that
      custom resource;
    * other keys (``capacity``, pullpush's own units) are pullpush's alone: not asked
      of Ray, which could never grant a resource no node has.
    """
    options: dict[str, Any] = {"num_cpus": 1}
    if not cost:
        return options
    custom: dict[str, float] = {}
    for key, amount in cost.items():
        if key == "cpu":
            options["num_cpus"] = amount
        elif key == "gpu":
            options["num_gpus"] = amount
        elif key == "memory_mb":
            options["memory"] = int(amount * 1024 * 1024)
        elif key in known and key not in ("CPU", "GPU", "memory"):
            custom[key] = amount
    if custom:
        options["resources"] = custom
    return options


def streams(runner: Any) -> bool:
    """Whether ``runner`` is a generator function (``functools.partial`` unwrapped),
    so that it runs as a streaming Ray task."""
    while isinstance(runner, functools.partial):
        runner = runner.func
    return inspect.isgeneratorfunction(runner) or inspect.isasyncgenfunction(runner)


BIG_RUNNER = 1 << 20


def captured_bytes(runner: Any, depth: int = 0) -> int:
    """About the bytes ``runner`` captures (a shallow look): ``sys.getsizeof`` of its
    ``functools.partial`` arguments, closure cells, defaults and bound ``self``, and
    of the items of the containers among them."""
    if depth > 3:
        return 0
    values: list[Any] = []
    if isinstance(runner, functools.partial):
        values = [*runner.args, *runner.keywords.values()]
        return captured_bytes(runner.func, depth + 1) + sum(map(_deep_size, values))
    self = getattr(runner, "__self__", None)
    if self is not None and not isinstance(self, type) and not inspect.ismodule(self):
        values.append(self)
    function = getattr(runner, "__func__", runner)
    for cell in getattr(function, "__closure__", None) or ():
        try:
            values.append(cell.cell_contents)
        except ValueError:  # noqa: PERF203 - an empty cell
            pass
    values.extend(getattr(function, "__defaults__", None) or ())
    values.extend((getattr(function, "__kwdefaults__", None) or {}).values())
    return sum(map(_deep_size, values))


def _deep_size(value: Any) -> int:
    size = sys.getsizeof(value, 0)
    if isinstance(value, (list, tuple, set, frozenset)):
        size += sum(sys.getsizeof(item, 0) for item in itertools.islice(value, 1000))
    elif isinstance(value, dict):
        size += sum(sys.getsizeof(item, 0) for item in itertools.islice(value.values(), 1000))
    return size


def cluster_cpus(resources: Mapping[str, float]) -> int:
    return max(1, int(resources.get("CPU", 1)))


def ray_client_connected(ray: Any) -> bool:
    try:
        client = importlib.import_module("ray.util.client")
        return bool(client.ray.is_connected())
    except Exception:
        return False
