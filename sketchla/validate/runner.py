"""Run the validation experiments: progress bars, the verdict table, the Markdown report."""

from __future__ import annotations

import datetime
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from ._core import PROFILES, REGISTRY, Context, Experiment, ExperimentResult, timed_run

__all__ = ["SuiteResult", "experiments", "run_suite", "write_report"]

#: experiment families, one module each, in suite order
FAMILIES: tuple[str, ...] = (
    "jl",
    "leverage",
    "universal",
    "softmax_scope",
    "hyper",
    "real",
    "llm",
)

_STYLE = {"PASS": "bold green", "FAIL": "bold red", "REPORTED": "cyan"}
#: the verdict column of the terminal table, one short word per claim
_SHORT = {"PASS": "PASS", "FAIL": "FAIL", "REPORTED": "REP"}


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
        ``softmax_scope``, ``hyper``, ``real``, ``llm``).
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
    # one overall bar with the ETA of the suite (experiments count as equal shares, each
    # advancing by its own steps), and below it the running experiment's step
    columns = (
        TextColumn("{task.description:<24.24}"),
        BarColumn(bar_width=24),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        TextColumn("{task.fields[what]:<32.32}"),
    )
    with Progress(*columns, console=console, transient=True) as bars:
        overall = bars.add_task("sketchla validate", total=len(chosen), what="")
        for i, exp in enumerate(chosen):

            def progress(done, total, what, exp=exp, i=i):
                share = min(done / total, 1.0) if total else 0.0
                bars.update(overall, completed=i + share, what=f"{exp.name}: {what}")

            bars.update(overall, completed=i, what=exp.name)
            ctx = Context(exp.name, profile, None if out_dir is None else str(out_dir), progress)
            res = timed_run(exp, ctx)
            results.append(res)
            bars.update(overall, completed=i + 1)
            verdicts = {c.verdict for c in res.claims}
            status = "ERROR" if res.error else ("FAIL" if "FAIL" in verdicts else "ok")
            style = "bold red" if status != "ok" else "green"
            # one permanent line per finished experiment, above the live bar
            bars.console.print(
                f"[{style}]{status:>5}[/] {exp.name:<26} {len(res.claims):>3} claims "
                f"{res.seconds:6.1f} s"
            )
    suite = SuiteResult(
        profile,
        results,
        time.perf_counter() - t0,
        only=None if only is None else ([only] if isinstance(only, str) else list(only)),
    )
    console.print(verdict_table(suite, width=console.width))
    counts = suite.counts()
    errors = sum(r.error is not None for r in results)
    vacuous = sum(c.vacuous and c.verdict == "PASS" for r in results for c in r.claims)
    console.print(
        f"{counts['PASS']} PASS"
        + (f" ({vacuous} vacuous)" if vacuous else "")
        + f", {counts['FAIL']} FAIL, {counts['REPORTED']} REPORTED (REP)"
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


def verdict_table(suite: SuiteResult, width: int = 120) -> Table:
    """The terminal table: one line per claim (verdict, experiment, claim, measured, bound)
    in ``width`` columns; the claim is cut with an ellipsis to what the other columns leave.
    The full text, references and notes are in ``report.md``."""
    rows = []
    for r in suite.results:
        for c in r.claims:
            short = _SHORT[c.verdict] + (" (vacuous)" if c.vacuous and c.verdict == "PASS" else "")
            claim = c.statement + (f" ({c.reason})" if c.verdict == "FAIL" else "")
            bound = c.bound if c.bound != "-" else ""
            rows.append((c.verdict, short, c.experiment, claim, c.measured, bound))
        if r.error:
            rows.append(("FAIL", "ERROR", r.experiment.name, r.error, "", ""))
    caps = (None, 14, 22, None, 24, 16)  # widest verdict, experiment, measured, bound shown

    def col(i: int, title: str) -> int:
        longest = max([len(title), *(len(row[i]) for row in rows)])
        cap = caps[i]
        return longest if cap is None else min(longest, cap)

    widths = {
        i: col(i, t) for i, t in ((1, "verdict"), (2, "experiment"), (4, "measured"), (5, "bound"))
    }
    claim_width = max(20, width - sum(widths.values()) - 2 * 4)  # 2 spaces between columns
    table = Table(
        title=f"sketchla validate ({suite.profile}); full text in report.md",
        box=None,
        show_edge=False,
        pad_edge=False,
        header_style="bold",
    )
    table.add_column("verdict", no_wrap=True, width=widths[1])
    table.add_column("experiment", no_wrap=True, overflow="ellipsis", width=widths[2])
    table.add_column("claim", no_wrap=True, overflow="ellipsis", max_width=claim_width)
    table.add_column(
        "measured", no_wrap=True, overflow="ellipsis", justify="right", width=widths[4]
    )
    table.add_column("bound", no_wrap=True, overflow="ellipsis", justify="right", width=widths[5])
    for verdict, short, experiment, claim, measured, bound in rows:
        style = "bold red" if short == "ERROR" else _STYLE[verdict]
        table.add_row(f"[{style}]{short}[/]", experiment, claim, measured, bound)
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
        "guarantee. A PASS marked (vacuous) could not have failed on its instance (its bound is "
        "at least the largest possible measurement): it is shown, not counted as evidence.",
        "",
        "| experiment | claim | reference | bound | measured | verdict | note |",
        "|---|---|---|---:|---:|---|---|",
    ]
    for r in suite.results:
        for c in r.claims:
            cells = [c.experiment, c.statement, c.reference, c.bound, c.measured]
            verdict = f"**{c.verdict}**" if c.verdict != "REPORTED" else c.verdict
            if c.vacuous and c.verdict == "PASS":
                verdict += " (vacuous)"
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
