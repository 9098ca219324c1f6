"""Keep ``__all__`` honest: every public name of every public package resolves, is a
tuple without duplicates, and reaches the top-level ``pullpush`` namespace."""

from __future__ import annotations

import importlib
import types

import pytest

import pullpush

PACKAGES = [
    "pullpush.pull",
    "pullpush.push",
    "pullpush.chain",
    "pullpush.capacity",
    "pullpush.scheduling",
    "pullpush.executors",
    "pullpush.executors.process",
    "pullpush.metrics",
    "pullpush.testing",
]
# Public in their own package only: helpers for tests, not for the main namespace.
TESTING_ONLY = set(importlib.import_module("pullpush.testing").__all__)


def test_the_top_level_all_resolves_without_duplicates() -> None:
    names = pullpush.__all__
    assert isinstance(names, tuple)
    assert len(names) == len(set(names))
    for name in names:
        assert getattr(pullpush, name) is not None


@pytest.mark.parametrize("name", PACKAGES)
def test_every_public_name_of_a_package_is_exported(name: str) -> None:
    package = importlib.import_module(name)
    names = package.__all__
    assert isinstance(names, tuple), f"{name}.__all__ must be a tuple"
    assert len(names) == len(set(names))
    for public in names:
        value = getattr(package, public)
        if name == "pullpush.testing" or public in TESTING_ONLY:
            continue
        assert public in pullpush.__all__, f"{name}.{public} is not exported by pullpush"
        assert getattr(pullpush, public) is value


def test_no_private_module_leaks_into_the_namespace() -> None:
    for name in pullpush.__all__:
        assert not name.startswith("_")
        assert not isinstance(getattr(pullpush, name), types.ModuleType)


def test_a_star_import_shadows_no_builtin() -> None:
    import builtins

    namespace: dict[str, object] = {}
    exec("from pullpush import *", namespace)
    shadowed = sorted(set(namespace) & set(dir(builtins)) - {"__builtins__"})
    assert shadowed == []
    assert pullpush.map is importlib.import_module("pullpush.runners._map").map
