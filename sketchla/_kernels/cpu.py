"""numba CPU kernels for the sketching operators.

Nothing above this layer imports numba. Every kernel is deterministic regardless of the
number of threads: work is split into partitions whose count depends only on the problem
shape, partial results are reduced in a fixed order, and each output entry is accumulated in
one fixed sequence.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import prange

from .._jit import dual_kernel
from .counter import (
    counter_below,
    counter_sign,
    counter_uniform,
    floyd_sample_into,
    mix64,
)
from .simd import LANES, axpy_lanes

#: budget for the per-partition accumulators of row-partitioned scatter kernels (bytes).
_PARTITION_BUDGET = 64 * 2**20
#: at most this many partitions; at least this many rows per partition.
_MAX_PARTITIONS = 8
_MIN_PARTITION_ROWS = 4096
#: rows of a dense input hashed together before they are scattered (``hash_apply_rows``)
_HASH_BLOCK = 256


def n_partitions(n_items: int, out_entries: int) -> int:
    """Partition count of a scatter kernel: a function of the shape only (never of the thread
    count), so the floating-point summation order -- hence the result -- is reproducible."""
    by_memory = max(1, _PARTITION_BUDGET // max(1, 8 * out_entries))
    by_work = max(1, n_items // _MIN_PARTITION_ROWS)
    return int(min(_MAX_PARTITIONS, by_memory, by_work))


# ------------------------------------------------------------------------------------------
# Hash sketches (CountSketch = s = 1, SparseSign): column j of S has s entries
# scale * sign(j, t) at distinct rows floyd(j)[t], t < s. Counter index of (j, t) is j*s + t.
# ------------------------------------------------------------------------------------------
@dual_kernel
def hash_table(kb, gb, ks, gs, n, m, s, scale):
    """Rows (n, s) int64 and values (n, s) float64 of the nonzeros of every column."""
    rows = np.empty((n, s), dtype=np.int64)
    vals = np.empty((n, s), dtype=np.float64)
    for j in prange(n):
        floyd_sample_into(kb, gb, j * s, s, m, rows[j])
        for t in range(s):
            vals[j, t] = scale * counter_sign(ks, gs, j * s + t)
    return rows, vals


@dual_kernel
def reduce_partitions(bufs):
    """bufs[0] + bufs[1] + ... + bufs[P-1], summed in that order for every entry, into a new
    (m, d) array (so the result does not keep the P partial buffers alive)."""
    P, m, d = bufs.shape
    out = np.empty((m, d), dtype=bufs.dtype)
    for b in prange(m):
        for c in range(d):
            out[b, c] = bufs[0, b, c]
        for p in range(1, P):
            for c in range(d):
                out[b, c] += bufs[p, b, c]
    return out


_U64 = np.uint64
_ONE = np.uint64(1)
_LO32 = np.uint64(0xFFFFFFFF)
_S32 = np.uint64(32)


@numba.njit(cache=True, inline="always")
def _below_small(key, gamma, i, n):
    """``random.counter_below(key, gamma, i, n)`` for 1 <= n < 2^32, bit for bit: the high
    word of x * n is (x_hi n + (x_lo n >> 32)) >> 32 exactly (no sum overflows 64 bits when n
    < 2^32), two 32 x 32 -> 64 products that vectorise, where the general 64 x 64 form
    compiles to a scalar ``mulx``."""
    x = mix64(key + gamma * (_U64(i) + _ONE))
    nn = _U64(n)
    return np.int64(((x >> _S32) * nn + (((x & _LO32) * nn) >> _S32)) >> _S32)


@numba.njit(cache=True, inline="always")
def _hash_block(kb, gb, ks, gs, j0, nb, m, s, scale, rows, vals):
    """rows[t, i] and vals[t, i] of column j0 + i of S (i < nb, t < s): the entries of
    ``hash_table``, stored t-major so that every loop runs over i and vectorises (Floyd's
    sample, draw t: r = below(upper + 1) replaced by upper when an earlier draw took r; the
    earlier draws are distinct, so at most one matches and the order of the tests is free)."""
    small = m < 2**32
    for t in range(s):
        upper = m - s + t
        rt = rows[t]
        if small:
            for i in range(nb):
                rt[i] = _below_small(kb, gb, (j0 + i) * s + t, upper + 1)
        else:
            for i in range(nb):
                rt[i] = counter_below(kb, gb, (j0 + i) * s + t, upper + 1)
        for q in range(t):
            rq = rows[q]
            for i in range(nb):
                r = rt[i]
                rt[i] = upper if rq[i] == r else r
        vt = vals[t]
        for i in range(nb):
            vt[i] = scale * counter_sign(ks, gs, (j0 + i) * s + t)


@dual_kernel
def hash_apply_rows(A, kb, gb, ks, gs, m, s, scale, n_parts):
    """Partial sums of S @ A per row partition (reduce with ``reduce_partitions``) for dense A
    read row by row (C-order or any strided view): one pass, float64 accumulators.

    Each partition hashes ``_HASH_BLOCK`` rows at a time in vectorised loops (``_hash_block``),
    then scatters them; rows with unit stride are added 8 lanes at a time (``axpy_lanes``:
    the scalar loop's roundings, vectorised), the remaining columns one by one. Every output
    entry of a partition sums its rows in row order, then t order, as the scalar loop does."""
    n, d = A.shape
    bufs = np.zeros((n_parts, m, d), dtype=np.float64)
    dv = (d // LANES) * LANES if A.strides[1] == A.itemsize else 0
    for p in prange(n_parts):
        lo = p * n // n_parts
        hi = (p + 1) * n // n_parts
        rows = np.empty((s, _HASH_BLOCK), dtype=np.int64)
        vals = np.empty((s, _HASH_BLOCK), dtype=np.float64)
        acc = bufs[p]
        for j0 in range(lo, hi, _HASH_BLOCK):
            j1 = min(hi, j0 + _HASH_BLOCK)
            _hash_block(kb, gb, ks, gs, j0, j1 - j0, m, s, scale, rows, vals)
            for j in range(j0, j1):
                src = A[j]
                for t in range(s):
                    b = rows[t, j - j0]
                    v = vals[t, j - j0]
                    for c0 in range(0, dv, LANES):
                        axpy_lanes(acc, b, c0, v, A, j, c0)
                    dst = acc[b]
                    for c in range(dv, d):
                        dst[c] += v * src[c]
    return bufs


@dual_kernel
def hash_apply_cols(AT, rows, vals, m):
    """S @ A for column-major A, given as AT = A.T (d, n) C-contiguous: one column per task."""
    d, n = AT.shape
    s = rows.shape[1]
    out = np.zeros((d, m), dtype=np.float64)
    for c in prange(d):
        col = AT[c]
        acc = out[c]
        for j in range(n):
            x = col[j]
            for t in range(s):
                acc[rows[j, t]] += vals[j, t] * x
    return out.T


@dual_kernel
def hash_apply_csr(indptr, indices, data, d, kb, gb, ks, gs, m, s, scale, n_parts):
    """Partial sums of S @ A for CSR A: one pass over the nonzeros, row partitions, hashes on
    the fly."""
    n = indptr.shape[0] - 1
    bufs = np.zeros((n_parts, m, d), dtype=np.float64)
    for p in prange(n_parts):
        lo = p * n // n_parts
        hi = (p + 1) * n // n_parts
        rows = np.empty(s, dtype=np.int64)
        acc = bufs[p]
        for j in range(lo, hi):
            start = indptr[j]
            stop = indptr[j + 1]
            if start == stop:
                continue
            floyd_sample_into(kb, gb, j * s, s, m, rows)
            for t in range(s):
                v = scale * counter_sign(ks, gs, j * s + t)
                b = rows[t]
                for q in range(start, stop):
                    acc[b, indices[q]] += v * data[q]
    return bufs


@dual_kernel
def hash_apply_csc(indptr, indices, data, rows, vals, m):
    """S @ A for CSC A: one pass over the nonzeros, one column of A per task."""
    d = indptr.shape[0] - 1
    s = rows.shape[1]
    out = np.zeros((d, m), dtype=np.float64)
    for c in prange(d):
        acc = out[c]
        for q in range(indptr[c], indptr[c + 1]):
            j = indices[q]
            x = data[q]
            for t in range(s):
                acc[rows[j, t]] += vals[j, t] * x
    return out.T


@dual_kernel
def hash_apply_coo(row, col, data, d, rows, vals, m, n_parts):
    """Partial sums of S @ A for COO A (duplicates summed): one pass over the nonzeros, nnz
    partitions."""
    nnz = data.shape[0]
    s = rows.shape[1]
    bufs = np.zeros((n_parts, m, d), dtype=np.float64)
    for p in prange(n_parts):
        lo = p * nnz // n_parts
        hi = (p + 1) * nnz // n_parts
        acc = bufs[p]
        for q in range(lo, hi):
            j = row[q]
            x = data[q]
            c = col[q]
            for t in range(s):
                acc[rows[j, t], c] += vals[j, t] * x
    return bufs


@dual_kernel
def hash_adjoint(Y, rows, vals):
    """S.T @ Y: out[j] = sum_t vals[j, t] * Y[rows[j, t]] (a gather; float64 accumulators)."""
    n, s = rows.shape
    d = Y.shape[1]
    out = np.zeros((n, d), dtype=np.float64)
    for j in prange(n):
        dst = out[j]
        for t in range(s):
            v = vals[j, t]
            src = Y[rows[j, t]]
            for c in range(d):
                dst[c] += v * src[c]
    return out


# ------------------------------------------------------------------------------------------
# Walsh-Hadamard transform (Sylvester ordering, unnormalised) along axis 0, cache blocked.
# For N = N1 * B and i = i1 * B + i2:  H_N = (H_N1 (x) I_B) (I_N1 (x) H_B).
# Pass 1 transforms each contiguous block of B rows in cache; pass 2 transforms across blocks
# on tiles of T rows per block, also in cache. Two passes over memory instead of log2(N).
# ------------------------------------------------------------------------------------------
@numba.njit(cache=True, inline="always")
def _fwht_axis0(X):
    """In-place unnormalised FWHT along axis 0 of a C-contiguous 2-D array (rows = 2^k)."""
    L, w = X.shape
    h = 1
    while h < L:
        for i0 in range(0, L, 2 * h):
            for i in range(i0, i0 + h):
                a = X[i]
                b = X[i + h]
                for c in range(w):
                    x = a[c]
                    y = b[c]
                    a[c] = x + y
                    b[c] = x - y
        h *= 2


@dual_kernel
def fwht_fill_blocks(A, signs, buf, B):
    """buf[:n] = signs[:, None] * A, buf[n:] = 0, then FWHT of every block of B rows."""
    n = A.shape[0]
    N, d = buf.shape
    for blk in prange(N // B):
        lo = blk * B
        for i in range(lo, lo + B):
            dst = buf[i]
            if i < n:
                src = A[i]
                sg = signs[i]
                for c in range(d):
                    dst[c] = sg * src[c]
            else:
                for c in range(d):
                    dst[c] = 0.0
        _fwht_axis0(buf[lo : lo + B])


@dual_kernel
def fwht_blocks(buf, B):
    """FWHT of every contiguous block of B rows, in place."""
    for blk in prange(buf.shape[0] // B):
        _fwht_axis0(buf[blk * B : (blk + 1) * B])


@dual_kernel
def fwht_across_gather(buf, B, T, tile_ptr, tile_sel, sel_rows, scale, out):
    """Finish the transform across blocks tile by tile and gather the selected rows:
    out[k] = scale * (H buf)[sel_rows[k]]; tile t's selections are tile_sel[tile_ptr[t]:...]."""
    N, d = buf.shape
    N1 = N // B
    buf3 = buf.reshape((N1, B, d))
    for t in prange(B // T):
        if tile_ptr[t] == tile_ptr[t + 1]:
            continue
        scratch = np.empty((N1, T, d), dtype=buf.dtype)
        for i1 in range(N1):
            scratch[i1] = buf3[i1, t * T : (t + 1) * T]
        _fwht_axis0(scratch.reshape((N1, T * d)))
        for q in range(tile_ptr[t], tile_ptr[t + 1]):
            k = tile_sel[q]
            r = sel_rows[k]
            src = scratch[r // B, r % B - t * T]
            dst = out[k]
            for c in range(d):
                dst[c] = scale * src[c]


@dual_kernel
def fwht_across_inplace(buf, B, T):
    """Transform across blocks, in place (tile by tile)."""
    N, d = buf.shape
    N1 = N // B
    buf3 = buf.reshape((N1, B, d))
    for t in prange(B // T):
        scratch = np.empty((N1, T, d), dtype=buf.dtype)
        for i1 in range(N1):
            scratch[i1] = buf3[i1, t * T : (t + 1) * T]
        _fwht_axis0(scratch.reshape((N1, T * d)))
        for i1 in range(N1):
            buf3[i1, t * T : (t + 1) * T] = scratch[i1]


@dual_kernel
def scatter_rows(Y, rows, scale, N):
    """Zero (N, d) buffer with buf[rows[k]] = scale * Y[k]."""
    d = Y.shape[1]
    buf = np.zeros((N, d), dtype=Y.dtype)
    for k in prange(rows.shape[0]):
        for c in range(d):
            buf[rows[k], c] = scale * Y[k, c]
    return buf


@dual_kernel
def srht_dense_matrix(sel_rows, signs, n, scale):
    """(m, n) float64 matrix scale * H[sel_rows, j] * signs[j], H[r, j] = (-1)^popcount(r & j)."""
    m = sel_rows.shape[0]
    out = np.empty((m, n), dtype=np.float64)
    for k in prange(m):
        r = sel_rows[k]
        for j in range(n):
            x = r & j
            x ^= x >> 32
            x ^= x >> 16
            x ^= x >> 8
            x ^= x >> 4
            x ^= x >> 2
            x ^= x >> 1
            out[k, j] = scale * signs[j] * (1.0 - 2.0 * (x & 1))
    return out


# ------------------------------------------------------------------------------------------
# Gaussian entries, generated in pairs (one Box-Muller pair per two entries).
# ------------------------------------------------------------------------------------------
@dual_kernel
def normal_range(key, gamma, e0, e1, scale, out):
    """out[e - e0] = scale * normal(e) for e in [e0, e1) (flat float32/float64 output); the
    same numbers as ``random.counter_normal`` (tested), computed once per Box-Muller pair."""
    k0 = e0 // 2
    k1 = (e1 + 1) // 2
    two_pi = 2.0 * np.pi
    for q in prange(k1 - k0):
        k = k0 + q
        u1 = 1.0 - counter_uniform(key, gamma, 2 * k)
        u2 = counter_uniform(key, gamma, 2 * k + 1)
        r = scale * np.sqrt(-2.0 * np.log(u1))
        e = 2 * k
        if e >= e0:
            out[e - e0] = r * np.cos(two_pi * u2)
        if e + 1 < e1:
            out[e + 1 - e0] = r * np.sin(two_pi * u2)
