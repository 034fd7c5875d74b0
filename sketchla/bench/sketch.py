"""``sketchla bench sketch``: the sketching operators against what users would use instead.

Compared in one run, timed interleaved (see ``_timing``), reported as medians and ratios:

* CountSketch on dense (n, d) float64 vs ``scipy.linalg.clarkson_woodruff_transform`` and vs
  a memory-read baseline ``A.sum(axis=0)`` (bandwidth ratio);
* CountSketch on CSR of ~1% density vs scipy's transform;
* SRHT vs GaussianSketch at the same m, and vs ``scipy.fft.rfft(A, axis=0)`` (an FFT-based
  transform of the same array);
* SparseSign (s = 8) vs scipy, for reference.

Goals of issue 2 (full size, 2-core machine): CountSketch dense >= 2x scipy and >= 70% of the
memory-read throughput; CSR >= 3x scipy; SRHT >= 5x GaussianSketch and faster than the FFT.

GaussianSketch is the only case that calls BLAS, and OpenBLAS's worker threads keep spinning
for up to a second after a product, taking a core from any multi-threaded code that runs next
(measured: CountSketch 2x slower right after a GEMM on 2 cores, unaffected with
OPENBLAS_NUM_THREADS=1). So the comparison SRHT vs GaussianSketch is timed in a second phase,
after all other cases; within each phase the cases are interleaved.
"""

from __future__ import annotations

import numpy as np
import scipy.fft
import scipy.linalg
import scipy.sparse as sp

from ..operators import SRHT, CountSketch, GaussianSketch, SparseSign
from ._timing import Case, Comparison, compare, run_interleaved

#: sizes of ``sketchla bench sketch --quick``
QUICK = {"n": 2**16, "d": 16, "m": 256}

COMPARISONS = [
    Comparison(
        "CountSketch dense vs scipy", "countsketch dense", "scipy CW dense", 2.0, "speed-up"
    ),
    Comparison(
        "CountSketch dense vs memory read",
        "countsketch dense",
        "memory read A.sum(0)",
        0.70,
        "fraction of read throughput",
    ),
    Comparison("CountSketch CSR vs scipy", "countsketch csr", "scipy CW csr", 3.0, "speed-up"),
    Comparison("SRHT vs GaussianSketch", "srht dense (phase 2)", "gaussian dense", 5.0, "speed-up"),
    Comparison("SRHT vs scipy.fft.rfft", "srht dense", "rfft axis 0", 1.0, "speed-up"),
    Comparison(
        "SparseSign(s=8) dense vs scipy", "sparse_sign dense", "scipy CW dense", None, "speed-up"
    ),
]


def run(
    n: int = 2**20,
    d: int = 64,
    m: int = 1024,
    density: float = 0.01,
    repeat: int = 5,
    seed: int = 0,
    progress=None,
) -> dict:
    """Time every case and return ``{"sizes": ..., "cases": {name: Case}, "rows": [...]}``;
    each row is (label, ours median, baseline median, ratio, goal, met)."""
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((n, d))
    A_csr = sp.random_array((n, d), density=density, format="csr", rng=rng)
    cs, ss = CountSketch(m, n, seed=seed), SparseSign(m, n, nnz_per_col=8, seed=seed)
    srht, gauss = SRHT(m, n, seed=seed), GaussianSketch(m, n, seed=seed)
    cases = [
        Case("memory read A.sum(0)", lambda: A.sum(axis=0)),
        Case("countsketch dense", lambda: cs @ A),
        Case("scipy CW dense", lambda: scipy.linalg.clarkson_woodruff_transform(A, m, rng=seed)),
        Case("countsketch csr", lambda: cs @ A_csr),
        Case("scipy CW csr", lambda: scipy.linalg.clarkson_woodruff_transform(A_csr, m, rng=seed)),
        Case("sparse_sign dense", lambda: ss @ A),
        Case("srht dense", lambda: srht @ A),
        Case("rfft axis 0", lambda: scipy.fft.rfft(A, axis=0)),
    ]
    timed = run_interleaved(cases, repeat, progress)
    blas_phase = [
        Case("srht dense (phase 2)", lambda: srht @ A),
        # O(m n d) and O(m n) normals: seconds per call at full size, so fewer repetitions
        Case("gaussian dense", lambda: gauss @ A, repeat=min(repeat, 3)),
    ]
    timed.update(run_interleaved(blas_phase, repeat, progress))
    rows = compare(timed, COMPARISONS)
    sizes = {
        "n": n,
        "d": d,
        "m": m,
        "density": density,
        "repeat": repeat,
        "dtype": "float64",
        "csr nnz": A_csr.nnz,
    }
    return {"sizes": sizes, "cases": timed, "rows": rows}
