r"""The HyperAttention guarantee, checked in its own norm, without forming the n x n matrix.

HyperAttention (Han et al., ICLR 2024, Theorem 1) bounds the error of an approximation
:math:`\widetilde{\mathrm{Att}}` of :math:`\mathrm{Att} = D^{-1} A V`, :math:`A = \exp(s)`,
:math:`s_{ij} = \mathrm{scale}\; q_i \cdot k_j`, in operator norm:

.. math::
    \|\mathrm{Att} - \widetilde{\mathrm{Att}}\|_{op} \le
    \varepsilon\, \|D^{-1} A\|_{op} \|V\|_{op} .

:func:`spectral_error` returns the smallest :math:`\varepsilon` for which this holds. The
numerator and :math:`\|V\|_{op}` are top singular values of :math:`n \times d_v` matrices (LAPACK,
exact to rounding) once :math:`\mathrm{Att}` is known (computed blockwise in float64). The
denominator's :math:`\|D^{-1}A\|_{op}` is the square root of the top eigenvalue of
:math:`G = (D^{-1}A)^\top D^{-1}A`, found by ARPACK's Lanczos (``scipy.sparse.linalg.eigsh``)
on a LinearOperator whose product :math:`x \mapsto P^\top (P x)` streams over row panels of
:math:`P = D^{-1}A` (memory O(panel), the matrix is never held at once).

Honest accounting of the iteration
----------------------------------
A Lanczos (Rayleigh-Ritz) value never exceeds the top eigenvalue, so the computed
:math:`\|D^{-1}A\|_{op}` is a *lower* estimate and the returned ratio an *upper* estimate of the
true one (conservative for a "ratio <= bound" claim). ARPACK stops when its Ritz value is within
relative ``tol`` (default 1e-6) of an eigenvalue; if it does not converge within ``max_passes``
products the best Ritz value is used and the diagnostics say ``converged=False``. The
diagnostics also carry the certified bracket

.. math::
    \max(\text{Ritz}, \|P 1\|/\sqrt{n_k}) \le \|P\|_{op} \le \sqrt{\|P\|_1 \|P\|_\infty}
    = \sqrt{\max_j \textstyle\sum_i P_{ij}}

(rows of :math:`P` sum to 1).
"""

from __future__ import annotations

from typing import Literal, overload

import numpy as np
from scipy.sparse.linalg import ArpackNoConvergence, LinearOperator, eigsh

from .._backend import as_dense, check_finite, check_int, check_real
from .._torch import accepts_torch
from ._inputs import check_attention_inputs, flatten_heads, raise_for_overflow
from .exact import BLOCK_K, exact_attention_2d, softmax_row_panels

__all__ = ["softmax_op_norm", "spectral_error"]

#: entries of one row panel of D^{-1}A held at a time (32 MiB of float64)
PANEL_ENTRIES = 2**22


@overload
def spectral_error(
    Q,
    K,
    V,
    approx,
    *,
    causal: bool = ...,
    scale: float | None = ...,
    return_diagnostics: Literal[False] = ...,
    approx_lse=...,
    heavy_threshold: float | None = ...,
    tol: float = ...,
    max_passes: int = ...,
) -> float: ...


@overload
def spectral_error(
    Q,
    K,
    V,
    approx,
    *,
    causal: bool = ...,
    scale: float | None = ...,
    return_diagnostics: Literal[True],
    approx_lse=...,
    heavy_threshold: float | None = ...,
    tol: float = ...,
    max_passes: int = ...,
) -> tuple[float, dict]: ...


@accepts_torch("Q", "K", "V", "approx")
def spectral_error(
    Q,
    K,
    V,
    approx,
    *,
    causal: bool = False,
    scale: float | None = None,
    return_diagnostics: bool = False,
    approx_lse=None,
    heavy_threshold: float | None = None,
    tol: float = 1e-6,
    max_passes: int = 300,
) -> float | tuple[float, dict]:
    r"""Spectral error ratio :math:`\|\mathrm{Att} - \mathrm{approx}\|_{op} /
    (\|D^{-1}A\|_{op} \|V\|_{op})` of an approximate attention output.

    Parameters
    ----------
    Q, K, V : array_like, shapes (..., n_q, d), (..., n_k, d), (..., n_k, d_v)
        The attention problem (validated as by :func:`sketchla.exact_attention`).
    approx : array_like, shape (..., n_q, d_v)
        The approximation of ``exact_attention(Q, K, V, causal, scale)``; finite.
    causal : bool, default False
    scale : float, optional
        Logit scale, default ``1 / sqrt(d)``.
    return_diagnostics : bool, default False
        Also return a dict (see Returns).
    approx_lse : array_like, shape (..., n_q), optional
        The approximation's log row sums, compared with the exact ones in the diagnostics.
    heavy_threshold : float in (0, 1], optional
        Entries with :math:`P_{ij} = (D^{-1}A)_{ij} \ge` ``heavy_threshold`` form the heavy mask
        :math:`M^H` of the diagnostic ``kappa``; default :math:`1/\sqrt{n_k}` (at most
        :math:`\sqrt{n_k}` heavy entries per row).
    tol : float, default 1e-6
        Relative tolerance of the Lanczos iteration for :math:`\|D^{-1}A\|_{op}^2`.
    max_passes : int, default 300
        Most products with :math:`P^\top P`; each is one pass of :math:`n_q n_k` exponentials.

    Returns
    -------
    ratio : float
        The ratio above; with leading (batch/head) dimensions, the maximum over heads.
    diagnostics : dict, only if ``return_diagnostics``
        Floats for 2-D inputs, arrays of shape ``batch`` otherwise:

        ``ratio``; ``error_op_norm`` :math:`\|\mathrm{Att}-\mathrm{approx}\|_{op}`;
        ``softmax_op_norm`` (Lanczos, a lower estimate), ``softmax_op_norm_upper``
        (:math:`\sqrt{\max_j \sum_i P_{ij}}`, a certified upper bound), ``converged`` and
        ``passes`` of the iteration; ``v_op_norm``; ``fro_rel_error``
        :math:`\|\mathrm{Att}-\mathrm{approx}\|_F / \|\mathrm{Att}\|_F`;
        ``max_col_norm`` :math:`\max_j \|P_{:,j}\|_2` and ``alpha`` :math:`= n_q \max_j
        \|P_{:,j}\|_2^2` (HyperAttention's column-norm parameter; ``alpha = n^{o(1)}`` is its
        assumption); ``kappa`` (and ``log_kappa``): the ratio of the largest to the smallest row
        sum of :math:`A` after removing the heavy mask,
        :math:`\max_i \langle 1 - M^H_{i}, A_{i}\rangle / \min_i \langle 1 - M^H_{i}, A_{i}\rangle`
        (the paper's kappa, here with the threshold oracle mask above rather than a solver's
        LSH mask; ``inf`` when some row is entirely heavy); ``heavy_fraction`` (heavy entries /
        unmasked entries); with ``approx_lse``: ``lse_max_abs_error``
        :math:`\max_i |\widetilde{\mathrm{lse}}_i - \mathrm{lse}_i|` and
        ``rowsum_max_rel_error`` :math:`\max_i |\tilde D_{ii}/D_{ii} - 1|`. Yardsticks, the
        same ratio for two trivial outputs on the same input: ``zero_output_ratio`` (the
        all-zero output, :math:`\|\mathrm{Att}\|_{op}`) and ``uniform_ratio`` (uniform
        attention: each query's mean of the values it may see). A ratio above them means the
        approximation is worse than a trivial output.

    Notes
    -----
    Cost: the exact attention (one blocked pass), one diagnostics pass and one pass per Lanczos
    product, each :math:`O(n_q n_k d)` time and O(``PANEL_ENTRIES`` + (n_q + n_k) d) memory.
    All references are float64 whatever the input dtype. See the module docstring for why the
    ratio is an upper estimate.

    Examples
    --------
    >>> import numpy as np
    >>> from sketchla import exact_attention
    >>> rng = np.random.default_rng(0)
    >>> Q, K, V = rng.standard_normal((3, 500, 16))
    >>> spectral_error(Q, K, V, exact_attention(Q, K, V)) < 1e-14
    True
    >>> ratio, diag = spectral_error(Q, K, V, np.zeros((500, 16)), return_diagnostics=True)
    >>> bool(np.isclose(ratio, np.linalg.norm(exact_attention(Q, K, V), 2)
    ...      / (diag["softmax_op_norm"] * np.linalg.norm(V, 2))))
    True
    """
    if not isinstance(return_diagnostics, (bool, np.bool_)):
        raise TypeError(f"return_diagnostics must be a bool, got {type(return_diagnostics)}")
    inp = check_attention_inputs(Q, K, V, causal, scale)
    if inp.causal and inp.n_q != inp.n_k:
        raise ValueError(
            f"spectral_error with causal=True needs n_q == n_k (the square causal problem), got "
            f"n_q = {inp.n_q} and n_k = {inp.n_k}"
        )
    approx = as_dense(approx, "approx", ndim=(inp.Q.ndim,))
    expected = (*inp.batch_shape, inp.n_q, inp.d_v)
    if approx.shape != expected:
        raise ValueError(f"approx must have the output shape {expected}, got {approx.shape}")
    check_finite(approx, "approx")
    if approx_lse is not None:
        approx_lse = as_dense(approx_lse, "approx_lse", ndim=(inp.Q.ndim - 1,))
        if approx_lse.shape != expected[:-1]:
            raise ValueError(f"approx_lse must have shape {expected[:-1]}, got {approx_lse.shape}")
        check_finite(approx_lse, "approx_lse")
    if heavy_threshold is None:
        heavy_threshold = 1.0 / np.sqrt(inp.n_k)
    heavy_threshold = check_real(heavy_threshold, "heavy_threshold", 0.0, 1.0, min_inclusive=False)
    tol = check_real(tol, "tol", 0.0, 1.0, min_inclusive=False)
    max_passes = check_int(max_passes, "max_passes", minimum=1)

    approx_h = flatten_heads(approx)
    lse_h = None if approx_lse is None else approx_lse.reshape(-1, inp.n_q)
    per_head = []
    for h, (q, k, v) in enumerate(inp.heads()):
        per_head.append(
            _head_diagnostics(
                q.astype(np.float64, copy=False),
                k.astype(np.float64, copy=False),
                v.astype(np.float64, copy=False),
                approx_h[h].astype(np.float64, copy=False),
                None if lse_h is None else lse_h[h].astype(np.float64, copy=False),
                inp.causal,
                inp.scale,
                heavy_threshold,
                tol,
                max_passes,
            )
        )
    ratio = max(d["ratio"] for d in per_head)
    if not return_diagnostics:
        return ratio
    if not inp.batch_shape:
        return ratio, per_head[0]
    diagnostics = {
        key: np.array([d[key] for d in per_head]).reshape(inp.batch_shape) for key in per_head[0]
    }
    return ratio, diagnostics


def softmax_op_norm(
    Q,
    K,
    causal: bool = False,
    scale: float | None = None,
    *,
    tol: float = 1e-6,
    max_passes: int = 300,
) -> tuple[float, bool, int]:
    r"""Lanczos estimate of :math:`\|D^{-1}A\|_{op}` for one head (2-D Q (n_q, d), K (n_k, d)),
    the denominator of :func:`spectral_error` without the rest (for reuse across several
    approximations of one problem).

    Returns ``(norm, converged, passes)``; ``norm`` is a lower estimate (see the module
    docstring), at least :math:`\sqrt{n_q / n_k}`.
    """
    inp = check_attention_inputs(Q, K, np.zeros((*np.shape(K)[:-1], 1)), causal, scale)
    if inp.causal and inp.n_q != inp.n_k:
        raise ValueError(f"causal=True needs n_q == n_k here, got {inp.n_q} and {inp.n_k}")
    if inp.batch_shape:
        raise ValueError(f"Q must be 2-D (one head), got shape {inp.Q.shape}")
    tol = check_real(tol, "tol", 0.0, 1.0, min_inclusive=False)
    max_passes = check_int(max_passes, "max_passes", minimum=1)
    q, k = (X.astype(np.float64, copy=False) for X in (inp.Q, inp.K))
    lse = _exact_lse(q, k, inp.causal, inp.scale)
    sigma, converged, passes = _softmax_op_norm(q, k, lse, inp.causal, inp.scale, tol, max_passes)
    return max(sigma, float(np.sqrt(inp.n_q / inp.n_k))), converged, passes


def _exact_attention(q, k, v, causal, scale):
    """Exact (out, lse) with tiles no larger than a panel (the module's memory bound)."""
    block_k = min(BLOCK_K, PANEL_ENTRIES)
    return exact_attention_2d(q, k, v, causal, scale, max(1, PANEL_ENTRIES // block_k), block_k)


def _exact_lse(q, k, causal, scale):
    return _exact_attention(q, k, np.zeros((k.shape[0], 1)), causal, scale)[1]


def _uniform_attention(v: np.ndarray, n_q: int, causal: bool) -> np.ndarray:
    """Uniform attention: each query's output is the mean of the values it may see."""
    if causal:
        return np.cumsum(v, axis=0)[:n_q] / np.arange(1, n_q + 1)[:, None]
    return np.broadcast_to(v.mean(axis=0), (n_q, v.shape[1]))


def _head_diagnostics(q, k, v, approx, approx_lse, causal, scale, heavy_threshold, tol, max_passes):
    n_q, n_k = q.shape[0], k.shape[0]
    with np.errstate(over="ignore", invalid="ignore"):  # reported below
        exact, lse = _exact_attention(q, k, v, causal, scale)
        err = approx - exact
    raise_for_overflow(np.dtype(np.float64), exact, lse)
    if not np.isfinite(err).all():
        raise ValueError(
            "approx - exact_attention(Q, K, V) overflowed float64; rescale approx and V"
        )
    # the ratio is invariant under (V, approx) -> (V, approx) / c: norms of the scaled arrays,
    # so that values near the largest float (or denormal) give a finite, accurate ratio
    c = max(float(np.abs(v).max()), float(np.abs(err).max())) or 1.0
    error_op_c, v_op_c = float(np.linalg.norm(err / c, 2)), float(np.linalg.norm(v / c, 2))
    with np.errstate(over="ignore"):
        error_op, v_op = error_op_c * c, v_op_c * c

    col_sums, col_sq = np.zeros(n_k), np.zeros(n_k)
    heavy_mass, heavy_count = np.zeros(n_q), 0
    for rows, P in softmax_row_panels(q, k, lse, causal, scale, PANEL_ENTRIES):
        col_sums += P.sum(axis=0)
        col_sq += np.einsum("ij,ij->j", P, P)
        heavy = P >= heavy_threshold
        heavy_mass[rows] = np.where(heavy, P, 0.0).sum(axis=1)
        heavy_count += int(heavy.sum())
    upper = float(np.sqrt(col_sums.max()))
    # ||P 1|| / ||1||: rows of P sum to 1, so this is sqrt(n_q / n_k)
    trivial_lower = float(np.sqrt(n_q / n_k))
    sigma, converged, passes = _softmax_op_norm(q, k, lse, causal, scale, tol, max_passes)
    sigma = max(sigma, trivial_lower)
    # light row sums <1 - M^H_i, A_i> = D_ii (1 - heavy mass_i), in log space
    light = 1.0 - heavy_mass
    with np.errstate(divide="ignore"):
        log_light = lse + np.log(np.clip(light, 0.0, None))
    log_kappa = float(log_light.max() - log_light.min()) if np.isfinite(log_light).all() else np.inf
    n_unmasked = n_q * (n_q + 1) // 2 if causal else n_q * n_k
    out = {
        "ratio": error_op_c / (sigma * v_op_c) if v_op_c > 0 else 0.0,
        "error_op_norm": error_op,
        "softmax_op_norm": sigma,
        "softmax_op_norm_upper": upper,
        "converged": converged,
        "passes": passes,
        "v_op_norm": v_op,
        "fro_rel_error": float(
            np.linalg.norm(err / c) / max(np.linalg.norm(exact / c), np.finfo(float).tiny)
        ),
        "max_col_norm": float(np.sqrt(col_sq.max())),
        "alpha": float(n_q * col_sq.max()),
        "kappa": float(np.exp(log_kappa)) if log_kappa < 700 else np.inf,
        "log_kappa": log_kappa,
        "heavy_fraction": heavy_count / n_unmasked,
        # yardsticks on the same input: the all-zero output, and uniform attention (the mean
        # of the values each query may see)
        "zero_output_ratio": float(np.linalg.norm(exact / c, 2)) / (sigma * v_op_c)
        if v_op_c > 0
        else 0.0,
        "uniform_ratio": float(np.linalg.norm((_uniform_attention(v, n_q, causal) - exact) / c, 2))
        / (sigma * v_op_c)
        if v_op_c > 0
        else 0.0,
    }
    if approx_lse is not None:
        out["lse_max_abs_error"] = float(np.abs(approx_lse - lse).max())
        out["rowsum_max_rel_error"] = float(np.abs(np.expm1(approx_lse - lse)).max())
    return out


def _softmax_op_norm(q, k, lse, causal, scale, tol, max_passes) -> tuple[float, bool, int]:
    """Lanczos estimate of ||D^{-1}A||_op (a lower estimate), whether ARPACK converged, and the
    number of P^T P products used."""
    n_k = k.shape[0]
    passes = 0

    def gram_matvec(x):
        nonlocal passes
        passes += 1
        x = np.asarray(x, dtype=np.float64).reshape(-1)
        y = np.zeros(n_k)
        for _, P in softmax_row_panels(q, k, lse, causal, scale, PANEL_ENTRIES):
            y += (P @ x) @ P
        return y

    if n_k <= 2:  # ARPACK needs k < n - 1; a 2 x 2 Gram matrix is formed from two products
        G = np.column_stack([gram_matvec(e) for e in np.eye(n_k)])
        return float(np.sqrt(np.linalg.eigvalsh(G)[-1])), True, passes
    op = LinearOperator((n_k, n_k), matvec=gram_matvec, dtype=np.float64)
    # deterministic start: the all-ones vector (P 1 = 1, usually near the top right singular
    # vector) plus a non-constant perturbation so that Lanczos cannot stop on an invariant
    # subspace that misses the top eigenvector
    v0 = 1.0 + 0.5 * np.cos(2.399963 * np.arange(n_k))
    try:
        theta = eigsh(
            op, k=1, which="LA", v0=v0, tol=tol, maxiter=max_passes, return_eigenvectors=False
        )[0]
        converged = True
    except ArpackNoConvergence as exc:
        theta = exc.eigenvalues[0] if len(exc.eigenvalues) else 0.0
        converged = False
    return float(np.sqrt(max(theta, 0.0))), converged, passes
