r"""Attention row sums :math:`D_{ii} = \sum_j e^{q_i \cdot k_j}` in near-linear time (ApproxD):
the attention engine (:mod:`sketchla.attention.engine`) without V.

HyperAttention's Algorithm 2 (Han et al., ICLR 2024) splits each row into a *heavy* part,
computed exactly, and a *light* part, estimated by sampling, and clamps the light estimate from
below:

.. math::
    \tilde D_{ii} = \underbrace{\sum_{j \in H_i} e^{s_{ij}}}_{\text{exact}}
      + \max\Big(\sum_{t=1}^m \frac{1[\ell_t \notin H_i]\, e^{s_{i\ell_t}}}{m\, p_{\ell_t}},
                 \ \tau/\kappa\Big),

with :math:`s_{ij} = q_i \cdot k_j`, samples :math:`\ell_t \sim p` i.i.d., and :math:`\tau` the
largest exact light row sum :math:`\sum_{j \notin H_i} e^{s_{ij}}` over a few random "pilot"
rows (the paper's estimate of the maximum light row sum; :math:`\kappa` bounds the ratio of the
largest to the smallest light row sum, the paper's second parameter). Without the clamp the
light term is unbiased, so :math:`\mathbb E \tilde D_{ii} = D_{ii}`; the clamp only raises
estimates that fell below :math:`\tau/\kappa`. Everything is done in log space
(``logaddexp``), so logits of :math:`\pm 10^4` neither overflow nor underflow to a wrong answer.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from .._backend import as_dense, check_finite, check_int, check_real
from .._torch import accepts_torch
from ..random import UNSET, RngLike, SeedLike, external_stacklevel, resolve_rng
from ._tiles import Problem
from .engine import Composition, evaluate
from .estimators import ControlVariate, LightEstimator, Uniform, pilot_rows
from .selectors import KeySelector, SortLSH

__all__ = ["RowSums", "approx_rowsums"]

_MAX_NDIM = 8
#: rows per query tile of the light samples when there are no sortLSH blocks
TILE = 256


class RowSums(NamedTuple):
    """``log_d (..., n_q)`` and ``stderr (..., n_q)``, the estimated standard error of each
    entry of ``log_d``; returned by :func:`approx_rowsums` with ``return_stderr=True``."""

    log_d: np.ndarray
    stderr: np.ndarray


@accepts_torch("Q", "K")
def approx_rowsums(
    Q: Any,
    K: Any,
    *,
    keys: KeySelector | None = SortLSH(),  # noqa: B008 (frozen, immutable)
    rest: LightEstimator | None = Uniform(256),  # noqa: B008
    kappa: float | None = None,
    pilot_size: int = 32,
    rng: RngLike = None,
    seed: SeedLike | Any = UNSET,
    return_stderr: bool = False,
) -> np.ndarray | RowSums:
    r"""Estimate :math:`\log D_{ii} = \log \sum_j \exp(q_i \cdot k_j)` for every query (ApproxD).

    The attention engine without values: the keys of ``keys`` exactly, the rest by ``rest``.
    The defaults are the paper's: one round of sortLSH blocks of 256 keys (7 hyperplanes) and
    256 uniform samples per block. No logit scale is applied: pass ``Q * scale`` for scaled
    attention. See the module docstring for the estimator.

    Parameters
    ----------
    Q : array_like, shape (..., n_q, d)
    K : array_like, shape (..., n_k, d)
        Equal leading (batch / head) dimensions; finite.
    keys : KeySelector or None
        The exact part: any union of :mod:`sketchla.attention.selectors` (e.g.
        ``SortLSH(256) | TopNorm(k)``, ``MultiRoundLSH()``, ``KeyIndices(universal_set(K,
        eps))``). ``SortLSH(block_size >= n_k)`` puts every key in the exact part.
    rest : LightEstimator or None
        The light part: ``Uniform(m)`` (with or without replacement), ``Importance(m,
        weights="pilot")`` (:math:`p_j \propto` the average softmax weight of key j over the
        pilot rows, mixed half-and-half with uniform), ``ControlVariate(m)`` (the cross-fitted
        quadratic regression of :mod:`sketchla.attention.control`: unbiased, with about
        :math:`1 - R^2` of the plain estimator's variance), or None (exact part only).
        ``MultiRoundLSH`` draws its samples per query without replacement:
        ``Uniform(m, replace=False)`` or ``ControlVariate(m, replace=False)``.
    kappa : float > 0 or None
        The paper's lower clamp :math:`\tau/\kappa` of the light estimate; None (default)
        disables it, and the estimate is then unbiased in the linear domain. The clamp assumes
        that light row sums differ by at most a factor kappa; where they differ more it biases
        rows upward (the measurements are on the benchmark page). Uniform or Importance only.
    pilot_size : int >= 1
        Number of random query rows whose light sums are computed exactly (for :math:`\tau`);
        O(pilot_size n_k d) work.
    rng : int, SeedSequence, numpy Generator or None
        Seeds the hash (``STREAM_SIMHASH_PLANES``; ``STREAM_MULTIROUND_PLANES``), the samples
        (``STREAM_LIGHT_SAMPLES``; ``STREAM_MULTIROUND_SAMPLES``) and the pilot rows
        (``STREAM_PILOT_ROWS``) (SPEC 7); None draws fresh entropy.
    seed : deprecated alias of ``rng``.
    return_stderr : bool
        Also return a per-row standard-error estimate of :math:`\log \tilde D_{ii}` (the
        sample standard deviation of the light terms, times the finite-population factor
        without replacement, by the delta method; the control variate's own otherwise): 0
        where every key is exact, inf for m = 1. It describes the estimate before the clamp.

    Returns
    -------
    log_d : ndarray, shape (..., n_q), or RowSums(log_d, stderr) with ``return_stderr``
        In the compute dtype of the inputs (float32 stays float32).

    Examples
    --------
    >>> import numpy as np, sketchla
    >>> from scipy.special import logsumexp
    >>> from sketchla.attention import Uniform
    >>> rng = np.random.default_rng(0)
    >>> Q, K = rng.standard_normal((2, 4096, 16)) / 4
    >>> est = sketchla.approx_rowsums(Q, K, rest=Uniform(1024), rng=0)
    >>> exact = logsumexp(Q @ K.T, axis=1)
    >>> bool(np.median(np.abs(np.expm1(est - exact))) < 0.05)
    True
    """
    Q, K = _check_inputs(Q, K)
    comp = Composition.of(keys, rest, with_values=False)
    pilot_size = check_int(pilot_size, "pilot_size", minimum=1)
    if kappa is not None:
        kappa = check_real(kappa, "kappa", 0.0, None, min_inclusive=False)
        if comp.multiround is not None or isinstance(rest, ControlVariate):
            raise ValueError("kappa clamps the Uniform or Importance light sum only")
    if not isinstance(return_stderr, bool | np.bool_):
        raise TypeError(f"return_stderr must be a bool, got {type(return_stderr).__name__}")
    seq = resolve_rng(rng, seed, stacklevel=external_stacklevel())
    batch_shape = Q.shape[:-2]
    prob = Problem(Q.reshape(-1, *Q.shape[-2:]), K.reshape(-1, *K.shape[-2:]), None, False)
    B, n_q = prob.B, prob.n_q
    with np.errstate(over="ignore", invalid="ignore"):  # overflow is reported below
        ev = evaluate(prob, comp, seq, 0, TILE, want_sq=return_stderr)
        heavy = np.full((B, n_q), -np.inf, dtype=prob.dtype)
        for part in ev.exact:
            heavy = np.logaddexp(heavy, part.lse)
        stderr = np.zeros((B, n_q), dtype=prob.dtype)
        if ev.light is None:
            log_d = heavy
        else:
            light = ev.light.lse
            if kappa is not None:
                log_tau = pilot_rows(prob, ev.claimed, pilot_size, seq)[0]
                light = np.maximum(light, (log_tau - np.log(kappa)).astype(prob.dtype)[:, None])
            log_d = np.logaddexp(heavy, light)
            if return_stderr:
                assert rest is not None
                m = (
                    min(rest.sample_size, prob.n_k)
                    if comp.multiround is not None
                    else rest.sample_size
                )
                fpc = 1.0 - m / prob.n_k if comp.multiround is not None else ev.fpc
                with np.errstate(invalid="ignore", divide="ignore"):
                    stderr = _log_stderr(ev.light, log_d, m, fpc)
    if not np.isfinite(log_d).all():  # Q and K are finite: their logits overflowed
        raise ValueError(
            f"the logits Q K^T overflowed {log_d.dtype} although Q and K are finite; rescale Q or K"
        )
    log_d = log_d.reshape(*batch_shape, n_q)
    if return_stderr:
        return RowSums(log_d, stderr.reshape(*batch_shape, n_q))
    return log_d


def _log_stderr(light, log_d: np.ndarray, m: int, fpc: float | np.ndarray) -> np.ndarray:
    r"""Delta-method standard error of :math:`\log \tilde D`: with light terms
    :math:`x_t = w_t e^{s_t}` (0 for masked samples) and :math:`r = \sum x_t^2 / (\sum x_t)^2`,
    the relative standard error of the light sum is :math:`\sqrt{(m r - 1)/(m - 1)}`."""
    if light.lse_se is not None:  # the estimator's own (control variate)
        return np.exp(light.lse_se - log_d).astype(log_d.dtype)
    if m == 1:
        return np.full_like(log_d, np.inf)
    with np.errstate(invalid="ignore", over="ignore"):
        r = np.exp(light.lse2 - 2 * light.lse)
        rel = np.sqrt(np.maximum(m * r - 1, 0) / (m - 1) * fpc)
        se = np.exp(light.lse - log_d) * rel
    return np.where(np.isfinite(light.lse), se, 0).astype(log_d.dtype)


def _check_inputs(Q, K) -> tuple[np.ndarray, np.ndarray]:
    ndims = tuple(range(2, _MAX_NDIM + 1))
    Q, K = as_dense(Q, "Q", ndim=ndims), as_dense(K, "K", ndim=ndims)
    if Q.shape[:-2] != K.shape[:-2] or Q.shape[-1] != K.shape[-1]:
        raise ValueError(
            f"Q (..., n_q, d) and K (..., n_k, d) need equal leading dimensions and d, got "
            f"Q {Q.shape} and K {K.shape}"
        )
    dtype = np.result_type(Q.dtype, K.dtype)
    Q, K = Q.astype(dtype, copy=False), K.astype(dtype, copy=False)
    check_finite(Q.reshape(-1, Q.shape[-1]), "Q")
    check_finite(K.reshape(-1, K.shape[-1]), "K")
    return np.ascontiguousarray(Q), np.ascontiguousarray(K)
