"""Timing and reporting helpers shared by the benchmark suites.

Cases of one suite are timed *interleaved* (repeat r of every case before repeat r + 1 of any),
so drift of a shared, noisy machine hits all of them alike; the suites report medians and the
ratios between cases run in the same process, which are what is comparable across machines.
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Comparison:
    """A row of a suite's table: ratio = time(baseline) / time(ours); ``goal`` is the ratio the
    issue asks for (None: reported only)."""

    label: str
    ours: str
    baseline: str
    goal: float | None
    meaning: str


def compare(timed: dict[str, Case], comparisons: list[Comparison]) -> list[tuple]:
    """Rows (comparison, ours median, baseline median, ratio, goal met or None)."""
    rows = []
    for c in comparisons:
        ours, base = timed[c.ours].median, timed[c.baseline].median
        ratio = base / ours
        rows.append((c, ours, base, ratio, None if c.goal is None else ratio >= c.goal))
    return rows


@dataclass
class Case:
    """One timed callable; ``repeat`` caps its repetitions (for cases that take many seconds)."""

    name: str
    fn: Callable[[], object]
    repeat: int | None = None
    times: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return float(np.median(self.times))


def run_interleaved(
    cases: list[Case],
    repeat: int,
    progress: Callable[[str], None] | None = None,
    *,
    warmup: bool = True,
):
    """Warm every case once (compilation, caches; skipped with ``warmup=False`` for cases
    whose every call costs seconds), then time ``repeat`` rounds interleaved."""
    for case in cases if warmup else ():
        if progress:
            progress(f"warm-up {case.name}")
        case.fn()
    for r in range(repeat):
        for case in cases:
            if case.repeat is not None and r >= case.repeat:
                continue
            if progress:
                progress(f"round {r + 1}/{repeat}: {case.name}")
            t0 = time.perf_counter()
            case.fn()
            case.times.append(time.perf_counter() - t0)
    return {c.name: c for c in cases}


def machine_summary() -> str:
    """One line naming the machine: CPU count, numba threads, BLAS."""
    import numba

    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]["name"]
    except Exception:  # older numpy: no dict mode
        blas = "unknown"
    return (
        f"{platform.machine()} {os.cpu_count()} CPUs, numba threads {numba.get_num_threads()}, "
        f"numpy {np.__version__} ({blas}), python {platform.python_version()}"
    )
