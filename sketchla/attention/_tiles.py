r"""The one compute kernel of the engine: partial softmaxes of query tiles against key lists.

A problem (:class:`Problem`) is a batch of B flattened heads: ``q (B, n_q, d)`` (already
multiplied by the logit scale), ``k (B, n_k, d)``, ``v (B, n_k, d_v)`` or None (row sums).
Query i sits at position ``q_start + i`` and key j at ``k_start + j``; with ``causal`` key j is
visible to query i iff its position is not after the query's. The root problem of a call has
``k_start = 0`` and ``q_start = n_k - n_q`` (bottom-right alignment: the last query sees every
key, as in decoding against a KV cache; equal to top-left when ``n_q == n_k``).

A *query tiling* (:class:`QueryTiles`) cuts a permutation of the queries into tiles of r rows;
every tile gets a list of c candidate keys, and :func:`tile_partial` forms the (r, c) logits of
each tile with one batched matmul per chunk of tiles (``(T, r, d) @ (T, d, c)``), masks the
entries that are not in the key set (invalid candidates, causal, and the keys that a
*membership* claims for an earlier part), and reduces them to a partial softmax. Chunks hold
about ``CHUNK_ENTRIES`` logits, so memory stays O(CHUNK_ENTRIES + n_q d_v) besides the inputs.

A *membership* answers "is key k in query q's set?" for whole tiles at once:
``member(b (T,), q (T, r), k (T, c))`` returns a bool array broadcastable to (T, r, c). Key
selectors publish one, so that later parts and the sampler exclude their keys (each key
counts once).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np

from .._kernels.control import tile_moments
from .partial import Partial, softmax_partial

__all__ = [
    "CHUNK_ENTRIES",
    "Membership",
    "Problem",
    "QueryTiles",
    "Standardisation",
    "index_tiles",
    "tile_partial",
]

#: logits formed per chunk (16 MiB of float32): bounds the temporaries of every partial
CHUNK_ENTRIES = 2**22

#: ``member(b (T,), q (T, r), k (T, c)) -> bool`` broadcastable to (T, r, c)
Membership = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


@dataclass
class Problem:
    """Flattened heads of one (sub)problem; see the module docstring. ``cache`` holds what the
    key selectors compute once per call on the root problem (e.g. universal sets)."""

    q: np.ndarray
    k: np.ndarray
    v: np.ndarray | None
    causal: bool
    q_start: int = 0
    k_start: int = 0
    root: Problem | None = None
    cache: dict = field(default_factory=dict)
    #: (B,) key/value head of each query head (grouped-query attention: K and V are indexed,
    #: never copied per head); None is the identity
    kv: np.ndarray | None = None
    #: (B_kv, n_k) bool, True = padded key (never attended, drawn or selected), or None
    pad: np.ndarray | None = None
    #: None: softmax weights e^s; p > 0: polynomial weights |s|^p = e^{p log|s|}, so the same
    #: partials and merges serve LevAttention's polynomial kernels
    kernel_p: float | None = None

    @property
    def B(self) -> int:
        return self.q.shape[0]

    @property
    def n_q(self) -> int:
        return self.q.shape[1]

    @property
    def n_k(self) -> int:
        return self.k.shape[1]

    @property
    def dtype(self) -> np.dtype:
        return self.q.dtype

    @property
    def kv_index(self) -> np.ndarray:
        """(B,) key/value head of each query head."""
        return np.arange(self.B) if self.kv is None else self.kv

    @property
    def padded(self) -> np.ndarray | None:
        """(B, n_k) bool padding mask per query head, or None."""
        return None if self.pad is None else self.pad[self.kv_index]

    def keys_of(self, b: int) -> np.ndarray:
        """The (n_k, d) keys of query head b."""
        return self.k[self.kv_index[b]]

    @property
    def top(self) -> Problem:
        """The root problem of the call (itself at the root)."""
        return self if self.root is None else self.root

    def sub(self, qs: int, qe: int, ks: int, ke: int, causal: bool) -> Problem:
        """Queries [qs, qe) and keys [ks, ke) as a problem of their own (positions kept)."""
        return Problem(
            self.q[:, qs:qe],
            self.k[:, ks:ke],
            None if self.v is None else self.v[:, ks:ke],
            causal,
            self.q_start + qs,
            self.k_start + ks,
            self.top,
            kernel_p=self.kernel_p,
            kv=self.kv,
            pad=None if self.pad is None else self.pad[:, ks:ke],
        )

    def visible_keys(self, q_stop: int) -> int:
        """Keys ``[0, visible_keys)`` are visible to the queries before ``q_stop``."""
        if not self.causal:
            return self.n_k
        return int(np.clip(self.q_start + q_stop - self.k_start, 0, self.n_k))

    def causal_mask(self, q: np.ndarray, k: np.ndarray) -> np.ndarray | None:
        """(T, r, c) True where key k is visible to query q, or None when all are."""
        if not self.causal:
            return None
        qpos = q + (self.q_start - self.k_start)
        if not (k.max(axis=1) > qpos.min(axis=1)).any():  # every tile sees all its keys
            return None
        return k[:, None, :] <= qpos[:, :, None]


@dataclass(frozen=True)
class Standardisation:
    """Per-query logit mean and inverse standard deviation, ``(B, n_q)`` each, from
    :func:`sketchla.attention.control.logit_standardisation`; ``halves`` asks the moments of
    the two halves of the draws (light part) instead of (count, sum z, sum z^2) (exact
    parts)."""

    mu: np.ndarray
    inv_sigma: np.ndarray
    halves: bool = False


@dataclass(frozen=True)
class QueryTiles:
    """Sorted position t of the queries of batch entry b is query ``order[b, t]``; positions
    ``[j r, (j + 1) r)`` form tile j (the last one may be short: its padded rows are computed
    on query 0 and dropped)."""

    order: np.ndarray
    n_tiles: int
    size: int
    #: ``order`` is the index order (tiles of consecutive queries): nothing to permute back
    in_order: bool = False

    def inverse(self) -> np.ndarray:
        inv = np.empty_like(self.order)
        np.put_along_axis(inv, self.order, np.arange(self.order.shape[-1])[None, :], axis=-1)
        return inv

    @property
    def of_query(self) -> np.ndarray:
        """(B, n_q) tile of each query."""
        return self.inverse() // self.size

    def padded(self) -> np.ndarray:
        """(B, n_tiles, size) query indices, padded with 0."""
        return _pad(self.order, self.n_tiles * self.size).reshape(
            self.order.shape[0], self.n_tiles, self.size
        )


def index_tiles(B: int, n_q: int, size: int) -> QueryTiles:
    """Queries in index order, cut into tiles of ``size`` rows."""
    n_tiles = -(-n_q // size)
    return QueryTiles(
        np.broadcast_to(np.arange(n_q), (B, n_q)), n_tiles, min(size, n_q), in_order=True
    )


def _pad(order: np.ndarray, size: int) -> np.ndarray:
    """``order`` (B, n) padded with index 0 to (B, size); padded slots are masked by callers."""
    if order.shape[1] == size:
        return np.ascontiguousarray(order)
    out = np.zeros((order.shape[0], size), dtype=np.int64)
    out[:, : order.shape[1]] = order
    return out


def _gather(X: np.ndarray, batch: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """``X[batch[t], idx[t, :]]`` for t = 0..T-1: shape (T, len(idx[t]), c)."""
    flat = idx + (batch * X.shape[1])[:, None]
    return X.reshape(-1, X.shape[-1])[flat]


def _chunks(total: int, per_item: int) -> Iterator[tuple[int, int]]:
    step = max(1, CHUNK_ENTRIES // max(1, per_item))
    for s in range(0, total, step):
        yield s, min(total, s + step)


def tile_partial(
    prob: Problem,
    tiles: QueryTiles,
    k_idx: np.ndarray,
    key_ok: np.ndarray | None = None,
    exclude: Membership | None = None,
    log_w: np.ndarray | None = None,
    want_sq: bool = False,
    stats: Standardisation | None = None,
) -> Partial:
    """Partial of every query over the keys ``k_idx[b, j] (c,)`` of its tile j.

    An entry (query q, key k) counts unless ``key_ok[b, j]`` is False for that candidate, the
    key is hidden from q by the causal mask, or ``exclude`` claims it; counted entries get the
    weights ``exp(log_w[b, j])``. ``k_idx``, ``key_ok`` and ``log_w`` have shape
    (B, n_tiles, c). Returns the partial in query order. With ``stats``, also the
    control-variate moments of each query's unweighted logits (``mom (B, n_q, 2, 9)``,
    ``mom_max (B, n_q)``; draw halves by column parity).
    """
    B, v, kv = prob.B, prob.v, prob.kv_index
    nt, r, c = tiles.n_tiles, tiles.size, k_idx.shape[-1]
    q_idx = tiles.padded().reshape(B * nt, r)
    k_idx = k_idx.reshape(B * nt, c)
    if key_ok is not None:
        key_ok = key_ok.reshape(B * nt, c)
    if log_w is not None:
        log_w = log_w.reshape(B * nt, c).astype(prob.dtype, copy=False)
    batch = np.repeat(np.arange(B), nt)
    lse = np.empty((B * nt, r), dtype=prob.dtype)
    lse2 = np.empty((B * nt, r), dtype=prob.dtype) if want_sq else None
    out = None if v is None else np.empty((B * nt, r, v.shape[-1]), dtype=prob.dtype)
    mom = None if stats is None else np.empty((B * nt, r, 2, 9))
    mom_max = None if stats is None else np.empty((B * nt, r))
    for s, e in _chunks(B * nt, r * c):
        bt, qt, kt = batch[s:e], q_idx[s:e], k_idx[s:e]
        kvt = kv[bt]
        S = _gather(prob.q, bt, qt) @ _gather(prob.k, kvt, kt).transpose(0, 2, 1)
        if prob.kernel_p is not None:
            with np.errstate(divide="ignore"):
                np.log(np.abs(S, out=S), out=S)
            S *= S.dtype.type(prob.kernel_p)
        if log_w is not None:
            S += log_w[s:e, None, :]
        drop = None if key_ok is None else ~key_ok[s:e, None, :]
        if prob.pad is not None:
            padded = prob.pad[kvt[:, None], kt][:, None, :]
            drop = padded if drop is None else drop | padded
        visible = prob.causal_mask(qt, kt)
        if visible is not None:
            drop = ~visible if drop is None else drop | ~visible
        if exclude is not None:
            claimed = exclude(bt, qt, kt)
            drop = claimed if drop is None else drop | claimed
        if drop is not None:
            np.copyto(S, -np.inf, where=drop)
        if stats is not None:
            assert mom is not None and mom_max is not None
            rows = (bt[:, None], qt)
            weights = np.zeros((e - s, c)) if log_w is None else log_w[s:e]
            mom_max[s:e], mom[s:e] = tile_moments(
                S, weights, stats.mu[rows], stats.inv_sigma[rows], stats.halves, work=S.nbytes
            )
        Vt = None if v is None else _gather(v, kvt, kt)
        lse[s:e], o, l2 = softmax_partial(S, Vt, want_sq)
        if out is not None:
            out[s:e] = o
        if lse2 is not None:
            lse2[s:e] = l2
    # back to query order; padded query rows (sorted position >= n_q) are dropped
    n_q = tiles.order.shape[1]
    inv = None if tiles.in_order else tiles.inverse()

    def unsort(X: np.ndarray | None) -> np.ndarray | None:
        if X is None:
            return None
        X = X.reshape(B, nt * r, *X.shape[2:])
        if inv is None:
            return X[:, :n_q]
        return np.take_along_axis(X, inv.reshape(*inv.shape, *([1] * (X.ndim - 2))), axis=1)

    lse_q = unsort(lse)
    assert lse_q is not None
    return Partial(lse_q, unsort(out), unsort(lse2), mom=unsort(mom), mom_max=unsort(mom_max))
