"""What one run of one workload measured, and the median over several runs: the shape every
bench module returns, so that `make bench` can print them in one table."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Run:
    """One run of one workload.

    `rate` is the workload's throughput per second (messages acknowledged, deliveries received,
    transactions committed), `p50_ms`/`p99_ms` its latency, `load_cpu` the share of the whole
    machine's CPU the load generator itself used during the run (0..1: near the machine's
    share of one process per core means the client, not the server, was the limit), and
    `extra` any other figure (for example resident memory per 1,000 sockets)."""

    rate: float | None = None
    p50_ms: float | None = None
    p99_ms: float | None = None
    load_cpu: float | None = None
    extra: dict[str, float] = field(default_factory=dict)


def _median(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def median(runs: list[Run]) -> Run:
    """Each figure the median of its runs (so one slow run does not set the figure)."""
    if not runs:
        raise ValueError("no runs")
    keys = sorted({k for r in runs for k in r.extra})
    extra = {k: m for k in keys if (m := _median([r.extra.get(k) for r in runs])) is not None}
    return Run(
        rate=_median([r.rate for r in runs]),
        p50_ms=_median([r.p50_ms for r in runs]),
        p99_ms=_median([r.p99_ms for r in runs]),
        load_cpu=_median([r.load_cpu for r in runs]),
        extra=extra,
    )
