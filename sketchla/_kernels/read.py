"""A streaming-read baseline for the benchmarks: the memory-bandwidth limit of one pass.

A kernel that reads an (n, d) array once (CountSketch, SparseSign) cannot run faster than a
parallel pass that only reads it. ``column_sums`` is that pass: each of a fixed number of row
partitions sums its rows into its own accumulator (one per thread's share of the work, so no
two threads write one cache line), 8 lanes per vector operation, and the partial sums are
added in partition order at the end (deterministic, like the sketch kernels).
"""

from __future__ import annotations

import numpy as np
from numba import prange

from .._jit import dual_kernel
from .simd import LANES, axpy_lanes


@dual_kernel
def column_sums(A, n_parts):
    """Column sums of a 2-D float32/float64 array (float64 accumulators), read once."""
    n, d = A.shape
    acc = np.zeros((n_parts, d), dtype=np.float64)
    dv = (d // LANES) * LANES if A.strides[1] == A.itemsize else 0
    for p in prange(n_parts):
        lo = p * n // n_parts
        hi = (p + 1) * n // n_parts
        dst = acc[p]
        for j in range(lo, hi):
            for c0 in range(0, dv, LANES):
                axpy_lanes(acc, p, c0, 1.0, A, j, c0)
            src = A[j]
            for c in range(dv, d):
                dst[c] += src[c]
    out = acc[0].copy()
    for p in range(1, n_parts):
        out += acc[p]
    return out
