"""numba CPU kernels of the multi-round LSH heavy part (:mod:`sketchla.attention.multiround`).

Each query's terms are merged in an order fixed by the data (rounds in sequence, window slots
in order), never by the thread schedule, so serial and parallel runs agree bitwise. The heavy
kernel loads each window once for the queries of its bucket and gathers each round's query
rows into bucket order in a separate pass; the light samples read a randomly permuted copy of
the keys, so every query reads contiguous rows. Exponentials go through the vectorisable
:func:`sketchla._kernels.vexp.exp_nonpositive`.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import prange

from .._jit import dual_kernel
from .control import N_MOMENTS, half_moments
from .lsh import _fast_dual_kernel, inverse_gray64
from .vexp import exp_nonpositive

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
def _dot_rows(A, i, B, r):
    """``A[i] . B[r]`` (the accumulation order is fixed: the same bits on every thread)."""
    acc = A[i, 0] * B[r, 0]
    for k in range(1, A.shape[1]):
        acc += A[i, k] * B[r, k]
    return acc


@numba.njit(cache=True, inline="always")
def _softmax_sums(logits, n, Vs, slots, out_row):
    """``(max, sum, sq)`` of the n terms ``e_u = exp(logits[u] - max)`` (``sq = sum e_u^2``),
    and ``out_row += sum_u e_u Vs[slots[u]]``; ``(-inf, 0, 0)`` for n = 0."""
    mx = -np.inf
    for u in range(n):
        mx = max(mx, logits[u])
    tot = 0.0
    sq = 0.0
    for u in range(n):
        e = exp_nonpositive(logits[u] - mx)
        logits[u] = e
        tot += e
        sq += e * e
    for u in range(n):
        r = slots[u]
        for k in range(Vs.shape[1]):
            out_row[k] += logits[u] * Vs[r, k]
    return mx, tot, sq


@_fast_dual_kernel
def heavy_rounds(Q, K, V, order, rank, qorder, qstart, width, exclude, mu, inv_sigma, n_chunks):
    """Exact partial sums of every query over the union of its windows (heavy part).

    Round t visits the queries in the order ``qorder[t]`` (by bucket), so the queries of one
    bucket, which share the window ``order[t, qstart[t, i] : qstart[t, i] + width]``, follow
    each other: the window's keys are loaded once for all of them. The queries' rows and
    window starts are first gathered into that order and the round's sums scattered back
    after, in two passes of independent loads (a query's state is not fetched at random
    inside the long per-query loop). A key already in the query's window of an earlier round
    (tested through ``rank``) or with ``exclude`` True is skipped: each key counts once. The
    rounds are merged in sequence and each query's terms in a fixed order, so the result
    does not depend on the number of threads.

    Returns float64 ``(max, sum, out, mom)`` with ``sum = sum_j exp(s_j - max)``, ``out =
    sum_j exp(s_j - max) v_j`` (``max = -inf``, sums 0 for an empty set) and ``mom (n_q, 3)``
    = (count, sum z, sum z^2) of the standardised logits ``z = (s - mu_i) inv_sigma_i`` of the
    heavy keys (for the light part's control variate).
    """
    n_q, d = Q.shape
    dv = V.shape[1]
    T = order.shape[0]
    hmax = np.full(n_q, -np.inf)
    hsum = np.zeros(n_q)
    hout = np.zeros((n_q, dv))
    hmom = np.zeros((n_q, 3))
    qs = np.ascontiguousarray(qstart.T).astype(np.int32)
    # one round's queries in bucket order, and its sums in that order
    Qs = np.empty((n_q, d), dtype=Q.dtype)
    QS = np.empty((n_q, T), dtype=np.int32)
    MU = np.empty((n_q, 2))
    rmax = np.empty(n_q)
    rsum = np.empty(n_q)
    rout = np.empty((n_q, dv))
    rmom = np.empty((n_q, 3))
    per = (n_q + n_chunks - 1) // n_chunks
    w32 = np.uint32(width)
    for t in range(T):
        for p in prange(n_q):
            i = qorder[t, p]
            for k in range(d):
                Qs[p, k] = Q[i, k]
            for v in range(t + 1):
                QS[p, v] = qs[i, v]
            MU[p, 0] = mu[i]
            MU[p, 1] = inv_sigma[i]
        for c in prange(n_chunks):
            Wk = np.empty((width, d), dtype=K.dtype)  # the window's keys
            Wv = np.empty((width, dv), dtype=V.dtype)
            Rt = np.empty((T, width), dtype=np.int32)  # their slots in earlier rounds
            kept = np.empty(width, dtype=np.int32)  # 0 for an excluded key
            ok = np.empty(width, dtype=np.int32)
            acc = np.empty(width)
            e = np.empty(width)
            loaded = -1
            for p in range(c * per, min(n_q, (c + 1) * per)):
                s = QS[p, t]
                if s != loaded:
                    for u in range(width):
                        j = order[t, s + u]
                        for k in range(d):
                            Wk[u, k] = K[j, k]
                        for k in range(dv):
                            Wv[u, k] = V[j, k]
                        for v in range(t):
                            Rt[v, u] = rank[j, v]
                        kept[u] = 0 if exclude[j] else 1
                    loaded = s
                for u in range(width):
                    acc[u] = _dot_rows(Qs, p, Wk, u)
                    ok[u] = kept[u]
                for v in range(t):
                    q0 = QS[p, v]
                    for u in range(width):
                        ok[u] &= np.uint32(Rt[v, u] - q0) >= w32
                mx = -np.inf
                for u in range(width):
                    if ok[u]:
                        mx = max(mx, acc[u])
                tot = 0.0
                cnt = 0.0
                sz = 0.0
                sz2 = 0.0
                for u in range(width):
                    e[u] = exp_nonpositive(acc[u] - mx) if ok[u] else 0.0
                    tot += e[u]
                    z = (acc[u] - MU[p, 0]) * MU[p, 1] if ok[u] else 0.0
                    cnt += ok[u]
                    sz += z
                    sz2 += z * z
                rmax[p] = mx
                rsum[p] = tot
                rmom[p, 0] = cnt
                rmom[p, 1] = sz
                rmom[p, 2] = sz2
                for k in range(dv):
                    rout[p, k] = 0.0
                for u in range(width):
                    if ok[u]:
                        for k in range(dv):
                            rout[p, k] += e[u] * Wv[u, k]
        for p in prange(n_q):
            i = qorder[t, p]
            for k in range(3):
                hmom[i, k] += rmom[p, k]
            if rmax[p] == -np.inf:
                continue
            mx = max(hmax[i], rmax[p])
            a = exp_nonpositive(hmax[i] - mx)
            b = exp_nonpositive(rmax[p] - mx)
            hsum[i] = hsum[i] * a + rsum[p] * b
            for k in range(dv):
                hout[i, k] = hout[i, k] * a + rout[p, k] * b
            hmax[i] = mx
    return hmax, hsum, hout, hmom


@numba.njit(cache=True, inline="always")
def _light_logits(
    Q, i, Kp, perm, order, qstart, width, exclude_p, r, m, stamp, mark, logits, slots
):
    """Logits of query i against the m keys at slots ``r, r + 1, ...`` (cyclically) of the
    random order ``perm``, skipping excluded keys and keys in one of the query's windows
    (marked ``mark`` in ``stamp`` here): written to ``logits[:n]`` with their slots; returns n."""
    n_k = Kp.shape[0]
    for t in range(qstart.shape[0]):
        for u in range(qstart[t, i], qstart[t, i] + width):
            stamp[order[t, u]] = mark
    n = 0
    for _ in range(m):
        if not exclude_p[r] and stamp[perm[r]] != mark:
            logits[n] = _dot_rows(Q, i, Kp, r)
            slots[n] = r
            n += 1
        r += 1
        if r == n_k:
            r = 0
    return n


@_fast_dual_kernel
def light_windows(
    Q, Kp, Vp, perm, order, qstart, width, exclude_p, offsets, visit, m, mu, inv_sigma,
    moments, n_chunks,
):  # fmt: skip
    r"""Light partial sums: query i takes the m keys at slots ``offsets[i], offsets[i] + 1, ...``
    (cyclically) of the random key order ``perm`` (``Kp``, ``Vp``, ``exclude_p`` are K, V and
    the exclusion mask in that order); a key in one of the query's windows (any round, keys
    ``order[t, qstart[t, i] : qstart[t, i] + width]``) or excluded contributes 0. Queries are
    visited in the order ``visit`` (by offset: queries that follow each other read mostly the
    same rows).

    Returns float64 ``(max, sum, sq, out, mom)``. Without ``moments``: ``sum`` and ``sq =
    sum_j exp(s_j - max)^2`` unweighted, ``out`` the matching sum of values, ``mom`` empty.
    With ``moments`` (for the control variate; ``sum``, ``sq``, ``out`` stay 0): ``mom (n_q, 2,
    9)``, per half of the draws (draw number even: half 0, odd: half 1), the sums of
    :func:`sketchla._kernels.control.half_moments` of the standardised logits
    :math:`z = (s - \mu_i)\,\mathrm{inv\_sigma}_i` over the half's kept samples.
    """
    n_q = Q.shape[0]
    n_k = Kp.shape[0]
    dv = Vp.shape[1]
    lmax = np.full(n_q, -np.inf)
    lsum = np.zeros(n_q)
    lsq = np.zeros(n_q)
    lout = np.zeros((n_q, dv))
    mom = np.zeros((n_q if moments else 0, 2, N_MOMENTS))
    per = (n_q + n_chunks - 1) // n_chunks
    for c in prange(n_chunks):
        stamp = np.zeros(n_k, dtype=np.int32)
        logits = np.empty(m, dtype=np.float64)
        slots = np.empty(m, dtype=np.int64)
        zs = np.empty(m, dtype=np.float64)
        hs = np.empty(m, dtype=np.int64)
        for p in range(c * per, min(n_q, (c + 1) * per)):
            i = visit[p]
            mark = np.int32(p - c * per + 1)
            n = _light_logits(
                Q, i, Kp, perm, order, qstart, width, exclude_p, offsets[i], m, stamp, mark,
                logits, slots,
            )  # fmt: skip
            if moments:
                for u in range(n):
                    hs[u] = (slots[u] - offsets[i] + n_k) % n_k % 2
                lmax[i] = half_moments(logits, hs, n, mu[i], inv_sigma[i], zs, mom[i])
            else:
                lmax[i], lsum[i], lsq[i] = _softmax_sums(logits, n, Vp, slots, lout[i])
    return lmax, lsum, lsq, lout, mom
