"""Run the validation experiments: progress bars, the verdict table, the Markdown report."""

from __future__ import annotations

import datetime
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ._core import PROFILES, REGISTRY, Context, Experiment, ExperimentResult, timed_run

__all__ = ["SuiteResult", "experiments", "run_suite", "write_report"]

#: experiment families, one module each, in suite order
FAMILIES: tuple[str, ...] = ("jl", "leverage", "universal", "softmax_scope", "hyper", "real")

_STYLE = {"PASS": "bold green", "FAIL": "bold red", "REPORTED": "cyan"}


def experiments() -> dict[str, Experiment]:
    """All registered experiments, in suite order (importing the family modules registers
    them)."""
    import importlib

    for family in FAMILIES:
        importlib.import_module(f"{__package__}.{family}")
    return dict(REGISTRY)


@dataclass
class SuiteResult:
    profile: str
    results: list[ExperimentResult]
    seconds: float
    report_path: str | None = None
    #: the experiment or family names selected (None: the whole suite)
    only: list[str] | None = None

    @property
    def failed(self) -> bool:
        """True when a guaranteed claim FAILED or an experiment raised."""
        return any(r.failed for r in self.results)

    def counts(self) -> dict[str, int]:
        out = {"PASS": 0, "FAIL": 0, "REPORTED": 0}
        for r in self.results:
            for c in r.claims:
                out[c.verdict] += 1
        return out


def _select(only: list[str] | str | None, registry: dict[str, Experiment]) -> list[Experiment]:
    if only is None:
        return list(registry.values())
    names = [only] if isinstance(only, str) else list(only)
    chosen: list[Experiment] = []
    for name in names:
        # a name selects one experiment, or every experiment of a family
        hits = [e for e in registry.values() if name in (e.name, e.family)]
        if not hits:
            raise ValueError(
                f"unknown experiment {name!r}; choose from {sorted(registry)} or a family "
                f"{sorted({e.family for e in registry.values()})}"
            )
        chosen.extend(h for h in hits if h not in chosen)
    return chosen


def run_suite(
    only: list[str] | str | None = None,
    profile: str = "quick",
    out: str | Path | None = None,
    console: Console | None = None,
    registry: dict[str, Experiment] | None = None,
) -> SuiteResult:
    """Run the selected experiments (all by default) under ``profile`` ("quick" or "full").

    Parameters
    ----------
    only : str or list of str, optional
        Experiment names or family names (``jl``, ``leverage``, ``universal``,
        ``softmax_scope``, ``hyper``, ``real``).
    profile : {"quick", "full"}
        "quick": the whole suite in about 3 minutes on 2 cores; "full": larger sizes, more
        seeds.
    out : path, optional
        Folder for ``report.md`` and the PNG plots (created if missing).
    console : rich Console, optional
        Where progress and the verdict table go (None: a quiet console).
    registry : dict, optional
        Experiments to choose from (default: the registered suite; tests pass their own).

    Returns
    -------
    SuiteResult, with ``failed`` True when a guaranteed claim FAILED or an experiment raised.
    """
    if profile not in PROFILES:
        raise ValueError(f"profile must be one of {PROFILES}, got {profile!r}")
    chosen = _select(only, experiments() if registry is None else registry)
    console = console if console is not None else Console(quiet=True)
    out_dir = None
    if out is not None:
        out_dir = Path(out)
        out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    results = []
    columns = (
        TextColumn("{task.description:<34}"),
        BarColumn(),
        TextColumn("{task.fields[what]:<40}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=False) as bars:
        for exp in chosen:
            task = bars.add_task(exp.name, total=None, what="")

            def progress(done, total, what, task=task):
                bars.update(task, completed=done, total=total, what=what[:40])

            ctx = Context(exp.name, profile, None if out_dir is None else str(out_dir), progress)
            res = timed_run(exp, ctx)
            verdicts = {c.verdict for c in res.claims}
            status = "ERROR" if res.error else ("FAIL" if "FAIL" in verdicts else "done")
            bars.update(task, total=1, completed=1, what=f"{status} in {res.seconds:.1f} s")
            results.append(res)
    suite = SuiteResult(
        profile,
        results,
        time.perf_counter() - t0,
        only=None if only is None else ([only] if isinstance(only, str) else list(only)),
    )
    console.print(verdict_table(suite))
    counts = suite.counts()
    errors = sum(r.error is not None for r in results)
    console.print(
        f"{counts['PASS']} PASS, {counts['FAIL']} FAIL, {counts['REPORTED']} REPORTED"
        + (f", {errors} experiment(s) raised" if errors else "")
        + f" -- profile {profile}, {suite.seconds:.1f} s"
    )
    for r in results:
        if r.error:
            console.print(f"[bold red]{r.experiment.name} raised {r.error}[/]")
    if out_dir is not None:
        suite.report_path = str(write_report(suite, out_dir))
        console.print(
            f"wrote {suite.report_path} and {sum(len(r.context.figures) for r in results)} plots"
        )
    return suite


def verdict_table(suite: SuiteResult) -> Table:
    table = Table(title=f"sketchla validate ({suite.profile})", show_lines=False)
    columns: list[tuple[str, dict[str, Any]]] = [
        ("experiment", {"no_wrap": True}),
        ("claim", {"ratio": 3}),
        ("reference", {"ratio": 1}),
        ("bound", {"justify": "right"}),
        ("measured", {"justify": "right"}),
        ("verdict", {"no_wrap": True}),
    ]
    for col, kw in columns:
        table.add_column(col, **kw)
    for r in suite.results:
        for c in r.claims:
            table.add_row(
                c.experiment,
                c.statement + (f" [dim]({c.reason})[/]" if c.verdict == "FAIL" else ""),
                c.reference,
                c.bound,
                c.measured,
                f"[{_STYLE[c.verdict]}]{c.verdict}[/]",
            )
        if r.error:
            table.add_row(r.experiment.name, r.error, "", "", "", "[bold red]ERROR[/]")
    return table


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _cpu_model() -> str:
    """The CPU's model name (from /proc/cpuinfo on Linux), else ``platform.processor()``."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _command(suite: SuiteResult, out_dir: Path) -> str:
    """The command line that reproduces ``suite`` into ``out_dir``."""
    parts = ["sketchla", "validate"]
    if suite.profile == "quick":
        parts.append("--quick")
    for name in suite.only or []:
        parts += ["--only", name]
    parts += ["--out", str(out_dir)]
    return " ".join(parts)


def write_report(suite: SuiteResult, out_dir: str | Path) -> Path:
    """``report.md`` in ``out_dir``: when, how and where it was generated, the verdict table,
    then one section per experiment with its plots, data tables and notes.

    Plots are linked by file name, relative to ``report.md`` (they are written beside it), so
    the folder renders as it is, on GitHub or as a page of the documentation site."""
    from .. import __version__

    out_dir = Path(out_dir)
    counts = suite.counts()
    when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    quick = suite.profile == "quick"
    profile = "quick profile: small sizes, few seeds" if quick else "full profile"
    lines = [
        "# sketchla validate report",
        "",
        f"Generated {when} by `{_command(suite, out_dir)}` ({profile}) with sketchla "
        f"{__version__} in {suite.seconds:.1f} s wall time on {_cpu_model()} "
        f"({os.cpu_count()} logical cores, {platform.machine()}, {platform.system()}), "
        f"Python {platform.python_version()}. Regenerate it with the same command; the "
        "measurements are seeded, so only the timings change between runs and machines.",
        "",
        f"**{counts['PASS']} PASS, {counts['FAIL']} FAIL, {counts['REPORTED']} REPORTED.** "
        "PASS/FAIL judge guaranteed claims (theorems, identities, probabilistic bounds at the "
        "stated failure probability); REPORTED shows measurements of heuristics that carry no "
        "guarantee.",
        "",
        "| experiment | claim | reference | bound | measured | verdict | note |",
        "|---|---|---|---:|---:|---|---|",
    ]
    for r in suite.results:
        for c in r.claims:
            cells = [c.experiment, c.statement, c.reference, c.bound, c.measured]
            verdict = f"**{c.verdict}**" if c.verdict != "REPORTED" else c.verdict
            lines.append(
                "| "
                + " | ".join(_md_escape(x) for x in cells)
                + f" | {verdict} | "
                + _md_escape(c.reason)
                + " |"
            )
        if r.error:
            lines.append(
                f"| {r.experiment.name} | raised {_md_escape(r.error)} | | | | **ERROR** | |"
            )
    for r in suite.results:
        ctx = r.context
        lines += [
            "",
            f"## {r.experiment.name}: {r.experiment.title}",
            "",
            f"{r.seconds:.1f} s.",
            "",
        ]
        for note in ctx.notes:
            lines += [note, ""]
        for fig in ctx.figures:
            lines += [f"![{fig.caption}]({fig.name})", "", f"*{fig.caption}*", ""]
        for tab in ctx.tables:
            lines += [f"**{tab.title}**", "", "| " + " | ".join(tab.header) + " |"]
            lines.append("|" + "---|" * len(tab.header))
            lines += ["| " + " | ".join(_md_escape(c) for c in row) + " |" for row in tab.rows]
            lines.append("")
    path = out_dir / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path
