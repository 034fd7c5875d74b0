"""``sketchla bench scores``: leverage scores against numpy's QR.

Compared in one interleaved run: exact leverage by ``numpy.linalg.qr`` (reduced Q, squared row
norms; what a user would write), sketchla's exact method (CholeskyQR2 with pivoted-QR
fallback) and its sketched method at the default setting, whose maximum and median relative
error against the exact scores are reported. Goals of issue 3 (n = 2^20, d = 64, float64,
2 cores): sketched >= 20x faster than numpy-QR exact with max relative error <= 0.5; exact
>= 2x faster than numpy QR. (Streaming universal-set throughput: not built yet.)
"""

from __future__ import annotations

import numpy as np

from ..scores import leverage_scores
from ._timing import Case, Comparison, compare, run_interleaved

#: sizes of ``sketchla bench scores --quick``
QUICK = {"n": 2**16, "d": 16}

COMPARISONS = [
    Comparison("exact (CholeskyQR2) vs numpy QR", "ours exact", "numpy qr", 2.0, "speed-up"),
    Comparison("sketched vs numpy QR", "ours sketch", "numpy qr", 20.0, "speed-up"),
]


def numpy_qr_scores(A: np.ndarray) -> np.ndarray:
    """The baseline: squared row norms of numpy's reduced Q."""
    Q = np.linalg.qr(A)[0]
    return np.einsum("ij,ij->i", Q, Q)


def run(n: int = 2**20, d: int = 64, repeat: int = 5, seed: int = 0, progress=None):
    rng = np.random.default_rng(seed)
    # heavy-tailed row norms, so the scores are far from uniform
    A = rng.standard_normal((n, d)) * rng.lognormal(0, 1, (n, 1))
    cases = [
        Case("numpy qr", lambda: numpy_qr_scores(A)),
        Case("ours exact", lambda: leverage_scores(A)),
        Case("ours sketch", lambda: leverage_scores(A, method="sketch", seed=seed)),
    ]
    timed = run_interleaved(cases, repeat, progress)
    exact = numpy_qr_scores(A)
    rel = np.abs(leverage_scores(A, method="sketch", seed=seed) / exact - 1)
    exact_err = np.abs(leverage_scores(A) - exact).max()
    rows = compare(timed, COMPARISONS)
    sizes = {
        "n": n,
        "d": d,
        "repeat": repeat,
        "dtype": "float64",
        "sketch max rel err": f"{rel.max():.3f}",
        "sketch median rel err": f"{np.median(rel):.3f}",
        "exact max abs diff vs numpy": f"{exact_err:.1e}",
    }
    return {"sizes": sizes, "cases": timed, "rows": rows}
