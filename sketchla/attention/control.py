r"""A quadratic control variate for the light part of a row sum (regression estimator).

The light part of row i is :math:`L_i = \sum_{j \in \mathcal L_i} e^{s_{ij}}` over the keys
:math:`\mathcal L_i` outside its heavy set, estimated from the c light keys that query i's
uniform sample kept. Standardise the logits of row i by their mean and standard deviation over
*all* n keys,

.. math::
    z_{ij} = (s_{ij} - \mu_i) / \sigma_i, \qquad \mu_i = q_i \cdot \bar k, \qquad
    \sigma_i^2 = q_i^\top C q_i / n, \quad C = \sum_j (k_j - \bar k)(k_j - \bar k)^\top,

so that :math:`\sum_j z_{ij} = 0` and :math:`\sum_j z_{ij}^2 = n` for every query, from one
d x d moment matrix (O(n d^2) work, no n x n product). The control variate is the quadratic
:math:`\hat y(z) = \beta_0 + \beta_1 z + \beta_2 z^2` fitted to :math:`e^{s}` by least squares;
its exact total over the light keys needs only their moments :math:`P_i = (|\mathcal L_i|,
\sum_{\mathcal L_i} z, \sum_{\mathcal L_i} z^2)`, those of all keys minus those of the heavy
(and global) keys. The samples only estimate the residual :math:`e^s - \hat y(z)`.

**Cross-fitting** keeps the estimate exactly unbiased: the m draws (uniform without
replacement) are split by draw number into halves h and o; :math:`\beta^{(h)}` is fitted on
the kept draws of h alone and corrected with the held-out half o, a uniform subset of the
:math:`n - m_h` keys not drawn in h,

.. math::
    \hat L_i^{(h)} = \beta^{(h)} \cdot P_i + \sum_{j \in h \cap \mathcal L_i} r_j
      + \frac{n - m_h}{m_o} \sum_{j \in o \cap \mathcal L_i} r_j,
    \qquad r_j = e^{s_{ij}} - \hat y^{(h)}(z_{ij}),

which is unbiased given h for any fitted :math:`\beta^{(h)}`; :math:`\hat L_i` is the mean of
the two directions. With replacement (the sortLSH light part's default) the halves are
independent and the held-out half alone estimates the residual total, with weight
:math:`N / m_o` (N the keys drawn from). The standard error comes from the held-out residuals
(Horvitz-Thompson or Hansen-Hurwitz variance).

Where the draws come from: ``MultiRoundLSH`` draws m keys per query
(:mod:`sketchla.attention.multiround`, moments summed by its kernels); the other key sets draw
per query tile (:class:`sketchla.attention.ControlVariate`, moments from the same logit tiles
by :func:`sketchla._kernels.control.tile_moments`), the halves being the even and odd columns
of the sample set. This is the regression (GREG) estimator of survey sampling
(Cochran, *Sampling Techniques*, 3rd ed., 1977, ch. 7; Särndal, Swensson & Wretman, *Model
Assisted Survey Sampling*, 1992, §6.4) with the fit cross-fitted; its variance is about
:math:`1 - R_i^2` times that of the plain Horvitz-Thompson sum, :math:`R_i^2` being the share
of the variance of :math:`e^{s}` over the light keys that a quadratic in the logit explains.
It helps most where the light terms are a smooth function of the logit (diffuse rows; the
measured variance reductions are in ``docs/benchmarks/lsh.md``) and little where a few keys
carry the light mass (a needle the windows missed): finding those is the heavy part's job.

Rows with fewer than ``MIN_SAMPLES`` kept draws in either half, a numerically singular fit,
or an estimate that is not positive fall back to the Horvitz-Thompson sum. The switch
depends on the draws, so the exact unbiasedness holds for rows that never switch (rows with
enough light keys, where a non-positive estimate is a rare, large negative residual).
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "MIN_SAMPLES",
    "key_set_moments",
    "logit_standardisation",
    "regression_light_sums",
    "standardised_sums",
]

#: rows per chunk of the float64 moment computations
_CHUNK_ROWS = 8192
#: fewest kept light samples in each half for which the quadratic (3 coefficients) is fitted
MIN_SAMPLES = 8


def logit_standardisation(Q: np.ndarray, K: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    r"""``(mu, inv_sigma)``, float64 (n_q,): the mean :math:`\mu_i = q_i \cdot \bar k` and the
    inverse standard deviation :math:`1/\sigma_i` (0 where :math:`\sigma_i = 0`) of the logits
    :math:`q_i \cdot k_j` of each row of ``Q (n_q, d)`` over the keys ``K (n_k, d)``.

    Float64 throughout, the keys centred before their Gram matrix (no cancellation for keys
    with a large common offset), in row chunks (no full-size float64 copy of Q or K)."""
    kbar = K.mean(axis=0, dtype=np.float64)
    C = np.zeros((K.shape[1], K.shape[1]))
    for s in range(0, K.shape[0], _CHUNK_ROWS):
        Kc = K[s : s + _CHUNK_ROWS].astype(np.float64) - kbar
        C += Kc.T @ Kc
    C /= K.shape[0]
    mu = np.empty(Q.shape[0])
    var = np.empty(Q.shape[0])
    for s in range(0, Q.shape[0], _CHUNK_ROWS):
        Qc = Q[s : s + _CHUNK_ROWS].astype(np.float64)
        mu[s : s + _CHUNK_ROWS] = Qc @ kbar
        var[s : s + _CHUNK_ROWS] = np.einsum("id,id->i", Qc @ C, Qc)
    with np.errstate(divide="ignore"):
        inv_sigma = np.where(var > 0, 1.0 / np.sqrt(np.maximum(var, 0.0)), 0.0)
    return mu, inv_sigma


def standardised_sums(S: np.ndarray, mu: np.ndarray, inv_sigma: np.ndarray) -> np.ndarray:
    """(count, sum z, sum z^2) per row of logits ``S (n_q, g)`` (-inf entries skipped):
    the moments of a set of keys (the global keys) removed from the light population."""
    finite = np.isfinite(S)
    z = np.where(finite, (S - mu[:, None]) * inv_sigma[:, None], 0.0)
    return np.stack([finite.sum(axis=1).astype(np.float64), z.sum(axis=1), (z * z).sum(axis=1)], 1)


def _fit(mom: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares coefficients (n_q, 3) of e on (1, z, z^2) from one half's moments, by
    Cramer's rule on the 3 x 3 normal equations. Where that matrix is numerically singular
    (fewer than 3 distinct z, e.g. a row of equal logits, or cond >~ 1e12) the fit is the
    mean alone, ``(sum e / c, 0, 0)``; the flag (n_q,) marks rows with a fit (c > 0)."""
    c, s1, s2, s3, s4 = (mom[:, k] for k in range(5))
    b0, b1, b2 = (mom[:, k] for k in range(5, 8))
    # cofactors of the symmetric matrix [[c, s1, s2], [s1, s2, s3], [s2, s3, s4]]
    a00, a01, a02 = s2 * s4 - s3 * s3, s2 * s3 - s1 * s4, s1 * s3 - s2 * s2
    a11, a12, a22 = c * s4 - s2 * s2, s1 * s2 - c * s3, c * s2 - s1 * s1
    det = c * a00 + s1 * a01 + s2 * a02
    scale = np.abs(c * s2 * s4) + np.abs(s1 * s3 * s2) + np.abs(s2**3) + 1e-300
    ok = det > 1e-12 * scale
    with np.errstate(divide="ignore", invalid="ignore"):
        beta = (
            np.stack(
                [
                    a00 * b0 + a01 * b1 + a02 * b2,
                    a01 * b0 + a11 * b1 + a12 * b2,
                    a02 * b0 + a12 * b1 + a22 * b2,
                ],
                axis=1,
            )
            / np.where(ok, det, 1.0)[:, None]
        )
    with np.errstate(divide="ignore", invalid="ignore"):
        mean_only = np.stack([b0 / c, np.zeros_like(c), np.zeros_like(c)], axis=1)
    return np.where(ok[:, None], beta, np.where(c[:, None] > 0, mean_only, 0.0)), c > 0


def _residual_sums(beta: np.ndarray, mom: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sum and sum of squares of the residuals ``e - beta . (1, z, z^2)`` over one half."""
    c, s1, s2, s3, s4 = (mom[:, k] for k in range(5))
    g0, g1, g2 = beta[:, 0], beta[:, 1], beta[:, 2]
    first = mom[:, 5] - (g0 * c + g1 * s1 + g2 * s2)
    quad = (
        g0 * g0 * c + g1 * g1 * s2 + g2 * g2 * s4 + 2 * (g0 * g1 * s1 + g0 * g2 * s2 + g1 * g2 * s3)
    )
    second = mom[:, 8] - 2 * (g0 * mom[:, 5] + g1 * mom[:, 6] + g2 * mom[:, 7]) + quad
    return first, np.maximum(second, 0.0)


def regression_light_sums(
    mom: np.ndarray,
    removed: np.ndarray,
    inv_sigma: np.ndarray,
    n_k: int,
    m: int,
    n_pop=None,
    replace: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    r"""Cross-fitted light sums and their standard errors, both relative to each row's
    sample maximum.

    Parameters
    ----------
    mom : (n_q, 2, 9) float64
        Per row and half of the draws, over its c kept samples with :math:`e = \exp(s -
        \max)`: :math:`(c, \sum z, \sum z^2, \sum z^3, \sum z^4, \sum e, \sum e z, \sum e
        z^2, \sum e^2)`; half 0 holds draws 0, 2, 4, ... (``ceil(m/2)`` draws), half 1 the
        others.
    removed : (n_q, 3) float64
        (count, sum z, sum z^2) of the keys outside the light population (heavy and global).
    inv_sigma : (n_q,)
        From :func:`logit_standardisation` (0 marks a row of equal logits).
    n_k, m : int
        Keys in all (the standardisation's population), and draws per row.
    n_pop : int, array (n_q,) or None
        Number of keys the draws are uniform over (default n_k; the non-global keys when
        global keys are never drawn).
    replace : bool
        Draws with replacement (the halves are then independent: the held-out half alone
        estimates the residual total, weight n_pop / m_o) or without (weight
        (n_pop - m_h) / m_o on the keys not drawn in half h, plus half h's own residuals).

    Returns
    -------
    total, stderr : (n_q,) float64
        :math:`\hat L_i e^{-\max_i}` and its estimated standard error (from the held-out
        residuals; for the Horvitz-Thompson fallback, from the terms); 0 without samples.
    """
    N = np.broadcast_to(np.asarray(n_k if n_pop is None else n_pop, dtype=np.float64), (len(mom),))
    draws = ((m + 1) // 2, m // 2)
    n_light = n_k - removed[:, 0]
    pop = np.stack(
        [n_light, -removed[:, 1], np.where(inv_sigma > 0, n_k, 0.0) - removed[:, 2]], axis=1
    )
    total = np.zeros(len(pop))
    var = np.zeros(len(pop))
    fitted = np.full(len(pop), draws[1] > 0)
    if draws[1] > 0:
        for h in (0, 1):  # fit on half h, correct with the held-out half o
            o = 1 - h
            beta, ok = _fit(mom[:, h])
            fitted &= ok
            own, _ = _residual_sums(beta, mom[:, h])
            held, held2 = _residual_sums(beta, mom[:, o])
            s2 = np.maximum((held2 - held**2 / draws[o]) / max(draws[o] - 1, 1), 0.0)
            if replace:  # half o: i.i.d. uniform draws over the N keys
                total += 0.5 * ((beta * pop).sum(axis=1) + N / draws[o] * held)
                var += 0.25 * N**2 / draws[o] * s2
            else:  # half o: a uniform subset of the N - m_h keys not drawn in half h
                rest = N - draws[h]
                total += 0.5 * ((beta * pop).sum(axis=1) + own + rest / draws[o] * held)
                var += 0.25 * rest**2 * (1 - draws[o] / rest) / draws[o] * s2
    both = mom.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        # Horvitz-Thompson: weights N / m on the m draws (zero terms for dropped draws)
        ht = both[:, 5] * (N / m) if m > 0 else np.zeros(len(pop))
        ratio = both[:, 8] / both[:, 5] ** 2
        fpc = 1.0 if replace else 1.0 - m / N
        ht_rel = (
            np.sqrt(np.maximum(m * ratio - 1.0, 0.0) / (m - 1) * fpc)
            if m > 1
            else np.full_like(ratio, np.inf)
        )
        ht_se = ht * ht_rel  # nan only without samples (0 * inf), set to 0 below
    use_fit = fitted & (mom[:, :, 0].min(axis=1) >= MIN_SAMPLES) & np.isfinite(total) & (total > 0)
    total = np.where(use_fit, total, ht)
    stderr = np.where(use_fit, np.sqrt(var), ht_se)
    empty = both[:, 0] == 0
    return np.where(empty, 0.0, total), np.where(empty, 0.0, stderr)


def key_set_moments(
    Q: np.ndarray, K: np.ndarray, mask: np.ndarray, mu: np.ndarray, inv_sigma: np.ndarray
) -> np.ndarray:
    """(n_q, 3) moments (count, sum z, sum z^2) of the standardised logits of the keys with
    ``mask (n_k,)`` True (the global keys), which leave the light population."""
    out = np.zeros((Q.shape[0], 3))
    if mask.any():
        Kg = K[mask].astype(np.float64)
        for s in range(0, Q.shape[0], _CHUNK_ROWS):
            rows = slice(s, s + _CHUNK_ROWS)
            out[rows] = standardised_sums(
                Q[rows].astype(np.float64) @ Kg.T, mu[rows], inv_sigma[rows]
            )
    return out
