"""LevAttention with keys and values as dask arrays chunked along the sequence axis."""

from __future__ import annotations

from typing import Any

import numpy as np

from .._backend import as_dense, check_finite, check_real, compute_dtype
from ..attention import lev_attention as _lev_attention_in_memory
from ..attention import parse_kernel as _parse_kernel
from ._detect import is_dask_array, require_dask
from .scores import _UNIVERSAL_METHODS, universal_set
from .sketch import row_chunked

__all__ = ["lev_attention"]


def _attend(q: np.ndarray, Ku: np.ndarray, Vu: np.ndarray, kernel, scale, dtype) -> np.ndarray:
    """In-memory attention of the queries q to the gathered keys (all of them)."""
    if Ku.shape[0] == 0:  # no key kept: every row attends nothing and is 0 (as in memory)
        check_finite(q, "Q")  # the in-memory function would have checked it
        return np.zeros((q.shape[0], Vu.shape[1]), dtype=dtype)
    return _lev_attention_in_memory(q, Ku, Vu, k=Ku.shape[0], kernel=kernel, scale=scale)


def lev_attention(
    Q,
    K,
    V,
    eps: float,
    kernel="softmax",
    scale: float | None = None,
    *,
    set_method: str = "gram",
    return_info: bool = False,
):
    r"""LevAttention (non-causal, no local window) with K and V as dask arrays chunked along n.

    The universal key set U of K is computed where the key chunks live
    (:func:`sketchla.distributed.universal_set`), only the rows K[U] and V[U] are gathered to
    the driver (|U| <= d/eps rows), and every query attends them in memory
    (:func:`sketchla.lev_attention` restricted to the gathered keys). With the default
    ``set_method="gram"`` U is exactly the in-memory universal set, so the output equals
    ``sketchla.lev_attention(Q, K, V, eps=eps, kernel=kernel, scale=scale)`` (to rounding of
    the products); ``"gather"`` keeps a superset of U (every eps-heavy key still kept, at most
    d/eps keys), so the polynomial guarantee of :mod:`sketchla.attention.lev` still holds.

    Parameters
    ----------
    Q : ndarray or dask array, shape (n_q, d)
        Queries; a dask Q (any row chunks) gives a lazy dask output with the same row chunks.
    K, V : dask arrays, shapes (n_k, d) and (n_k, d_v)
        Keys and values, chunked along n_k (column chunks are merged).
    eps : float in (0, 1]
        Leverage threshold of the key set.
    kernel : "softmax" or ("poly", 2)
        Leverage scores (p = 2) only; other exponents need lp-sensitivities, which have no
        distributed form here (NotImplementedError).
    scale : float, optional
        Logit scale, default 1/sqrt(d).
    set_method : {"gram", "gather"}
        See :func:`sketchla.distributed.universal_set`.
    return_info : bool
        Also return the universal set's info dict, with ``keys`` (U) and ``bytes_to_driver``
        including the gathered K[U], V[U].

    Returns
    -------
    ndarray or dask array, shape (n_q, d_v) (and the info dict when ``return_info``).

    Notes
    -----
    Inputs are validated as in memory: NaN / infinity anywhere in Q, K or V raises ValueError
    (V is checked where its chunks live, one bool per chunk returned, though only V[U] is
    gathered).

    Causal masking and local windows are not offered: a causal key set needs each key's
    score among the keys before it (prefix scores, a sequential scan), and a window needs
    every key near every query -- neither is a small gather. Use the in-memory function.
    """
    da = require_dask("distributed LevAttention")
    import dask

    p = _parse_kernel(kernel)
    if p is not None and p != 2:
        raise NotImplementedError(
            "distributed lev_attention supports kernel='softmax' and ('poly', 2) (leverage "
            f"scores); got {kernel!r}. Use sketchla.lev_attention in memory."
        )
    eps = check_real(eps, "eps", 0.0, 1.0, min_inclusive=False)
    if scale is not None:
        scale = check_real(scale, "scale", 0.0, None, min_inclusive=False)
    if set_method not in _UNIVERSAL_METHODS:
        raise ValueError(f"set_method must be one of {_UNIVERSAL_METHODS}, got {set_method!r}")
    for name, X in (("K", K), ("V", V)):
        if not is_dask_array(X):
            raise TypeError(f"{name} must be a dask array, got {type(X).__name__}")
    K = row_chunked(K, "K", ndim=(2,))
    V = row_chunked(V, "V", ndim=(2,))
    if V.shape[0] != K.shape[0]:
        raise ValueError(
            f"K and V must have the same number of rows, got {K.shape[0]} and {V.shape[0]}"
        )
    q_lazy = is_dask_array(Q)
    if q_lazy:
        Q = row_chunked(Q, "Q", ndim=(2,))
    else:  # array_like: dtype (complex -> TypeError), 2-D and non-empty, as in memory
        Q = as_dense(Q, "Q", ndim=(2,))
    if Q.shape[1] != K.shape[1]:
        raise ValueError(
            f"Q and K must have the same number of columns, got {Q.shape[1]} and {K.shape[1]}"
        )
    dtype = np.result_type(*(compute_dtype(X.dtype, n) for n, X in (("Q", Q), ("K", K), ("V", V))))
    keys, info = universal_set(K, eps, method=set_method, return_info=True)
    # V's finiteness is checked where its chunks live (one bool each comes back), as the
    # in-memory function checks all of V although only V[U] is read
    Ku, Vu, v_finite = dask.compute(K[keys], V[keys], da.isfinite(V).all())
    if not v_finite:
        raise ValueError("V contains NaN or infinity; expected finite values")
    info["keys"] = keys
    info["bytes_to_driver"] += Ku.nbytes + Vu.nbytes
    if q_lazy:
        out: Any = Q.map_blocks(
            _attend, Ku, Vu, kernel, scale, dtype, dtype=dtype, chunks=(Q.chunks[0], (V.shape[1],))
        )
    else:
        out = _attend(Q, Ku, Vu, kernel, scale, dtype)
    return (out, info) if return_info else out
