"""The pieces of a validation experiment: a claim with its verdict, the context an experiment
writes to (claims, plots, data tables, progress) and the registry of experiments.

A *claim* states what a theorem (or a heuristic) says, the reference, the bound and the measured
value. Its verdict is

* ``PASS`` -- a guaranteed claim (a theorem's inequality, an identity, a deterministic
  property, or a probabilistic bound at the stated failure probability) that holds;
* ``FAIL`` -- a guaranteed claim that does not hold; the reason is stated;
* ``REPORTED`` -- a measurement of a heuristic with no guarantee (shown, never judged).

A PASS is *vacuous* when the bound could not have failed on that instance (a set-size bound
``|U| <= d/eps`` with ``d/eps >= n``, a recall of 100% when U holds every key): it is shown as
``PASS (vacuous)``, so a reader does not take it for evidence.
"""

from __future__ import annotations

import operator
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

Verdict = Literal["PASS", "FAIL", "REPORTED"]
PROFILES: tuple[str, ...] = ("quick", "full")

_OPS: dict[str, Callable[[float, float], bool]] = {
    "<=": operator.le,
    ">=": operator.ge,
    "==": operator.eq,
    "<": operator.lt,
    ">": operator.gt,
}


def fmt(x: Any, spec: str = ".3g") -> str:
    """A number as short text (ints as ints, floats with ``spec``)."""
    if isinstance(x, bool):
        return str(x)
    if isinstance(x, int):
        return str(x)
    try:
        return format(float(x), spec)
    except (TypeError, ValueError):
        return str(x)


@dataclass
class Claim:
    """One checked (or reported) statement of an experiment.

    Attributes
    ----------
    statement : str
        What is claimed, in words and math.
    reference : str
        Where the claim comes from (paper, theorem; "identity" for exact identities).
    bound : str
        The bound as text, e.g. ``"<= 0.61"``; ``"-"`` for reported measurements.
    measured : str
        The measured value as text.
    verdict : {"PASS", "FAIL", "REPORTED"}
    reason : str
        For FAIL: why it failed; otherwise a short note (setting, failure probability).
    experiment : str
        Name of the experiment that made it (set by :class:`Context`).
    vacuous : bool
        The claim could not have failed on this instance (see the module docstring).
    """

    statement: str
    reference: str
    bound: str
    measured: str
    verdict: Verdict
    reason: str = ""
    experiment: str = ""
    vacuous: bool = False

    @property
    def guaranteed(self) -> bool:
        return self.verdict != "REPORTED"

    @property
    def shown_verdict(self) -> str:
        """The verdict as displayed: ``PASS (vacuous)`` for a vacuous PASS."""
        return "PASS (vacuous)" if self.vacuous and self.verdict == "PASS" else self.verdict


@dataclass
class Figure:
    """A saved plot: file name (in the output folder) and caption."""

    name: str
    caption: str
    path: str | None = None


@dataclass
class DataTable:
    """Raw numbers behind a plot or claim, written to the Markdown report."""

    title: str
    header: list[str]
    rows: list[list[str]]


@dataclass
class Context:
    """What an experiment writes to: claims, figures, tables and progress.

    Experiments call :meth:`check` for guaranteed claims, :meth:`report` for heuristics,
    :meth:`figure` with a matplotlib figure, :meth:`table` for raw numbers and :meth:`step`
    to advance their progress bar (``total`` steps announced with :meth:`set_total`).
    """

    experiment: str
    profile: str = "quick"
    out_dir: str | None = None
    progress: Callable[[float, float | None, str], None] | None = None
    claims: list[Claim] = field(default_factory=list)
    figures: list[Figure] = field(default_factory=list)
    tables: list[DataTable] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    _done: float = 0.0
    _total: float | None = None

    @property
    def quick(self) -> bool:
        return self.profile == "quick"

    def pick(self, quick: Any, full: Any) -> Any:
        """``quick`` under the quick profile, else ``full``."""
        return quick if self.quick else full

    # -- progress ---------------------------------------------------------------------------
    def set_total(self, total: float) -> None:
        self._total = float(total)
        if self.progress is not None:
            self.progress(self._done, self._total, "")

    def step(self, what: str = "", n: float = 1.0) -> None:
        self._done += n
        if self.progress is not None:
            self.progress(self._done, self._total, what)

    # -- results ----------------------------------------------------------------------------
    def check(
        self,
        statement: str,
        reference: str,
        measured: float,
        op: str,
        bound: float,
        *,
        spec: str = ".3g",
        note: str = "",
        fail_reason: str = "",
        ceiling: float | None = None,
    ) -> Claim:
        """A guaranteed claim ``measured op bound``: PASS when it holds, else FAIL with
        ``fail_reason`` (default: the violated inequality). NaN measurements FAIL.

        ``ceiling``: the largest value ``measured`` can take on this instance (for ``<=``
        claims; e.g. n for a set size): a bound at or above it is vacuous, and the PASS says so.
        """
        ok = bool(_OPS[op](measured, bound)) if measured == measured else False
        vacuous = ceiling is not None and op in ("<=", "<") and bound >= ceiling
        if vacuous:
            note = (
                f"vacuous: the bound {fmt(bound, spec)} >= {fmt(ceiling, spec)}, the most the "
                "measurement can be here" + (f"; {note}" if note else "")
            )
        reason = note
        if not ok:
            reason = (
                fail_reason or f"measured {fmt(measured, spec)} violates {op} {fmt(bound, spec)}"
            )
            if note:
                reason = f"{reason}; {note}"
        return self._add(
            Claim(
                statement,
                reference,
                f"{op} {fmt(bound, spec)}",
                fmt(measured, spec),
                "PASS" if ok else "FAIL",
                reason,
                vacuous=vacuous,
            )
        )

    def check_true(
        self,
        statement: str,
        reference: str,
        holds: bool,
        measured: str,
        *,
        bound: str = "holds",
        note: str = "",
        fail_reason: str = "",
        vacuous: bool = False,
    ) -> Claim:
        """A guaranteed claim that is a yes/no property (an identity, a set inclusion).
        ``vacuous``: the property could not have failed on this instance (shown on a PASS)."""
        reason = (
            note
            if holds
            else (fail_reason or "the property does not hold") + (f"; {note}" if note else "")
        )
        return self._add(
            Claim(
                statement,
                reference,
                bound,
                measured,
                "PASS" if holds else "FAIL",
                reason,
                vacuous=bool(vacuous),
            )
        )

    def report(
        self,
        statement: str,
        reference: str,
        measured: Any,
        *,
        spec: str = ".3g",
        note: str = "",
        bound: str = "-",
    ) -> Claim:
        """A measurement of a heuristic with no guarantee (verdict REPORTED)."""
        return self._add(Claim(statement, reference, bound, fmt(measured, spec), "REPORTED", note))

    def _add(self, claim: Claim) -> Claim:
        claim.experiment = self.experiment
        self.claims.append(claim)
        return claim

    def figure(self, name: str, fig: Any, caption: str) -> None:
        """Save the matplotlib figure ``fig`` (a ``matplotlib.figure.Figure``, made without
        pyplot, see :func:`sketchla.validate._plot.figure`) as ``<out_dir>/<name>.png`` when an
        output folder is set."""
        entry = Figure(f"{name}.png", caption)
        if self.out_dir is not None:
            from pathlib import Path

            path = Path(self.out_dir) / entry.name
            fig.savefig(path, dpi=110, bbox_inches="tight")
            entry.path = str(path)
        self.figures.append(entry)

    def table(self, title: str, header: list[str], rows: list[list[Any]]) -> None:
        self.tables.append(DataTable(title, header, [[fmt(c) for c in r] for r in rows]))

    def note(self, text: str) -> None:
        self.notes.append(text)


@dataclass(frozen=True)
class Experiment:
    """A registered experiment: ``run(ctx)`` measures and records claims in ``ctx``.

    Attributes
    ----------
    name : str
        Short id used by ``--only``.
    title : str
        One line: what it shows.
    family : str
        Module family (jl, leverage, universal, softmax_scope, hyper, real).
    run : callable
        ``run(ctx: Context) -> None``.
    """

    name: str
    title: str
    family: str
    run: Callable[[Context], None]


@dataclass
class ExperimentResult:
    experiment: Experiment
    context: Context
    seconds: float
    error: str | None = None

    @property
    def claims(self) -> list[Claim]:
        return self.context.claims

    @property
    def failed(self) -> bool:
        return self.error is not None or any(c.verdict == "FAIL" for c in self.claims)


REGISTRY: dict[str, Experiment] = {}


def experiment(name: str, title: str, family: str) -> Callable:
    """Decorator registering ``run(ctx)`` as an experiment."""

    def wrap(fn: Callable[[Context], None]) -> Callable[[Context], None]:
        if name in REGISTRY:
            raise ValueError(f"experiment {name!r} registered twice")
        REGISTRY[name] = Experiment(name, title, family, fn)
        return fn

    return wrap


def timed_run(exp: Experiment, ctx: Context) -> ExperimentResult:
    """Run one experiment; an exception becomes an error (a failure of the suite)."""
    import traceback

    t0 = time.perf_counter()
    try:
        exp.run(ctx)
        error = None
    except Exception as exc:  # reported, not swallowed: the suite fails
        error = f"{type(exc).__name__}: {exc}"
        ctx.note("traceback:\n```\n" + traceback.format_exc() + "```")
    return ExperimentResult(exp, ctx, time.perf_counter() - t0, error)
