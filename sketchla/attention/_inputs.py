r"""Validation of (Q, K, V) shared by every attention solver (exact, hyper, lev, spectral_error).

Contract
--------
* ``Q`` has shape ``(..., n_q, d)``, ``K`` ``(..., n_k, d)``, ``V`` ``(..., n_k, d_v)``; all three
  have the same number of dimensions (at least 2) and *equal* leading (batch / head) dimensions
  (no broadcasting). Empty arrays are rejected.
* dtype: each array follows the policy of :mod:`sketchla._backend` (float32 and float64 stay,
  float16 -> float32, bool/int -> float64, complex and others -> TypeError); the three are then
  brought to their common type (any float64 among them -> float64). Outputs are returned in it.
* Q, K, V must be finite (ValueError naming the argument).
* ``scale`` multiplies the logits, :math:`s_{ij} = \mathrm{scale}\; q_i \cdot k_j`; None means
  :math:`1/\sqrt{d}`, otherwise a positive finite real.
* ``causal=True`` masks key ``j`` for query ``i`` unless :math:`j \le i`. It is defined only for
  self-attention shapes, ``n_q == n_k``: other shapes raise ValueError (sketchla does not choose
  an alignment of queries to keys on the caller's behalf; slice Q or K to align them).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._backend import as_dense, check_finite, check_real

__all__ = [
    "AttentionInputs",
    "check_attention_inputs",
    "check_causal",
    "flatten_heads",
    "raise_for_overflow",
]


@dataclass(frozen=True)
class AttentionInputs:
    """Validated attention inputs; ``Q``, ``K``, ``V`` share ``dtype``.

    ``heads()`` iterates the 2-D problems of the flattened leading dimensions and
    ``unflatten`` puts per-head results back into the caller's leading shape.
    """

    Q: np.ndarray
    K: np.ndarray
    V: np.ndarray
    scale: float
    causal: bool

    @property
    def dtype(self) -> np.dtype:
        return self.Q.dtype

    @property
    def batch_shape(self) -> tuple[int, ...]:
        return self.Q.shape[:-2]

    @property
    def n_heads(self) -> int:
        """Number of 2-D problems: the product of the leading dimensions (1 if none)."""
        return math.prod(self.batch_shape)

    @property
    def n_q(self) -> int:
        return self.Q.shape[-2]

    @property
    def n_k(self) -> int:
        return self.K.shape[-2]

    @property
    def d(self) -> int:
        return self.Q.shape[-1]

    @property
    def d_v(self) -> int:
        return self.V.shape[-1]

    def heads(self) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Yield ``(q, k, v)`` of each head as 2-D arrays (views where the layout allows),
        in C order of the leading dimensions."""
        qs, ks, vs = (flatten_heads(X) for X in (self.Q, self.K, self.V))
        for h in range(self.n_heads):
            yield qs[h], ks[h], vs[h]

    def unflatten(self, per_head: np.ndarray) -> np.ndarray:
        """Reshape an array of leading size ``n_heads`` to ``batch_shape + per_head.shape[1:]``."""
        return per_head.reshape(self.batch_shape + per_head.shape[1:])


def flatten_heads(X: np.ndarray) -> np.ndarray:
    """``X`` of shape ``(..., n, c)`` as ``(prod(...), n, c)`` (a view when possible)."""
    return X.reshape((-1, *X.shape[-2:]))


def check_causal(causal: Any, n_q: int, n_k: int) -> bool:
    """``causal`` as a bool; ValueError if it is True and ``n_q != n_k`` (see module docstring)."""
    if not isinstance(causal, (bool, np.bool_)):
        raise TypeError(f"causal must be a bool, got {type(causal).__name__} {causal!r}")
    if causal and n_q != n_k:
        raise ValueError(
            f"causal=True needs as many queries as keys (query i sees keys 0..i), got "
            f"n_q = {n_q} queries (Q) and n_k = {n_k} keys (K); slice Q or K to align them"
        )
    return bool(causal)


def _as_stacked_matrix(X: Any, name: str, shape_doc: str) -> np.ndarray:
    try:
        ndim = None if isinstance(X, (str, bytes)) or X is None else np.ndim(X)
    except (ValueError, TypeError):  # ragged nested sequences: as_dense reports them
        ndim = None
    if ndim is not None and ndim < 2:
        raise ValueError(f"{name} must have shape {shape_doc}, got an array of shape {np.shape(X)}")
    return as_dense(X, name, ndim=(2 if ndim is None else ndim,))


def check_attention_inputs(
    Q: Any,
    K: Any,
    V: Any,
    causal: Any = False,
    scale: Any = None,
    *,
    check_values: bool = True,
) -> AttentionInputs:
    """Validate and convert attention inputs (see the module docstring for the contract).

    Parameters
    ----------
    Q, K, V : array_like, shapes (..., n_q, d), (..., n_k, d), (..., n_k, d_v)
    causal : bool
    scale : positive float or None (1/sqrt(d))
    check_values : bool, default True
        Check that Q, K, V are finite (one streaming pass over each).

    Returns
    -------
    AttentionInputs

    Raises
    ------
    TypeError
        Non-array or unsupported dtype (complex, object, ...), non-bool ``causal``,
        non-real ``scale``; the message names the argument.
    ValueError
        Fewer than 2 dimensions, empty, mismatched shapes, NaN/inf, non-positive ``scale``,
        ``causal`` with ``n_q != n_k``; the message names the argument.
    """
    Q = _as_stacked_matrix(Q, "Q", "(..., n_q, d)")
    K = _as_stacked_matrix(K, "K", "(..., n_k, d)")
    V = _as_stacked_matrix(V, "V", "(..., n_k, d_v)")
    if not Q.ndim == K.ndim == V.ndim:
        raise ValueError(
            f"Q, K and V must have the same number of dimensions, got shapes Q {Q.shape}, "
            f"K {K.shape}, V {V.shape}"
        )
    if not Q.shape[:-2] == K.shape[:-2] == V.shape[:-2]:
        raise ValueError(
            f"Q, K and V must have equal leading (batch/head) dimensions, got shapes "
            f"Q {Q.shape}, K {K.shape}, V {V.shape}"
        )
    if K.shape[-1] != Q.shape[-1]:
        raise ValueError(
            f"K must have the head dimension d = {Q.shape[-1]} of Q (last axis), got K of shape "
            f"{K.shape} and Q of shape {Q.shape}"
        )
    if V.shape[-2] != K.shape[-2]:
        raise ValueError(
            f"V must have one row per key (n_k = {K.shape[-2]}, axis -2 of K), got V of shape "
            f"{V.shape} and K of shape {K.shape}"
        )
    causal = check_causal(causal, Q.shape[-2], K.shape[-2])
    if scale is None:
        scale = 1.0 / math.sqrt(Q.shape[-1])
    else:
        scale = check_real(scale, "scale", 0.0, None, min_inclusive=False)
    dtype = np.result_type(Q.dtype, K.dtype, V.dtype)
    Q, K, V = (X if X.dtype == dtype else X.astype(dtype) for X in (Q, K, V))
    if check_values:
        for X, name in ((Q, "Q"), (K, "K"), (V, "V")):
            # rows of the last two axes, so the check streams in small blocks
            check_finite(X.reshape(-1, X.shape[-1]) if X.flags.c_contiguous else X, name)
    return AttentionInputs(Q=Q, K=K, V=V, scale=scale, causal=causal)


def raise_for_overflow(dtype: np.dtype, *results: np.ndarray) -> None:
    """Post-condition of every solver: Q, K and V were checked finite on entry, so a
    non-finite output (O(n d_v), cheap to check) means that the logits ``scale * Q K^T`` or
    the weighted sums of V overflowed ``dtype`` (inputs near the largest float):
    ValueError naming the arguments instead of returning NaN or infinity."""
    if all(np.isfinite(r).all() for r in results):
        return
    raise ValueError(
        f"the attention result overflowed {np.dtype(dtype)} although Q, K and V are finite: "
        "the logits scale * Q K^T (or the sums of the rows of V) are too large for this "
        "dtype; rescale Q, K or V"
    )
