"""The ``sketchla`` command line: ``demo``, ``bench SUITE``, ``validate``, ``--version``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rich.console import Console, JustifyMethod
from rich.table import Table

from . import __version__


def _wide(console: Console) -> Console:
    """A pipe or a file gets a wide console (rich would cut tables at 80 columns)."""
    return console if console.is_terminal else Console(width=200)


def _demo(args: argparse.Namespace, console: Console) -> int:
    from .demo import caption, distortion_table

    console = _wide(console)
    sizes = tuple(args.sizes)
    console.print(
        f"Subspace-embedding distortion max|sigma(SU) - 1|, median of {args.seeds} seeds, "
        f"n = {args.n}, d = {args.d}  (cells: random matrix / coherent matrix)"
    )
    table = Table(show_lines=False)
    table.add_column("sketch", no_wrap=True)
    for m in sizes:
        table.add_column(f"m = {m}", justify="right", no_wrap=True)
    rows = distortion_table(args.n, args.d, sizes, args.seeds)
    for kind, cells in rows:
        table.add_row(kind, *(" / ".join(f"{v:.3f}" for v in cells[m]) for m in sizes))
    console.print(table)
    console.print(caption(rows, args.d))
    console.print("The first run compiles numba kernels (cached afterwards).")
    return 0


def _bench(args: argparse.Namespace, console: Console) -> int:
    from .bench import SUITES, machine_summary

    console = _wide(console)
    suite = SUITES[args.suite]
    params = {"repeat": args.repeat}
    if args.quick:
        # each suite names its own small sizes (module attribute QUICK), for smoke tests
        params.update(getattr(suite, "QUICK", {"n": 2**16, "d": 16}))
    for key in ("n", "d", "m"):
        if getattr(args, key) is not None:
            params[key] = getattr(args, key)
    with console.status("benchmarking") as status:
        result = suite.run(progress=lambda msg: status.update(f"benchmarking: {msg}"), **params)
    sizes = ", ".join(f"{k}={v}" for k, v in result["sizes"].items())
    title = f"sketchla bench {args.suite} -- {sizes}"
    table = Table(title=title)
    columns: list[tuple[str, JustifyMethod]] = [
        ("comparison", "left"),
        ("ours (s)", "right"),
        ("baseline (s)", "right"),
        ("ratio", "right"),
        ("meaning", "left"),
        ("goal", "right"),
        ("met", "left"),
    ]
    for col, just in columns:
        # names and numbers are never cut; only the free-text "meaning" column wraps
        table.add_column(col, justify=just, no_wrap=col != "meaning")
    lines = [
        f"## {title}",
        "",
        f"machine: {machine_summary()}",
        "",
        "| comparison | ours (s) | baseline (s) | ratio | meaning | goal | met |",
        "|---|---:|---:|---:|---|---:|---|",
    ]
    for comp, ours, base, ratio, met in result["rows"]:
        goal = "" if comp.goal is None else f">= {comp.goal:g}"
        verdict = "" if met is None else ("yes" if met else "NO")
        cells = [
            comp.label,
            f"{ours:.4f}",
            f"{base:.4f}",
            f"{ratio:.2f}",
            comp.meaning,
            goal,
            verdict,
        ]
        table.add_row(*cells)
        lines.append("| " + " | ".join(cells) + " |")
    console.print(table)
    console.print(f"machine: {machine_summary()}")
    console.print("ratios are baseline time / our time, both medians of the same interleaved run")
    if args.out:
        Path(args.out).write_text("\n".join(lines) + "\n")
        console.print(f"wrote {args.out}")
    return 0


def _validate(args: argparse.Namespace, console: Console) -> int:
    from .validate import experiments, run_suite

    console = _wide(console)  # a pipe or file: a wide table instead of 80 columns
    if args.list:
        table = Table(title="sketchla validate: experiments")
        for col in ("name", "family", "what it shows"):
            table.add_column(col)
        for exp in experiments().values():
            table.add_row(exp.name, exp.family, exp.title)
        console.print(table)
        return 0
    try:
        suite = run_suite(
            only=args.only,
            profile="quick" if args.quick else "full",
            out=args.out,
            console=console,
        )
    except ValueError as exc:  # unknown --only name
        console.print(f"[bold red]{exc}[/]")
        return 2
    # non-zero exit when a guaranteed claim FAILED (or an experiment raised)
    return 1 if suite.failed else 0


def build_parser() -> argparse.ArgumentParser:
    from .bench import SUITES

    parser = argparse.ArgumentParser(
        prog="sketchla",
        description="Randomized numerical linear algebra: demo, benchmarks, theory validation.",
    )
    parser.add_argument("--version", action="version", version=f"sketchla {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="print a subspace-embedding distortion table")
    demo.add_argument("--n", type=int, default=4096, help="rows of the test matrices")
    demo.add_argument("--d", type=int, default=16, help="columns of the test matrices")
    demo.add_argument(
        "--sizes", type=int, nargs="+", default=[64, 128, 256, 512], help="sketch sizes m"
    )
    demo.add_argument("--seeds", type=int, default=5, help="seeds per cell")
    demo.set_defaults(run=_demo)

    bench = sub.add_parser("bench", help="side-by-side benchmarks (medians and ratios)")
    bench.add_argument("suite", choices=sorted(SUITES))
    bench.add_argument(
        "--quick", action="store_true", help="small sizes (seconds, for smoke tests)"
    )
    bench.add_argument("--repeat", type=int, default=5, help="timed rounds (median reported)")
    bench.add_argument("--n", type=int, default=None, help="override the number of rows")
    bench.add_argument("--d", type=int, default=None, help="override the number of columns")
    bench.add_argument("--m", type=int, default=None, help="override the sketch size")
    bench.add_argument("--out", default=None, help="also write the table as Markdown here")
    bench.set_defaults(run=_bench)

    validate = sub.add_parser(
        "validate",
        help="theory-validation suite: claims, bounds, measured values, PASS/FAIL/REPORTED",
    )
    validate.add_argument(
        "--quick", action="store_true", help="small sizes: the whole suite in about 3 minutes"
    )
    validate.add_argument(
        "--only",
        action="append",
        default=None,
        metavar="NAME",
        help="run only this experiment or family (repeatable; see --list)",
    )
    validate.add_argument("--out", default=None, help="folder for report.md and the PNG plots")
    validate.add_argument("--list", action="store_true", help="list the experiments and exit")
    validate.set_defaults(run=_validate)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.run(args, Console())


if __name__ == "__main__":
    sys.exit(main())
