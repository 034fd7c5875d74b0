"""``sketchla bench scaling``: time against n for each sketching primitive, log-log, fitted slope.

For n = 2^16, 2^17, ..., ``n`` (default 2^24) rows and d columns (default 16, so the largest
float64 input is 2 GiB), the primitives are timed interleaved at each n (``repeat`` rounds,
medians): the parallel streaming read of the array (the memory limit), CountSketch on dense
and on CSR input (density 1%, so nnz grows with n), SparseSign(s = 8) dense, SRHT dense (O(N d
log N), N = n here) and one exact pass of ``StreamingLeverage`` (blocks of 2^16 rows).
GaussianSketch is left out: it is O(m n d) by design (the accuracy reference, not a fast path).

Every primitive should scale linearly in n (nnz for sparse input): the slope of log t against
log n is fitted by least squares over all sizes and over the sizes >= 2^20 (small sizes carry
fixed costs: thread start-up, the d x d work of the leverage pass). Writes a log-log figure
(``scaling.png``) and the table of medians (``scaling-times.md``) into ``out_dir`` (default:
the environment variable ``SKETCHLA_BENCH_DIR``, else the current directory); the command's
table compares, per primitive, the measured time at the largest n with the linear
extrapolation of its time at n / 16.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from .._kernels.read import column_sums
from ..operators import SRHT, CountSketch, SparseSign
from ..scores import StreamingLeverage
from ._timing import Case, Comparison, compare, machine_summary, run_interleaved

#: sizes of ``sketchla bench scaling --quick``
QUICK = {"n": 2**18, "d": 8, "m": 64}

#: smallest n of the sweep
N_MIN = 2**16

#: rows per block of the streaming leverage pass
BLOCK = 2**16

#: the linear extrapolation in the command's table starts from n_max / EXTRAPOLATE
EXTRAPOLATE = 16

PRIMITIVES = (
    "parallel read",
    "countsketch dense",
    "countsketch csr",
    "sparse_sign s=8 dense",
    "srht dense",
    "streaming leverage",
)


def _streaming_pass(A: np.ndarray, eps: float = 0.01) -> np.ndarray:
    s = StreamingLeverage(A.shape[1], eps)
    for lo in range(0, A.shape[0], BLOCK):
        s.update(A[lo : lo + BLOCK])
    return s.universal_set()


def _cases(A: np.ndarray, A_csr, m: int, seed: int) -> list[Case]:
    n = A.shape[0]
    cs, ss, srht = CountSketch(m, n, seed), SparseSign(m, n, 8, seed), SRHT(m, n, seed)
    return [
        Case("parallel read", lambda: column_sums(A, 16, work=A.nbytes)),
        Case("countsketch dense", lambda: cs @ A),
        Case("countsketch csr", lambda: cs @ A_csr),
        Case("sparse_sign s=8 dense", lambda: ss @ A),
        Case("srht dense", lambda: srht @ A),
        Case("streaming leverage", lambda: _streaming_pass(A)),
    ]


def fit_slope(ns, ts) -> float:
    """Least-squares slope of log t against log n."""
    return float(np.polyfit(np.log(np.asarray(ns, float)), np.log(np.asarray(ts, float)), 1)[0])


def run(
    n: int = 2**24,
    d: int = 16,
    m: int = 1024,
    density: float = 0.01,
    repeat: int = 5,
    seed: int = 0,
    progress=None,
    out_dir: str | None = None,
) -> dict:
    """Sweep n = 2^16 .. n (powers of two); returns the suite dict of ``sketchla bench`` and
    writes ``scaling.png`` and ``scaling-times.md`` into ``out_dir``."""
    n_max = 1 << (max(int(n), N_MIN).bit_length() - 1)  # a power of two
    ns = [1 << k for k in range(N_MIN.bit_length() - 1, n_max.bit_length())]
    rng = np.random.default_rng(seed)
    A_all = rng.standard_normal((n_max, d))
    csr_all = sp.random_array((n_max, d), density=density, format="csr", rng=rng)
    times: dict[str, dict[int, Case]] = {p: {} for p in PRIMITIVES}
    for size in ns:
        A, A_csr = A_all[:size], csr_all[:size]
        say = None if progress is None else (lambda msg, size=size: progress(f"n={size}: {msg}"))
        timed = run_interleaved(_cases(A, A_csr, min(m, size), seed), repeat, say)
        for p in PRIMITIVES:
            times[p][size] = timed[p]
    medians = {p: [times[p][size].median for size in ns] for p in PRIMITIVES}
    big = [i for i, size in enumerate(ns) if size >= 2**20] or list(range(len(ns)))
    slopes = {p: fit_slope(ns, medians[p]) for p in PRIMITIVES}
    slopes_big = {
        p: fit_slope([ns[i] for i in big], [medians[p][i] for i in big])
        if len(big) > 1
        else float("nan")
        for p in PRIMITIVES
    }
    # the command's table: measured t(n_max) vs t(n_max / 16) * 16 (linear extrapolation)
    n_ref = max(ns[0], n_max // EXTRAPOLATE)
    timed_rows: dict[str, Case] = {}
    comparisons = []
    for p in PRIMITIVES:
        measured = times[p][n_max]
        ref = times[p][n_ref]
        timed_rows[p] = measured
        timed_rows[f"{p} linear"] = Case(
            f"{p} linear", measured.fn, times=[t * n_max / n_ref for t in ref.times]
        )
        comparisons.append(
            Comparison(
                f"{p}: t(n={n_max}) vs linear from n={n_ref}",
                p,
                f"{p} linear",
                None,
                f"linear extrapolation / measured (1 = linear); slope {slopes[p]:.2f}, "
                f"{slopes_big[p]:.2f} for n >= 2^20",
            )
        )
    rows = compare(timed_rows, comparisons)
    out = Path(out_dir or os.environ.get("SKETCHLA_BENCH_DIR", "."))
    out.mkdir(parents=True, exist_ok=True)
    sizes = {
        "n": f"2^{N_MIN.bit_length() - 1}..2^{n_max.bit_length() - 1}",
        "d": d,
        "m": m,
        "density": density,
        "repeat": repeat,
        "dtype": "float64",
        "figure": str(out / "scaling.png"),
    }
    _write_table(out / "scaling-times.md", ns, medians, slopes, slopes_big, sizes)
    _plot(out / "scaling.png", ns, medians, slopes, d)
    return {"sizes": sizes, "cases": timed_rows, "rows": rows, "medians": medians, "ns": ns}


def _write_table(path: Path, ns, medians, slopes, slopes_big, sizes) -> None:
    head = "| n | " + " | ".join(PRIMITIVES) + " |"
    lines = [
        "sketchla bench scaling -- " + ", ".join(f"{k}={v}" for k, v in sizes.items()),
        "",
        f"machine: {machine_summary()}",
        "",
        "median seconds per call (interleaved rounds at each n)",
        "",
        head,
        "|---:|" + "---:|" * len(PRIMITIVES),
    ]
    for i, size in enumerate(ns):
        cells = [f"{medians[p][i]:.4g}" for p in PRIMITIVES]
        lines.append(f"| 2^{size.bit_length() - 1} | " + " | ".join(cells) + " |")
    lines.append("| slope (all n) | " + " | ".join(f"{slopes[p]:.2f}" for p in PRIMITIVES) + " |")
    lines.append(
        "| slope (n >= 2^20) | " + " | ".join(f"{slopes_big[p]:.2f}" for p in PRIMITIVES) + " |"
    )
    path.write_text("\n".join(lines) + "\n")


def _plot(path: Path, ns, medians, slopes, d: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 5.5))
    x = np.asarray(ns, float)
    for p in PRIMITIVES:
        (line,) = ax.loglog(x, medians[p], "o-", label=f"{p} (slope {slopes[p]:.2f})")
        # the linear reference through the largest size
        ax.loglog(x, medians[p][-1] * x / x[-1], ":", color=line.get_color(), lw=0.8)
    ax.set_xlabel("n (rows)")
    ax.set_ylabel("median time per call (s)")
    ax.set_title(f"sketchla primitives, d = {d}, float64 (dotted: slope 1)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
