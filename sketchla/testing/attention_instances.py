r"""Synthetic attention instances shared by the tests, the benchmarks and ``sketchla validate``.

Every instance is scaled for the default attention scale :math:`1/\sqrt{d}`, so the logits are
:math:`s_{ij} = q_i \cdot k_j / \sqrt{d}`. With Gaussian rows these are about N(0, 1):

========================  ========================================================================
kind                      structure (what makes it hard or easy)
========================  ========================================================================
``"flat"``                Q, K, V i.i.d. N(0, 1): every row of softmax(QK^T/sqrt d) is spread out;
                          no heavy entries, the sampled (light) part carries the mass.
``"planted"``             K, V Gaussian; query i is ``g_i + c k_{pi(i)}`` for a random key
                          pi(i), with c chosen so the needle's logit is about
                          ``needle * log(n_k)``: one heavy entry per row (a "needle"), which
                          angular LSH puts in the query's bucket.
``"sink"``                an attention sink: every query is ``g_i + a u`` and key 0 is ``b u``
                          (u a unit vector) with logit ``a b / sqrt d = log n_k``: one column
                          that every query needs, with about half of each row's mass.
``"large_norm"``          1% of the keys (at least one) have their norm multiplied by 4: heavy,
                          unpredictable entries in a few columns (log-normal-like row sums).
``"random_sign"``         Q = K with i.i.d. +-1 entries (LevAttention's counterexample for
                          softmax): key j has logit sqrt(d) against query j and about N(0, 1)
                          against the others, so *every* key is heavy for some query.
========================  ========================================================================
"""

from __future__ import annotations

import numpy as np

from .._backend import check_int, check_real
from ..random import UNSET, RngLike, SeedLike, external_stacklevel, rng_alias

__all__ = ["ATTENTION_INSTANCES", "attention_instance"]

ATTENTION_INSTANCES: tuple[str, ...] = ("flat", "planted", "sink", "large_norm", "random_sign")


def attention_instance(
    kind: str,
    n: int,
    d: int = 64,
    *,
    n_k: int | None = None,
    d_v: int | None = None,
    needle: float = 1.0,
    rng: RngLike = None,
    seed: SeedLike | object = UNSET,
    dtype=np.float64,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Q (n, d), K (n_k, d), V (n_k, d_v) of the named kind (see the module docstring).

    Parameters
    ----------
    kind : str
        One of ``ATTENTION_INSTANCES``.
    n : int
        Number of queries (and of keys when ``n_k`` is None).
    d : int
        Head dimension of Q and K.
    n_k, d_v : int, optional
        Number of keys (default n) and value dimension (default d). ``"random_sign"`` needs
        ``n_k == n`` (Q = K).
    needle : float
        ``"planted"`` only: the needle's logit is about ``needle * log(n_k)``; above 1 the
        needle carries most of its row's mass.
    rng : int, SeedSequence, numpy Generator or None
        The NumPy generator that draws the instance (``numpy.random.default_rng(rng)``; test
        data, not a sketch). None: fresh entropy (SPEC 7), as everywhere in sketchla; pass an
        int for a reproducible instance.
    seed : deprecated alias of ``rng``.
    dtype : float32 or float64

    Examples
    --------
    >>> Q, K, V = attention_instance("sink", 256, 16, d_v=8)
    >>> Q.shape, K.shape, V.shape
    ((256, 16), (256, 16), (256, 8))
    """
    if kind not in ATTENTION_INSTANCES:
        raise ValueError(f"kind must be one of {ATTENTION_INSTANCES}, got {kind!r}")
    n = check_int(n, "n", minimum=1)
    d = check_int(d, "d", minimum=1)
    n_k = n if n_k is None else check_int(n_k, "n_k", minimum=1)
    d_v = d if d_v is None else check_int(d_v, "d_v", minimum=1)
    needle = check_real(needle, "needle", 0.0)
    if kind == "random_sign" and n_k != n:
        raise ValueError(f"kind 'random_sign' has Q = K and needs n_k == n, got {n_k} != {n}")
    rng = np.random.default_rng(
        rng_alias(rng, seed, stacklevel=external_stacklevel())  # type: ignore[arg-type]
    )
    log_nk = np.log(max(n_k, 2))
    if kind == "random_sign":
        Q = K = rng.choice([-1.0, 1.0], size=(n, d))
    else:
        Q = rng.standard_normal((n, d))
        K = rng.standard_normal((n_k, d))
    if kind == "planted":
        target = rng.integers(0, n_k, size=n)
        # logit of the needle: c |k|^2 / sqrt(d) ~ c sqrt(d) = needle * log(n_k)
        Q = Q + (needle * log_nk / np.sqrt(d)) * K[target]
    elif kind == "sink":
        u = rng.standard_normal(d)
        u /= np.linalg.norm(u)
        a = np.sqrt(d)
        Q = Q + a * u
        K[0] = (log_nk * np.sqrt(d) / a) * u
    elif kind == "large_norm":
        big = rng.choice(n_k, size=max(1, n_k // 100), replace=False)
        K[big] *= 4.0
    V = rng.standard_normal((n_k, d_v))
    return (
        np.ascontiguousarray(Q, dtype=dtype),
        np.ascontiguousarray(K, dtype=dtype),
        np.ascontiguousarray(V, dtype=dtype),
    )
