r"""Prefix (causal) leverage scores: the score of row j within the rows 0..j, pseudo-inverse.

For causal attention, query t attends keys 0..t; key j's x^2-attention weight for query q at
position t >= j is :math:`(q \cdot k_j)^2 / \sum_{i \le t} (q \cdot k_i)^2`, at most its
leverage score within :math:`K_{\le t}`, which is at most its score within
:math:`K_{\le j}` (adding rows never raises a score). So the causal universal set needs

.. math:: c_j = k_j^\top (K_{\le j}^\top K_{\le j})^{+} k_j ,

with equality for the witness query :math:`q = (K_{\le j}^\top K_{\le j})^+ k_j` at t = j.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg
from scipy.linalg.lapack import dtpqrt

from .._backend import as_dense, check_finite, check_int, check_real
from .._threads import serial_blas
from .._torch import accepts_torch

__all__ = ["prefix_leverage_scores"]


def _update_r(R: np.ndarray, C: np.ndarray) -> np.ndarray:
    """Upper-triangular R' (r x r) with R'^T R' = R^T R + C^T C: the triangular-pentagonal QR
    of [R; C] (LAPACK tpqrt), O(b r^2) for C of b rows."""
    r = R.shape[0]
    Rn, _, _, info = dtpqrt(0, max(1, min(r, 32)), R, C)
    if info != 0:  # pragma: no cover - only on invalid arguments
        raise np.linalg.LinAlgError(f"dtpqrt failed (info={info})")
    return np.triu(Rn)


#: forming I + Z Z^T loses ~ eps * max ||z_i||^2 of each 1 + x_i: above this, use a QR
_CHOLESKY_MAX_SQNORM = 1e6


def _schur_scores(Z: np.ndarray) -> np.ndarray:
    """x_i = z_i^T (I + Z_{<i}^T Z_{<i})^{-1} z_i for the rows of Z (k x r): the diagonal of
    the Cholesky factor L of I + Z Z^T is sqrt(1 + x_i). When rows are large (new relative
    to the history) the product is not formed: L^T is the R factor of the QR of [Z^T; I]."""
    k = Z.shape[0]
    if np.einsum("ij,ij->i", Z, Z).max() <= _CHOLESKY_MAX_SQNORM:
        diag = np.diag(np.linalg.cholesky(np.eye(k) + Z @ Z.T))
    else:
        diag = np.diag(np.linalg.qr(np.vstack([Z.T, np.eye(k)]), mode="r"))
    return diag**2 - 1.0


@accepts_torch("A")
def prefix_leverage_scores(A, *, rtol: float = 1e-10, block_size: int = 256) -> np.ndarray:
    r"""Leverage score of each row within the rows up to it:
    :math:`c_j = a_j^\top (A_{\le j}^\top A_{\le j})^{+} a_j \in [0, 1]`.

    A row outside the span of the rows before it has :math:`c_j = 1`; a row inside it has
    :math:`c_j = x_j / (1 + x_j)` with :math:`x_j = a_j^\top (A_{<j}^\top A_{<j})^+ a_j`
    (Sherman-Morrison). Relation to :func:`online_leverage_scores`: its ridge scores are
    :math:`x_j(\lambda) = a_j^\top (A_{<j}^\top A_{<j} + \lambda I)^{-1} a_j`, and
    :math:`x_j(\lambda)/(1 + x_j(\lambda))` *under*-estimates c_j for every lambda > 0 (for a
    row outside the previous span by far: c_j = 1 but :math:`x_j(\lambda)` can be tiny), so
    ridge scores cannot certify causal heaviness; as lambda -> 0 they tend to c_j for rows
    inside the span. This function uses no ridge.

    Sum: :math:`\sum_j c_j \le \operatorname{rank}(A) + \sum_{j\ \text{in span}}
    \log(1 + x_j)`, which telescopes into log-ratios of pseudo-determinants; it is
    O(d log(n kappa)) (Cohen, Musco & Pachocki 2016) and can exceed d by that log factor
    (e.g. rows along one direction with norms growing like 2^j each score 3/4).

    Algorithm: blocks of rows against the triangular factor R of the rows so far, in an
    orthonormal basis V of their span (never a Gram matrix, so no squaring of the condition
    number). Within a block of in-span rows with coordinates C = B V and Z = C R^{-1}, the
    Cholesky factor L of I + Z Z^T has :math:`L_{ii}^2 = 1 + x_i` (a Schur complement), so
    the scores are exact for any block size (L^T from a QR of [Z^T; I] instead when some
    :math:`\|z_i\|^2 > 10^6`, where forming Z Z^T would swamp the identity); R is then
    updated by a triangular-pentagonal QR of [R; C] (LAPACK tpqrt, O(b d^2)). A row whose
    component outside span(V) exceeds ``rtol`` times its norm starts a new direction
    (score 1); that happens at most rank(A) times, and R is then formed anew (QR of the
    prefix, O(j r^2)) when the next in-span row needs it. O(n d^2) when the new directions
    come early (the usual case); O(n d^3) at worst, when they alternate with in-span rows.

    Parameters
    ----------
    A : array_like, shape (n, d)
        Finite real matrix.
    rtol : float, default 1e-10
        Relative size of the out-of-span component above which a row counts as new.
    block_size : int, default 256
        Speed knob only.

    Returns
    -------
    ndarray (n,) of scores in [0, 1], float64 (float32 for float32 input); zero rows score 0.
    """
    A = as_dense(A, "A", ndim=(2,))
    check_finite(A, "A")
    rtol = check_real(rtol, "rtol", 0.0, 1.0, min_inclusive=False)
    b = check_int(block_size, "block_size", minimum=1)
    A64 = A.astype(np.float64, copy=False)
    n, d = A64.shape
    V = np.zeros((d, d))  # columns :r: orthonormal basis of the span of the rows so far
    r = 0
    R = np.zeros((0, 0))  # A_{<j} V[:, :r] = Q R
    stale = False
    out = np.empty(n)
    with serial_blas(-(-n // b)):  # many small LAPACK calls: see sketchla._threads
        for pos in range(0, n, b):
            B = A64[pos : pos + b]
            C = np.zeros((B.shape[0], d))  # coordinates in V (columns :r valid)
            C[:, :r] = B @ V[:, :r]
            E = B - C[:, :r] @ V[:, :r].T  # components outside the span
            limit = rtol**2 * np.einsum("ij,ij->i", B, B)
            i = 0
            while i < B.shape[0]:
                outside = np.einsum("ij,ij->i", E[i:], E[i:]) > limit[i:]
                k = int(np.argmax(outside)) if outside.any() else B.shape[0] - i
                if k:  # rows i..i+k-1 lie in the span
                    Ck = C[i : i + k, :r]
                    if r:
                        if stale:  # new directions since R was formed: QR of the prefix, anew
                            # numpy's stubs type every mode as QRResult; "r" returns R alone
                            R = np.linalg.qr(A64[: pos + i] @ V[:, :r], mode="r")  # type: ignore[assignment]
                            stale = False
                        Z = scipy.linalg.solve_triangular(R, Ck.T, trans="T").T  # C R^{-1}
                        x = _schur_scores(Z)
                        out[pos + i : pos + i + k] = np.clip(x / (1.0 + x), 0.0, 1.0)
                        R = _update_r(R, Ck)
                    else:
                        out[pos + i : pos + i + k] = 0.0  # zero rows before any nonzero one
                    i += k
                if i < B.shape[0]:  # row i starts a new direction v: rank-one updates of C, E
                    e = E[i] - V[:, :r] @ (V[:, :r].T @ E[i])  # re-orthogonalise (E is MGS'd)
                    v = e / np.linalg.norm(e)
                    V[:, r] = v
                    C[i:, r] = E[i:] @ v
                    E[i:] -= np.outer(C[i:, r], v)
                    r += 1
                    stale = True  # R is formed again when the next in-span row needs it
                    out[pos + i] = 1.0
                    i += 1
    return out.astype(A.dtype, copy=False)
