r"""Light estimators: an unbiased estimate of the softmax mass outside the exact key set.

Each estimator draws m keys per query tile (stream ``STREAM_LIGHT_SAMPLES``) with weights
:math:`w_t = 1/(m p_{\ell_t})`; a draw that lands on a key of the exact set, or on a key the
query may not see (causal), contributes 0. So for every query i with exact set :math:`S_i`

.. math::
    \mathbb E \sum_t w_t\, 1[\ell_t \notin S_i]\, e^{s_{i\ell_t}} v_{\ell_t}
      = \sum_{j \notin S_i} e^{s_{ij}} v_j

(and likewise without :math:`v`): numerator and denominator of the rest of the row are
estimated without bias, and merged in log space with the exact partials.

================================  =========================================================
estimator                         draws
================================  =========================================================
:class:`Uniform`                  uniform over the keys, with or without replacement
:class:`Importance`               :math:`p_j \propto \|v_j\|^2` (the paper's AMM analysis),
                                  the pilot rows' column mass (KDEformer-style), or given
                                  weights; mixed half-and-half with uniform (defensive)
:class:`ControlVariate`           uniform draws; a cross-fitted quadratic regression on the
                                  row's standardised logit (row sums only,
                                  :mod:`sketchla.attention.control`)
``None``                          no estimate: the exact keys only
================================  =========================================================

Non-causal: every query tile (the sortLSH blocks when they are part of the key set, else
tiles of consecutive queries) draws its own m keys from all keys, or one set is shared by all
tiles (``shared=True``, the paper's sampling matrix). Key-mask keys (sinks, universal set, ...)
are never drawn. Causal (block scheme): tile j of consecutive queries draws from the keys
before its first query; when there are at most m such keys, all of them are taken exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .._backend import check_int
from ..random import STREAM_LIGHT_SAMPLES, STREAM_PILOT_ROWS, child_seed, stream
from ..sampling import defensive_mixture, draw_samples
from ._tiles import Membership, Problem, QueryTiles
from .partial import softmax_partial

__all__ = ["ControlVariate", "Importance", "LightEstimator", "Uniform", "pilot_rows"]


@dataclass(frozen=True)
class Draws:
    """Sampled keys of every query tile: ``idx``, ``ok`` (or None), ``log_w``, all
    (B, n_tiles, c), and the finite-population factor of the variance."""

    idx: np.ndarray
    ok: np.ndarray | None
    log_w: np.ndarray
    fpc: float | np.ndarray = 1.0


class LightEstimator:
    """Base class: ``draws(prob, tiles, never, rng, claimed)`` gives each tile's samples."""

    sample_size: int = 256
    replace: bool = True
    shared: bool = False

    def _check(self) -> None:
        check_int(self.sample_size, "sample_size", minimum=0)
        for name in ("replace", "shared"):
            if not isinstance(getattr(self, name), bool | np.bool_):
                raise TypeError(f"{name} must be a bool, got {type(getattr(self, name)).__name__}")

    def key_weights(self, prob: Problem, claimed: Membership | None, rng) -> np.ndarray | None:
        """Importance weights (B, n_k) or None (uniform)."""
        return None

    def draws(
        self,
        prob: Problem,
        tiles: QueryTiles,
        never: np.ndarray | None,
        rng: np.random.SeedSequence,
        claimed: Membership | None,
    ) -> Draws:
        m, B, nt = self.sample_size, prob.B, tiles.n_tiles
        weights = self.key_weights(prob, claimed, rng)
        padded = prob.padded
        if padded is not None:  # padding is never drawn
            never = padded if never is None else never | padded
        if prob.causal:
            return self._causal_draws(prob, tiles, rng, weights, never)
        if not self.replace and (never is not None or m > prob.n_k):
            return self._eligible_without_replacement(prob, nt, rng, never)
        probs = defensive_mixture(B, prob.n_k, never, weights)
        s = draw_samples(rng, B, prob.n_k, m, probs, self.replace, None if self.shared else nt)
        idx, log_w = s.idx, s.log_w
        if self.shared:
            idx, log_w = (np.broadcast_to(a[:, None, :], (B, nt, m)) for a in (idx, log_w))
        return Draws(idx, None, log_w, s.fpc)

    def _eligible_without_replacement(self, prob, nt, rng, never) -> Draws:
        """Uniform draws without replacement from the N_b keys outside ``never`` of each
        head (Horvitz-Thompson weights N_b / m), one set per tile (or one for all); with
        m >= N_b every such key is taken once (exact)."""
        m, B = self.sample_size, prob.B
        sets = 1 if self.shared else nt
        idx = np.zeros((B, sets, m), dtype=np.int64)
        ok = np.ones((B, sets, m), dtype=bool)
        log_w = np.zeros((B, sets, m))
        fpc = np.zeros((B, 1))
        for b in range(B):
            eligible = np.arange(prob.n_k) if never is None else np.flatnonzero(~never[b])
            n_b = len(eligible)
            if m >= n_b:
                idx[b, :, :n_b] = eligible
                ok[b] = np.arange(m) < n_b
                continue
            for t in range(sets):
                child = stream(child_seed(rng, b * sets + t), STREAM_LIGHT_SAMPLES)
                idx[b, t] = eligible[child.sample_without_replacement(m, n_b)]
            log_w[b] = np.log(n_b) - np.log(m)
            fpc[b] = 1.0 - m / n_b
        if self.shared:
            idx, ok, log_w = (np.broadcast_to(a, (B, nt, m)) for a in (idx, ok, log_w))
        return Draws(idx, ok, log_w, fpc)

    def _causal_draws(self, prob, tiles, rng, weights, never) -> Draws:
        """Tile j of consecutive queries draws from the N_j eligible keys (not in ``never``)
        before its first query, all of them exactly when N_j <= m."""
        m, B, nt, r = self.sample_size, prob.B, tiles.n_tiles, tiles.size
        lo = np.clip(prob.q_start - prob.k_start + np.arange(nt) * r, 0, prob.n_k)
        s = stream(rng, STREAM_LIGHT_SAMPLES)
        idx = np.zeros((B, nt, m), dtype=np.int64)
        log_w = np.zeros((B, nt, m))
        ok = np.ones((B, nt, m), dtype=bool)
        if weights is not None:  # i.i.d. from the whole distribution; later keys masked
            p = defensive_mixture(B, prob.n_k, never, weights)
            d = draw_samples(rng, B, prob.n_k, m, p, True, nt)
            idx[:], log_w[:] = d.idx, d.log_w
            ok &= idx < lo[None, :, None]
        for b in range(B):
            eligible = np.arange(prob.n_k) if never is None else np.flatnonzero(~never[b])
            counts = np.searchsorted(eligible, lo)  # N_j
            for j in range(nt):
                n_j = int(counts[j])
                if n_j <= m:  # every eligible earlier key, exactly
                    idx[b, j, :n_j] = eligible[:n_j]
                    ok[b, j] = np.arange(m) < n_j
                    log_w[b, j] = 0.0
                elif weights is not None:
                    continue
                elif self.replace:
                    u = s.uniform(np.arange(m) + ((b * nt + j) * m))
                    idx[b, j] = eligible[np.minimum((u * n_j).astype(np.int64), n_j - 1)]
                    log_w[b, j] = np.log(n_j) - np.log(m)
                else:
                    child = stream(child_seed(rng, b * nt + j), STREAM_LIGHT_SAMPLES)
                    idx[b, j] = eligible[child.sample_without_replacement(m, n_j)]
                    log_w[b, j] = np.log(n_j) - np.log(m)
        return Draws(idx, ok, log_w)


@dataclass(frozen=True)
class Uniform(LightEstimator):
    """``sample_size`` keys drawn uniformly per query tile, with replacement (weights n/m) or
    without (``replace=False``: Horvitz-Thompson weights n/m; m = n is exact); ``shared``: one
    set for every tile (the paper's sampling matrix S; non-causal)."""

    sample_size: int = 256
    replace: bool = True
    shared: bool = False

    def __post_init__(self):
        self._check()


@dataclass(frozen=True)
class Importance(LightEstimator):
    r"""``sample_size`` keys drawn i.i.d. from :math:`p = \tfrac12 \text{uniform} +
    \tfrac12 w / \sum w`, weights :math:`1/(m p_j)` (so no weight exceeds 2n/m). ``weights``:
    ``"vnorm"`` (:math:`\|v_j\|^2`, HyperAttention's AMM analysis; needs V), ``"pilot"`` (the
    average softmax weight of each key over ``pilot_size`` random query rows computed exactly,
    a KDE-style column-mass estimate as in KDEformer), or an array (..., n_k) >= 0 of the
    leading shape of K (or 1-D, for every head)."""

    sample_size: int = 256
    weights: object = "vnorm"
    pilot_size: int = 32
    shared: bool = False

    def __post_init__(self):
        self._check()
        check_int(self.pilot_size, "pilot_size", minimum=1)
        w = self.weights
        if isinstance(w, str):
            if w not in ("vnorm", "pilot"):
                raise ValueError(f"weights must be 'vnorm', 'pilot' or an array, got {w!r}")
        else:
            arr = np.asarray(w)
            if arr.dtype.kind not in "iuf" or arr.ndim == 0:
                raise TypeError(
                    f"weights must be 'vnorm', 'pilot' or an array of key weights, got "
                    f"{type(w).__name__}"
                )
            if not np.all(np.isfinite(arr)) or np.any(arr < 0):
                raise ValueError("weights must hold finite non-negative key weights")

    def __eq__(self, other):
        return (
            isinstance(other, Importance)
            and (self.sample_size, self.pilot_size, self.shared)
            == (other.sample_size, other.pilot_size, other.shared)
            and np.array_equal(np.asarray(self.weights), np.asarray(other.weights))
        )

    def __hash__(self):
        return hash((self.sample_size, self.pilot_size, self.shared, str(self.weights)))

    def key_weights(self, prob, claimed, rng):
        w = self.weights
        if isinstance(w, str) and w == "vnorm":
            if prob.v is None:
                raise ValueError("Importance(weights='vnorm') needs V")
            return np.einsum("bnc,bnc->bn", prob.v, prob.v, dtype=np.float64)[prob.kv_index]
        if isinstance(w, str):
            return pilot_rows(prob, claimed, self.pilot_size, rng)[1]
        arr = np.asarray(w, dtype=np.float64)
        root = prob.top
        if arr.shape[-1] != root.n_k:
            raise ValueError(
                f"weights must have one weight per key (n_k = {root.n_k}), got shape "
                f"{arr.shape}"
            )
        arr = np.broadcast_to(arr.reshape(-1, root.n_k), (root.B, root.n_k))
        return arr[:, prob.k_start : prob.k_start + prob.n_k]


@dataclass(frozen=True)
class ControlVariate(LightEstimator):
    """Uniform draws as :class:`Uniform`, summed by the cross-fitted quadratic control variate
    of :mod:`sketchla.attention.control` (a quadratic in the row's standardised logit, fitted
    on one half of the draws and corrected with the other): unbiased, with about
    :math:`1 - R^2` of the plain estimator's variance. Row sums only (no V), non-causal."""

    sample_size: int = 256
    replace: bool = True

    def __post_init__(self):
        self._check()


def pilot_rows(
    prob: Problem, claimed: Membership | None, pilot_size: int, rng
) -> tuple[np.ndarray, np.ndarray]:
    r"""``(log_tau (B,), column_mass (B, n_k))`` from ``pilot_size`` random query rows
    (stream ``STREAM_PILOT_ROWS``) computed exactly over the keys outside the exact set.

    ``log_tau`` is the log of the largest exact light row sum over the pilot rows (ApproxD's
    clamp); ``column_mass`` the average over the pilot rows of the light softmax weights of
    each key (sums to 1 per batch entry where some pilot row has light mass).
    """
    B, n_q, n_k = prob.B, prob.n_q, prob.n_k
    t = min(pilot_size, n_q)
    rows = stream(rng, STREAM_PILOT_ROWS).sample_without_replacement(t, n_q)
    S = np.stack([prob.q[b, rows] @ prob.keys_of(b).T for b in range(B)])  # (B, t, n_k)
    q = np.broadcast_to(rows, (B, t))
    k = np.broadcast_to(np.arange(n_k), (B, n_k))
    b = np.arange(B)
    drop = prob.causal_mask(q, k)
    drop = None if drop is None else ~drop
    if prob.padded is not None:
        drop = prob.padded[:, None, :] if drop is None else drop | prob.padded[:, None, :]
    if claimed is not None:
        c = claimed(b, q, k)
        drop = c if drop is None else drop | c
    if drop is not None:
        np.copyto(S, -np.inf, where=drop)
    lse, _, _ = softmax_partial(S, None)  # S now holds exp(s - rowmax)
    with np.errstate(invalid="ignore", divide="ignore"):
        weights = S / S.sum(axis=-1, keepdims=True)
    weights = np.nan_to_num(weights, nan=0.0)
    mass = weights.sum(axis=1)
    mass /= np.maximum(mass.sum(axis=1, keepdims=True), np.finfo(np.float64).tiny)
    return lse.max(axis=1), mass
