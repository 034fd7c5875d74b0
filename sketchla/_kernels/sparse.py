"""numba kernels for hash sketches of column-major sparse input (CSC, COO).

``cpu.hash_table`` tabulates the (n, s) rows and signs of every column of S: O(n s) memory
even when the input has a handful of nonzeros. The kernel here tabulates them at given column
indices only (one entry per stored nonzero of the input), so a COO/CSC sketch costs O(nnz s)
memory and time, and n may exceed 2^31 (int64 coordinates).
"""

from __future__ import annotations

import numpy as np
from numba import prange

from .._jit import dual_kernel
from .counter import counter_sign, floyd_sample_into


@dual_kernel
def hash_table_at(kb, gb, ks, gs, cols, m, s, scale):
    """Rows (k, s) int64 and values (k, s) float64 of the nonzeros of columns ``cols`` of S
    (k = len(cols)): row q equals row ``cols[q]`` of ``cpu.hash_table``, bit for bit."""
    k = cols.shape[0]
    rows = np.empty((k, s), dtype=np.int64)
    vals = np.empty((k, s), dtype=np.float64)
    for q in prange(k):
        j = cols[q]
        floyd_sample_into(kb, gb, j * s, s, m, rows[q])
        for t in range(s):
            vals[q, t] = scale * counter_sign(ks, gs, j * s + t)
    return rows, vals
