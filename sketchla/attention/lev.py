r"""LevAttention: attention restricted to a universal key set plus an optional local window.

LevAttention (arXiv 2410.05462) is a preset of the attention engine
(:func:`sketchla.approx_attention` with ``keys=UniversalSet(...) | Window(...)`` and no light
estimate). It keeps, for *every* query, the keys of a query-independent set
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

from typing import Any

import numpy as np

from .._backend import as_dense, check_int
from .._torch import accepts_torch
from ..random import UNSET, RngLike, SeedLike, external_stacklevel, resolve_rng
from .engine import Composition, check_scheme, run_attention
from .selectors import KeySelector, UniversalSet, Window, parse_kernel, universal_key_set

__all__ = ["lev_attention", "lev_key_set"]

#: queries per tile: each tile computes its window's tile + 2 local_window columns per query,
#: so smaller tiles waste less (measured at n = 131072, local_window = 256: 256 was 2x faster
#: than 1024)
TILE = 256


def lev_key_set(
    K,
    eps: float | None = None,
    k: int | None = None,
    kernel="softmax",
    causal: bool = False,
    *,
    score_method: str = "exact",
    rng: RngLike = 0,
) -> np.ndarray:
    r"""The universal key set of one head: sorted indices into the rows of K (n_k, d).

    ``eps``: :func:`sketchla.universal_set` of K with p = 2 for softmax and ("poly", 2), the
    kernel's p otherwise (causal: prefix scores, each key scored among the keys up to it, so
    the set restricted to keys <= i never depends on later keys). ``k``: the k keys with the
    largest such scores (ties to the lower index; all keys when k >= n_k); non-causal only,
    except k >= n_k. Exactly one of the two. See
    :func:`sketchla.attention.selectors.universal_key_set`.
    """
    p = parse_kernel(kernel)
    K = as_dense(K, "K", ndim=(2,))
    if not isinstance(causal, bool | np.bool_):
        raise TypeError(f"causal must be a bool, got {type(causal).__name__} {causal!r}")
    return universal_key_set(
        K, eps, k, 2.0 if p is None else p, bool(causal),
        score_method=score_method, rng=resolve_rng(rng, stacklevel=external_stacklevel()),
    )  # fmt: skip


@accepts_torch("Q", "K", "V")
def lev_attention(
    Q: Any,
    K: Any,
    V: Any,
    *,
    eps: float | None = None,
    k: int | None = None,
    local_window: int = 0,
    kernel="softmax",
    causal: bool = False,
    scale: float | None = None,
    rng: RngLike = None,
    seed: SeedLike | Any = UNSET,
    score_method: str = "exact",
    key_padding_mask: Any = None,
    tile: int = TILE,
) -> np.ndarray:
    r"""Attention of every query to the universal key set (plus a local window) only.

    ``approx_attention(Q, K, V, keys=UniversalSet(eps | k, p) | Window(local_window))`` with
    no light estimate, for softmax or polynomial weights. See the module docstring for the
    guarantee (polynomial kernels) and why softmax has none.

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
        own position. Positions are indices (causal: aligned bottom-right), so a non-causal
        window needs ``n_q == n_k``.
    kernel : "softmax" or ("poly", p)
        Softmax weights :math:`e^{s_{ij}}` or polynomial weights :math:`|s_{ij}|^p`, p > 0,
        normalised over the kept keys. Causal polynomial kernels need p <= 2 or an even p
        (the scores for other p are not available, ValueError).
    causal : bool, default False
        Query i attends the keys up to its position only (bottom-right aligned); no future
        key or value is read for it.
    scale : float, optional
        Logit scale, default ``1 / sqrt(d)``.
    rng : int, SeedSequence, numpy Generator or None
        Seed of the sketched scores (``score_method="sketch"``); unused otherwise.
    seed : deprecated alias of ``rng``.
    score_method : {"exact", "sketch"}
        How the scores are computed (see :func:`lev_key_set`).
    key_padding_mask : array_like of bool, optional
        ``(*batch, n_k)``, True marks a padded key: never attended, and left out of the
        scores that choose the key set.
    tile : int >= 1
        Queries per tile (a speed knob: the output is the same to rounding).

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
    p = parse_kernel(kernel)
    local_window = check_int(local_window, "local_window", minimum=0)
    _, _, tile = check_scheme("blocks", 1, tile)
    if (eps is None) == (k is None):
        raise ValueError("give exactly one of eps (score threshold) and k (number of keys)")
    seq = resolve_rng(rng, seed, stacklevel=external_stacklevel())
    keys: KeySelector = UniversalSet(eps, k, 2.0 if p is None else p, score_method)
    if local_window:
        keys = keys | Window(local_window)
        n_q, n_k = np.shape(Q)[-2], np.shape(K)[-2]
        if not causal and n_q != n_k:
            raise ValueError(
                f"local_window > 0 compares query and key positions: without causal it needs "
                f"n_q == n_k, got n_q = {n_q} (Q) and n_k = {n_k} (K)"
            )
    comp = Composition.of(keys, None, with_values=True)
    out = run_attention(
        Q, K, V, comp, causal=causal, scale=scale, rng=seq, seed=UNSET, causal_scheme="blocks",
        min_seq_len=1, tile=tile, return_lse=False, key_padding_mask=key_padding_mask,
        kernel_p=p,
    )  # fmt: skip
    assert isinstance(out, np.ndarray)
    return out
