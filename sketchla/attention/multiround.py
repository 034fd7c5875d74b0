r"""Multi-round LSH heavy part with per-query light samples (``heavy="multiround"``).

For each of T rounds, a SimHash with r hyperplanes (stream ``STREAM_MULTIROUND_PLANES``,
independent per round) sorts the keys by the Gray-sequence position of their codes. Query i's
*window* in round t is the ``b`` consecutive keys of that order centred on the query's own
bucket (code-aligned: the slot where the query's code would sit among the sorted key codes;
clamped at the ends). Its heavy set is the union of its T windows,

.. math::
    H_i = \bigcup_{t < T} W_t(i) \setminus G, \qquad |H_i| \le T b,

each key counted once, computed exactly. The light part gives every query its own m keys
without replacement: the keys are put in one random order :math:`\pi` (stream
``STREAM_MULTIROUND_SAMPLES``, indices ``b n_k + j`` for batch entry b), query i draws a
uniform offset :math:`o_i` (same stream, indices ``B n_k + b n_q + i``) and takes the m
consecutive slots :math:`\pi(o_i), \dots, \pi(o_i + m - 1)` (cyclically), a uniform m-subset
:math:`L_i` of the keys, each key included with probability m / n_k. Its estimate of the rest
of the row is the Horvitz-Thompson sum

.. math::
    \hat L_i = \frac{n_k}{m} \sum_{j \in L_i} 1[j \notin H_i \cup G]\, e^{s_{ij}},
    \qquad \mathbb E \hat L_i = \sum_{j \notin H_i \cup G} e^{s_{ij}},

so the merged estimate of :math:`D_{ii}` is unbiased in the linear domain for every candidate
set (the hash is drawn independently of the samples), and m >= n_k is exact. The sets of two
queries share keys only when their offsets are less than m slots apart (probability
< 2m / n_k), so the sampling errors of different rows are nearly independent (unlike one
sample set per block of queries), while every query reads m contiguous rows of a permuted
copy of K (and V) instead of m scattered ones.

Why code-aligned windows: the sortLSH blocks of :func:`sketchla.attention.selectors.SortLSH` pair
query rank t with key rank t. The running difference between the numbers of queries and keys
in the buckets before a given bucket is a random walk of size ~sqrt(n), so for small blocks a
query's rank-aligned block lies far from its bucket, while a code-aligned window stays on
it (the measured needle hit rates are in ``docs/benchmarks/lsh.md``).

Cost: hashing O(n T r d) (one BLAS product with T r hyperplanes) + T counting sorts of the
keys, O(T (n_k + 2^r)); then per query O((T b + m) d) work on gathered key rows. Memory
O(T (n_k + 2^r)) integers. The kernels are bound by memory traffic (each round re-gathers
every query row and window), so per computed logit they are several times slower than the
exact BLAS pass (``sketchla bench lsh``).

``control=True`` (row sums only) replaces the Horvitz-Thompson light sum by the cross-fitted
quadratic control variate of :mod:`sketchla.attention.control`; the heavy kernel also returns the
moments of the standardised logits of each query's heavy keys, which it removes from the
light population's.
"""

from __future__ import annotations

import math

import numpy as np

from .._kernels import multiround as kernels
from ..lsh import mips_augment
from ..random import STREAM_MULTIROUND_PLANES, STREAM_MULTIROUND_SAMPLES, SeedLike, stream
from .control import key_set_moments, logit_standardisation, regression_light_sums
from .partial import Partial

__all__ = ["MAX_BITS", "default_bits", "light_sample_count", "multiround_partials"]

#: largest number of hyperplanes per round (the bucket offsets take T 2^r integers)
MAX_BITS = 24
#: rows of Q or K projected per BLAS call (bounds the (rows, T r) projection temporary)
_PROJECT_ROWS = 8192
#: chunks of queries processed in parallel (each allocates an n_k stamp array)
_MAX_CHUNKS = 64


def default_bits(n_k: int, block_size: int) -> int:
    """``ceil(log2(n_k / b)) + 1`` hyperplanes (buckets of about b/2 keys), in [1, MAX_BITS].

    Measured on the planted instance (n = 65536, b = 8..32): the needle hit rate rises up to
    about this many bits and is flat or falls beyond."""
    return int(min(MAX_BITS, max(1, math.ceil(math.log2(max(n_k / block_size, 1.0))) + 1)))


def _gray_positions(X: np.ndarray, planes: np.ndarray, n_rounds: int, n_bits: int) -> np.ndarray:
    """(T, n) Gray positions of the per-round SimHash codes of the rows of X (n, d)."""
    n = X.shape[0]
    out = np.empty((n_rounds, n), dtype=np.int64)
    for s in range(0, n, _PROJECT_ROWS):
        P = np.ascontiguousarray(X[s : s + _PROJECT_ROWS] @ planes)
        kernels.gray_positions(P, n_rounds, n_bits, out, s, work=P.nbytes)
    return out


def light_sample_count(sample_size: int, n_k: int) -> int:
    """Light samples actually drawn per query: ``min(sample_size, n_k)`` (without
    replacement)."""
    return min(sample_size, n_k)


def multiround_partials(
    Q: np.ndarray,
    K: np.ndarray,
    V: np.ndarray | None,
    *,
    block_size: int,
    n_rounds: int,
    n_bits: int,
    sample_size: int,
    seed: SeedLike,
    exclude: np.ndarray | None = None,
    norm_aware: bool = False,
    control: bool = False,
    kv: np.ndarray | None = None,
) -> tuple[Partial, Partial]:
    """Heavy and light partials (see the module docstring) of batched ``Q (B, n_q, d)``
    (already scaled), ``K (B, n_k, d)``, ``V (B, n_k, d_v)`` or None, with ``exclude (B, n_k)``
    bool keys (the global keys) left out of both. The light partial includes the weights
    n_k / m and its ``lse2`` (log of the sum of squared weighted terms).

    ``control`` (V None only): the light sum is the cross-fitted regression estimate of
    :mod:`sketchla.attention.control` (a quadratic in the standardised logit fitted on one half of
    the draws, corrected with the other) instead of Horvitz-Thompson, and the light partial
    carries ``lse_se`` (log of its standard error) instead of ``lse2``.

    ``kv (B,)``: the key/value head of each query head (grouped-query attention; K and V then
    have ``max(kv) + 1`` heads), default the identity.
    """
    B, n_q, d = Q.shape
    n_k = K.shape[1]
    width = min(block_size, n_k)
    m = light_sample_count(sample_size, n_k)
    dtype = Q.dtype
    Qh, Kh = mips_augment(Q, K) if norm_aware else (Q, K)
    dh = Qh.shape[-1]
    planes = stream(seed, STREAM_MULTIROUND_PLANES).normal(np.arange(dh * n_rounds * n_bits))
    planes = planes.reshape(dh, n_rounds * n_bits).astype(dtype)
    samples = stream(seed, STREAM_MULTIROUND_SAMPLES)
    dv = 0 if V is None else V.shape[-1]
    if control and V is not None:
        raise ValueError("the control variate estimates row sums only (V must be None)")
    n_chunks = int(min(_MAX_CHUNKS, n_q))
    log_w = math.log(n_k) - math.log(m) if m > 0 else 0.0
    lse = {name: np.empty((B, n_q)) for name in ("heavy", "light", "light2")}
    no_moments = np.zeros(n_q)
    outs = {name: np.empty((B, n_q, dv)) for name in ("heavy", "light")}
    kv = np.arange(B) if kv is None else kv
    for b in range(B):
        h = kv[b]
        Kb = np.ascontiguousarray(K[h])
        Vb = np.zeros((n_k, 0), dtype=dtype) if V is None else np.ascontiguousarray(V[h])
        ex = np.zeros(n_k, dtype=bool) if exclude is None else np.ascontiguousarray(exclude[b])
        kpos = _gray_positions(np.ascontiguousarray(Kh[h]), planes, n_rounds, n_bits)
        qpos = _gray_positions(np.ascontiguousarray(Qh[b]), planes, n_rounds, n_bits)
        order, start = kernels.bucket_sort_rounds(kpos, 2**n_bits, work=kpos.nbytes)
        qorder, _ = kernels.bucket_sort_rounds(qpos, 2**n_bits, work=qpos.nbytes)
        qstart = kernels.window_starts(qpos, start, width, n_k, work=qpos.nbytes)
        rank = kernels.ranks_of(order, work=order.nbytes)
        Qb = np.ascontiguousarray(Q[b])
        mu, inv_sigma = logit_standardisation(Qb, Kb) if control else (no_moments, no_moments)
        work = n_q * (n_rounds * width + m) * (d + dv) * dtype.itemsize
        hmax, hsum, hout, hmom = kernels.heavy_rounds(
            Qb,
            Kb,
            Vb,
            order,
            rank,
            qorder,
            qstart,
            width,
            ex,
            mu,
            inv_sigma,
            n_chunks,
            work=work,
        )
        # light samples: m consecutive slots (cyclic) of a random key permutation, from an
        # independent uniform offset per query
        perm = np.argsort(samples.uint64(b * n_k + np.arange(n_k)), kind="stable")
        offsets = samples.integers(B * n_k + b * n_q + np.arange(n_q), n_k)
        visit = np.argsort(offsets, kind="stable")
        Kp, ex_p = np.ascontiguousarray(Kb[perm]), np.ascontiguousarray(ex[perm])
        lse["heavy"][b] = _log_sum(hsum, hmax)
        lmax, lsum, lsq, lout, mom = kernels.light_windows(
            Qb, Kp, np.ascontiguousarray(Vb[perm]), perm, order, qstart, width, ex_p, offsets,
            visit, m, mu, inv_sigma, control, n_chunks, work=work,
        )  # fmt: skip
        if control:  # "light2" holds the log standard error here (returned as lse_se)
            removed = hmom + key_set_moments(Qb, Kb, ex, mu, inv_sigma)
            total, stderr = regression_light_sums(mom, removed, inv_sigma, n_k, m)
            lse["light"][b], lse["light2"][b] = _log_sum(total, lmax), _log_sum(stderr, lmax)
            continue
        lse["light"][b] = _log_sum(lsum, lmax) + log_w
        lse["light2"][b] = _log_sum(lsq, 2 * lmax) + 2 * log_w
        outs["heavy"][b] = hout / np.where(hsum > 0, hsum, 1.0)[:, None]
        outs["light"][b] = lout / np.where(lsum > 0, lsum, 1.0)[:, None]
    if control:
        return Partial(lse["heavy"].astype(dtype)), Partial(
            lse["light"].astype(dtype), lse_se=lse["light2"].astype(dtype)
        )
    if V is None:
        return Partial(lse["heavy"].astype(dtype)), Partial(
            lse["light"].astype(dtype), None, lse["light2"].astype(dtype)
        )
    heavy = Partial(lse["heavy"].astype(dtype), outs["heavy"].astype(dtype))
    light = Partial(
        lse["light"].astype(dtype), outs["light"].astype(dtype), lse["light2"].astype(dtype)
    )
    return heavy, light


def _log_sum(total: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """``log(total) + shift`` with ``-inf`` for an empty sum (``shift = -inf``, total 0)."""
    with np.errstate(divide="ignore"):
        return np.log(total) + np.where(np.isfinite(shift), shift, 0.0)
