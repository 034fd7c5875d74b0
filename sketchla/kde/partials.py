r"""The shared core of ApproxD (:func:`sketchla.approx_rowsums`) and HyperAttention
(:func:`sketchla.hyper_attention`): partial softmax sums over key subsets, in log space.

All arrays are batched: ``Q (B, n_q, d)`` (already multiplied by the logit scale),
``K (B, n_k, d)``, ``V (B, n_k, d_v)`` or None. A *partial* over a key set S (with positive
weights :math:`w_j`) is, for every query i,

.. math::
    \mathrm{lse}_i = \log \sum_{j \in S_i} w_j e^{q_i \cdot k_j}, \qquad
    \mathrm{out}_i = \sum_{j \in S_i} w_j e^{q_i \cdot k_j - \mathrm{lse}_i}\, v_j

(``lse = -inf`` and ``out = 0`` for an empty set), see :mod:`sketchla.attention.merge`.
Three partials partition the keys of each query i:

* **global keys** G (a per-batch key mask): attended exactly by every query;
* **heavy blocks** (:class:`Blocks`): query i's sortLSH block of keys, minus G, exactly;
* **light samples** (:class:`Samples`): m keys :math:`\ell_t` drawn i.i.d. from p (zero on G),
  weights :math:`w_t = 1/(m p_{\ell_t})`, with samples in query i's own block masked out.

So :math:`\mathbb E[\sum_t w_t e^{s_{i\ell_t}} 1[\ell_t \notin B(i)]] =
\sum_{j \notin B(i) \cup G} e^{s_{ij}}` (no key counted twice), and
``logaddexp`` of the three lse's is an unbiased estimate of :math:`D_{ii}` in the linear domain.
Padding (n not a multiple of the block size) only ever appears as ``-inf`` logits.

Every product is a batched matmul on gathered tiles (``(blocks, b_q, d) @ (blocks, d, b_k)``),
processed in chunks of about ``CHUNK_ENTRIES`` logits, never a Python loop per block.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass

import numpy as np

from .._backend import check_int
from .._kernels.control import tile_moments
from ..lsh import SimHash, mips_augment
from ..random import STREAM_LIGHT_SAMPLES, SeedLike, child_seed, stream

__all__ = [
    "Blocks",
    "Partial",
    "Samples",
    "Standardisation",
    "block_partial",
    "draw_samples",
    "global_mask",
    "global_partial",
    "light_probabilities",
    "lsh_blocks",
    "query_tiles",
    "sampled_partial",
    "softmax_partial",
    "top_norm_mask",
]

#: share of the uniform distribution in every non-uniform light distribution
DEFENSIVE = 0.5
#: logits formed per chunk (16 MiB of float32): bounds the temporaries of every partial
CHUNK_ENTRIES = 2**22


@dataclass(frozen=True)
class Partial:
    """``lse (B, n_q)``, ``out (B, n_q, d_v)`` or None, and ``lse2 (B, n_q)`` = log of the sum
    of squared weighted terms (only when requested, for standard errors), or ``lse_se (B,
    n_q)`` = log of the standard error of ``exp(lse)`` where the estimator supplies its own."""

    lse: np.ndarray
    out: np.ndarray | None = None
    lse2: np.ndarray | None = None
    lse_se: np.ndarray | None = None
    #: control-variate moments of the standardised logits (see :func:`_tile_partial`)
    mom: np.ndarray | None = None
    mom_max: np.ndarray | None = None


@dataclass(frozen=True)
class Standardisation:
    """Per-query logit mean and inverse standard deviation, ``(B, n_q)`` each, from
    :func:`sketchla.kde.control.logit_standardisation`; ``halves`` asks the moments of the
    two halves of the draws (light part) instead of (count, sum z, sum z^2) (heavy part)."""

    mu: np.ndarray
    inv_sigma: np.ndarray
    halves: bool = False


def softmax_partial(
    S: np.ndarray, V: np.ndarray | None, want_sq: bool = False
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """``(lse, out, lse2)`` of logits ``S (..., r, c)`` (``-inf`` = excluded, overwritten in
    place) against ``V (..., c, d_v)`` (or None). Rows with every entry excluded give
    ``lse = -inf``, ``out = 0``. Every exponent is <= 0: no overflow for any finite logit."""
    mx = S.max(axis=-1)
    mx = np.where(np.isfinite(mx), mx, 0).astype(S.dtype, copy=False)
    S -= mx[..., None]
    np.exp(S, out=S)
    total = S.sum(axis=-1)
    with np.errstate(divide="ignore"):
        lse = np.log(total) + mx
        lse2 = np.log(np.einsum("...c,...c->...", S, S)) + 2 * mx if want_sq else None
    out = None
    if V is not None:
        out = S @ V
        out /= np.where(total > 0, total, 1)[..., None]
    return lse, out, lse2


def _rows(X: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """``X[b, idx[b, ...]]`` for X (B, n, c) and idx (B, ...): shape (B, ..., c)."""
    B = X.shape[0]
    flat = idx.reshape(B, -1) + (np.arange(B) * X.shape[1])[:, None]
    return X.reshape(-1, X.shape[-1])[flat.ravel()].reshape(*idx.shape, X.shape[-1])


def _chunks(total: int, per_item: int):
    step = max(1, CHUNK_ENTRIES // max(1, per_item))
    for s in range(0, total, step):
        yield s, min(total, s + step)


# ------------------------------------------------------------------------------------------
# heavy part: rank-aligned sortLSH blocks
# ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Blocks:
    """Rank-aligned blocks: position t of the sorted queries (keys) is query ``q_order[b, t]``
    (key ``k_order[b, t]``); sorted queries ``[j b_q, (j+1) b_q)`` form block j and attend the
    sorted keys ``[j b_k, (j+1) b_k)``. The last blocks may be short (padding is masked)."""

    q_order: np.ndarray
    k_order: np.ndarray
    n_blocks: int
    q_size: int
    k_size: int
    #: False for plain query tiles (no heavy blocks): samples are then never masked
    pairs_keys: bool = True

    @property
    def query_block(self) -> np.ndarray:
        """(B, n_q) block of each query (by query index)."""
        return _inverse(self.q_order) // self.q_size

    @property
    def key_block(self) -> np.ndarray:
        """(B, n_k) block of each key (by key index)."""
        return _inverse(self.k_order) // self.k_size


def _inverse(order: np.ndarray) -> np.ndarray:
    inv = np.empty_like(order)
    np.put_along_axis(inv, order, np.arange(order.shape[-1])[None, :], axis=-1)
    return inv


def query_tiles(B: int, n_q: int, n_k: int, tile: int) -> Blocks:
    """Queries in index order cut into tiles of at most ``tile`` rows, with no key blocks
    (for a light part without sortLSH heavy blocks)."""
    n_tiles = -(-n_q // tile)
    order = [np.broadcast_to(np.arange(n), (B, n)) for n in (n_q, n_k)]
    return Blocks(order[0], order[1], n_tiles, -(-n_q // n_tiles), n_k, pairs_keys=False)


def block_geometry(n_q: int, n_k: int, block_size: int) -> tuple[int, int, int]:
    """``(n_blocks, b_q, b_k)``: ``ceil(n_k / block_size)`` key blocks of equal size
    ``b_k <= block_size``, and the queries split into as many blocks of size ``b_q``, so query
    rank r and key rank r' share a block when ``r / n_q`` and ``r' / n_k`` fall in the same
    quantile slot."""
    n_blocks = -(-n_k // block_size)
    return n_blocks, -(-n_q // n_blocks), -(-n_k // n_blocks)


def lsh_blocks(
    Q: np.ndarray,
    K: np.ndarray,
    block_size: int,
    n_bits: int,
    seed: SeedLike,
    norm_aware: bool = False,
) -> Blocks:
    """sortLSH blocks of Q and K (SimHash with ``n_bits`` hyperplanes, Gray order); with
    ``norm_aware`` both are first mapped by :func:`sketchla.lsh.mips_augment`."""
    n_blocks, bq, bk = block_geometry(Q.shape[1], K.shape[1], block_size)
    if n_blocks == 1:  # one block holds every key: no hashing needed
        order = [np.broadcast_to(np.arange(X.shape[1]), X.shape[:2]) for X in (Q, K)]
        return Blocks(order[0], order[1], 1, bq, bk)
    if norm_aware:
        Q, K = mips_augment(Q, K)
    h = SimHash(Q.shape[-1], n_bits, seed=seed)
    return Blocks(h._sort_order(Q, "Q"), h._sort_order(K, "K"), n_blocks, bq, bk)


def block_partial(
    Q: np.ndarray,
    K: np.ndarray,
    V: np.ndarray | None,
    blocks: Blocks,
    exclude: np.ndarray | None = None,
    stats: Standardisation | None = None,
) -> Partial:
    """Exact partial of every query over its block's keys, minus ``exclude`` (B, n_k) bool.
    Padded key slots (n_k not a multiple of the block size) are masked, never summed."""
    B, n_k = Q.shape[0], K.shape[1]
    nb, bk = blocks.n_blocks, blocks.k_size
    k_idx = _pad(blocks.k_order, nb * bk)
    valid = np.broadcast_to(np.arange(nb * bk) < n_k, k_idx.shape)
    if exclude is not None:
        valid = valid & ~np.take_along_axis(exclude, k_idx, axis=1)
    return _tile_partial(
        Q, K, V, blocks, k_idx.reshape(B, nb, bk), valid.reshape(B, nb, bk), stats=stats
    )


def _tile_partial(
    Q: np.ndarray,
    K: np.ndarray,
    V: np.ndarray | None,
    blocks: Blocks,
    k_idx: np.ndarray,
    valid: np.ndarray,
    log_w: np.ndarray | None = None,
    want_sq: bool = False,
    stats: Standardisation | None = None,
) -> Partial:
    """The one kernel of every partial: query block j of batch entry b (``blocks``) against
    keys ``k_idx[b, j] (c,)``, those with ``valid[b, j]`` False masked, weights
    ``exp(log_w[b, j])``; batched matmuls over chunks of tiles. Returns the partial in
    query order (padded query rows dropped). With ``stats``, also the control-variate
    moments of each query's unweighted logits (``mom (B, n_q, 2, 9)``, ``mom_max (B, n_q)``,
    see :func:`sketchla._kernels.control.tile_moments`; draw halves by column parity)."""
    B = Q.shape[0]
    nb, bq, c = blocks.n_blocks, blocks.q_size, k_idx.shape[-1]
    q_idx = _pad(blocks.q_order, nb * bq).reshape(B * nb, bq)
    k_idx, valid = k_idx.reshape(B * nb, c), valid.reshape(B * nb, c)
    if log_w is not None:
        log_w = log_w.reshape(B * nb, c).astype(Q.dtype, copy=False)
    batch = np.repeat(np.arange(B), nb)
    lse = np.empty((B * nb, bq), dtype=Q.dtype)
    lse2 = np.empty((B * nb, bq), dtype=Q.dtype) if want_sq else None
    out = None if V is None else np.empty((B * nb, bq, V.shape[-1]), dtype=Q.dtype)
    mom = None if stats is None else np.empty((B * nb, bq, 2, 9))
    mom_max = None if stats is None else np.empty((B * nb, bq))
    for s, e in _chunks(B * nb, bq * c):
        S = _gather(Q, batch[s:e], q_idx[s:e]) @ _gather(K, batch[s:e], k_idx[s:e]).transpose(
            0, 2, 1
        )
        if log_w is not None:
            S += log_w[s:e, None, :]
        np.copyto(S, -np.inf, where=~valid[s:e, None, :])
        if stats is not None:
            assert mom is not None and mom_max is not None
            rows = (batch[s:e, None], q_idx[s:e])
            weights = np.zeros((e - s, c)) if log_w is None else log_w[s:e]
            mom_max[s:e], mom[s:e] = tile_moments(
                S, weights, stats.mu[rows], stats.inv_sigma[rows], stats.halves, work=S.nbytes
            )
        Vb = None if V is None else _gather(V, batch[s:e], k_idx[s:e])
        lse[s:e], o, l2 = softmax_partial(S, Vb, want_sq)
        if out is not None:
            out[s:e] = o
        if lse2 is not None:
            lse2[s:e] = l2
    # back to query order; padded query rows (sorted position >= n_q) are dropped
    inv = _inverse(blocks.q_order)
    lse = np.take_along_axis(lse.reshape(B, nb * bq), inv, axis=1)
    if lse2 is not None:
        lse2 = np.take_along_axis(lse2.reshape(B, nb * bq), inv, axis=1)
    if out is not None:
        out = np.take_along_axis(out.reshape(B, nb * bq, -1), inv[..., None], axis=1)
    if mom is not None and mom_max is not None:
        mom = np.take_along_axis(mom.reshape(B, nb * bq, 2, 9), inv[..., None, None], axis=1)
        mom_max = np.take_along_axis(mom_max.reshape(B, nb * bq), inv, axis=1)
    return Partial(lse, out, lse2, mom=mom, mom_max=mom_max)


def _pad(order: np.ndarray, size: int) -> np.ndarray:
    """``order`` (B, n) padded with index 0 to (B, size); padded slots are masked by callers."""
    if order.shape[1] == size:
        return np.ascontiguousarray(order)
    out = np.zeros((order.shape[0], size), dtype=np.int64)
    out[:, : order.shape[1]] = order
    return out


def _gather(X: np.ndarray, batch: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """``X[batch[t], idx[t, :]]`` for t = 0..T-1: shape (T, len(idx[t]), c)."""
    flat = idx + (batch * X.shape[1])[:, None]
    return X.reshape(-1, X.shape[-1])[flat]


# ------------------------------------------------------------------------------------------
# global keys
# ------------------------------------------------------------------------------------------
def top_norm_mask(K: np.ndarray, k: int) -> np.ndarray:
    """(B, n_k) bool: the ``k`` keys of largest norm of each batch entry (ties by index)."""
    k = min(k, K.shape[1])
    mask = np.zeros(K.shape[:2], dtype=bool)
    if k > 0:
        norms = np.einsum("bnd,bnd->bn", K, K)
        top = np.argsort(-norms, axis=1, kind="stable")[:, :k]
        np.put_along_axis(mask, top, True, axis=1)
    return mask


def global_mask(K: np.ndarray, global_keys) -> np.ndarray | None:
    """(B, n_k) bool mask of the global keys: ``global_keys`` None (none), an int k (the k keys
    of largest norm per batch entry) or a 1-D array of key indices (the same for every batch
    entry, e.g. a universal set); validated here."""
    if global_keys is None:
        return None
    B, n_k = K.shape[:2]
    if isinstance(global_keys, numbers.Integral) and not isinstance(global_keys, bool):
        k = check_int(global_keys, "global_keys", minimum=0)
        return top_norm_mask(K, k) if k > 0 else None
    idx = np.asarray(global_keys)
    if idx.ndim != 1 or idx.dtype.kind not in "iu":
        raise TypeError(
            "global_keys must be None, an int k (top-k keys by norm) or a 1-D integer array "
            f"of key indices, got {type(global_keys).__name__} with dtype {idx.dtype}"
        )
    if idx.size and (idx.min() < 0 or idx.max() >= n_k):
        raise ValueError(
            f"global_keys must be key indices in [0, {n_k}), got {idx.min()}..{idx.max()}"
        )
    mask = np.zeros((B, n_k), dtype=bool)
    mask[:, idx] = True
    return mask if idx.size else None


def global_partial(Q: np.ndarray, K: np.ndarray, V: np.ndarray | None, mask: np.ndarray) -> Partial:
    """Exact partial of every query over the keys with ``mask`` (B, n_k) True."""
    B, n_q, _ = Q.shape
    counts = mask.sum(axis=1)
    g = int(counts.max(initial=0))
    if g == 0:
        return _empty_partial(Q, V)
    idx = np.argsort(~mask, axis=1, kind="stable")[:, :g]
    valid = np.arange(g)[None, :] < counts[:, None]
    Kg = _rows(K, idx)
    Vg = None if V is None else _rows(V, idx)
    lse = np.empty((B, n_q), dtype=Q.dtype)
    out = None if V is None else np.empty((B, n_q, V.shape[-1]), dtype=Q.dtype)
    for s, e in _chunks(n_q, B * g):
        S = Q[:, s:e] @ Kg.transpose(0, 2, 1)
        np.copyto(S, -np.inf, where=~valid[:, None, :])
        lse[:, s:e], o, _ = softmax_partial(S, Vg)
        if out is not None:
            out[:, s:e] = o
    return Partial(lse, out)


def _empty_partial(Q: np.ndarray, V: np.ndarray | None) -> Partial:
    lse = np.full(Q.shape[:2], -np.inf, dtype=Q.dtype)
    out = None if V is None else np.zeros((*Q.shape[:2], V.shape[-1]), dtype=Q.dtype)
    return Partial(lse, out)


# ------------------------------------------------------------------------------------------
# light part: sampled columns with weights 1/(m p_j)
# ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Samples:
    """``idx (B, m)`` sampled keys and ``log_w (B, m)`` their log weights; ``fpc`` is the
    finite-population factor of the variance (1 - m/N without replacement, else 1)."""

    idx: np.ndarray
    log_w: np.ndarray
    fpc: float = 1.0


def draw_samples(
    seed: SeedLike,
    B: int,
    n_k: int,
    m: int,
    probs: np.ndarray | None = None,
    replace: bool = True,
    groups: int | None = None,
    stream_id: int = STREAM_LIGHT_SAMPLES,
) -> Samples:
    r"""m keys per batch entry (and per group: ``groups`` independent sets, shape
    (B, groups, m); else (B, m)) from stream ``stream_id`` of ``seed``.

    ``probs`` None: uniform over the n_k keys, weight n_k/m (with or without replacement;
    without, the weight is the Horvitz-Thompson n_k/m as every key has inclusion probability
    m/n_k). Otherwise ``probs (B, n_k) >= 0`` (normalised per row; zero entries are never drawn),
    i.i.d. draws by inverse CDF of uniform variates, weight :math:`1/(m p_j)`.
    """
    s = stream(seed, stream_id)
    sets = 1 if groups is None else groups
    shape = (B, m) if groups is None else (B, groups, m)
    if probs is None:
        if replace:
            idx = s.integers(np.arange(B * sets * m), n_k)
        else:
            idx = np.stack(
                [
                    stream(child_seed(seed, t), stream_id).sample_without_replacement(m, n_k)
                    for t in range(B * sets)
                ]
            )
        log_w = np.full(shape, np.log(n_k) - np.log(m))
        return Samples(idx.reshape(shape), log_w, 1.0 if replace else 1.0 - m / n_k)
    if not replace:
        raise ValueError("sampling without replacement is only supported for uniform sampling")
    p = np.asarray(probs, dtype=np.float64)
    total = p.sum(axis=1, keepdims=True)
    p = p / np.where(total > 0, total, 1.0)
    cdf = np.cumsum(p, axis=1)
    cdf[:, -1] = np.where(total[:, 0] > 0, 1.0, 0.0)  # exact end, no rounding gap
    u = s.uniform(np.arange(B * sets * m)).reshape(B, sets * m)
    idx = np.empty((B, sets * m), dtype=np.int64)
    for b in range(B):  # O(m log n) each; a loop over batch entries, not over samples
        idx[b] = np.searchsorted(cdf[b], u[b], side="right")
    idx = np.minimum(idx, n_k - 1)
    with np.errstate(divide="ignore"):
        log_w = -np.log(m) - np.log(np.take_along_axis(p, idx, axis=1))
    return Samples(idx.reshape(shape), log_w.reshape(shape))


def light_probabilities(
    B: int, n_k: int, exclude: np.ndarray | None, weights: np.ndarray | None = None
) -> np.ndarray | None:
    """Sampling distribution (B, n_k) of the light part, zero on ``exclude`` (global keys).

    ``weights`` None: uniform over the other keys (None when nothing is excluded: the fast
    uniform path). Otherwise the defensive mixture ``DEFENSIVE * uniform + (1 - DEFENSIVE) *
    weights / sum(weights)`` (weights zeroed on ``exclude``; a row of zero weights falls back to
    uniform): every eligible key keeps p_j >= DEFENSIVE / n_k, so every weight 1/(m p_j) is
    at most n_k / (DEFENSIVE m) and the estimate stays unbiased for any row.
    """
    eligible = None if exclude is None else (~exclude).astype(np.float64)
    if weights is None:
        return eligible
    uniform = np.ones((B, n_k)) if eligible is None else eligible
    uniform = uniform / uniform.sum(axis=1, keepdims=True)
    w = np.asarray(weights, dtype=np.float64) * (1.0 if eligible is None else eligible)
    total = w.sum(axis=1, keepdims=True)
    w = np.where(total > 0, w / np.where(total > 0, total, 1.0), uniform)
    return DEFENSIVE * uniform + (1 - DEFENSIVE) * w


def sampled_partial(
    Q: np.ndarray,
    K: np.ndarray,
    V: np.ndarray | None,
    samples: Samples,
    blocks: Blocks,
    want_sq: bool = False,
    stats: Standardisation | None = None,
) -> Partial:
    """Weighted partial of every query over the sampled keys, excluding samples that lie in
    the query's own heavy block (those keys are already in the heavy part).

    ``samples.idx`` has shape (B, m) (one sample set shared by all queries, the paper's
    sampling matrix S) or (B, n_blocks, m) (an independent set per query block).
    """
    B, nb = Q.shape[0], blocks.n_blocks
    idx, log_w = samples.idx, samples.log_w
    if idx.ndim == 2:
        idx, log_w = (np.broadcast_to(a[:, None, :], (B, nb, a.shape[-1])) for a in (idx, log_w))
    if blocks.pairs_keys:
        key_block = np.take_along_axis(blocks.key_block, idx.reshape(B, -1), axis=1)
        valid = key_block.reshape(idx.shape) != np.arange(nb)[None, :, None]
    else:
        valid = np.ones(idx.shape, dtype=bool)
    return _tile_partial(Q, K, V, blocks, idx, valid, log_w, want_sq, stats)
