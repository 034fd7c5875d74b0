"""Row filter of ``StreamingLeverage`` (exact mode): one fused pass over a block of rows.

``filter_rows(B, w, threshold)`` returns the indices i (ascending) with
``sum_c w[c] B[i, c]^2 >= threshold``: the certified upper bound of a row's leverage score
that decides whether the row stays a candidate. numpy needs a (b, d) temporary ``B * B``, a
matrix-vector product and a comparison pass; this reads each row once, right after the Gram
update read the block (so mostly from cache). Serial on purpose: it runs between two BLAS
calls, whose spinning worker threads would make a parallel region wait for a core. The sum
over a row is reassociated (vectorised); it is the same machine code for any thread count,
so the result is reproducible, and the caller's threshold has a relative slack far above the
rounding of a d-term sum.
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, fastmath={"reassoc", "contract"})
def filter_rows(B, w, threshold):
    """Ascending int64 indices i with ``sum_c w[c] * B[i, c]**2 >= threshold``."""
    n, d = B.shape
    keep = np.empty(n, dtype=np.int64)
    k = 0
    for i in range(n):
        row = B[i]
        acc = 0.0
        for c in range(d):
            x = row[c]
            acc += w[c] * (x * x)
        if acc >= threshold:
            keep[k] = i
            k += 1
    return keep[:k].copy()
