"""LevAttention's universal key set U_eps = {j : l_j >= eps} (leverage, p = 2)."""

from __future__ import annotations

import numpy as np

from .._backend import check_real
from ..random import SeedLike
from .leverage import leverage_scores

__all__ = ["universal_set"]

#: scores within this relative margin below eps are kept (rounding must not drop a key whose
#: exact score is eps)
_THRESHOLD_SLACK = 1e-10


def universal_set(
    K,
    eps: float,
    method: str = "exact",
    seed: SeedLike = None,
    *,
    sketch_lower: float = 0.5,
    **sketch_params,
) -> np.ndarray:
    r"""Sorted indices of the keys whose leverage score is at least ``eps``.

    For f(x) = x^2 attention, key j's weight for a query q is
    :math:`(q \cdot k_j)^2 / \sum_i (q \cdot k_i)^2 \le l_j` (its leverage score in K), with
    equality for the witness query :math:`q = (K^\top K)^+ k_j`. Hence
    :math:`U_\varepsilon = \{j : l_j \ge \varepsilon\}` contains every eps-heavy key of
    **every** query matrix, and :math:`|U_\varepsilon| \le \operatorname{rank}(K)/\varepsilon`
    because the scores sum to the rank (LevAttention, arXiv 2410.05462). Deterministic for
    method "exact". For softmax attention there is no such guarantee.

    Parameters
    ----------
    K : array_like, shape (n, d)
        Keys, finite.
    eps : float in (0, 1]
        Heaviness threshold.
    method : {"exact", "sketch"}
        "exact": :func:`leverage_scores` with method "qr". "sketch": sketched scores
        (see :func:`leverage_scores`), thresholded at ``sketch_lower * eps`` so that the set
        contains U_eps whenever the sketch's scores are at least ``sketch_lower`` times the
        exact ones (measured lower factor at the default size: 0.75);
        its size is then at most rank / (sketch_lower * eps).
    seed : int, SeedSequence or None
        Seed of the sketch (method "sketch").
    sketch_lower : float in (0, 1], default 0.5
        See method "sketch".
    **sketch_params
        ``sketch_size``, ``sketch_kind``, ``jl_dim`` of :func:`leverage_scores`.

    Returns
    -------
    ndarray of int64, sorted; empty when K has rank 0.
    """
    eps = check_real(eps, "eps", 0.0, 1.0, min_inclusive=False)
    if method == "exact":
        if sketch_params:
            raise TypeError(f"unexpected arguments for method='exact': {sorted(sketch_params)}")
        scores, threshold = leverage_scores(K, method="qr"), eps
    elif method == "sketch":
        lower = check_real(sketch_lower, "sketch_lower", 0.0, 1.0, min_inclusive=False)
        scores = leverage_scores(K, method="sketch", seed=seed, **sketch_params)
        threshold = lower * eps
    else:
        raise ValueError(f"method must be 'exact' or 'sketch', got {method!r}")
    return np.flatnonzero(scores >= threshold * (1.0 - _THRESHOLD_SLACK)).astype(np.int64)
