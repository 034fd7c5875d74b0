"""Leverage scores: exact (CholeskyQR2 / pivoted Householder QR / SVD), ridge, sketched, online.

For A (n x d) of rank r with orthonormal basis U of range(A), the leverage score of row i is
l_i = ||U_i||^2 = a_i^T (A^T A)^+ a_i: 0 <= l_i <= 1 and sum_i l_i = r. The ridge leverage score
is l_i(lambda) = a_i^T (A^T A + lambda I)^{-1} a_i = sum_k U_ik^2 s_k^2 / (s_k^2 + lambda).
"""

from __future__ import annotations

import numpy as np
import scipy.linalg
from scipy.linalg.blas import dtrsm

from .._backend import as_dense, check_finite, check_int, check_real
from .._threads import serial_blas
from .._torch import accepts_torch
from ..operators import KINDS
from ..random import (
    UNSET,
    RngLike,
    SeedLike,
    child_seed,
    external_stacklevel,
    resolve_rng,
    rng_alias,
)

__all__ = ["leverage_scores", "online_leverage_scores"]

METHODS = ("qr", "svd", "sketch")

#: CholeskyQR2 is used while cond(A) <= this (it is orthogonal to working precision for
#: cond(A) up to about 1/sqrt(eps) = 6.7e7); beyond it, pivoted Householder QR.
_CHOLQR_MAX_COND = 1e6


def _validated(A, name: str = "A", finite: bool = True) -> np.ndarray:
    A = as_dense(A, name, ndim=(2,))
    if finite:
        check_finite(A, name)
    return A


def numerical_rank(magnitudes: np.ndarray, shape: tuple[int, int], rtol: float | None) -> int:
    """Count of |R_ii| (pivoted QR, decreasing) or singular values above rtol times the
    largest; default rtol max(n, d) * eps, numpy.linalg.matrix_rank's."""
    tol = max(shape) * np.finfo(np.float64).eps if rtol is None else rtol
    if magnitudes.size == 0 or magnitudes[0] == 0:
        return 0
    return int((magnitudes > tol * magnitudes[0]).sum())


def _row_sq_norms(X: np.ndarray) -> np.ndarray:
    return np.einsum("ij,ij->i", X, X)


def _cholesky_qr2(A: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """(Q, R) with A = Q R by CholeskyQR2 (Fukaya et al. 2014): two rounds of
    R = chol(Q^T Q), Q <- Q R^{-1}; all BLAS-3. None when A is too ill-conditioned for it."""
    Q = np.asfortranarray(A, dtype=np.float64)
    R_total = None
    for _ in range(2):
        with np.errstate(over="ignore", invalid="ignore"):
            gram = Q.T @ Q
        if not np.isfinite(gram).all():  # entries near sqrt(max float): Householder QR
            return None
        try:
            R = np.linalg.cholesky(gram).T
        except np.linalg.LinAlgError:
            return None
        diag = np.abs(np.diag(R))
        if R_total is None and (diag.min() == 0 or np.linalg.cond(R) > _CHOLQR_MAX_COND):
            return None
        Q = dtrsm(1.0, R, Q, side=1)  # Q R^{-1}
        R_total = R if R_total is None else R @ R_total
    assert R_total is not None  # the loop ran
    return Q, R_total


def _orthonormal_factor(A: np.ndarray, rtol: float | None) -> tuple[np.ndarray, np.ndarray]:
    """(Q, R) with A = Q R, Q (n, k) orthonormal, R (k, d), k = numerical rank for the
    pivoted path (k = d when CholeskyQR2 applies, which implies full rank)."""
    factors = _cholesky_qr2(A)
    if factors is not None:
        return factors
    Q, R, perm = scipy.linalg.qr(A, mode="economic", pivoting=True)
    rank = numerical_rank(np.abs(np.diag(R)), A.shape, rtol)
    R = R[:rank][:, np.argsort(perm)]  # A = Q[:, :rank] R (columns back in A's order)
    Q = Q[:, :rank]
    Q[~A.any(axis=1)] = 0.0  # Householder rounding can leave ~1e-17 in rows of zeros
    return Q, R


def _ridge_weights(s: np.ndarray, ridge: float) -> np.ndarray:
    """s^2 / (s^2 + ridge) as 1 / (1 + (sqrt(ridge) / s)^2): no overflow of s^2 for s near
    the largest float, and 0 for s = 0."""
    with np.errstate(divide="ignore", over="ignore"):
        t = np.sqrt(ridge) / s
        return 1.0 / (1.0 + t * t)


def _ridge_from_factor(Q: np.ndarray, R: np.ndarray, ridge: float) -> np.ndarray:
    """Ridge scores from A = Q R: with R = W S V^T, U = Q W and
    l_i = sum_k U_ik^2 s_k^2 / (s_k^2 + ridge)."""
    if Q.shape[1] == 0:
        return np.zeros(Q.shape[0])
    W, s, _ = np.linalg.svd(R, full_matrices=False)
    U = Q @ W
    return U**2 @ (_ridge_weights(s, ridge))


def _sketched(
    A: np.ndarray,
    seed: RngLike,
    sketch_size: int | None,
    sketch_kind: str,
    jl_dim: int | None,
    nnz_per_col: int = 8,
) -> np.ndarray:
    """Drineas, Magdon-Ismail, Mahoney & Woodruff (2012): R from QR of S A, then row norms of
    A R^{-1} G (G a d x k Gaussian JL map, k = jl_dim; none when jl_dim is None or >= d)."""
    n, d = A.shape
    if n < d:
        raise ValueError(
            f"method='sketch' needs a tall A (n >= d: its sketch has d <= m <= n rows), got A "
            f"of shape {A.shape}; use an exact method for a wide A"
        )
    if sketch_size is None:
        m = min(n, 32 * d)
    else:
        m = check_int(sketch_size, "sketch_size")
        if not d <= m <= n:
            raise ValueError(
                f"sketch_size must be in [d, n] = [{d}, {n}] for A of shape {A.shape}, got {m}"
            )
    if sketch_kind not in KINDS:
        raise ValueError(f"sketch_kind must be one of {sorted(KINDS)}, got {sketch_kind!r}")
    ss = resolve_rng(seed)
    s_sketch, s_jl = child_seed(ss, 0), child_seed(ss, 1)
    params = {"nnz_per_col": min(nnz_per_col, m)} if sketch_kind == "sparse_sign" else {}
    SA = KINDS[sketch_kind](m, n, rng=s_sketch, **params) @ A
    # scores are invariant under A -> A / c: work with c = max |SA|, so that R^{-1} neither
    # overflows (denormal A) nor underflows (A near the largest float), and A / c fits float32
    c = float(np.abs(SA).max())
    if c == 0:
        return np.zeros(n)
    _, R, perm = scipy.linalg.qr(SA / c, mode="economic", pivoting=True)
    rank = numerical_rank(np.abs(np.diag(R)), SA.shape, None)
    if rank == 0:
        return np.zeros(n)
    # A P = Q R restricted to the rank leading pivots: scores = row norms of A M with
    # M = P_r R_r^{-1} (d x rank), times G when a JL step is asked for
    Rr = R[:rank, :rank]
    M = np.zeros((d, rank))
    M[perm[:rank]] = scipy.linalg.solve_triangular(Rr, np.eye(rank))
    if jl_dim is not None and jl_dim < rank:
        k = check_int(jl_dim, "jl_dim", minimum=1)
        M = M @ KINDS["gaussian"](k, rank, rng=s_jl).todense().T  # (d, k), N(0, 1/k)
    # the scores are already approximate (relative error ~0.2): when R is well conditioned,
    # float32 products add at most ~ d * eps32 * cond(R) <= 4e-3 relative error (measured far
    # less) at twice the speed; ill-conditioned inputs keep float64
    fast = np.linalg.cond(Rr) <= _FLOAT32_MAX_COND
    return _blocked_row_sq_norms(A, M, np.float32 if fast else np.float64, scale=c)


#: the sketched method's final products run in float32 when cond(R) is at most this
_FLOAT32_MAX_COND = 1e3


def _power_of_two_scaled(A: np.ndarray) -> np.ndarray:
    """A / 2^e with max |A / 2^e| in [0.5, 1) when max |A| is outside [2^-500, 2^500], else A
    itself. Exact (a power of two), and leverage scores (ridge 0) are invariant under scaling:
    denormal entries would otherwise lose the QR's accuracy, and huge ones overflow A^T A or
    the sketch. NaN / inf are left for the methods' own checks."""
    amax = float(max(A.max(), -A.min()))  # two reductions, no |A| temporary (A may be GBs)
    if not np.isfinite(amax) or amax == 0 or 2.0**-500 <= amax <= 2.0**500:
        return A
    return np.ldexp(A, -np.frexp(amax)[1])


def _blocked_row_sq_norms(
    A: np.ndarray, M: np.ndarray, dtype=np.float64, block_rows: int = 2**14, scale: float = 1.0
) -> np.ndarray:
    """Squared row norms of (A / scale) @ M in ``dtype``, block by block (no n x k
    temporary)."""
    out = np.empty(A.shape[0])
    M = M.astype(dtype)
    for lo in range(0, A.shape[0], block_rows):
        block = A[lo : lo + block_rows]
        X = (block / scale if scale != 1.0 else block).astype(dtype, copy=False) @ M
        out[lo : lo + block_rows] = _row_sq_norms(X)
    return out


@accepts_torch("A")
def leverage_scores(
    A,
    method: str = "qr",
    ridge: float = 0.0,
    rng: RngLike = None,
    *,
    seed: SeedLike | object = UNSET,
    rtol: float | None = None,
    sketch_size: int | None = None,
    sketch_kind: str = "sparse_sign",
    jl_dim: int | None = None,
    nnz_per_col: int = 4,
) -> np.ndarray:
    r"""Leverage scores of the rows of A (n x d): :math:`l_i = a_i^\top (A^\top A)^+ a_i`.

    Parameters
    ----------
    A : array_like, shape (n, d)
        Finite real matrix (any rank; zero rows score 0).
    method : {"qr", "svd", "sketch"}
        * "qr" (default): exact. CholeskyQR2 (all BLAS-3; about 5x faster than
          ``numpy.linalg.qr`` for tall matrices) when cond(A) <= 1e6, else Householder QR
          with column pivoting and a rank decision. O(n d^2).
        * "svd": exact, from the thin SVD; rank decision on the singular values.
        * "sketch": the fast approximation of Drineas, Magdon-Ismail, Mahoney & Woodruff
          (JMLR 2012): R from a pivoted QR of S A (S a ``sketch_kind`` operator with
          ``sketch_size`` rows), then squared row norms of A R^{-1} (times a d x k Gaussian
          G when ``jl_dim`` = k is given), computed by blocks of rows (no n x d temporary);
          in float32 when cond(R) <= 1e3 (adds at most ~4e-3 relative error, tested), else
          float64. If S is a (1 +- eps_1) subspace embedding of range(A) and G a
          (1 +- eps_2) JL map for the n rows, every score satisfies
          ``(1 - eps_2) / (1 + eps_1)^2 <= l~_i / l_i <= (1 + eps_2) / (1 - eps_1)^2``.
          Defaults: ``sketch_size = min(n, 32 d)`` rows of SparseSign with
          ``nnz_per_col`` = 4 nonzeros per column, no JL step (exact row norms of A R^{-1},
          O(n d^2) BLAS-3; pass ``jl_dim`` ~ 8 log(n) / eps_2^2 < d for O(n d jl_dim)).
          Measured at the defaults (tests, n = 4000, d = 16, Gaussian and heavy-tailed rows,
          10 seeds): relative errors within [-0.24, +0.43] (s = 8: [-0.22, +0.35]; s = 4
          applies the sketch about twice as fast); n = 2^17, d = 64: within [-0.10, +0.20].
          CountSketch at the same size reached +0.86 on heavy-tailed rows.
    ridge : float, default 0
        lambda >= 0: ridge leverage :math:`a_i^\top (A^\top A + \lambda I)^{-1} a_i`
        (exact methods only; sums to :math:`\sum_k s_k^2 / (s_k^2 + \lambda)`).
    rng : int, SeedSequence, numpy Generator or None, default None
        Seed of the sketches (method "sketch"; SPEC 7, see :mod:`sketchla.random`). None:
        fresh entropy. ``seed=`` is a deprecated alias. A Generator is drawn from only by
        method "sketch".
    rtol : float, optional
        Relative tolerance of the rank decision (default ``max(n, d) * eps``, numpy's).
    sketch_size : int, optional
        Rows of the sketch S (method "sketch"; default ``min(n, 32 d)``).
    sketch_kind : {"sparse_sign", "countsketch", "srht", "gaussian"}, default "sparse_sign"
        The operator S (method "sketch").
    jl_dim : int, optional
        Columns k of the Gaussian JL matrix G (method "sketch"; default: no JL step).
    nnz_per_col : int, default 4
        Nonzeros per column of the SparseSign sketch (``sketch_kind="sparse_sign"`` only).

    Returns
    -------
    ndarray, shape (n,), float64 (float32 for float32 input): 0 <= l_i <= 1, sum = rank
    (exact methods, ridge = 0).
    """
    rng = rng_alias(rng, seed, stacklevel=external_stacklevel())  # type: ignore[arg-type]
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    # method "sketch": the sketch's own post-check sees every entry of A (no extra pass)
    A = _validated(A, finite=method != "sketch")
    ridge = check_real(ridge, "ridge", minimum=0.0)
    if rtol is not None:
        rtol = check_real(rtol, "rtol", minimum=0.0, maximum=1.0)
    A64 = A.astype(np.float64, copy=False)
    if not ridge:
        A64 = _power_of_two_scaled(A64)
    if method == "sketch":
        if ridge:
            raise ValueError("ridge must be 0 for method='sketch' (use an exact method)")
        nnz = check_int(nnz_per_col, "nnz_per_col", minimum=1)
        scores = _sketched(A64, rng, sketch_size, sketch_kind, jl_dim, nnz)
    elif method == "svd":
        U, s, _ = np.linalg.svd(A64, full_matrices=False)
        U[~A64.any(axis=1)] = 0.0  # zero rows score exactly 0
        if ridge:
            scores = U**2 @ (_ridge_weights(s, ridge))
        else:
            rank = numerical_rank(s, A.shape, rtol)
            scores = _row_sq_norms(U[:, :rank])
    else:
        Q, R = _orthonormal_factor(A64, rtol)
        scores = _ridge_from_factor(Q, R, ridge) if ridge else _row_sq_norms(Q)
    return scores.astype(A.dtype, copy=False)


@accepts_torch("A")
def online_leverage_scores(A, ridge: float = 1e-6, *, block_size: int = 256) -> np.ndarray:
    r"""Online ridge leverage scores (Cohen, Musco & Pachocki 2016): each row scored against
    the rows before it,

    .. math:: x_i = a_i^\top (A_{<i}^\top A_{<i} + \lambda I)^{-1} a_i .

    Blocked: for a block B of b rows with whitened rows Z = B L^{-T}
    (L L^T = A_{<B}^T A_{<B} + lambda I), the Cholesky factor C of I + Z Z^T has
    C_ii^2 = 1 + x_i (a Schur complement), so a block costs O(b^2 d + b^3 + d^3) and the
    scores are exact for any block size. Identities (tested):
    :math:`\sum_i \log(1 + x_i) = \log\det(I + A^\top A / \lambda)`; x_i / (1 + x_i) is the
    score of row i within A_{<=i}, which upper-bounds its ridge score in any A_{<=j}, j >= i.

    Parameters
    ----------
    A : array_like, shape (n, d)
    ridge : float, default 1e-6
        lambda > 0, absolute (scale it with A: e.g. 1e-6 * ||A||_F^2 / d).
    block_size : int, default 256
        Rows per block (a speed knob only; results agree to rounding).

    Returns
    -------
    ndarray (n,) of x_i >= 0 (x_i can exceed 1), float64 (float32 for float32 input).
    """
    A = _validated(A)
    ridge = check_real(ridge, "ridge", minimum=0.0, min_inclusive=False)
    b = check_int(block_size, "block_size", minimum=1)
    A64 = A.astype(np.float64, copy=False)
    n, d = A64.shape
    gram = ridge * np.eye(d)
    out = np.empty(n)
    # reported below; many small LAPACK calls: see sketchla._threads
    with np.errstate(over="ignore", invalid="ignore"), serial_blas(-(-n // b)):
        for lo in range(0, n, b):
            B = A64[lo : lo + b]
            if not np.isfinite(gram).all():
                break
            try:
                L = np.linalg.cholesky(gram)
                Z = scipy.linalg.solve_triangular(L, B.T, lower=True, check_finite=False).T
                C = np.linalg.cholesky(np.eye(B.shape[0]) + Z @ Z.T)
            except np.linalg.LinAlgError:
                raise ValueError(
                    f"ridge={ridge:g} is too small for the scale of A (a Cholesky factorisation "
                    "failed in rounding); scale ridge with A, e.g. 1e-6 * ||A||_F^2 / d"
                ) from None
            out[lo : lo + b] = np.diag(C) ** 2 - 1.0
            gram += B.T @ B
        else:
            scores = np.maximum(out, 0.0).astype(A.dtype, copy=False)
            if np.isfinite(scores).all():
                return scores
    raise ValueError(
        f"the online scores of A overflowed {A.dtype} although A is finite (A^T A or "
        f"x_i ~ ||a_i||^2 / ridge too large); rescale A or increase ridge={ridge:g}"
    )
