"""numba CPU kernels for SimHash codes and the sortLSH permutation.

Both kernels are exact integer computations (a code is a function of the signs of the
projections; a stable sort is unique), so serial and parallel compiles give identical results.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import prange

from .._jit import DualKernel, _renamed_copy, dual_kernel

_U64 = np.uint64
#: reassociation lets numba vectorise the dot products; no "nnan"/"ninf", so the finiteness
#: flags stay exact
_FAST = {"reassoc", "contract", "arcp"}


def _fast_dual_kernel(fn):
    """:func:`sketchla._jit.dual_kernel` compiled with the ``_FAST`` math flags."""
    kernel = DualKernel.__new__(DualKernel)
    kernel.parallel = numba.njit(cache=True, parallel=True, fastmath=_FAST)(fn)
    kernel.serial = numba.njit(cache=True, fastmath=_FAST)(_renamed_copy(fn, "_serial"))
    kernel.__doc__, kernel.__name__ = fn.__doc__, fn.__name__
    return kernel


@numba.njit(cache=True, inline="always")
def inverse_gray64(c):
    """Position of the code ``c`` in the reflected Gray sequence g(k) = k ^ (k >> 1):
    the prefix XOR of the bits, from the most significant one down."""
    c ^= c >> _U64(1)
    c ^= c >> _U64(2)
    c ^= c >> _U64(4)
    c ^= c >> _U64(8)
    c ^= c >> _U64(16)
    c ^= c >> _U64(32)
    return c


@_fast_dual_kernel
def simhash_codes(X, planes_t):
    """Codes (N,) uint64 of the rows of X (N, d) for hyperplanes ``planes_t`` (r, d), r <= 64:
    bit b is set iff ``X[i] . planes_t[b] > 0``; and a flag (N,) bool marking rows with a
    non-finite projection (NaN/inf input or overflow)."""
    N, d = X.shape
    r = planes_t.shape[0]
    out = np.empty(N, dtype=np.uint64)
    bad = np.zeros(N, dtype=np.bool_)
    for i in prange(N):
        c = _U64(0)
        for b in range(r):
            acc = 0.0
            for k in range(d):
                acc += X[i, k] * planes_t[b, k]
            if not np.isfinite(acc):
                bad[i] = True
            if acc > 0:
                c |= _U64(1) << _U64(b)
        out[i] = c
    return out, bad


@dual_kernel
def pack_signs(P):
    """Codes (N,) uint64 of projections P (N, r), r <= 64: bit b is set iff P[i, b] > 0."""
    N, r = P.shape
    out = np.empty(N, dtype=np.uint64)
    for i in prange(N):
        c = _U64(0)
        for b in range(r):
            if P[i, b] > 0:
                c |= _U64(1) << _U64(b)
        out[i] = c
    return out


@dual_kernel
def gray_counting_argsort(codes, n_buckets, n_chunks):
    """Stable argsort of every row of ``codes`` (B, n) uint64 by ``inverse_gray64(code)``,
    all keys in [0, n_buckets). Counting sort: O(n + n_buckets) per row.

    Each row is split into ``n_chunks`` contiguous chunks whose histograms are computed in
    parallel; offsets are laid out bucket-major, chunk-minor, so chunk c's entries of a bucket
    follow those of chunks < c (stability); the result does not depend on ``n_chunks``.
    """
    B, n = codes.shape
    out = np.empty((B, n), dtype=np.int64)
    chunk = (n + n_chunks - 1) // n_chunks
    hist = np.zeros((B * n_chunks, n_buckets), dtype=np.int64)
    for t in prange(B * n_chunks):
        b, c = t // n_chunks, t % n_chunks
        for i in range(c * chunk, min(n, (c + 1) * chunk)):
            hist[t, np.int64(inverse_gray64(codes[b, i]))] += 1
    for b in prange(B):
        total = 0
        for k in range(n_buckets):
            for c in range(n_chunks):
                h = hist[b * n_chunks + c, k]
                hist[b * n_chunks + c, k] = total
                total += h
    for t in prange(B * n_chunks):
        b, c = t // n_chunks, t % n_chunks
        for i in range(c * chunk, min(n, (c + 1) * chunk)):
            k = np.int64(inverse_gray64(codes[b, i]))
            out[b, hist[t, k]] = i
            hist[t, k] += 1
    return out
