r"""Seeded index samplers: the draws behind every sampled estimator (attention's light part,
approximate matrix products).

Every draw is a pure function of (seed, stream, index) (:mod:`sketchla.random`), so the same
seed gives the same indices in every process and thread count.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..random import STREAM_LIGHT_SAMPLES, SeedLike, child_seed, stream

__all__ = ["DEFENSIVE", "Samples", "defensive_mixture", "draw_samples"]

#: share of the uniform distribution in every non-uniform sampling distribution
DEFENSIVE = 0.5


@dataclass(frozen=True)
class Samples:
    """``idx (B, [groups,] m)`` sampled indices and ``log_w`` their log weights
    :math:`\\log(1/(m p_j))`; ``fpc`` is the finite-population factor of the variance
    (1 - m/N without replacement, else 1)."""

    idx: np.ndarray
    log_w: np.ndarray
    fpc: float = 1.0


def draw_samples(
    seed: SeedLike,
    B: int,
    n: int,
    m: int,
    probs: np.ndarray | None = None,
    replace: bool = True,
    groups: int | None = None,
    stream_id: int = STREAM_LIGHT_SAMPLES,
) -> Samples:
    r"""m indices in [0, n) per batch entry (and per group: ``groups`` independent sets, shape
    (B, groups, m); else (B, m)) from stream ``stream_id`` of ``seed``.

    ``probs`` None: uniform, weight n/m (with or without replacement; without, the weight is
    the Horvitz-Thompson n/m as every index has inclusion probability m/n). Otherwise
    ``probs (B, n) >= 0`` (normalised per row; zero entries are never drawn), i.i.d. draws by
    inverse CDF of uniform variates, weight :math:`1/(m p_j)`.
    """
    s = stream(seed, stream_id)
    sets = 1 if groups is None else groups
    shape = (B, m) if groups is None else (B, groups, m)
    if probs is None:
        if replace:
            idx = s.integers(np.arange(B * sets * m), n)
        else:
            idx = np.stack(
                [
                    stream(child_seed(seed, t), stream_id).sample_without_replacement(m, n)
                    for t in range(B * sets)
                ]
            )
        log_w = np.full(shape, np.log(n) - np.log(m))
        return Samples(idx.reshape(shape), log_w, 1.0 if replace else 1.0 - m / n)
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
    idx = np.minimum(idx, n - 1)
    with np.errstate(divide="ignore"):
        log_w = -np.log(m) - np.log(np.take_along_axis(p, idx, axis=1))
    return Samples(idx.reshape(shape), log_w.reshape(shape))


def defensive_mixture(
    B: int, n: int, exclude: np.ndarray | None, weights: np.ndarray | None = None
) -> np.ndarray | None:
    """Sampling distribution (B, n), zero on ``exclude`` (B, n) bool.

    ``weights`` None: uniform over the other indices (None when nothing is excluded: the fast
    uniform path). Otherwise ``DEFENSIVE * uniform + (1 - DEFENSIVE) * weights / sum(weights)``
    (weights zeroed on ``exclude``; a row of zero weights falls back to uniform): every eligible
    index keeps p_j >= DEFENSIVE / n, so every weight 1/(m p_j) is at most n / (DEFENSIVE m)
    and the estimate stays unbiased for any row.
    """
    eligible = None if exclude is None else (~exclude).astype(np.float64)
    if weights is None:
        return eligible
    uniform = np.ones((B, n)) if eligible is None else eligible
    uniform = uniform / uniform.sum(axis=1, keepdims=True)
    w = np.asarray(weights, dtype=np.float64) * (1.0 if eligible is None else eligible)
    total = w.sum(axis=1, keepdims=True)
    w = np.where(total > 0, w / np.where(total > 0, total, 1.0), uniform)
    return DEFENSIVE * uniform + (1 - DEFENSIVE) * w
