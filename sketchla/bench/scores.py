"""``sketchla bench scores``: leverage scores against numpy's QR, and the streaming universal set.

Compared in one interleaved run: exact leverage by ``numpy.linalg.qr`` (reduced Q, squared row
norms; what a user would write), sketchla's exact method (CholeskyQR2 with pivoted-QR
fallback) and its sketched method at the default setting, whose maximum and median relative
error against the exact scores are reported; and the universal set U_eps (eps = 0.01) by one
pass of :class:`StreamingLeverage` (exact mode, blocks of 2^16 rows) against the batch
``universal_set`` (exact leverage), with the streaming throughput (rows/s, from the median)
and peak memory. Goals of issue 3 (n = 2^20, d = 64, float64, 2 cores): sketched >= 20x faster
than numpy-QR exact with max relative error <= 0.5; exact >= 2x faster than numpy QR;
streaming >= 5M rows/s. Issue 21: the streaming pass at >= 90% of the Gram-only ceiling
(``A.T @ A`` accumulated over the same row chunks, timed in the same run); the Gram of the
whole array in one call is reported next to it.
"""

from __future__ import annotations

import numpy as np

from ..scores import StreamingLeverage, leverage_scores, universal_set
from ._timing import Case, Comparison, compare, run_interleaved

#: sizes of ``sketchla bench scores --quick``
QUICK = {"n": 2**16, "d": 16}

COMPARISONS = [
    Comparison("exact (CholeskyQR2) vs numpy QR", "ours exact", "numpy qr", 2.0, "speed-up"),
    Comparison("sketched vs numpy QR", "ours sketch", "numpy qr", 20.0, "speed-up"),
    Comparison(
        "streaming U_eps vs batch U_eps", "ours streaming", "ours batch U_eps", None, "speed-up"
    ),
    # the floor of any exact one-pass method: the Gram matrix alone, A.T @ A by BLAS (SYRK),
    # accumulated over the same row chunks as the streaming pass (issue 21: >= 90% of it)
    Comparison(
        "streaming U_eps vs Gram only (SYRK, same chunks)",
        "ours streaming",
        "gram only A.T @ A",
        0.90,
        "fraction of Gram throughput",
    ),
    # for reference: the Gram of the whole array in one SYRK call (no chunks)
    Comparison(
        "streaming U_eps vs Gram in one call",
        "ours streaming",
        "gram one call A.T @ A",
        None,
        "fraction of Gram throughput",
    ),
]

#: threshold and block size of the streaming case
EPS, BLOCK = 0.01, 2**16


def numpy_qr_scores(A: np.ndarray) -> np.ndarray:
    """The baseline: squared row norms of numpy's reduced Q."""
    Q = np.linalg.qr(A)[0]
    return np.einsum("ij,ij->i", Q, Q)


def streaming_universal_set(A: np.ndarray, eps: float = EPS, block: int = BLOCK):
    """One pass over row blocks of A (views, no copies); returns (U, peak_bytes)."""
    s = StreamingLeverage(A.shape[1], eps)
    for lo in range(0, A.shape[0], block):
        s.update(A[lo : lo + block])
    return s.universal_set(), s.peak_bytes


def gram_in_chunks(A: np.ndarray, chunk: int = StreamingLeverage._CHUNK) -> np.ndarray:
    """A.T @ A accumulated over row chunks as the streaming pass does: its speed is the
    ceiling of any exact one-pass universal set on this machine."""
    G = np.zeros((A.shape[1], A.shape[1]))
    for lo in range(0, A.shape[0], chunk):
        B = A[lo : lo + chunk]
        G += B.T @ B
    return G


def run(n: int = 2**20, d: int = 64, repeat: int = 5, seed: int = 0, progress=None):
    rng = np.random.default_rng(seed)
    # heavy-tailed row norms, so the scores are far from uniform
    A = rng.standard_normal((n, d)) * rng.lognormal(0, 1, (n, 1))
    cases = [
        Case("numpy qr", lambda: numpy_qr_scores(A)),
        Case("ours exact", lambda: leverage_scores(A)),
        Case("ours sketch", lambda: leverage_scores(A, method="sketch", rng=seed)),
        Case("ours batch U_eps", lambda: universal_set(A, EPS)),
        Case("ours streaming", lambda: streaming_universal_set(A)),
        Case("gram only A.T @ A", lambda: gram_in_chunks(A)),
        Case("gram one call A.T @ A", lambda: A.T @ A),
    ]
    timed = run_interleaved(cases, repeat, progress)
    exact = numpy_qr_scores(A)
    rel = np.abs(leverage_scores(A, method="sketch", rng=seed) / exact - 1)
    exact_err = np.abs(leverage_scores(A) - exact).max()
    U, peak = streaming_universal_set(A)
    same = np.array_equal(U, universal_set(A, EPS))
    rows = compare(timed, COMPARISONS)
    rate = n / timed["ours streaming"].median
    sizes = {
        "n": n,
        "d": d,
        "repeat": repeat,
        "dtype": "float64",
        "sketch max rel err": f"{rel.max():.3f}",
        "sketch median rel err": f"{np.median(rel):.3f}",
        "exact max abs diff vs numpy": f"{exact_err:.1e}",
        "streaming eps": EPS,
        "streaming block": BLOCK,
        "streaming rows/s": f"{rate / 1e6:.2f}M (goal >= 5M: {'met' if rate >= 5e6 else 'NO'})",
        "Gram-only rows/s": f"{n / timed['gram only A.T @ A'].median / 1e6:.2f}M",
        "streaming peak memory": f"{peak / 2**20:.1f} MiB (input {A.nbytes / 2**20:.0f} MiB)",
        "|U_eps|": len(U),
        "streaming == batch": same,
    }
    return {"sizes": sizes, "cases": timed, "rows": rows}
