"""Shared by the Ray tests (importable: tests/executors is on ``sys.path``)."""

from __future__ import annotations

import os
from typing import Any

import pytest


def need_ray() -> Any:
    """The ``ray`` module; skip the test when Ray is not installed, unless
    ``PULLPUSH_REQUIRE_RAY`` is set (``./scripts/test --with-ray``, CI's main run):
    then a missing Ray fails it."""
    if os.environ.get("PULLPUSH_REQUIRE_RAY"):
        import ray

        return ray
    return pytest.importorskip("ray")


def raylets() -> list[str]:
    """This process's Ray processes still alive (raylet, GCS server, workers...:
    ``ray.init`` starts them as its descendants), as ``"pid name"``; other
    engineers' Rays on the machine are not counted."""
    import psutil

    found = []
    for child in psutil.Process().children(recursive=True):
        try:
            name = " ".join(child.cmdline()) or child.name()
            if child.status() != psutil.STATUS_ZOMBIE and "ray" in name:
                found.append(f"{child.pid} {name[:80]}")
        except psutil.Error:  # noqa: PERF203 - a process gone meanwhile
            pass
    return found
