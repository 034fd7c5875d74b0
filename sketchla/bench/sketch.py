"""``sketchla bench sketch``: the sketching operators against the memory limit and scipy.

Compared in one run, timed interleaved (see ``_timing``), reported as medians and ratios:

* **the read baseline**: a parallel streaming read of the same array (``column_sums``: one
  accumulator per row partition, 8 lanes per vector op), the fastest any one-pass kernel can
  be; every dense primitive's row gives its rate in GB/s next to that read rate. (numpy's
  ``A.sum(axis=0)`` is reported too: single-threaded, it is not a read limit.)
* CountSketch on dense (n, d) float64 and float32 vs that read, and vs
  ``scipy.linalg.clarkson_woodruff_transform``; CountSketch on CSR (~1% density) vs scipy;
* SparseSign with s = 2, 4, 8 nonzeros per column vs CountSketch (the same one pass over A,
  s scatters per row instead of one);
* SRHT vs ``scipy.fft.rfft`` of the same zero-padded (N = 2^ceil(log2 n) rows) array, and vs
  GaussianSketch at the same m.

Goals of issue 21 (n = 2^20, d = 64, 2 cores): CountSketch dense >= 80% of the read rate in
float64 and float32; CSR >= 3x scipy; SparseSign(s) time <= 1.5x CountSketch's for s <= 8;
SRHT >= 3x the padded rfft; (issue 2) CountSketch dense >= 2x scipy, SRHT >= 5x Gaussian.

GaussianSketch is the only case that calls BLAS, and OpenBLAS's worker threads keep spinning
for up to a second after a product, taking a core from any multi-threaded code that runs next
(measured: CountSketch 2x slower right after a GEMM on 2 cores, unaffected with
OPENBLAS_NUM_THREADS=1). So the comparison SRHT vs GaussianSketch is timed in a second phase,
after all other cases; within each phase the cases are interleaved.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import scipy.fft
import scipy.linalg
import scipy.sparse as sp

from .._kernels.read import column_sums
from ..operators import SRHT, CountSketch, GaussianSketch, SparseSign
from ._timing import Case, Comparison, compare, run_interleaved

#: sizes of ``sketchla bench sketch --quick``
QUICK = {"n": 2**16, "d": 16, "m": 256}

#: row partitions of the read baseline (a multiple of any small thread count)
READ_PARTS = 16

#: nonzeros per column of the SparseSign cases
SPARSE_SIGN_S = (2, 4, 8)

#: SparseSign(s) may take at most this multiple of CountSketch's time (issue 21)
SPARSE_SIGN_MAX = 1.5


def read_baseline(A: np.ndarray) -> np.ndarray:
    """The parallel streaming read of A (column sums, float64 accumulators)."""
    return column_sums(A, READ_PARTS, work=A.nbytes)


def _apply(op, A: np.ndarray) -> Callable[[], np.ndarray]:
    return lambda: op @ A


def _read(label: str, ours: str, read: str, goal: float | None) -> Comparison:
    return Comparison(label, ours, read, goal, "fraction of read rate")


COMPARISONS = [
    _read("CountSketch dense f64 vs parallel read", "countsketch dense", "read f64", 0.80),
    _read("CountSketch dense f32 vs parallel read", "countsketch dense f32", "read f32", 0.80),
    Comparison(
        "CountSketch dense vs scipy", "countsketch dense", "scipy CW dense", 2.0, "speed-up"
    ),
    Comparison("CountSketch CSR vs scipy", "countsketch csr", "scipy CW csr", 3.0, "speed-up"),
    *(
        Comparison(
            f"SparseSign(s={s}) dense vs CountSketch dense",
            f"sparse_sign s={s} dense",
            "countsketch dense",
            1 / SPARSE_SIGN_MAX,
            f"CountSketch time / SparseSign time (goal: <= {SPARSE_SIGN_MAX:g}x the time)",
        )
        for s in SPARSE_SIGN_S
    ),
    *(
        _read(
            f"SparseSign(s={s}) dense vs parallel read",
            f"sparse_sign s={s} dense",
            "read f64",
            None,
        )
        for s in SPARSE_SIGN_S
    ),
    Comparison(
        "SRHT vs scipy.fft.rfft (padded)", "srht dense", "rfft padded axis 0", 3.0, "speed-up"
    ),
    _read("SRHT dense vs parallel read", "srht dense", "read f64", None),
    Comparison("SRHT vs GaussianSketch", "srht dense (phase 2)", "gaussian dense", 5.0, "speed-up"),
    _read("numpy A.sum(axis=0) vs parallel read", "numpy A.sum(0)", "read f64", None),
]

#: the case whose input is A (float64), A32 (float32) or the CSR matrix, for the GB/s column
_NBYTES_OF = {
    "countsketch dense f32": "A32",
    "read f32": "A32",
    "countsketch csr": "csr",
    "scipy CW csr": "csr",
}


def _with_rates(rows: list[tuple], timed: dict[str, Case], nbytes: dict[str, int]) -> list:
    """Append each side's input read rate (GB/s, from the median) to a row's meaning."""
    out = []
    for comp, ours, base, ratio, met in rows:
        if comp.meaning.startswith("fraction of read") or comp.ours.startswith("countsketch"):
            rate_o = nbytes[_NBYTES_OF.get(comp.ours, "A")] / ours / 1e9
            rate_b = nbytes[_NBYTES_OF.get(comp.baseline, "A")] / base / 1e9
            meaning = f"{comp.meaning} ({rate_o:.1f} vs {rate_b:.1f} GB/s)"
            comp = Comparison(comp.label, comp.ours, comp.baseline, comp.goal, meaning)
        out.append((comp, ours, base, ratio, met))
    return out


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
    each row is (comparison, ours median, baseline median, ratio, met)."""
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((n, d))
    A32 = A.astype(np.float32)
    A_csr = sp.random_array((n, d), density=density, format="csr", rng=rng)
    cs = CountSketch(m, n, seed)
    sparse_signs = {s: SparseSign(m, n, s, seed) for s in SPARSE_SIGN_S}
    srht, gauss = SRHT(m, n, seed), GaussianSketch(m, n, seed)
    N = srht.n_padded
    cases = [
        Case("read f64", lambda: read_baseline(A)),
        Case("countsketch dense", lambda: cs @ A),
        Case("read f32", lambda: read_baseline(A32)),
        Case("countsketch dense f32", lambda: cs @ A32),
        Case("scipy CW dense", lambda: scipy.linalg.clarkson_woodruff_transform(A, m, rng=seed)),
        Case("countsketch csr", lambda: cs @ A_csr),
        Case("scipy CW csr", lambda: scipy.linalg.clarkson_woodruff_transform(A_csr, m, rng=seed)),
        *(Case(f"sparse_sign s={s} dense", _apply(op, A)) for s, op in sparse_signs.items()),
        Case("srht dense", lambda: srht @ A),
        Case("rfft padded axis 0", lambda: scipy.fft.rfft(A, n=N, axis=0)),
        Case("numpy A.sum(0)", lambda: A.sum(axis=0)),
    ]
    timed = run_interleaved(cases, repeat, progress)
    blas_phase = [
        Case("srht dense (phase 2)", lambda: srht @ A),
        # O(m n d) and O(m n) normals: seconds per call at full size, so fewer repetitions
        Case("gaussian dense", lambda: gauss @ A, repeat=min(repeat, 3)),
    ]
    timed.update(run_interleaved(blas_phase, repeat, progress))
    nbytes = {"A": A.nbytes, "A32": A32.nbytes, "csr": A_csr.data.nbytes + A_csr.indices.nbytes}
    rows = _with_rates(compare(timed, COMPARISONS), timed, nbytes)
    sizes = {
        "n": n,
        "d": d,
        "m": m,
        "density": density,
        "repeat": repeat,
        "dtype": "float64 (and float32 rows)",
        "csr nnz": A_csr.nnz,
        "read f64": f"{A.nbytes / timed['read f64'].median / 1e9:.1f} GB/s",
        "read f32": f"{A32.nbytes / timed['read f32'].median / 1e9:.1f} GB/s",
    }
    return {"sizes": sizes, "cases": timed, "rows": rows}
