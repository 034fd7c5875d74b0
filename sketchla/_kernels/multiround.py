"""numba CPU kernels of the multi-round LSH heavy part (:mod:`sketchla.kde.multiround`).

Each query's terms are merged in an order fixed by the data (rounds in sequence, window slots
in order), never by the thread schedule, so serial and parallel runs agree bitwise. Keys are
copied into each round's sorted order (and the light samples read a randomly permuted copy),
so every query reads contiguous rows instead of gathering scattered ones.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import prange

from .._jit import dual_kernel
from .lsh import _fast_dual_kernel, inverse_gray64

_U64 = np.uint64


@dual_kernel
def gray_positions(P, n_rounds, n_bits, out, row0):
    """Gray-sequence positions of the SimHash codes of rows ``P (N, n_rounds * n_bits)`` of
    projections, round t using columns ``[t n_bits, (t + 1) n_bits)``: written to
    ``out[t, row0 + i]`` (int64, < 2^n_bits)."""
    N = P.shape[0]
    for i in prange(N):
        for t in range(n_rounds):
            c = _U64(0)
            for b in range(n_bits):
                if P[i, t * n_bits + b] > 0:
                    c |= _U64(1) << _U64(b)
            out[t, row0 + i] = np.int64(inverse_gray64(c))


@dual_kernel
def bucket_sort_rounds(pos, n_buckets):
    """For positions ``pos (T, n)`` in [0, n_buckets): per round the stable counting-sort order
    ``order (T, n)`` and the bucket offsets ``start (T, n_buckets + 1)`` (bucket g occupies
    sorted slots ``[start[t, g], start[t, g + 1])``)."""
    T, n = pos.shape
    order = np.empty((T, n), dtype=np.int64)
    start = np.zeros((T, n_buckets + 1), dtype=np.int64)
    for t in prange(T):
        for i in range(n):
            start[t, pos[t, i] + 1] += 1
        for g in range(n_buckets):
            start[t, g + 1] += start[t, g]
        fill = start[t, :n_buckets].copy()
        for i in range(n):
            g = pos[t, i]
            order[t, fill[g]] = i
            fill[g] += 1
    return order, start


@dual_kernel
def window_starts(qpos, start, width, n_k):
    """First sorted key slot of each query's window in each round: the ``width`` slots
    centred on the query's bucket in the key order, clamped to ``[0, n_k - width]``."""
    T, n_q = qpos.shape
    out = np.empty((T, n_q), dtype=np.int64)
    for t in prange(T):
        for i in range(n_q):
            g = qpos[t, i]
            centre = (start[t, g] + start[t, g + 1]) // 2
            s = centre - width // 2
            out[t, i] = min(max(s, 0), n_k - width)
    return out


@dual_kernel
def ranks_of(order):
    """``rank (n, T)`` int32 with ``rank[order[t, r], t] = r``: each key's slot in every
    round's sorted order (row-major per key, for the duplicate test)."""
    T, n = order.shape
    rank = np.empty((n, T), dtype=np.int32)
    for t in prange(T):
        for r in range(n):
            rank[order[t, r], t] = r
    return rank


@numba.njit(cache=True, inline="always")
def _in_earlier_window(rank_row, qs_row, t, width):
    """Whether a key with slots ``rank_row`` lies in the query's window (first slots
    ``qs_row``) of some round before t."""
    hit = np.int32(0)
    w = np.uint32(width)
    for u in range(t):
        hit += np.uint32(rank_row[u] - qs_row[u]) < w
    return hit != 0


@numba.njit(cache=True, inline="always")
def _dot_rows(A, i, B, r):
    """``A[i] . B[r]`` (the accumulation order is fixed: the same bits on every thread)."""
    acc = A[i, 0] * B[r, 0]
    for k in range(1, A.shape[1]):
        acc += A[i, k] * B[r, k]
    return acc


@numba.njit(cache=True, inline="always")
def _merge_row(mx, tot, sq, out_row, logits, n, Vs, slots, m2):
    """Merge the n weighted terms ``exp(logits[u])`` (values ``Vs[slots[u]]``) into the running
    ``(mx, tot, sq, out_row)`` of one query (all terms relative to mx). Returns the new
    ``(mx, tot, sq)``."""
    if n == 0:
        return mx, tot, sq
    dv = Vs.shape[1]
    new = mx
    for u in range(n):
        new = max(new, logits[u])
    if new > mx:
        scale = np.exp(mx - new)
        tot *= scale
        sq *= scale * scale
        for k in range(dv):
            out_row[k] *= scale
        mx = new
    for u in range(n):
        e = np.exp(logits[u] - mx)
        tot += e
        if m2:
            sq += e * e
        r = slots[u]
        for k in range(dv):
            out_row[k] += e * Vs[r, k]
    return mx, tot, sq


@_fast_dual_kernel
def heavy_rounds(Q, K, V, order, rank, qorder, qstart, width, exclude, n_chunks):
    """Exact partial sums of every query over the union of its windows (heavy part).

    Round t: the keys are copied in the round's sorted order (``order[t]``), so query i's
    window ``[qstart[t, i], qstart[t, i] + width)`` is contiguous; queries are visited in the
    order ``qorder[t]`` (by window). A key already in the query's window of an earlier round
    (tested through ``rank``) or with ``exclude`` True is skipped: each key counts once.
    Rounds run in sequence and each query's terms are merged in a fixed order, so the result
    does not depend on the number of threads.

    Returns float64 ``(max, sum, out)`` with ``sum = sum_j exp(s_j - max)`` and ``out =
    sum_j exp(s_j - max) v_j`` (``max = -inf``, sums 0 for an empty set).
    """
    n_q, d = Q.shape
    n_k = K.shape[0]
    dv = V.shape[1]
    T = order.shape[0]
    hmax = np.full(n_q, -np.inf)
    hsum = np.zeros(n_q)
    hout = np.zeros((n_q, dv))
    qs = np.ascontiguousarray(qstart.T).astype(np.int32)
    Ks = np.empty((n_k, d), dtype=K.dtype)
    Vs = np.empty((n_k, dv), dtype=V.dtype)
    Rs = np.empty((n_k, T), dtype=np.int32)
    Xs = np.empty(n_k, dtype=np.bool_)
    per = (n_q + n_chunks - 1) // n_chunks
    for t in range(T):
        for r in prange(n_k):
            j = order[t, r]
            for k in range(d):
                Ks[r, k] = K[j, k]
            for k in range(dv):
                Vs[r, k] = V[j, k]
            for u in range(t):
                Rs[r, u] = rank[j, u]
            Xs[r] = exclude[j]
        for c in prange(n_chunks):
            logits = np.empty(width, dtype=np.float64)
            slots = np.empty(width, dtype=np.int64)
            for p in range(c * per, min(n_q, (c + 1) * per)):
                i = qorder[t, p]
                n = 0
                for r in range(qs[i, t], qs[i, t] + width):
                    if Xs[r] or _in_earlier_window(Rs[r], qs[i], t, width):
                        continue
                    logits[n] = _dot_rows(Q, i, Ks, r)
                    slots[n] = r
                    n += 1
                hmax[i], hsum[i], _ = _merge_row(
                    hmax[i], hsum[i], 0.0, hout[i], logits, n, Vs, slots, False
                )
    return hmax, hsum, hout


@_fast_dual_kernel
def light_windows(Q, Kp, Vp, perm, order, qstart, width, exclude_p, offsets, m, n_chunks):
    """Light partial sums: query i takes the m keys at slots ``offsets[i], offsets[i] + 1, ...``
    (cyclically) of the random key order ``perm`` (``Kp``, ``Vp``, ``exclude_p`` are K, V and
    the exclusion mask in that order); a key in one of the query's windows (any round, keys
    ``order[t, qstart[t, i] : qstart[t, i] + width]``) or excluded contributes 0.

    Returns float64 ``(max, sum, sq, out)`` (``sq = sum_j exp(s_j - max)^2``), unweighted.
    """
    n_q = Q.shape[0]
    n_k = Kp.shape[0]
    dv = Vp.shape[1]
    T = qstart.shape[0]
    lmax = np.full(n_q, -np.inf)
    lsum = np.zeros(n_q)
    lsq = np.zeros(n_q)
    lout = np.zeros((n_q, dv))
    per = (n_q + n_chunks - 1) // n_chunks
    for c in prange(n_chunks):
        stamp = np.zeros(n_k, dtype=np.int32)
        logits = np.empty(m, dtype=np.float64)
        slots = np.empty(m, dtype=np.int64)
        for i in range(c * per, min(n_q, (c + 1) * per)):
            mark = np.int32(i - c * per + 1)
            for t in range(T):
                for r in range(qstart[t, i], qstart[t, i] + width):
                    stamp[order[t, r]] = mark
            n = 0
            r = offsets[i]
            for _ in range(m):
                if not exclude_p[r] and stamp[perm[r]] != mark:
                    logits[n] = _dot_rows(Q, i, Kp, r)
                    slots[n] = r
                    n += 1
                r += 1
                if r == n_k:
                    r = 0
            lmax[i], lsum[i], lsq[i] = _merge_row(
                -np.inf, 0.0, 0.0, lout[i], logits, n, Vp, slots, True
            )
    return lmax, lsum, lsq, lout
