"""LevAttention's universal key set U_eps = {j : score_j >= eps} for |x|^p attention."""

from __future__ import annotations

import numpy as np

from .._backend import as_dense, check_finite, check_int, check_real
from .._torch import accepts_torch
from ..random import UNSET, RngLike, SeedLike, external_stacklevel, rng_alias
from .causal import prefix_leverage_scores
from .leverage import leverage_scores
from .lewis import _monomial_lift, sensitivity_bounds

__all__ = ["universal_set"]

#: scores within this relative margin below eps are kept (rounding must not drop a key whose
#: exact score is eps)
THRESHOLD_SLACK = 1e-10

_METHODS = ("exact", "sketch", "streaming")


def _is_even_int(p: float) -> bool:
    return p == int(p) and int(p) % 2 == 0


def _causal_scores(K: np.ndarray, p: float) -> np.ndarray:
    """Upper bounds on sup_q |q.k_j|^p / sum_{i <= t} |q.k_i|^p over all t >= j."""
    if p == 2:
        return prefix_leverage_scores(K)
    if p < 2:
        # ||y||_p >= ||y||_2 for p <= 2, so the ratio is at most (y_j^2 / ||y||_2^2)^{p/2}
        return prefix_leverage_scores(K) ** (p / 2)
    if _is_even_int(p):
        # |q.k|^{2m} = <q^(x)m, k^(x)m>^2: the prefix leverage of the lifted rows
        return prefix_leverage_scores(_monomial_lift(K, int(p) // 2))
    raise ValueError(f"causal=True needs p <= 2 or an even integer p, got p={p}")


@accepts_torch("K")
def universal_set(
    K,
    eps: float,
    p: float = 2,
    method: str = "exact",
    causal: bool = False,
    rng: RngLike = None,
    *,
    seed: SeedLike | object = UNSET,
    sensitivity: str = "lewis",
    sketch_lower: float = 0.5,
    block_size: int = 2**16,
    streaming_mode: str = "exact",
    **sketch_params,
) -> np.ndarray:
    r"""Sorted indices of the keys that can be eps-heavy for some query: a set that contains
    every eps-heavy key of |x|^p attention for **every** query matrix.

    For f(x) = |x|^p, key j's weight for a query q is
    :math:`|q \cdot k_j|^p / \sum_i |q \cdot k_i|^p \le s_j`, its lp sensitivity in K. Hence
    :math:`U = \{j : u_j \ge \varepsilon\}` for any upper bounds :math:`u_j \ge s_j` contains
    every eps-heavy key of every query, and :math:`|U| \le \sum_j u_j / \varepsilon`
    (LevAttention, arXiv 2410.05462). Deterministic for methods "exact" and "streaming".
    For softmax attention there is no such guarantee.

    * p = 2: :math:`u_j = s_j = l_j`, the leverage score (equality for the witness query
      :math:`q = (K^\top K)^+ k_j`); :math:`|U| \le \operatorname{rank}(K)/\varepsilon`.
    * p != 2: the certified bounds of :func:`sensitivity_bounds` (method ``sensitivity``);
      :math:`\sum_j u_j` is about rank(K) for p < 2 and at most :math:`r^{p/2}` for p > 2
      (Lewis-weight bounds), so :math:`|U| \lesssim r^{\max(1, p/2)}/\varepsilon`.
    * ``causal=True``: query t attends keys 0..t only, and key j's weight among them is at
      most its score within :math:`K_{\le j}` (fewer keys, larger share). Scores: the prefix
      leverage :math:`c_j = k_j^\top (K_{\le j}^\top K_{\le j})^+ k_j` of
      :func:`prefix_leverage_scores` (p = 2; 1 for a key outside the span of the keys before
      it: ridge-regularised online scores would under-estimate it and are not used);
      :math:`c_j^{p/2}` for p < 2 (as :math:`\|y\|_p \ge \|y\|_2`); for even p = 2m the
      prefix leverage of the lifted keys (the C(d+m-1, m) degree-m monomials). Every causal
      eps-heavy entry (query t, key j <= t) is covered. The size is NOT bounded by
      rank/eps: :math:`|U| \le \sum_j c_j / \varepsilon` and :math:`\sum_j c_j` is
      O(d log(n kappa)) (online scores, Cohen, Musco & Pachocki 2016), e.g. keys along one
      direction with norms doubling each score 3/4.

    Parameters
    ----------
    K : array_like, shape (n, d)
        Keys, finite.
    eps : float in (0, 1]
        Heaviness threshold.
    p : float > 0, default 2
        Exponent of f(x) = |x|^p.
    method : {"exact", "sketch", "streaming"}
        "exact": exact leverage (:func:`leverage_scores`, method "qr") or the certified
        sensitivity bounds. The other two need p = 2 and ``causal=False``.
        "sketch": sketched scores (see :func:`leverage_scores`), thresholded at
        ``sketch_lower * eps`` so that the set contains U_eps whenever the sketch's scores are
        at least ``sketch_lower`` times the exact ones (measured lower factor at the default
        size: 0.75); its size is then at most rank / (sketch_lower * eps).
        "streaming": one pass of :class:`StreamingLeverage` over blocks of ``block_size`` rows
        (memory independent of n); ``streaming_mode="exact"`` returns exactly the set of
        "exact" (to rounding: Gram-based, for cond(K) << 1e8), ``"merge"`` a superset of size
        <= rank/eps.
    causal : bool, default False
        See above (method "exact" only).
    rng : int, SeedSequence, numpy Generator or None, default None
        Seed of the sketch (method "sketch"; SPEC 7). ``seed=`` is a deprecated alias.
    sensitivity : {"lewis", "lift", "best"}, default "lewis"
        Bound used for p != 2 (non-causal), see :func:`sensitivity_bounds`.
    sketch_lower : float in (0, 1], default 0.5
        See method "sketch".
    block_size : int, default 65536
        Rows per block (method "streaming").
    streaming_mode : {"exact", "merge"}
        Mode of :class:`StreamingLeverage` (method "streaming").
    **sketch_params
        ``sketch_size``, ``sketch_kind``, ``jl_dim`` of :func:`leverage_scores`
        (method "sketch").

    Returns
    -------
    ndarray of int64, sorted; empty when K has rank 0.
    """
    rng = rng_alias(rng, seed, stacklevel=external_stacklevel())  # type: ignore[arg-type]
    eps = check_real(eps, "eps", 0.0, 1.0, min_inclusive=False)
    p = check_real(p, "p", minimum=0.0, min_inclusive=False)
    if method not in _METHODS:
        raise ValueError(f"method must be one of {_METHODS}, got {method!r}")
    if method != "exact" and (p != 2 or causal):
        raise ValueError(f"method={method!r} supports p=2 and causal=False only (use 'exact')")
    if sketch_params and method != "sketch":
        raise TypeError(f"unexpected arguments for method={method!r}: {sorted(sketch_params)}")
    threshold = eps
    K = as_dense(K, "K", ndim=(2,))
    check_finite(K, "K")  # here, so that every method's errors name K
    if method == "streaming":
        from .streaming import StreamingLeverage

        b = check_int(block_size, "block_size", minimum=1)
        s = StreamingLeverage(K.shape[1], eps, mode=streaming_mode)
        for lo in range(0, K.shape[0], b):
            s.update(K[lo : lo + b])
        return s.universal_set()
    if method == "sketch":
        if K.shape[0] < K.shape[1]:
            raise ValueError(
                f"method='sketch' needs a tall K (n >= d), got K of shape {K.shape}; use "
                "method='exact' (a wide K has rank <= n and every key can be heavy)"
            )
        lower = check_real(sketch_lower, "sketch_lower", 0.0, 1.0, min_inclusive=False)
        scores = leverage_scores(K, method="sketch", rng=rng, **sketch_params)
        threshold = lower * eps
    elif causal:
        scores = _causal_scores(K.astype(np.float64, copy=False), p)
    elif p == 2:
        scores = leverage_scores(K, method="qr")
    else:
        scores = sensitivity_bounds(K, p, method=sensitivity)
    return np.flatnonzero(scores >= threshold * (1.0 - THRESHOLD_SLACK)).astype(np.int64)
