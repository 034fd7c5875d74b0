r"""Approximate matrix multiplication by sampling column/row pairs (Drineas, Kannan & Mahoney).

For :math:`A \in \mathbb R^{p \times n}`, :math:`B \in \mathbb R^{n \times q}` and a distribution
:math:`p` on [n], draw :math:`k_1, \dots, k_m \sim p` i.i.d. and return

.. math::
    \widetilde{AB} = \sum_{t=1}^m \frac{A_{:k_t} B_{k_t:}}{m\, p_{k_t}}.

It is unbiased whenever :math:`p_k > 0` for every k with :math:`A_{:k} B_{k:} \ne 0`, and

.. math::
    \mathbb E \|AB - \widetilde{AB}\|_F^2 = \frac1m \Big(\sum_k \frac{\|A_{:k}\|^2 \|B_{k:}\|^2}
    {p_k} - \|AB\|_F^2\Big),

minimised by :math:`p_k \propto \|A_{:k}\| \|B_{k:}\|`, where it is at most
:math:`\|A\|_F^2 \|B\|_F^2 / m` (Drineas, Kannan & Mahoney, SIAM J. Comput. 36, 2006,
Lemma 4). HyperAttention samples by :math:`p_k \propto \|B_{k:}\|^2` (the value rows), which
needs no knowledge of A = the softmax matrix.
"""

from __future__ import annotations

import numpy as np

from .._backend import as_dense, check_finite, check_int, raise_for_nonfinite
from .._torch import accepts_torch
from ..random import (
    STREAM_AMM_SAMPLES,
    UNSET,
    RngLike,
    SeedLike,
    external_stacklevel,
    resolve_rng,
)
from .draws import draw_samples

__all__ = ["amm_probabilities", "approx_matmul"]

_PROBS = ("rownorm", "b_rownorm", "uniform")


def amm_probabilities(A: np.ndarray, B: np.ndarray, probs="rownorm") -> np.ndarray | None:
    r"""The sampling distribution (n,) of :func:`approx_matmul` (None for uniform).

    "rownorm": :math:`\propto \|A_{:k}\|\,\|B_{k:}\|` (optimal); "b_rownorm":
    :math:`\propto \|B_{k:}\|^2`; "uniform"; or an array of n non-negative weights. A
    distribution with zero total falls back to uniform.
    """
    n = A.shape[1]
    if isinstance(probs, str):
        if probs not in _PROBS:
            raise ValueError(f"probs must be one of {_PROBS} or an array, got {probs!r}")
        if probs == "uniform":
            return None
        b2 = np.einsum("ij,ij->i", B, B, dtype=np.float64)
        p = b2
        if probs == "rownorm":
            p = np.sqrt(np.einsum("ij,ij->j", A, A, dtype=np.float64) * b2)
    else:
        p = np.asarray(probs, dtype=np.float64)
        if p.shape != (n,):
            raise ValueError(f"probs must have shape ({n},) (the inner dimension), got {p.shape}")
        if not np.all(np.isfinite(p)) or np.any(p < 0):
            raise ValueError("probs must be finite and non-negative")
    total = p.sum()
    if not total > 0:
        return None
    return p / total


@accepts_torch("A", "B")
def approx_matmul(
    A,
    B,
    m: int,
    rng: RngLike = None,
    probs="rownorm",
    replace: bool = True,
    *,
    seed: SeedLike | object = UNSET,
) -> np.ndarray:
    r"""Estimate ``A @ B`` from ``m`` sampled column/row pairs (see the module docstring).

    Parameters
    ----------
    A : array_like, shape (p, n)
    B : array_like, shape (n, q) or (n,)
    m : int >= 1
        Number of sampled pairs (``m <= n`` when ``replace=False``).
    rng : int, SeedSequence, numpy Generator or None, default None
        Seeds the samples (stream ``STREAM_AMM_SAMPLES``; SPEC 7, see
        :mod:`sketchla.random`). None: fresh entropy. ``seed=`` is a deprecated alias.
    probs : {"rownorm", "b_rownorm", "uniform"} or array_like (n,)
        Sampling distribution: :math:`\propto \|A_{:k}\|\|B_{k:}\|` (optimal, with the Frobenius
        bound :math:`\|A\|_F^2\|B\|_F^2/m` on the expected squared error),
        :math:`\propto \|B_{k:}\|^2` (HyperAttention's value-norm sampling), uniform, or given
        weights (normalised; the estimate is biased if a zero weight meets a nonzero pair).
    replace : bool
        i.i.d. draws (default). ``False`` needs ``probs="uniform"``: m distinct indices, weight
        n/m; with m = n the result is exact.

    Returns
    -------
    ndarray, shape (p, q) or (p,), in the compute dtype of the inputs.

    Examples
    --------
    >>> import numpy as np, sketchla
    >>> rng = np.random.default_rng(0)
    >>> A, B = rng.standard_normal((20, 500)), rng.standard_normal((500, 10))
    >>> est = sketchla.approx_matmul(A, B, m=500, rng=0, probs="uniform", replace=False)
    >>> bool(np.allclose(est, A @ B))
    True
    """
    seed_sequence = resolve_rng(rng, seed, stacklevel=external_stacklevel())  # type: ignore[arg-type]
    A = as_dense(A, "A", ndim=(2,))
    vector = np.ndim(B) == 1
    B = as_dense(B, "B", ndim=(1, 2))
    if vector:
        B = B[:, None]
    if A.shape[1] != B.shape[0]:
        raise ValueError(
            f"A has {A.shape[1]} columns but B has {B.shape[0]} rows (inner dimensions differ)"
        )
    n = A.shape[1]
    m = check_int(m, "m", minimum=1)
    if not isinstance(replace, (bool, np.bool_)):
        raise TypeError(f"replace must be a bool, got {type(replace).__name__}")
    check_finite(A, "A")
    check_finite(B, "B")
    p = amm_probabilities(A, B, probs)
    if not replace:
        if not (isinstance(probs, str) and probs == "uniform"):
            raise ValueError("replace=False is only supported with probs='uniform'")
        if m > n:
            raise ValueError(f"m={m} exceeds the inner dimension n={n} (replace=False)")
    samples = draw_samples(
        seed_sequence,
        1,
        n,
        m,
        None if p is None else p[None],
        replace,
        stream_id=STREAM_AMM_SAMPLES,
    )
    dtype = np.result_type(A.dtype, B.dtype)
    idx = samples.idx[0]
    weights = np.exp(samples.log_w[0]).astype(dtype)
    with np.errstate(over="ignore", invalid="ignore"):  # reported below
        est = (A[:, idx] * weights) @ B[idx]
    raise_for_nonfinite(est, {"A": A, "B": B})  # A, B are finite: names the overflow
    return est[:, 0] if vector else est
