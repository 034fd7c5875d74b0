r"""Validation of (Q, K, V) shared by every attention solver (exact, hyper, lev, spectral_error).

Contract
--------
* ``Q`` has shape ``(..., H, n_q, d)``, ``K`` ``(..., H_kv, n_k, d)``, ``V``
  ``(..., H_kv, n_k, d_v)``: the layout of torch SDPA (heads before positions; Hugging Face's
  ``(batch, n, heads, d)`` must be transposed first). All three have the same number of
  dimensions (at least 2) and equal leading dimensions, except that K and V may have fewer
  heads than Q on axis -3 (grouped-query and multi-query attention): with ``H % H_kv == 0``,
  query head h uses key/value head ``h // (H // H_kv)``, as torch SDPA's ``enable_gqa=True``;
  K and V are never copied per head. Empty arrays are rejected.
* ``key_padding_mask`` (optional): bool, shape ``(*batch, n_k)`` where ``batch`` is K's
  leading shape or a prefix of it (``(batch, n_k)`` for ``(batch, heads, n_k, d)``), or
  broadcastable to it; **True marks a padded key**, which never enters a softmax, is never
  sampled and takes no part in any key selection (the convention of
  ``torch.nn.MultiheadAttention``; torch SDPA's boolean ``attn_mask`` is the opposite, True =
  attend). A 4-D input whose axis -3 is longer than axis -2 (in Q and K) looks like the
  ``(batch, n, heads, d)`` layout and gets a UserWarning naming it (it may also be a short
  sequence with many heads, so it is not an error).
* dtype: each array follows the policy of :mod:`sketchla._backend` (float32 and float64 stay,
  float16 -> float32, bool/int -> float64, complex and others -> TypeError); the three are then
  brought to their common type (any float64 among them -> float64). Outputs are returned in it.
* Q, K, V must be finite (ValueError naming the argument).
* ``scale`` multiplies the logits, :math:`s_{ij} = \mathrm{scale}\; q_i \cdot k_j`; None means
  :math:`1/\sqrt{d}`, otherwise a positive finite real.
* ``causal=True`` masks key ``j`` for query ``i`` unless the key's position is not after the
  query's. Positions are aligned **bottom-right**: query i sits at position ``n_k - n_q + i``
  (so the last query sees every key: decoding against a KV cache), which is the usual
  ``j <= i`` when ``n_q == n_k``. torch SDPA's ``is_causal`` aligns top-left instead (they
  agree for n_q == n_k). ``n_q > n_k`` is rejected (the first queries would see no key).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._backend import as_dense, check_finite, check_real
from ..random import external_stacklevel

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
    #: (H_kv * batch, n_k) bool, True = padded key (flattened like K), or None
    key_padding: np.ndarray | None = None

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

    @property
    def group(self) -> int:
        """Query heads per key/value head (1 without grouped-query attention)."""
        return self.Q.shape[-3] // self.K.shape[-3] if self.Q.ndim >= 3 else 1

    @property
    def kv_index(self) -> np.ndarray:
        """(n_heads,) flattened key/value head of each flattened query head."""
        return np.arange(self.n_heads) // self.group

    def heads(self) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Yield ``(q, k, v)`` of each query head as 2-D arrays (views where the layout allows;
        the shared key/value head under grouped-query attention), in C order of the leading
        dimensions."""
        qs, ks, vs = (flatten_heads(X) for X in (self.Q, self.K, self.V))
        for h, g in enumerate(self.kv_index):
            yield qs[h], ks[g], vs[g]

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
    if causal and n_q > n_k:
        raise ValueError(
            f"causal=True aligns queries bottom-right (query i at position n_k - n_q + i) and "
            f"needs n_q <= n_k, got n_q = {n_q} queries (Q) and n_k = {n_k} keys (K): the first "
            "queries would see no key"
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
    key_padding_mask: Any = None,
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
    if K.shape[:-2] != V.shape[:-2]:
        raise ValueError(
            f"K and V must have equal leading (batch/head) dimensions, got shapes K {K.shape} "
            f"and V {V.shape}"
        )
    if Q.shape[:-2] != K.shape[:-2]:
        gqa = (
            Q.ndim >= 3
            and Q.shape[:-3] == K.shape[:-3]
            and Q.shape[-3] % K.shape[-3] == 0
        )
        if not gqa:
            raise ValueError(
                f"Q, K and V must have equal leading (batch/head) dimensions, or K and V fewer "
                f"heads on axis -3 dividing Q's (grouped-query attention), got shapes "
                f"Q {Q.shape}, K {K.shape}, V {V.shape}"
            )
    if Q.ndim == 4 and Q.shape[-3] > Q.shape[-2] > 1 and K.shape[-3] > K.shape[-2]:
        warnings.warn(
            f"Q of shape {Q.shape} and K of shape {K.shape} look like the (batch, n, heads, d) "
            "layout of Hugging Face and flash-attn (axis -3 longer than axis -2); sketchla "
            "reads (batch, heads, n, d), as torch SDPA: transpose axes 1 and 2 (if these are "
            "really more heads than positions, ignore this warning)",
            UserWarning,
            stacklevel=external_stacklevel(),
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
    padding = None
    if key_padding_mask is not None:
        padding = _key_padding(key_padding_mask, K.shape[:-2], K.shape[-2])
    return AttentionInputs(Q=Q, K=K, V=V, scale=scale, causal=causal, key_padding=padding)


def _key_padding(mask: Any, batch: tuple[int, ...], n_k: int) -> np.ndarray | None:
    """The (prod(batch), n_k) bool padding mask (True = padded) of ``key_padding_mask``."""
    m = np.asarray(mask)
    if m.dtype != np.bool_:
        raise TypeError(
            f"key_padding_mask must be a bool array (True = padded key), got dtype {m.dtype}"
        )
    if m.ndim < 1 or m.shape[-1] != n_k:
        raise ValueError(
            f"key_padding_mask must have shape (..., n_k) with n_k = {n_k}, got {m.shape}"
        )
    lead = m.shape[:-1]
    if len(lead) <= len(batch) and lead == batch[: len(lead)]:
        m = m.reshape(*lead, *([1] * (len(batch) - len(lead))), n_k)
    try:
        m = np.broadcast_to(m, (*batch, n_k))
    except ValueError:
        raise ValueError(
            f"key_padding_mask of shape {np.shape(mask)} does not fit K's leading shape "
            f"{batch}: give (*batch, n_k) with batch a prefix of it, or a broadcastable shape"
        ) from None
    return m.reshape(-1, n_k) if m.any() else None


def raise_for_overflow(dtype: np.dtype, *results: np.ndarray) -> None:
    """Post-condition of every solver: Q, K and V were checked finite on entry, so a
    non-finite output (O(n d_v), cheap to check) means that the logits ``scale * Q K^T`` or
    the weighted sums of V overflowed ``dtype`` (inputs near the largest float):
    ValueError naming the arguments instead of returning NaN or infinity."""
    if all(np.isfinite(r).all() for r in results):
        return
    # a row whose every key is masked has lse = -inf and output 0: that is no overflow
    if all((np.isfinite(r) | (r == -np.inf)).all() for r in results):
        return
    raise ValueError(
        f"the attention result overflowed {np.dtype(dtype)} although Q, K and V are finite: "
        "the logits scale * Q K^T (or the sums of the rows of V) are too large for this "
        "dtype; rescale Q, K or V"
    )
