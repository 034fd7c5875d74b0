r"""Exact softmax attention, blockwise over queries and keys (the reference of every solver).

For logits :math:`s_{ij} = \mathrm{scale}\; q_i \cdot k_j` (``-inf`` where a causal mask hides
key j from query i, i.e. :math:`j > i`),

.. math::
    \mathrm{lse}_i = \log \sum_j e^{s_{ij}}, \qquad
    \mathrm{out}_i = \sum_j e^{s_{ij} - \mathrm{lse}_i}\, v_j ,

i.e. :math:`\mathrm{out} = D^{-1} A V` with :math:`A = \exp(s)`, :math:`D = \mathrm{diag}(A 1)`.
Queries are processed in blocks of ``block_q`` rows and keys in blocks of ``block_k`` columns
with the online softmax of Milakov & Gimelshein (2018) (the recurrence of FlashAttention): a
running row maximum :math:`m_i`, a running denominator :math:`\ell_i = \sum_j e^{s_{ij}-m_i}` and
a running numerator are rescaled by :math:`e^{m_i^{old} - m_i^{new}}` when a block raises the
maximum. Every exponent is :math:`\le 0`, so no logit (``+-1e4`` included) overflows, and memory
is :math:`O(\mathrm{block\_q} \cdot \mathrm{block\_k} + n_q d_v)` besides the inputs: the
:math:`n_q \times n_k` matrix is never formed.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Literal, overload

import numpy as np

from .._backend import check_int
from ._inputs import check_attention_inputs, raise_for_overflow

__all__ = ["exact_attention"]

#: default tile: 1024 queries x 4096 keys (16 MiB of float32 logits, 32 MiB of float64). Large
#: tiles keep the number of BLAS calls small: on a shared machine each multi-threaded call can
#: stall for a scheduler time slice, and 256 x 2048 tiles measured 3-4x slower under load
BLOCK_Q = 1024
BLOCK_K = 4096


@overload
def exact_attention(
    Q,
    K,
    V,
    causal: bool = ...,
    scale: float | None = ...,
    return_lse: Literal[False] = ...,
    *,
    block_q: int = ...,
    block_k: int = ...,
) -> np.ndarray: ...


@overload
def exact_attention(
    Q,
    K,
    V,
    causal: bool,
    scale: float | None,
    return_lse: Literal[True],
    *,
    block_q: int = ...,
    block_k: int = ...,
) -> tuple[np.ndarray, np.ndarray]: ...


@overload
def exact_attention(
    Q,
    K,
    V,
    causal: bool = ...,
    scale: float | None = ...,
    *,
    return_lse: Literal[True],
    block_q: int = ...,
    block_k: int = ...,
) -> tuple[np.ndarray, np.ndarray]: ...


@overload
def exact_attention(
    Q,
    K,
    V,
    causal: bool = ...,
    scale: float | None = ...,
    return_lse: bool = ...,
    *,
    block_q: int = ...,
    block_k: int = ...,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]: ...


def exact_attention(
    Q,
    K,
    V,
    causal: bool = False,
    scale: float | None = None,
    return_lse: bool = False,
    *,
    block_q: int = BLOCK_Q,
    block_k: int = BLOCK_K,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    r"""Exact scaled dot-product attention ``softmax(scale * Q K^T [+ causal mask]) V``.

    Computed blockwise with an online (log-sum-exp) softmax; see the module docstring.

    Parameters
    ----------
    Q : array_like, shape (..., n_q, d)
    K : array_like, shape (..., n_k, d)
    V : array_like, shape (..., n_k, d_v)
        Leading (batch / head) dimensions must be equal. Finite.
    causal : bool, default False
        Query i attends keys ``j <= i`` only; needs ``n_q == n_k``.
    scale : float, optional
        Logit scale, default ``1 / sqrt(d)``.
    return_lse : bool, default False
        Also return :math:`\mathrm{lse}_i = \log\sum_j \exp(s_{ij})` (masked entries excluded).
    block_q, block_k : int
        Tile size (queries, keys). Memory is O(block_q * block_k + n_q * d_v) beyond the inputs.

    Returns
    -------
    out : ndarray, shape (..., n_q, d_v)
    lse : ndarray, shape (..., n_q), only if ``return_lse``

    Notes
    -----
    dtype: float64 inputs are computed in float64 throughout; float32 inputs (and float16,
    promoted to float32) have their logits, exponentials and the per-tile products with V formed
    in float32 (BLAS), while the running maxima, denominators and numerators across tiles are
    accumulated in float64; the result is returned in float32. Any float64 input makes the
    computation float64.

    Examples
    --------
    >>> import numpy as np
    >>> from scipy.special import softmax
    >>> rng = np.random.default_rng(0)
    >>> Q, K, V = rng.standard_normal((3, 100, 8))
    >>> out = exact_attention(Q, K, V, causal=True)
    >>> S = Q @ K.T / np.sqrt(8) + np.triu(np.full((100, 100), -np.inf), 1)
    >>> bool(np.allclose(out, softmax(S, axis=1) @ V))
    True
    """
    block_q = check_int(block_q, "block_q", minimum=1)
    block_k = check_int(block_k, "block_k", minimum=1)
    if not isinstance(return_lse, (bool, np.bool_)):
        raise TypeError(f"return_lse must be a bool, got {type(return_lse).__name__}")
    inp = check_attention_inputs(Q, K, V, causal, scale)
    out = np.empty((*inp.batch_shape, inp.n_q, inp.d_v), dtype=inp.dtype)
    lse = np.empty((*inp.batch_shape, inp.n_q), dtype=inp.dtype)
    out_h, lse_h = out.reshape(-1, inp.n_q, inp.d_v), lse.reshape(-1, inp.n_q)
    for h, (q, k, v) in enumerate(inp.heads()):
        with np.errstate(over="ignore", invalid="ignore"):  # reported below
            out_h[h], lse_h[h] = exact_attention_2d(
                q, k, v, inp.causal, inp.scale, block_q, block_k
            )
    raise_for_overflow(inp.dtype, out, lse)
    return (out, lse) if return_lse else out


def causal_mask_tile(S: np.ndarray, q_start: int, k_start: int) -> None:
    """Set ``S[r, c] = -inf`` where key ``k_start + c`` is after query ``q_start + r``."""
    rows, cols = S.shape
    if k_start + cols - 1 <= q_start:  # tile entirely on or below the diagonal
        return
    future = (
        np.arange(k_start, k_start + cols)[None, :] > np.arange(q_start, q_start + rows)[:, None]
    )
    S[future] = -np.inf


def key_range(q_stop: int, n_k: int, causal: bool) -> int:
    """Keys ``0 .. key_range - 1`` are visible to some query of a block ending at ``q_stop``."""
    return min(q_stop, n_k) if causal else n_k


def exact_attention_2d(
    q: np.ndarray,
    k: np.ndarray,
    v: np.ndarray,
    causal: bool,
    scale: float,
    block_q: int = BLOCK_Q,
    block_k: int = BLOCK_K,
) -> tuple[np.ndarray, np.ndarray]:
    """One head: ``(out, lse)`` with ``out`` in q's dtype and ``lse`` in float64.

    ``q``, ``k``, ``v`` are validated 2-D arrays of one float dtype. No causal row is empty
    (query i always sees key 0 <= i), so every ``lse`` is finite.
    """
    dtype = q.dtype
    n_q, n_k, d_v = q.shape[0], k.shape[0], v.shape[1]
    out = np.empty((n_q, d_v), dtype=dtype)
    lse = np.empty(n_q, dtype=np.float64)
    scale = dtype.type(scale)
    # one tile buffer for the whole pass: no second tile alive while the next is computed
    tile = np.empty(min(block_q, n_q) * min(block_k, n_k), dtype=dtype)
    for qs in range(0, n_q, block_q):
        qe = min(qs + block_q, n_q)
        qb = q[qs:qe] * scale
        m = np.full(qe - qs, -np.inf)
        denom = np.zeros(qe - qs)
        numer = np.zeros((qe - qs, d_v))
        # key block 0 comes first and every row sees key 0, so m is finite after it
        for ks in range(0, key_range(qe, n_k, causal), block_k):
            ke = min(ks + block_k, key_range(qe, n_k, causal))
            S = np.matmul(qb, k[ks:ke].T, out=tile[: (qe - qs) * (ke - ks)].reshape(qe - qs, -1))
            if causal:
                causal_mask_tile(S, qs, ks)
            m_new = np.maximum(m, S.max(axis=1))
            S -= m_new.astype(dtype)[:, None]
            np.exp(S, out=S)
            rescale = np.exp(m - m_new)  # 0 on the first block (m = -inf)
            denom *= rescale
            denom += S.sum(axis=1)
            numer *= rescale[:, None]
            numer += S @ v[ks:ke]
            m = m_new
        out[qs:qe] = numer / denom[:, None]
        lse[qs:qe] = m + np.log(denom)
    return out, lse


def softmax_row_panels(
    q: np.ndarray,
    k: np.ndarray,
    lse: np.ndarray,
    causal: bool,
    scale: float,
    panel_entries: int = 2**22,
) -> Iterator[tuple[slice, np.ndarray]]:
    r"""Yield ``(rows, P)`` with ``P = exp(s[rows, :] - lse[rows, None])``: consecutive row panels
    of :math:`D^{-1}A` (zeros where masked), in float64.

    Each panel has about ``panel_entries`` entries (at least one row): memory
    O(panel_entries), never the whole :math:`n_q \times n_k` matrix. ``lse`` is the exact
    log row sum from :func:`exact_attention_2d`.
    """
    n_q, n_k = q.shape[0], k.shape[0]
    rows_per_panel = max(1, panel_entries // n_k)
    k64 = k.astype(np.float64, copy=False)
    for qs in range(0, n_q, rows_per_panel):
        qe = min(qs + rows_per_panel, n_q)
        S = (q[qs:qe].astype(np.float64) * scale) @ k64.T
        if causal:
            causal_mask_tile(S, qs, 0)
        S -= lse[qs:qe, None]
        np.exp(S, out=S)
        yield slice(qs, qe), S
