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

import numpy as np

from .._backend import check_int
from .._torch import accepts_torch
from ._inputs import check_attention_inputs, raise_for_overflow
from .partial import AttentionResult

__all__ = ["exact_attention"]

#: default tile: 1024 queries x 4096 keys (16 MiB of float32 logits, 32 MiB of float64). Large
#: tiles keep the number of BLAS calls small: on a shared machine each multi-threaded call can
#: stall for a scheduler time slice, and 256 x 2048 tiles measured 3-4x slower under load
BLOCK_Q = 1024
BLOCK_K = 4096


@accepts_torch("Q", "K", "V")
def exact_attention(
    Q,
    K,
    V,
    *,
    causal: bool = False,
    scale: float | None = None,
    attn_mask=None,
    key_padding_mask=None,
    return_lse: bool = False,
    block_q: int = BLOCK_Q,
    block_k: int = BLOCK_K,
) -> np.ndarray | AttentionResult:
    r"""Exact scaled dot-product attention ``softmax(scale * Q K^T + mask) V``.

    Computed blockwise with an online (log-sum-exp) softmax; see the module docstring.

    Parameters
    ----------
    Q : array_like, shape (..., H, n_q, d)
    K : array_like, shape (..., H_kv, n_k, d)
    V : array_like, shape (..., H_kv, n_k, d_v)
        Leading dimensions equal, except that K and V may have fewer heads (grouped-query
        attention, ``H % H_kv == 0``; see :mod:`sketchla.attention._inputs`). Finite.
    causal : bool, default False
        Query i attends the keys at positions up to its own, aligned bottom-right (query i at
        position ``n_k - n_q + i``; the usual ``j <= i`` for n_q == n_k).
    scale : float, optional
        Logit scale, default ``1 / sqrt(d)``.
    attn_mask : array_like, optional
        torch SDPA's mask, broadcastable to ``(..., H, n_q, n_k)``: bool (True = take part in
        attention) or float (added to the logits; ``-inf`` excludes). Applied tile by tile,
        from a broadcast view: a mask given as ``(n_q, n_k)`` or ``(batch, 1, n_q, n_k)`` is
        never expanded per head.
    key_padding_mask : array_like of bool, optional
        ``(*batch, n_k)``, True marks a padded key (never attended).
    return_lse : bool, default False
        Also return :math:`\mathrm{lse}_i = \log\sum_j \exp(s_{ij})` (masked entries
        excluded), as an ``AttentionResult(out, lse)``.
    block_q, block_k : int
        Tile size (queries, keys). Memory is O(block_q * block_k + n_q * d_v) beyond the inputs.

    Returns
    -------
    out : ndarray, shape (..., H, n_q, d_v), or AttentionResult(out, lse) with ``return_lse``
        Rows whose every key is masked are 0 (their lse is ``-inf``), where torch SDPA gives
        NaN.

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
    inp = check_attention_inputs(Q, K, V, causal, scale, key_padding_mask=key_padding_mask)
    masks = _attn_mask(attn_mask, (*inp.batch_shape, inp.n_q, inp.n_k))
    out = np.empty((*inp.batch_shape, inp.n_q, inp.d_v), dtype=inp.dtype)
    lse = np.empty((*inp.batch_shape, inp.n_q), dtype=inp.dtype)
    out_h, lse_h = out.reshape(-1, inp.n_q, inp.d_v), lse.reshape(-1, inp.n_q)
    for h, (q, k, v) in enumerate(inp.heads()):
        pad = None if inp.key_padding is None else inp.key_padding[inp.kv_index[h]]
        mask = None if masks is None else masks[np.unravel_index(h, inp.batch_shape)]
        with np.errstate(over="ignore", invalid="ignore"):  # reported below
            out_h[h], lse_h[h] = exact_attention_2d(
                q, k, v, inp.causal, inp.scale, block_q, block_k, key_padding=pad, attn_mask=mask
            )
    raise_for_overflow(inp.dtype, out, lse)
    return AttentionResult(out, lse) if return_lse else out


def _attn_mask(attn_mask, shape: tuple[int, ...]) -> np.ndarray | None:
    """``attn_mask`` as a read-only broadcast view of ``shape`` (bool, or float additive)."""
    if attn_mask is None:
        return None
    m = np.asarray(attn_mask)
    if m.dtype.kind not in "bf":
        raise TypeError(
            f"attn_mask must be bool (True = attend) or float (added to the logits), got dtype "
            f"{m.dtype}"
        )
    if m.dtype.kind == "f" and np.isnan(m).any():
        raise ValueError("attn_mask must not contain NaN")
    if m.dtype.kind == "f" and np.isposinf(m).any():
        raise ValueError("attn_mask must not contain +inf")
    try:
        return np.broadcast_to(m, shape)
    except ValueError:
        raise ValueError(
            f"attn_mask of shape {m.shape} does not broadcast to (..., H, n_q, n_k) = {shape}"
        ) from None


def causal_mask_tile(S: np.ndarray, q_start: int, k_start: int) -> None:
    """Set ``S[r, c] = -inf`` where key ``k_start + c`` is after query ``q_start + r``."""
    rows, cols = S.shape
    if k_start + cols - 1 <= q_start:  # tile entirely on or below the diagonal
        return
    future = (
        np.arange(k_start, k_start + cols)[None, :] > np.arange(q_start, q_start + rows)[:, None]
    )
    S[future] = -np.inf


def key_range(q_stop: int, n_k: int, causal: bool, offset: int = 0) -> int:
    """Keys ``0 .. key_range - 1`` are visible to some query of a block ending at ``q_stop``
    (queries at positions ``offset + i``)."""
    return min(q_stop + offset, n_k) if causal else n_k


def exact_attention_2d(
    q: np.ndarray,
    k: np.ndarray,
    v: np.ndarray,
    causal: bool,
    scale: float,
    block_q: int = BLOCK_Q,
    block_k: int = BLOCK_K,
    *,
    key_padding: np.ndarray | None = None,
    attn_mask: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """One head: ``(out, lse)`` with ``out`` in q's dtype and ``lse`` in float64.

    ``q``, ``k``, ``v`` are validated 2-D arrays of one float dtype; causal queries sit at
    positions ``n_k - n_q + i``; ``key_padding (n_k,)`` True marks ignored keys; ``attn_mask
    (n_q, n_k)`` is bool (True = attend) or additive. A row with no visible key has
    ``lse = -inf`` and output 0.
    """
    dtype = q.dtype
    n_q, n_k, d_v = q.shape[0], k.shape[0], v.shape[1]
    offset = n_k - n_q if causal else 0
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
        stop = key_range(qe, n_k, causal, offset)
        for ks in range(0, stop, block_k):
            ke = min(ks + block_k, stop)
            S = np.matmul(qb, k[ks:ke].T, out=tile[: (qe - qs) * (ke - ks)].reshape(qe - qs, -1))
            if causal:
                causal_mask_tile(S, qs + offset, ks)
            if key_padding is not None:
                S[:, key_padding[ks:ke]] = -np.inf
            if attn_mask is not None:
                tile_mask = attn_mask[qs:qe, ks:ke]
                if tile_mask.dtype == np.bool_:
                    np.copyto(S, -np.inf, where=~tile_mask)
                else:
                    S += tile_mask.astype(dtype, copy=False)
            m_new = np.maximum(m, S.max(axis=1))
            shift = np.where(np.isfinite(m_new), m_new, 0.0)  # rows with nothing seen yet
            S -= shift.astype(dtype)[:, None]
            np.exp(S, out=S)
            rescale = np.exp(m - shift)  # 0 while a row has seen nothing (m = -inf)
            denom *= rescale
            denom += S.sum(axis=1)
            numer *= rescale[:, None]
            numer += S @ v[ks:ke]
            m = m_new
        seen = denom > 0
        out[qs:qe] = np.where(seen[:, None], numer / np.where(seen, denom, 1.0)[:, None], 0.0)
        with np.errstate(divide="ignore"):
            lse[qs:qe] = np.where(seen, m + np.log(denom), -np.inf)
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
