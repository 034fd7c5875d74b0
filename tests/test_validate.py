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
