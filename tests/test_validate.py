"""``sketchla validate``: a representative subset of the quick profile with every verdict
asserted, the report and plots, and the exit status of the CLI."""

import math

import numpy as np
import pytest

from sketchla.cli import main
from sketchla.validate import Context, run_suite
from sketchla.validate import _core as core

#: experiments run in the test suite (about a minute on 2 cores): one or more of every family,
#: with the number of guaranteed claims (all must PASS) and of REPORTED measurements
EXPECTED = {
    "leverage": (8, 1),
    "universal_recall": (10, 0),
    "planted": (0, 1),
    "lewis": (9, 3),
    "softmax_counterexample": (1, 1),
    "gray_order": (1, 5),
    "approx_d": (1, 4),
    "real_universal": (2, 0),
}


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    out = tmp_path_factory.mktemp("validate")
    return run_suite(only=list(EXPECTED), profile="quick", out=out), out


def test_every_verdict_of_the_quick_subset(suite):
    result, _ = suite
    assert [r.experiment.name for r in result.results] == list(EXPECTED)
    for r in result.results:
        assert r.error is None, f"{r.experiment.name} raised {r.error}"
        guaranteed = [c for c in r.claims if c.verdict != "REPORTED"]
        reported = [c for c in r.claims if c.verdict == "REPORTED"]
        assert (len(guaranteed), len(reported)) == EXPECTED[r.experiment.name], r.experiment.name
        for c in guaranteed:
            # each of these is a theorem, an identity or a bound at a stated failure
            # probability (fixed seeds): it must hold
            assert c.verdict == "PASS", f"{c.experiment}: {c.statement} -- {c.reason}"
        for c in reported:
            assert c.bound == "-" and c.measured
    assert not result.failed
    assert result.counts()["FAIL"] == 0


def test_report_and_plots_are_written(suite):
    result, out = suite
    text = (out / "report.md").read_text()
    assert "| experiment | claim | reference | bound | measured | verdict | note |" in text
    n_claims = sum(len(r.claims) for r in result.results)
    assert text.count("**PASS**") + text.count("| REPORTED |") == n_claims
    assert "all-MiniLM-L6-v2" in text and "pydoc_data.topics" in text  # real data named
    figures = [f for r in result.results for f in r.context.figures]
    assert {f.name for f in figures} == {
        "leverage.png",
        "planted.png",
        "lewis.png",
        "gray_order.png",
        "approx_d.png",
        "real_universal.png",
    }
    import matplotlib.image as mpimg

    for fig in figures:
        path = out / fig.name
        assert f"]({fig.name})" in text
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        img = mpimg.imread(path)
        assert img.shape[0] > 200 and img.shape[1] > 300
        assert float(img[..., :3].std()) > 0.01  # something is drawn


def _register(monkeypatch, name, body):
    monkeypatch.setitem(core.REGISTRY, name, core.Experiment(name, "test only", "test", body))


def test_cli_exit_status_follows_the_guaranteed_claims(monkeypatch, tmp_path, capsys):
    def failing(ctx):
        ctx.check("an injected false inequality", "test", 2.0, "<=", 1.0)
        ctx.report("a heuristic", "test", 0.5)

    def passing(ctx):
        ctx.check("an injected true inequality", "test", 0.5, "<=", 1.0)
        ctx.report("a heuristic with a bad value is not judged", "test", 1e9)

    def raising(ctx):
        raise RuntimeError("boom")

    _register(monkeypatch, "test_fails", failing)
    _register(monkeypatch, "test_passes", passing)
    _register(monkeypatch, "test_raises", raising)
    assert main(["validate", "--quick", "--only", "test_passes"]) == 0
    assert main(["validate", "--quick", "--only", "test_fails", "--out", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "FAIL" in out and "injected false inequality" in out
    report = (tmp_path / "report.md").read_text()
    assert "**FAIL**" in report and "violates <= 1" in report
    assert main(["validate", "--quick", "--only", "test_raises"]) == 1
    assert "boom" in capsys.readouterr().out
    assert main(["validate", "--only", "no_such_experiment"]) == 2


def test_cli_lists_every_family(capsys):
    assert main(["validate", "--list"]) == 0
    out = capsys.readouterr().out
    for family in ("jl", "leverage", "universal", "softmax_scope", "hyper", "real"):
        assert family in out


def test_context_verdicts():
    ctx = Context("t")
    assert ctx.check("x", "r", 1.0, "<=", 1.0).verdict == "PASS"
    assert ctx.check("x", "r", 1.5, "<=", 1.0).verdict == "FAIL"
    assert ctx.check("x", "r", math.nan, ">=", 0.0).verdict == "FAIL"  # NaN never passes
    assert ctx.check("x", "r", np.float64(3), ">=", 2).verdict == "PASS"
    c = ctx.check_true("set inclusion", "r", False, "3/4", fail_reason="one key missed")
    assert c.verdict == "FAIL" and "one key missed" in c.reason
    assert ctx.report("h", "r", 0.1234567).measured == "0.123"
    assert [c.experiment for c in ctx.claims] == ["t"] * 6
    with pytest.raises(ValueError, match="profile"):
        run_suite(only="jl", profile="slow")


# -- issue 20: compact terminal table, vacuous verdicts, the universal_size plot ----------------
def test_terminal_table_is_one_line_per_claim_and_report_keeps_the_text(monkeypatch, tmp_path):
    """At 120 columns every claim takes one line (long statements end in an ellipsis; the
    old table wrapped 83 rows into 475 lines and dropped the note column); report.md keeps the
    full statement and the note."""
    import io

    from rich.console import Console

    long = "a claim whose statement is much longer than a terminal line " * 4

    def body(ctx):
        for i in range(5):
            ctx.check(f"{i}: {long}", "a reference " * 5, 0.5, "<=", 1.0, note="the note " * 9)
        ctx.report("a heuristic " * 20, "ref", 0.25)

    _register(monkeypatch, "test_long", body)
    buf = io.StringIO()
    console = Console(file=buf, width=120, force_terminal=False)
    run_suite(only="test_long", out=tmp_path, console=console)
    lines = buf.getvalue().splitlines()
    rows = [ln for ln in lines if ln.startswith(("PASS", "FAIL", "REP"))]
    assert len(rows) == 6, lines
    assert all(len(ln) <= 120 for ln in lines)
    assert all("…" in ln for ln in rows)
    report = (tmp_path / "report.md").read_text()
    assert long.strip() in report and ("the note " * 9).strip() in report


def test_progress_columns_include_an_overall_eta():
    """The live display is one overall bar with elapsed time and ETA (rich columns)."""
    import inspect

    from sketchla.validate import runner

    src = inspect.getsource(runner.run_suite)
    assert "TimeRemainingColumn()" in src and "transient=True" in src


def test_vacuous_pass_says_so():
    """A PASS whose bound is at least the largest possible measurement (|U| <= d/eps with
    d/eps >= n) is shown as 'PASS (vacuous)', in the claim and in the report."""
    ctx = Context("t")
    c = ctx.check("|U| <= d/eps", "r", 10, "<=", 640, ceiling=512)
    assert c.verdict == "PASS" and c.vacuous and c.shown_verdict == "PASS (vacuous)"
    assert "vacuous" in c.reason
    c = ctx.check("|U| <= d/eps", "r", 10, "<=", 64, ceiling=512)
    assert not c.vacuous and c.shown_verdict == "PASS"
    c = ctx.check_true("recall", "r", True, "3/3", vacuous=True)
    assert c.shown_verdict == "PASS (vacuous)"
    failed = ctx.check("x", "r", 700, "<=", 640, ceiling=512)
    assert failed.shown_verdict == "FAIL"


def test_real_universal_uses_eps_where_the_bound_bites(suite):
    """real_universal's size bound bites (d/eps < n = 512 for every eps): no vacuous PASS in
    the quick subset at all."""
    result, out = suite
    for r in result.results:
        for c in r.claims:
            assert not c.vacuous, f"{c.experiment}: {c.statement}"
    assert "**PASS** (vacuous)" not in (out / "report.md").read_text()


def test_universal_size_plot_has_no_negative_set_sizes(monkeypatch):
    """The universal_size plot's y axis (set sizes) starts at 0: no negative symlog ticks."""
    from sketchla.validate import universal

    figures = {}

    class Small(Context):
        def pick(self, quick, full):
            return [500, 2000] if isinstance(quick, list) else quick

        def figure(self, name, fig, caption):
            figures[name] = fig

    ctx = Small("universal_size")
    universal.run_size(ctx)
    ax = figures["universal_size"].axes[0]
    lo, hi = ax.get_ylim()
    assert lo >= 0 and hi > 1
    visible = [t for t in ax.get_yticks() if lo <= t <= hi]
    assert visible and min(visible) >= 0
    assert all(c.verdict == "PASS" for c in ctx.claims)
