"""``render_prometheus``: a snapshot in the Prometheus text exposition format."""

from __future__ import annotations

import math
import re

from ._points import MetricPoint, snapshot_points

__all__ = ["render_prometheus"]

_INVALID_NAME = re.compile(r"[^a-zA-Z0-9_:]")
_INVALID_LABEL = re.compile(r"[^a-zA-Z0-9_]")


def _metric_name(name: str) -> str:
    name = _INVALID_NAME.sub("_", name)
    return f"_{name}" if not name or name[0].isdigit() else name


def _label_name(name: str) -> str:
    name = _INVALID_LABEL.sub("_", name)
    if not name or name[0].isdigit():
        name = f"_{name}"
    if name.startswith("__"):  # reserved for Prometheus' own labels
        name = f"l{name}"
    return name


def _label_value(value: object) -> str:
    if isinstance(value, bool):
        value = "true" if value else "false"
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if float(value).is_integer() and abs(value) < 2**53:
        return str(int(value))
    return repr(float(value))


def render_prometheus(snapshot: object, prefix: str = "pullpush") -> str:
    """Render a snapshot in the Prometheus text exposition format (version 0.0.4).

    Every metric gets ``# HELP`` and ``# TYPE`` lines, then its samples; counters end
    in ``_total``. Names are those of :class:`~pullpush.metrics.MetricsPump` with
    dots turned into underscores (``pullpush_runner_running``,
    ``pullpush_capacity_acquire_accepted_total``,
    ``pullpush_chain_stage_latency_seconds_avg{stage="read->written"}``); characters
    a Prometheus name cannot hold become ``_``, and label values are escaped.
    Windowed durations are gauges (count, avg, min, max over the collector's
    window).

    Serve it from any HTTP handler with content type
    ``text/plain; version=0.0.4; charset=utf-8``.

    Args:
        snapshot: a :class:`~pullpush.metrics.MetricsSnapshot` (each collector's
            samples get a ``source`` label) or one collector's snapshot.
        prefix: prepended to every name with ``_`` (``""``: none).

    Returns:
        The exposition text, ending with a newline (empty for an empty snapshot).

    Raises:
        TypeError: ``snapshot`` is of no known snapshot type.
    """
    families: dict[str, tuple[MetricPoint, list[MetricPoint]]] = {}
    for point in snapshot_points(snapshot):
        name = point.name.replace(".", "_")
        if prefix:
            name = f"{prefix}_{name}"
        name = _metric_name(name)
        if point.kind == "counter":
            name += "_total"
        family = families.get(name)
        if family is None:
            families[name] = (point, [point])
        else:
            family[1].append(point)
    lines: list[str] = []
    for name, (first, points) in families.items():
        lines.append(f"# HELP {name} {_help(first.help)}")
        lines.append(f"# TYPE {name} {first.kind}")
        for point in points:
            if point.attrs:
                labels = ",".join(
                    f'{_label_name(key)}="{_label_value(value)}"'
                    for key, value in point.attrs.items()
                )
                lines.append(f"{name}{{{labels}}} {_number(point.value)}")
            else:
                lines.append(f"{name} {_number(point.value)}")
    return "\n".join(lines) + "\n" if lines else ""
