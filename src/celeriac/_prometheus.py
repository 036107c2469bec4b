"""Prometheus' text exposition format (version 0.0.4), written by hand: no client library.

Shared by the dashboard's ``/metrics`` (``celeriac.dashboard.metrics``) and a worker's own
endpoint (``celeriac.worker.metrics``). ``Family`` writes one metric's ``# HELP``/``# TYPE``
lines and its samples; ``histogram`` writes the ``_bucket``/``_sum``/``_count`` samples of
cumulative bucket counts.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["BUCKETS", "CONTENT_TYPE", "Family", "histogram"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

#: Histogram bounds in seconds for task run times and waits.
BUCKETS: tuple[float, ...] = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    300.0,
)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def labels(**values: str) -> str:
    inner = ",".join(f'{key}="{_escape(value)}"' for key, value in values.items())
    return "{" + inner + "}" if inner else ""


def number(value: float) -> str:
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


class Family:
    """One metric: its header lines, then ``sample`` per labelled value."""

    def __init__(self, lines: list[str], name: str, kind: str, help_text: str) -> None:
        self.lines = lines
        self.name = name
        lines.append(f"# HELP {name} {help_text}")
        lines.append(f"# TYPE {name} {kind}")

    def sample(self, value: float, suffix: str = "", **values: str) -> None:
        self.lines.append(f"{self.name}{suffix}{labels(**values)} {number(value)}")


def histogram(
    family: Family,
    bounds: Sequence[float],
    cumulative: Sequence[int],
    total: float,
    count: int,
    **values: str,
) -> None:
    """The samples of one labelled histogram (``cumulative`` per bound, then +Inf)."""
    for bound, running in zip([*(repr(b) for b in bounds), "+Inf"], cumulative, strict=False):
        family.sample(running, "_bucket", **values, le=bound)
    family.sample(total, "_sum", **values)
    family.sample(count, "_count", **values)
