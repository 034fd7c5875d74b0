r"""LevAttention: attention restricted to a universal key set plus an optional local window.

LevAttention (arXiv 2410.05462) keeps, for *every* query, the keys of a query-independent set
:math:`U` chosen from K alone by their leverage (or lp-sensitivity) scores, plus optionally a
window of nearby positions, and attends only those. With :math:`S_i` the keys kept for query
i (``U``, the window, and only :math:`j \le i` when causal) and kernel weights
:math:`w_{ij} = f(s_{ij}) / \sum_{j'} f(s_{ij'})` over the visible keys, the output is the
renormalised restriction

.. math:: \mathrm{out}_i = \sum_{j \in S_i} w_{ij} v_j \Big/ \sum_{j \in S_i} w_{ij} .

What is guaranteed, for f(x) = |x|^p (``kernel=("poly", p)``)
--------------------------------------------------------------
Let :math:`m_i = \sum_{j \notin S_i} w_{ij}` be the *excluded mass* of row i. Then, for every
query matrix (deterministic, not a probability statement):

1. With ``eps``: every excluded entry has :math:`w_{ij} < \varepsilon`, i.e. every eps-heavy
   entry of the exact polynomial attention is kept. Key j's weight is at most its
   lp-sensitivity :math:`s_j = \sup_q |q \cdot k_j|^p / \sum_i |q \cdot k_i|^p` (its leverage
   score for p = 2; causal: its score among the keys up to it), and :math:`U` holds every key
   whose certified bound :math:`u_j \ge s_j` is at least eps
   (:func:`sketchla.universal_set`), so :math:`|U| \le \sum_j u_j / \varepsilon`
   (rank(K)/eps for p = 2, non-causal). With ``k`` instead: every excluded entry has weight
   at most the largest score among the excluded keys.
2. :math:`\|\mathrm{out}_i - \mathrm{exact}_i\|_2 \le 2\, m_i \max_j \|v_j\|_2` (the maximum
   over the keys visible to query i): the two outputs are convex combinations that differ by
   moving mass :math:`m_i`. Also :math:`m_i \le \sum_{j \notin S_i} u_j`.
3. Hence the output *equals* the exact polynomial attention in every row whose excluded keys
   all have weight 0 (e.g. keys orthogonal to the queries, zero keys), and with ``k = n_k`` or
   ``eps`` below every positive score.

The scale does not change polynomial weights (it cancels in the normalisation).

Softmax (``kernel="softmax"``) is a heuristic
---------------------------------------------
Leverage scores say nothing about :math:`e^{q \cdot k}`: for Q = K with random +-1 entries
every key is the heaviest key of its own query, yet all leverage scores are about d/n, so for
eps > d/n the set U is empty and every heavy entry is lost (``"random_sign"`` in
:mod:`sketchla.testing.attention_instances`). Bound 2 still holds *a posteriori* with the
softmax excluded mass, but nothing bounds that mass. Measure with
:func:`sketchla.spectral_error`.
"""

from __future__ import annotations

from numbers import Real

import numpy as np

from .._backend import as_dense, check_finite, check_int, check_real
from ..random import SeedLike
from ..scores import leverage_scores, sensitivity_bounds, universal_set
from ._inputs import check_attention_inputs, raise_for_overflow

__all__ = ["lev_attention", "lev_key_set"]

#: queries per block; memory is O(BLOCK_Q * (|U| + BLOCK_Q + 2 local_window))
BLOCK_Q = 1024
#: queries per block with a local window: each block computes block_q + 2 local_window window
#: columns per query, so smaller blocks waste less (measured at n = 131072, local_window = 256:
#: 2x faster than 1024, causal and non-causal; without a window 1024 is 20-40% faster)
BLOCK_Q_WINDOW = 256


def _parse_kernel(kernel) -> float | None:
    """None for softmax, else the exponent p > 0 of ("poly", p)."""
    if isinstance(kernel, str) and kernel == "softmax":
        return None
    if (
        isinstance(kernel, tuple)
        and len(kernel) == 2
        and kernel[0] == "poly"
        and isinstance(kernel[1], Real)
        and not isinstance(kernel[1], bool)
    ):
        return check_real(kernel[1], "kernel exponent p", 0.0, None, min_inclusive=False)
    raise ValueError(f"kernel must be 'softmax' or ('poly', p) with a real p > 0, got {kernel!r}")


def lev_key_set(
    K,
    eps: float | None = None,
    k: int | None = None,
    kernel="softmax",
    causal: bool = False,
    *,
    score_method: str = "exact",
    seed: SeedLike = 0,
) -> np.ndarray:
    r"""The universal key set of one head: sorted indices into the rows of K (n_k, d).

    ``eps``: :func:`sketchla.universal_set` of K with p = 2 for softmax and ("poly", 2), the
    kernel's p otherwise (causal: prefix scores, each key scored among the keys up to it, so
    the set restricted to keys <= i never depends on later keys). ``k``: the k keys with the
    largest such scores (ties to the lower index; all keys when k >= n_k); non-causal only,
    except k >= n_k. Exactly one of the two.
    ``score_method="sketch"`` (non-causal, p = 2 only) uses sketched leverage scores seeded
    by ``seed`` (see :func:`sketchla.leverage_scores`); it voids guarantee 1 of the module
    docstring unless the sketched scores are within the factor of ``universal_set``.
    """
    p = _parse_kernel(kernel)
    p = 2.0 if p is None else p
    K = as_dense(K, "K", ndim=(2,))
    if not isinstance(causal, (bool, np.bool_)):
        raise TypeError(f"causal must be a bool, got {type(causal).__name__} {causal!r}")
    if (eps is None) == (k is None):
        raise ValueError("give exactly one of eps (score threshold) and k (number of keys)")
    if score_method not in ("exact", "sketch"):
        raise ValueError(f"score_method must be 'exact' or 'sketch', got {score_method!r}")
    if eps is not None:
        eps = check_real(eps, "eps", 0.0, 1.0, min_inclusive=False)
        return universal_set(K, eps, p=p, method=score_method, causal=causal, seed=seed)
    k = check_int(k, "k", minimum=1)
    n_k = K.shape[0]
    if k >= n_k:
        return np.arange(n_k, dtype=np.int64)
    if causal:
        raise ValueError(
            f"causal=True needs eps, not k < n_k (got k = {k}, n_k = {n_k}): a top-k ranking of "
            "all keys would let future keys decide which past keys a query attends"
        )
    check_finite(K, "K")
    if score_method == "sketch":
        if p != 2:
            raise ValueError("score_method='sketch' supports p=2 only")
        scores = leverage_scores(K, method="sketch", seed=seed)
    elif p == 2:
        scores = leverage_scores(K)
    else:
        scores = sensitivity_bounds(K, p)
    top = np.argsort(-scores, kind="stable")[:k]
    return np.sort(top).astype(np.int64)


def lev_attention(
    Q,
    K,
    V,
    eps: float | None = None,
    k: int | None = None,
    local_window: int = 0,
    kernel="softmax",
    causal: bool = False,
    scale: float | None = None,
    seed: SeedLike = 0,
    *,
    score_method: str = "exact",
    block_q: int | None = None,
) -> np.ndarray:
    r"""Attention of every query to the universal key set (plus a local window) only.

    See the module docstring for the guarantee (polynomial kernels) and why softmax has none.

    Parameters
    ----------
    Q, K, V : array_like, shapes (..., n_q, d), (..., n_k, d), (..., n_k, d_v)
        Validated as by :func:`sketchla.exact_attention`. Each head gets its own key set.
    eps : float in (0, 1], optional
        Keep keys whose score (leverage for softmax and ("poly", 2); certified lp-sensitivity
        bound for ("poly", p); causal: scores among the keys up to each key) is >= eps.
    k : int >= 1, optional
        Keep the k keys with the largest scores instead (k >= n_k keeps all: exact attention).
        Exactly one of ``eps`` and ``k``. With ``causal=True`` only k >= n_k is accepted: a
        ranking of all keys would depend on future keys.
    local_window : int >= 0, default 0
        Query i also attends keys j with :math:`|i - j| <` ``local_window`` (causal:
        :math:`0 \le i - j <` ``local_window``); 0 adds none, 1 adds the key at the query's
        own position. Positions are indices, so a window needs ``n_q == n_k``.
    kernel : "softmax" or ("poly", p)
        Softmax weights :math:`e^{s_{ij}}` or polynomial weights :math:`|s_{ij}|^p`, p > 0,
        normalised over the kept keys. Causal polynomial kernels need p <= 2 or an even p
        (the scores for other p are not available, ValueError).
    causal : bool, default False
        Query i attends keys j <= i only (needs ``n_q == n_k``); no future key or value is
        read for it.
    scale : float, optional
        Logit scale, default ``1 / sqrt(d)``.
    seed : int, SeedSequence or None, default 0
        Seed of the sketched scores (``score_method="sketch"``); unused otherwise.
    score_method : {"exact", "sketch"}
        How the scores are computed (see :func:`lev_key_set`).
    block_q : int, optional
        Queries per block (a speed knob: the output is the same to rounding): memory
        O(block_q (|U| + block_q + 2 local_window)). Default 1024 without a local window, 256
        with one.

    Returns
    -------
    out : ndarray, shape (..., n_q, d_v), dtype of the inputs (float32 or float64)
        Rows with no kept key (or, for polynomial kernels, zero weight on every kept key) are 0.

    Examples
    --------
    >>> import numpy as np
    >>> from sketchla import exact_attention
    >>> rng = np.random.default_rng(0)
    >>> Q, K, V = rng.standard_normal((3, 200, 8))
    >>> bool(np.allclose(lev_attention(Q, K, V, k=200), exact_attention(Q, K, V)))
    True
    >>> lev_attention(Q, K, V, eps=0.05, local_window=16, causal=True).shape
    (200, 8)
    """
    p = _parse_kernel(kernel)
    local_window = check_int(local_window, "local_window", minimum=0)
    if block_q is None:
        block_q = BLOCK_Q_WINDOW if local_window else BLOCK_Q
    block_q = check_int(block_q, "block_q", minimum=1)
    if (eps is None) == (k is None):
        raise ValueError("give exactly one of eps (score threshold) and k (number of keys)")
    if eps is not None:
        eps = check_real(eps, "eps", 0.0, 1.0, min_inclusive=False)
    if k is not None:
        k = check_int(k, "k", minimum=1)
    inp = check_attention_inputs(Q, K, V, causal, scale)
    if local_window and inp.n_q != inp.n_k:
        raise ValueError(
            f"local_window > 0 compares query and key positions and needs n_q == n_k, got "
            f"n_q = {inp.n_q} (Q) and n_k = {inp.n_k} (K)"
        )
    out = np.empty((*inp.batch_shape, inp.n_q, inp.d_v), dtype=inp.dtype)
    out_h = out.reshape(-1, inp.n_q, inp.d_v)
    for h, (q, kk, v) in enumerate(inp.heads()):
        keys = lev_key_set(kk, eps, k, kernel, inp.causal, score_method=score_method, seed=seed)
        with np.errstate(over="ignore", invalid="ignore"):  # reported below
            out_h[h] = restricted_attention_2d(
                q, kk, v, keys, local_window, inp.causal, inp.scale, p, block_q
            )
    raise_for_overflow(inp.dtype, out)
    return out


def restricted_attention_2d(
    q: np.ndarray,
    k: np.ndarray,
    v: np.ndarray,
    keys: np.ndarray,
    local_window: int,
    causal: bool,
    scale: float,
    p: float | None,
    block_q: int = BLOCK_Q,
) -> np.ndarray:
    """One head: attention of each query to ``keys`` (sorted) plus its local window.

    ``p`` None is softmax, else the polynomial kernel |s|^p. Rows with nothing to attend are 0.
    """
    dtype = q.dtype
    n_q, n_k, d_v = q.shape[0], k.shape[0], v.shape[1]
    out = np.zeros((n_q, d_v), dtype=dtype)
    in_keys = np.zeros(n_k, dtype=bool)
    in_keys[keys] = True
    scale = dtype.type(scale)
    for qs in range(0, n_q, block_q):
        qe = min(qs + block_q, n_q)
        visible_stop = qe if causal else n_k  # causal: no key after the block's last query
        sel = keys[: np.searchsorted(keys, visible_stop)]
        if local_window:
            lo = max(0, qs - local_window + 1)
            hi = min(visible_stop, qe + local_window - 1)
            sel = np.union1d(sel, np.arange(lo, hi))
        if sel.size == 0:
            continue
        rows = np.arange(qs, qe)[:, None]
        allowed = None
        if local_window:
            offset = rows - sel[None, :]
            near = (offset >= 0) if causal else (offset > -local_window)
            allowed = in_keys[sel][None, :] | (near & (offset < local_window))
        if causal:
            past = sel[None, :] <= rows
            allowed = past if allowed is None else allowed & past
        S = (q[qs:qe] * scale) @ k[sel].T
        if p is None:
            if allowed is not None:
                S[~allowed] = -np.inf
            m = S.max(axis=1)
            no_max = ~np.isfinite(m)
            m[no_max] = 0.0  # rows with no allowed key: all weights exp(-inf) = 0
            # a row with an allowed key and no finite maximum had its logits overflow
            overflow = no_max if allowed is None else no_max & allowed.any(axis=1)
            np.exp(S - m[:, None], out=S)
        else:
            np.abs(S, out=S)
            if allowed is not None:
                S[~allowed] = 0.0
            m = S.max(axis=1)
            overflow = ~np.isfinite(m)
            m[m == 0] = 1.0  # rows of zero weight stay zero
            S /= m[:, None]
            S **= dtype.type(p)
        denom = S.sum(axis=1)
        numer = S @ v[sel]
        nonzero = denom > 0
        out[qs:qe][nonzero] = numer[nonzero] / denom[nonzero, None]
        # overflowed logits (finite inputs near the largest float): NaN rows, which the
        # caller's raise_for_overflow reports, instead of silent zeros
        overflow |= ~np.isfinite(denom)
        out[qs:qe][overflow] = np.nan
    return out
