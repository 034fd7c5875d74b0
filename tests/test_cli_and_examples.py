"""The command line (demo, bench, --version) and the examples, in their short modes."""

import runpy
import subprocess
import sys
from pathlib import Path

import pytest

import sketchla
from sketchla.bench import sketch as sketch_bench
from sketchla.cli import main
from sketchla.demo import distortion_table

ROOT = Path(__file__).resolve().parents[1]


def test_demo_table_shows_uniform_sampling_failing_where_sketches_do_not(capsys):
    assert main(["demo", "--n", "1024", "--d", "4", "--sizes", "64", "128", "--seeds", "3"]) == 0
    out = capsys.readouterr().out
    for name in ("gaussian", "srht", "countsketch", "sparse_sign", "uniform rows"):
        assert name in out
    rows = dict(distortion_table(n=1024, d=4, sizes=(128,), seeds=3))
    assert rows["uniform rows"][128][1] > 0.9  # coherent matrix: uniform sampling fails
    for kind in ("gaussian", "srht", "sparse_sign"):
        assert rows[kind][128][1] < 0.6


def test_demo_caption_is_computed_from_the_table():
    """The caption used to say "the sketches do not [fail]" under a table where CountSketch
    failed on the coherent matrix at small m; it is now computed from the numbers."""
    from sketchla.demo import FAIL_DISTORTION, caption

    rows = [
        ("countsketch", {64: (0.46, 0.995), 256: (0.26, 0.002)}),
        ("sparse_sign", {64: (0.45, 0.43), 256: (0.24, 0.23)}),
        ("uniform rows", {64: (0.48, 0.997), 256: (0.23, 3.0)}),
        ("theory sqrt(d/m) (Gaussian)", {64: (0.5, 0.5), 256: (0.25, 0.25)}),
    ]
    text = caption(rows, 16)
    assert "countsketch (m = 64)" in text and "uniform rows (every m)" in text
    assert f"below {FAIL_DISTORTION} at every m for: sparse_sign" in text
    assert "the sketches do not" not in text
    real = distortion_table(n=1024, d=4, sizes=(64, 128), seeds=3)
    for kind, cells in real:
        if kind in caption(real, 4).split("for: ")[-1]:
            assert all(c[1] < FAIL_DISTORTION for c in cells.values()), kind


def test_bench_quick_writes_a_table(tmp_path, capsys):
    out = tmp_path / "bench.md"
    argv = ["bench", "sketch", "--quick", "--repeat", "1", "--n", "4096", "--out", str(out)]
    assert main(argv) == 0
    text = out.read_text()
    assert "CountSketch dense vs scipy" in text and "SRHT vs GaussianSketch" in text
    assert "parallel read" in text and "GB/s" in text  # the read baseline of issue 21
    assert text.count("\n| ") == 1 + len(sketch_bench.COMPARISONS)  # header + comparisons
    printed = capsys.readouterr().out
    assert "ratio" in printed
    # printed to a pipe, the names used to be cut at 80 columns: now they never wrap
    for comp in sketch_bench.COMPARISONS:
        assert comp.label in printed, comp.label


def test_bench_scaling_writes_figure_and_table(tmp_path, monkeypatch):
    monkeypatch.setenv("SKETCHLA_BENCH_DIR", str(tmp_path))
    argv = ["bench", "scaling", "--quick", "--repeat", "1", "--n", str(2**17)]
    assert main(argv) == 0
    assert (tmp_path / "scaling.png").stat().st_size > 0
    table = (tmp_path / "scaling-times.md").read_text()
    assert "| 2^16 |" in table and "| 2^17 |" in table and "slope" in table


def test_version_and_module_entry_point():
    out = subprocess.run(
        [sys.executable, "-m", "sketchla", "--version"],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    ).stdout
    assert out.strip() == f"sketchla {sketchla.__version__}"
    with pytest.raises(SystemExit) as exc:
        main(["bench", "nonexistent"])
    assert exc.value.code == 2


@pytest.mark.parametrize("script", sorted((ROOT / "examples").glob("*.py")), ids=lambda p: p.name)
def test_examples_run_in_short_mode(script, monkeypatch):
    monkeypatch.setattr(sys, "argv", [str(script), "--quick"])
    runpy.run_path(str(script), run_name="__main__")


def test_sketch_and_solve_residual_ratio():
    ns = runpy.run_path(str(ROOT / "examples" / "sketch_and_solve.py"))
    # m = 40 d rows of CountSketch: a subspace embedding with eps well below 1/3 w.h.p.
    assert 1.0 <= ns["main"](quick=True) < 1.1
