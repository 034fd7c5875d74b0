r"""lp Lewis weights and certified upper bounds on lp sensitivities.

For A (n x d) and p in (0, inf), the lp Lewis weights are the unique w >= 0 with

.. math:: w_i = \bigl(a_i^\top (A^\top W^{1-2/p} A)^{+} a_i\bigr)^{p/2},

i.e. w_i is the leverage score of row i of :math:`W^{1/2-1/p} A` (Lewis 1978; Cohen & Peng,
"Lp row sampling by Lewis weights", STOC 2015). They sum to rank(A); at p = 2 they are the
leverage scores. The lp sensitivity of row i is
:math:`s_i = \sup_x |a_i \cdot x|^p / \|Ax\|_p^p` (over x with Ax != 0).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import combinations_with_replacement

import numpy as np

from .._backend import as_dense, check_finite, check_int, check_real
from .._torch import accepts_torch
from .leverage import leverage_scores

__all__ = ["LewisInfo", "lewis_weights", "sensitivity_bounds"]


@dataclass(frozen=True)
class LewisInfo:
    """Certificate of :func:`lewis_weights`.

    Attributes
    ----------
    residual : float
        Relative fixed-point residual :math:`\\max_i |T_i(w) / w_i - 1|` over the nonzero rows,
        with :math:`T_i(w) = (a_i^\\top (A^\\top W^{1-2/p} A)^+ a_i)^{p/2}` evaluated at the
        returned w (0 for exact Lewis weights).
    abs_residual : float
        :math:`\\max_i |T_i(w) - w_i|`.
    n_iter : int
        Trial steps taken, rejected ones included (each one leverage-score computation).
    converged : bool
        ``residual <= tol``.
    step : float
        Last damping exponent alpha of the update
        :math:`w \\leftarrow w^{1-\\alpha} T(w)^\\alpha` (starts at 4/(p+2)).
    """

    residual: float
    abs_residual: float
    n_iter: int
    converged: bool
    step: float


def _check_p(p) -> float:
    return check_real(p, "p", minimum=0.0, min_inclusive=False)


def _fixed_point_map(A: np.ndarray, w: np.ndarray, p: float) -> np.ndarray:
    """T(w)_i = tau_i(w)^{p/2}, tau_i(w) = a_i^T (A^T W^{1-2/p} A)^+ a_i = sigma_i(B) / w_i^{1-2/p}
    with B = W^{1/2-1/p} A (sigma: leverage scores, pseudo-inverse). Rows of A nonzero, w > 0."""
    scale = w ** (0.5 - 1.0 / p)
    sigma = leverage_scores(A * scale[:, None])
    tau = sigma / scale**2
    return np.maximum(tau, 0.0) ** (p / 2)


def _log_residual(T: np.ndarray, w: np.ndarray) -> float:
    return float(np.max(np.abs(np.log(T / w))))


def _lewis(A: np.ndarray, p: float, tol: float, max_iter: int):
    """(w, T(w), n_iter, step) for the nonzero rows A (n0 x d, n0 >= 1).

    Update in log coordinates: log w <- (1 - a) log w + a log T(w). With
    S = Sigma^{-1} (P o P) (P the projection onto range(W^{1/2-1/p} A), Sigma = diag(P)),
    whose eigenvalues lie in [0, 1], the Jacobian of log T is -(p/2 - 1) S, so the update's
    Jacobian has eigenvalues in [1 - a p/2, 1 - a] or [1 - a, 1 - a p/2]; a = 4/(p + 2)
    centres them: |eigenvalue| <= |p - 2|/(p + 2) at every w (a local contraction).
    A step is accepted when the residual r(w) = max_i |log(T_i(w)/w_i)| decreases. Otherwise,
    for p < 4, the Cohen-Peng step w <- T(w) (a = 1) is taken: T contracts the metric
    max_i |log(u_i/v_i)| by |1 - p/2| < 1 (Cohen & Peng 2015), so r(T(w)) <= |1 - p/2| r(w);
    for p >= 4, a is halved (down to 1e-3).
    """
    tiny = np.finfo(np.float64).tiny
    w = np.maximum(leverage_scores(A), tiny)  # exact at p = 2
    step = 4.0 / (p + 2.0)
    T = np.maximum(_fixed_point_map(A, w, p), tiny)
    res = _log_residual(T, w)
    n_iter = 0
    while np.max(np.abs(T / w - 1.0)) > tol and n_iter < max_iter:
        w_new = np.maximum(w ** (1.0 - step) * T**step, tiny)
        T_new = np.maximum(_fixed_point_map(A, w_new, p), tiny)
        res_new = _log_residual(T_new, w_new)
        n_iter += 1
        if res_new >= res:
            if p < 4:  # Cohen-Peng step: a guaranteed decrease
                w_new = T
                T_new = np.maximum(_fixed_point_map(A, w_new, p), tiny)
                res_new = _log_residual(T_new, w_new)
                n_iter += 1
            elif step > 1e-3:
                step /= 2.0
                continue
        w, T, res = w_new, T_new, res_new
    return w, T, n_iter, step


@accepts_torch("A")
def lewis_weights(
    A,
    p: float,
    *,
    tol: float = 1e-10,
    max_iter: int = 500,
    return_info: bool = False,
) -> np.ndarray | tuple[np.ndarray, LewisInfo]:
    r"""lp Lewis weights of the rows of A (n x d).

    The unique :math:`w \ge 0` with
    :math:`w_i = (a_i^\top (A^\top W^{1-2/p} A)^{+} a_i)^{p/2}` (Lewis 1978; Cohen & Peng,
    STOC 2015, arXiv 1412.0588): w_i is the leverage score of row i of
    :math:`W^{1/2-1/p} A`, so :math:`0 \le w_i \le 1` and
    :math:`\sum_i w_i = \operatorname{rank}(A)`; at p = 2 they are the leverage scores.
    Zero rows get weight 0; rank-deficient A is handled with the
    pseudo-inverse (rank decision of :func:`leverage_scores`).

    Iteration (each step one exact leverage-score computation, O(n d^2)), from the leverage
    scores, with :math:`T(w)_i = (a_i^\top (A^\top W^{1-2/p} A)^+ a_i)^{p/2}`:

    * p < 4: Cohen & Peng's map :math:`w \leftarrow T(w)` is a contraction with factor
      :math:`|1 - p/2|` in the metric :math:`\max_i |\log(u_i/v_i)|` (Cohen & Peng 2015,
      Section 3), so it converges from any start (exact in one step at p = 2).
    * p >= 4: the undamped map need not converge; we use the damped update
      :math:`w \leftarrow w^{1-\alpha} T(w)^{\alpha}`. In log coordinates its Jacobian is
      :math:`(1-\alpha) I - \alpha (p/2 - 1) S`, with :math:`S = \Sigma^{-1} (P \circ P)`
      (P the projection onto the range of :math:`W^{1/2-1/p}A`, :math:`\Sigma = diag(P)`)
      similar to a PSD matrix with eigenvalues in [0, 1]; :math:`\alpha = 4/(p+2)` puts the
      Jacobian's eigenvalues in :math:`[-(p-2)/(p+2), (p-2)/(p+2)]`: a local contraction
      with factor (p-2)/(p+2) (1/3 at p = 4, 1/2 at p = 6).
    * Every step tries :math:`\alpha = 4/(p+2)` (also for p < 4, where it is the faster local
      rate |p-2|/(p+2)) and is accepted when the residual
      :math:`\max_i |\log(T_i(w)/w_i)|` decreases; otherwise, for p < 4, the Cohen-Peng step
      (guaranteed decrease by |1 - p/2|) is taken, and for p >= 4 alpha is halved (to at
      least 1e-3). Provably convergent methods for p >= 4 with iteration bounds: Fazel, Lee,
      Padmanabhan & Sidford (SODA 2022, arXiv 2110.15563); Apers, Gribling & Sidford (2024,
      arXiv 2404.02881). Whatever the path, the returned residual is measured, not assumed,
      and :func:`sensitivity_bounds` holds for the weights actually computed.

    Parameters
    ----------
    A : array_like, shape (n, d)
        Finite real matrix.
    p : float > 0
    tol : float, default 1e-10
        Stop when the relative fixed-point residual :math:`\max_i |T_i(w)/w_i - 1| \le` tol.
    max_iter : int, default 500
        Most fixed-point steps; if reached, the weights are returned with
        ``info.converged = False`` (no exception).
    return_info : bool, default False
        Also return a :class:`LewisInfo` (residual, iterations, convergence).

    Returns
    -------
    w : ndarray, shape (n,), float64 (float32 for float32 input)
    info : LewisInfo, only if ``return_info``
    """
    A = as_dense(A, "A", ndim=(2,))
    check_finite(A, "A")
    p = _check_p(p)
    tol = check_real(tol, "tol", minimum=0.0, min_inclusive=False)
    max_iter = check_int(max_iter, "max_iter", minimum=0)
    A64 = _unit_scaled(A)
    w, _, info = _weights_and_map(A64, p, tol, max_iter)
    w = w.astype(A.dtype, copy=False)
    return (w, info) if return_info else w


def _unit_scaled(A: np.ndarray) -> np.ndarray:
    """A / max|A| in float64. Lewis weights and lp sensitivities are invariant under
    A -> A / c, and the scaled rows keep W^{1/2-1/p} A and the monomial lifts from overflowing
    (entries near the largest float) or underflowing (denormal entries)."""
    A64 = A.astype(np.float64, copy=False)
    c = float(np.abs(A64).max())
    return A64 / c if c > 0 and c != 1.0 else A64


def _weights_and_map(A: np.ndarray, p: float, tol: float, max_iter: int):
    """Full-length (w, T(w), info); zero rows (and rank-0 A) get w = T = 0."""
    n = A.shape[0]
    w, T = np.zeros(n), np.zeros(n)
    nonzero = np.flatnonzero(A.any(axis=1))
    if nonzero.size == 0:
        return w, T, LewisInfo(0.0, 0.0, 0, True, 1.0)
    w0, T0, n_iter, step = _lewis(A[nonzero], p, tol, max_iter)
    w[nonzero], T[nonzero] = w0, T0
    res = float(np.max(np.abs(T0 / w0 - 1.0)))
    info = LewisInfo(res, float(np.max(np.abs(T0 - w0))), n_iter, res <= tol, step)
    return w, T, info


def _monomial_lift(A: np.ndarray, q: int) -> np.ndarray:
    """Rows of A mapped to all degree-q monomials of their entries: (n, C(d+q-1, q)).
    Spans the same column space as the rows a_i^{(x)q} (a column rescaling of their
    symmetric part), so it has the same leverage scores."""
    n, d = A.shape
    cols = math.comb(d + q - 1, q)
    out = np.empty((n, cols))
    for c, idx in enumerate(combinations_with_replacement(range(d), q)):
        out[:, c] = np.prod(A[:, idx], axis=1)
    return out


_METHODS = ("lewis", "lift", "best")


@accepts_torch("A")
def sensitivity_bounds(
    A,
    p: float,
    *,
    method: str = "lewis",
    tol: float = 1e-10,
    max_iter: int = 500,
) -> np.ndarray:
    r"""Certified upper bounds :math:`u_i \ge s_i = \sup_x |a_i \cdot x|^p / \|Ax\|_p^p`.

    Every bound below is a proven inequality that holds for the weights actually computed
    (no convergence assumed): for **any** positive weights w on the nonzero rows put
    :math:`M = A^\top W^{1-2/p} A`, :math:`\tau_i = a_i^\top M^+ a_i` and
    :math:`T_i = \tau_i^{p/2}`; Cauchy-Schwarz in the M inner product (a_i lies in range(M))
    gives :math:`|a_i \cdot x|^2 \le \tau_i\, x^\top M x` with
    :math:`x^\top M x = \sum_j w_j^{1-2/p} |a_j \cdot x|^2`. Then

    * p = 2: :math:`u_i = \ell_i`, the leverage score (exact: :math:`s_i = \ell_i`).
    * p > 2: Hölder with exponents p/(p-2) and p/2 gives
      :math:`x^\top M x \le (\sum_j w_j)^{1-2/p} \|Ax\|_p^2`, hence
      :math:`u_i = T_i (\sum_j w_j)^{p/2-1}`. At the Lewis weights (T = w, sum = rank r) this
      is the standard :math:`s_i \le r^{p/2-1} w_i` (total :math:`\le r^{p/2}`; see e.g.
      Woodruff & Yasuda, "Sharper bounds for lp sensitivity sampling", ICML 2023).
    * p < 2: with :math:`R^2 = x^\top M x` and :math:`|a_j \cdot x| \le \sqrt{\tau_j} R`,
      :math:`R^2 = \sum_j w_j^{1-2/p} |a_j x|^p |a_j x|^{2-p} \le R^{2-p} \sum_j
      w_j^{1-2/p} \tau_j^{1-p/2} |a_j x|^p`, so :math:`R^p \le c \|Ax\|_p^p` with
      :math:`c = \max_j (T_j / w_j)^{2/p-1}`, and :math:`u_i = c\, T_i` (= w_i at the Lewis
      weights: Cohen & Peng 2015). Also :math:`\|y\|_p \ge \|y\|_2` gives
      :math:`s_i \le \ell_i^{p/2}`; the smaller of the two is returned.
    * even p = 2q with ``method="lift"``: :math:`|a \cdot x|^p = \langle a^{\otimes q},
      x^{\otimes q}\rangle^2`, so :math:`s_i` is at most the leverage score of row i of the
      lifted matrix (rows :math:`a_i^{\otimes q}`, taken as the C(d+q-1, q) degree-q
      monomials, which span the same space). Often much tighter than the Lewis bound; costs
      O(n C(d+q-1, q)^2) time and n C(d+q-1, q) memory. ``method="best"``: the minimum of
      the Lewis and lift bounds (both certified).

    All bounds are also capped at 1 (:math:`s_i \le 1` always). Certified in exact arithmetic
    for the computed weights; floating point adds the relative rounding error of the
    leverage computations (~ n eps cond), not covered.

    Parameters
    ----------
    A : array_like, shape (n, d)
    p : float > 0
    method : {"lewis", "lift", "best"}, default "lewis"
        "lift" and "best" need an even integer p.
    tol : float, default 1e-10
        Of :func:`lewis_weights` (the bound holds whatever the residual; a smaller residual
        makes it tighter).
    max_iter : int, default 500
        Of :func:`lewis_weights`.

    Returns
    -------
    ndarray (n,) of bounds in [0, 1], float64 (float32 for float32 input, the dtype policy of
    :mod:`sketchla._backend`); zero rows get 0. Their sum bounds the total
    sensitivity: about rank for p <= 2, rank^{p/2} for p > 2 (Lewis).
    """
    A = as_dense(A, "A", ndim=(2,))
    check_finite(A, "A")
    p = _check_p(p)
    if method not in _METHODS:
        raise ValueError(f"method must be one of {_METHODS}, got {method!r}")
    A64 = _unit_scaled(A)
    lift = method in ("lift", "best")
    if lift and not (p == int(p) and int(p) % 2 == 0):
        raise ValueError(f"method={method!r} needs an even integer p, got p={p}")
    tol = check_real(tol, "tol", minimum=0.0, min_inclusive=False)
    max_iter = check_int(max_iter, "max_iter", minimum=0)
    return _sensitivity_bounds(A64, p, method, tol, max_iter).astype(A.dtype, copy=False)


def _sensitivity_bounds(A64: np.ndarray, p: float, method: str, tol: float, max_iter: int):
    """The bounds of :func:`sensitivity_bounds` in float64 for validated arguments."""
    lev = leverage_scores(A64)
    if p == 2:
        return np.minimum(lev, 1.0)
    if method == "lift":
        return np.minimum(leverage_scores(_monomial_lift(A64, int(p) // 2)), 1.0)
    w, T, _ = _weights_and_map(A64, p, tol, max_iter)
    nz = w > 0
    if p > 2:
        bound = T * w.sum() ** (p / 2 - 1)
    else:
        c = np.max((T[nz] / w[nz]) ** (2 / p - 1)) if nz.any() else 1.0
        bound = np.minimum(c * T, np.maximum(lev, 0.0) ** (p / 2))
    if method == "best":
        bound = np.minimum(bound, leverage_scores(_monomial_lift(A64, int(p) // 2)))
    return np.minimum(bound, 1.0)
