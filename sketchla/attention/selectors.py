r"""Key selectors: the keys that each query attends exactly.

A selector is a small frozen object that says *which* keys; the engine
(:func:`sketchla.attention.approx_attention`) computes the exact partial softmax over them.
Selectors compose by union, ``Sinks(4) | Window(256) | SortLSH(256)``, and every key counts
once: the union is evaluated in a fixed order (key masks, windows, sortLSH blocks, multi-round
windows), each part leaving out the keys an earlier part holds, and the light estimator
leaving out all of them.

=====================  ====================================================  ===============
selector               keys of query i (position p_i; causal: only p_j <= p_i)  kind
=====================  ====================================================  ===============
:class:`Sinks`         the first ``k`` keys (attention sinks, StreamingLLM)  key mask
:class:`KeyIndices`    the given key indices                                 key mask
:class:`TopNorm`       the ``k`` keys of largest norm                        key mask
:class:`UniversalSet`  LevAttention's universal set (eps or top-k scores)    key mask
:class:`Window`        keys with ``|p_i - p_j| < size`` (causal:             band
                       ``0 <= p_i - p_j < size``)
:class:`SortLSH`       the rank-aligned sortLSH block of i (HyperAttention)  tiles
:class:`TopBlocks`     the key blocks of largest logit bound (Quest)         tiles
:class:`MultiRoundLSH` the union of T code-aligned SimHash windows           per query
=====================  ====================================================  ===============

A new selector is one subclass of :class:`KeySelector` (a frozen dataclass) whose ``bind``
returns a :class:`Selection`: its exact partial over a problem and its membership test.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from .._backend import check_finite, check_int, check_real
from ..lsh import SimHash, mips_augment
from ..scores import leverage_scores, sensitivity_bounds, universal_set
from ._tiles import Membership, Problem, QueryTiles, Standardisation, index_tiles, tile_partial
from .partial import Partial

__all__ = [
    "KeyIndices",
    "KeySelector",
    "KeyUnion",
    "MultiRoundLSH",
    "Selection",
    "Sinks",
    "SortLSH",
    "TopBlocks",
    "TopNorm",
    "UniversalSet",
    "Window",
    "parse_kernel",
    "universal_key_set",
]


class KeySelector:
    """Base class of the key selectors; ``a | b`` is their union (each key once)."""

    #: evaluation order within a union (lower first); key masks first, since their membership
    #: test is one lookup
    order: ClassVar[int] = 0

    def __or__(self, other: KeySelector) -> KeyUnion:
        if not isinstance(other, KeySelector):
            return NotImplemented
        return KeyUnion((*_members(self), *_members(other)))

    def bind(self, prob: Problem, rng: np.random.SeedSequence) -> Selection:
        """The selection of this selector on ``prob`` (hashing, scores, ...)."""
        raise NotImplementedError


def _members(sel: KeySelector) -> tuple[KeySelector, ...]:
    return sel.parts if isinstance(sel, KeyUnion) else (sel,)


@dataclass(frozen=True)
class KeyUnion(KeySelector):
    """The union of several selectors (build it with ``|``)."""

    parts: tuple[KeySelector, ...]

    def __post_init__(self):
        for p in self.parts:
            if not isinstance(p, KeySelector) or isinstance(p, KeyUnion):
                raise TypeError(f"a KeyUnion holds key selectors, got {type(p).__name__}")

    def __repr__(self) -> str:
        return " | ".join(repr(p) for p in self.parts)


class Selection:
    """A selector bound to one problem: ``member`` (see :mod:`sketchla.attention._tiles`),
    ``partial(prob, exclude, stats)`` over its keys minus those ``exclude`` claims, and the
    query tiling that light samples should share (or None)."""

    tiles: QueryTiles | None = None

    def member(self, b: np.ndarray, q: np.ndarray, k: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def partial(
        self, prob: Problem, exclude: Membership | None, stats: Standardisation | None, tile: int
    ) -> Partial:
        raise NotImplementedError


# ------------------------------------------------------------------------------------------
# key masks: the same keys for every query (subject to the causal mask)
# ------------------------------------------------------------------------------------------
class MaskSelector(KeySelector):
    """A selector whose keys do not depend on the query: ``mask(prob, rng)`` is (B, n_k)."""

    order = 0
    #: chosen anew on each subproblem of the recursive causal scheme (else once, on the
    #: whole problem, and sliced)
    per_subproblem: ClassVar[bool] = False

    def mask(self, prob: Problem, rng: np.random.SeedSequence) -> np.ndarray:
        raise NotImplementedError

    def check_causal(self) -> None:
        """Raise if this selector would let future keys decide which past keys are kept."""

    def bind(self, prob: Problem, rng: np.random.SeedSequence) -> Selection:
        return MaskSelection(self.mask(prob, rng))


class MaskSelection(Selection):
    """Keys given by a (B, n_k) mask, attended by every query that sees them."""

    def __init__(self, mask: np.ndarray):
        self.mask = mask

    def member(self, b, q, k):
        return self.mask[b[:, None], k][:, None, :]

    def keys(self) -> tuple[np.ndarray, np.ndarray]:
        """``(idx (B, g), ok (B, g))``: each batch entry's keys, padded to the largest count."""
        counts = self.mask.sum(axis=1)
        g = int(counts.max(initial=0))
        idx = np.argsort(~self.mask, axis=1, kind="stable")[:, :g]
        return idx, np.arange(g)[None, :] < counts[:, None]

    def partial(self, prob, exclude, stats, tile):
        idx, ok = self.keys()
        if prob.causal:  # small tiles: each lists its own positions (see _causal_partial)
            return self._causal_partial(prob, idx, ok, min(tile, 64, prob.n_q), exclude, stats)
        tiles = index_tiles(prob.B, prob.n_q, tile)
        shape = (prob.B, tiles.n_tiles, idx.shape[1])
        k_idx = np.broadcast_to(idx[:, None, :], shape)
        return tile_partial(
            prob, tiles, k_idx, np.broadcast_to(ok[:, None, :], shape), exclude, stats=stats
        )

    def _causal_partial(self, prob, idx, ok, r, exclude, stats) -> Partial:
        """Causal: tile j lists the key-mask keys before its first query (a prefix of the
        ascending key list) and then its own r positions (those not in the mask dropped), so
        that no list -- its length, and hence the rounding of its sums -- depends on later
        keys. Tiles with equal prefix lengths are computed together."""
        assert exclude is None and stats is None  # key masks come first; no causal control
        n_tiles = -(-prob.n_q // r)
        offset = prob.q_start - prob.k_start
        starts = np.arange(n_tiles) * r + offset
        idx_m = np.where(ok, idx, prob.n_k)
        counts = (idx_m[:, None, :] < starts[None, :, None]).sum(axis=2).max(axis=0)
        parts = []
        first = 0
        for t in range(1, n_tiles + 1):
            if t < n_tiles and counts[t] == counts[first]:
                continue
            c = int(counts[first])
            sub = prob.sub(first * r, min(t * r, prob.n_q), 0, prob.n_k, True)
            tiles = index_tiles(sub.B, sub.n_q, r)
            own = starts[first:t, None] + np.arange(r)[None, :]  # (tiles, r)
            own_ok = (own >= 0) & (own < prob.n_k)
            own = np.clip(own, 0, prob.n_k - 1)
            shape = (prob.B, t - first, c)
            prefix = np.broadcast_to(np.minimum(idx[:, None, :c], prob.n_k - 1), shape)
            prefix_ok = np.broadcast_to(idx_m[:, None, :c] < starts[None, first:t, None], shape)
            own_in_mask = own_ok[None] & self.mask[np.arange(prob.B)[:, None, None], own[None]]
            own_idx = np.broadcast_to(own[None], own_in_mask.shape)
            k_idx = np.concatenate([prefix, own_idx], axis=2)
            k_ok = np.concatenate([prefix_ok, own_in_mask], axis=2)
            parts.append(tile_partial(sub, tiles, k_idx, k_ok))
            first = t
        out = None if prob.v is None else np.concatenate([p.out for p in parts], axis=1)
        return Partial(np.concatenate([p.lse for p in parts], axis=1), out)


def _positions(prob: Problem, indices) -> np.ndarray:
    """Key indices of the root problem -- 1-D (every head), or one row per query head, or
    per key/value head (``-1`` pads rows) -- as a (B, n_k) mask of ``prob``'s keys."""
    local = np.asarray(indices)
    if local.ndim > 1 and local.shape[0] != prob.B:  # per key/value head
        local = local[prob.kv_index]
    mask = np.zeros((prob.B, prob.n_k), dtype=bool)
    if local.ndim == 1:
        local = local[local >= 0] - prob.k_start
        mask[:, local[(local >= 0) & (local < prob.n_k)]] = True
    else:
        for b in range(prob.B):
            row = local[b][local[b] >= 0] - prob.k_start
            mask[b, row[(row >= 0) & (row < prob.n_k)]] = True
    return mask


def _valid_keys(root: Problem, h: int) -> np.ndarray:
    """Indices of the keys of key/value head h that are not padding."""
    if root.pad is None:
        return np.arange(root.n_k)
    return np.flatnonzero(~root.pad[h])


def _ragged(rows: list[np.ndarray]) -> np.ndarray:
    """Rows of key indices as one array padded with -1."""
    g = max((len(r) for r in rows), default=0)
    out = np.full((len(rows), g), -1, dtype=np.int64)
    for b, r in enumerate(rows):
        out[b, : len(r)] = r
    return out


@dataclass(frozen=True)
class Sinks(MaskSelector):
    """The first ``k`` keys, attended by every query (attention sinks: StreamingLLM,
    Xiao et al., arXiv 2309.17453)."""

    k: int = 4

    def __post_init__(self):
        check_int(self.k, "k", minimum=0)

    def mask(self, prob, rng):
        root = prob.top
        if root.pad is None:
            return _positions(prob, np.arange(min(self.k, root.n_k)))
        return _positions(
            prob, _ragged([_valid_keys(root, h)[: self.k] for h in range(root.k.shape[0])])
        )


@dataclass(frozen=True)
class KeyIndices(MaskSelector):
    """Explicit key indices: a 1-D int array (every head), or (..., g) per head (the leading
    shape of K). With ``causal`` a query attends only the given keys in its past; the caller
    answers for the indices not being chosen by looking at future keys."""

    indices: object

    def __post_init__(self):
        idx = np.asarray(self.indices)
        if idx.dtype.kind not in "iu":
            raise TypeError(
                f"indices must hold integer key indices, got {type(self.indices).__name__} "
                f"with dtype {idx.dtype}"
            )
        if idx.ndim == 0:
            raise ValueError("indices must be a 1-D array of key indices (or (..., g) per head)")

    def __eq__(self, other):
        return isinstance(other, KeyIndices) and np.array_equal(
            np.asarray(self.indices), np.asarray(other.indices)
        )

    def __hash__(self):
        return hash(np.asarray(self.indices).tobytes())

    def mask(self, prob, rng):
        root = prob.top
        idx = np.asarray(self.indices)
        if idx.size and (idx.min() < 0 or idx.max() >= root.n_k):
            raise ValueError(
                f"indices must be key indices in [0, {root.n_k}), got {idx.min()}..{idx.max()}"
            )
        if idx.ndim > 1:
            heads = math.prod(idx.shape[:-1])
            if heads not in (root.B, root.k.shape[0]):
                raise ValueError(
                    f"per-head indices must have one row per query head ({root.B} in all) or "
                    f"per key/value head ({root.k.shape[0]}), got shape {idx.shape}"
                )
            idx = idx.reshape(heads, -1)
        return _positions(prob, idx)


@dataclass(frozen=True)
class TopNorm(MaskSelector):
    """The ``k`` keys of largest norm of each head (ties to the lower index): keys that a
    random hyperplane hash misses but that weigh on every query. Causal: chosen within each
    off-diagonal quadrant of the recursive scheme (``causal_scheme="halving"``), so that no
    query's keys depend on future keys; the block-causal scheme refuses it."""

    k: int = 16
    per_subproblem = True

    def __post_init__(self):
        check_int(self.k, "k", minimum=0)

    def check_causal(self):
        raise ValueError(
            "TopNorm ranks all keys, so future keys would decide which past keys a query "
            "attends: use causal_scheme='halving' (chosen per off-diagonal quadrant), Sinks "
            "or UniversalSet(eps=...)"
        )

    def mask(self, prob, rng):
        mask = np.zeros(prob.k.shape[:2], dtype=bool)
        k = min(self.k, prob.n_k)
        if k > 0:
            norms = np.einsum("bnd,bnd->bn", prob.k, prob.k)
            if prob.pad is not None:
                norms = np.where(prob.pad, -np.inf, norms)
            top = np.argsort(-norms, axis=1, kind="stable")[:, :k]
            np.put_along_axis(mask, top, True, axis=1)
            if prob.pad is not None:
                mask &= ~prob.pad
        return mask[prob.kv_index]


def parse_kernel(kernel) -> float | None:
    """None for softmax, else the exponent p > 0 of ("poly", p)."""
    if isinstance(kernel, str) and kernel == "softmax":
        return None
    if (
        isinstance(kernel, tuple)
        and len(kernel) == 2
        and kernel[0] == "poly"
        and isinstance(kernel[1], numbers.Real)
        and not isinstance(kernel[1], bool)
    ):
        return check_real(kernel[1], "kernel exponent p", 0.0, None, min_inclusive=False)
    raise ValueError(f"kernel must be 'softmax' or ('poly', p) with a real p > 0, got {kernel!r}")


def universal_key_set(
    K,
    eps: float | None = None,
    k: int | None = None,
    p: float = 2.0,
    causal: bool = False,
    *,
    score_method: str = "exact",
    rng: np.random.SeedSequence | int | None = 0,
) -> np.ndarray:
    r"""The universal key set of one head: sorted indices into the rows of K (n_k, d).

    ``eps``: :func:`sketchla.universal_set` of K with exponent p (causal: prefix scores, each
    key scored among the keys up to it, so the set restricted to keys <= i never depends on
    later keys). ``k``: the k keys with the largest such scores (ties to the lower index; all
    keys when k >= n_k); non-causal only, except k >= n_k. Exactly one of the two.
    ``score_method="sketch"`` (non-causal, p = 2 only) uses sketched leverage scores seeded by
    ``rng`` (see :func:`sketchla.leverage_scores`); it voids the deterministic guarantee
    unless the sketched scores are within the factor of ``universal_set``.
    """
    if (eps is None) == (k is None):
        raise ValueError("give exactly one of eps (score threshold) and k (number of keys)")
    if score_method not in ("exact", "sketch"):
        raise ValueError(f"score_method must be 'exact' or 'sketch', got {score_method!r}")
    if eps is not None:
        eps = check_real(eps, "eps", 0.0, 1.0, min_inclusive=False)
        return universal_set(K, eps, p=p, method=score_method, causal=causal, rng=rng)
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
        scores = leverage_scores(K, method="sketch", rng=rng)
    elif p == 2:
        scores = leverage_scores(K)
    else:
        scores = sensitivity_bounds(K, p)
    top = np.argsort(-scores, kind="stable")[:k]
    return np.sort(top).astype(np.int64)


@dataclass(frozen=True)
class UniversalSet(MaskSelector):
    r"""LevAttention's universal set of each head (arXiv 2410.05462): the keys whose leverage
    score (p = 2) or certified lp-sensitivity bound is at least ``eps``, or the ``k`` keys
    with the largest scores. For |x|^p attention it holds every eps-heavy key of every query
    (:func:`sketchla.universal_set`); for softmax it is a heuristic. Causal: prefix scores
    (``eps`` only), so no query's keys depend on future keys."""

    eps: float | None = None
    k: int | None = None
    p: float = 2.0
    score_method: str = "exact"

    def __post_init__(self):
        if (self.eps is None) == (self.k is None):
            raise ValueError("give exactly one of eps (score threshold) and k (number of keys)")
        if self.eps is not None:
            check_real(self.eps, "eps", 0.0, 1.0, min_inclusive=False)
        if self.k is not None:
            check_int(self.k, "k", minimum=1)
        check_real(self.p, "p", 0.0, None, min_inclusive=False)
        if self.score_method not in ("exact", "sketch"):
            raise ValueError(f"score_method must be 'exact' or 'sketch', got {self.score_method!r}")

    def mask(self, prob, rng):
        root = prob.top
        key = ("universal", self, prob.causal or root.causal)
        if key not in root.cache:  # per key/value head, over its keys that are not padding
            sets = []
            for h in range(root.k.shape[0]):
                valid = _valid_keys(root, h)
                chosen = universal_key_set(
                    root.k[h][valid], self.eps, self.k, self.p, root.causal,
                    score_method=self.score_method, rng=rng,
                )  # fmt: skip
                sets.append(valid[chosen])
            root.cache[key] = _ragged(sets)
        return _positions(prob, root.cache[key])


# ------------------------------------------------------------------------------------------
# local window: a band around each query's position
# ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Window(KeySelector):
    """Keys within ``size`` positions of the query: ``|p_i - p_j| < size``, or with causal
    attention the ``size`` most recent keys ``0 <= p_i - p_j < size`` (the query's own
    position included). Positions are aligned bottom-right when n_q != n_k."""

    size: int = 256
    order = 1

    def __post_init__(self):
        check_int(self.size, "size", minimum=1)

    def bind(self, prob, rng):
        return WindowSelection(self.size, prob)


class WindowSelection(Selection):
    def __init__(self, size: int, prob: Problem):
        self.size = size
        self.causal = prob.causal
        self.offset = prob.q_start - prob.k_start

    def member(self, b, q, k):
        return self._band((q + self.offset)[:, :, None] - k[:, None, :])

    def _band(self, lag: np.ndarray) -> np.ndarray:
        """0 <= lag < w (causal) or |lag| < w, as one unsigned comparison of int64 lags."""
        lag = lag.astype(np.int64)
        if not self.causal:
            lag += self.size - 1
            return lag.view(np.uint64) < np.uint64(2 * self.size - 1)
        return lag.view(np.uint64) < np.uint64(self.size)

    def partial(self, prob, exclude, stats, tile):
        # a tile of r queries lists r + w - 1 (causal) or r + 2w - 2 keys where each query needs
        # w (2w - 1): tiles of about w/2 queries keep that overhead near 1.25x
        tiles = index_tiles(prob.B, prob.n_q, max(16, min(tile, self.size // 2)))
        r, w = tiles.size, self.size
        ahead = 0 if prob.causal else w - 1
        c = min(prob.n_k, r + w - 1 + ahead)
        lo = np.arange(tiles.n_tiles) * r + self.offset - (w - 1)
        lo = np.clip(lo, 0, prob.n_k - c)
        k_idx = lo[:, None] + np.arange(c)[None, :]
        k_idx = np.broadcast_to(k_idx[None], (prob.B, tiles.n_tiles, c))
        # entry (i, j) of tile t has lag (t r + offset - lo_t) + i - j: one (r, c) band pattern
        # per distinct shift (all tiles but the clipped ones at the ends share one)
        shifts, which = np.unique(
            np.arange(tiles.n_tiles) * r + self.offset - lo, return_inverse=True
        )
        template = np.arange(r)[:, None] - np.arange(c)[None, :]
        outside = ~self._band(template[None] + shifts[:, None, None])

        def claimed(b, q, k):
            drop = outside[which[q[:, 0] // r]]
            return drop if exclude is None else drop | exclude(b, q, k)

        return tile_partial(prob, tiles, k_idx, None, claimed, stats=stats)


# ------------------------------------------------------------------------------------------
# sortLSH blocks (HyperAttention)
# ------------------------------------------------------------------------------------------
def block_geometry(n_q: int, n_k: int, block_size: int) -> tuple[int, int, int]:
    """``(n_blocks, b_q, b_k)``: ``ceil(n_k / block_size)`` key blocks of equal size
    ``b_k <= block_size``, and the queries split into as many blocks of size ``b_q``, so query
    rank r and key rank r' share a block when ``r / n_q`` and ``r' / n_k`` fall in the same
    quantile slot."""
    n_blocks = -(-n_k // block_size)
    return n_blocks, -(-n_q // n_blocks), -(-n_k // n_blocks)


@dataclass(frozen=True)
class SortLSH(KeySelector):
    """HyperAttention's heavy part (Han et al., ICLR 2024): Q and K sorted by SimHash bucket
    along the Gray sequence (:class:`sketchla.SimHash` with ``n_bits`` hyperplanes, stream
    ``STREAM_SIMHASH_PLANES``) and cut into ``ceil(n_k / block_size)`` rank-aligned blocks;
    query block j attends key block j. ``norm_aware`` hashes through
    :func:`sketchla.lsh.mips_augment` (keys of unequal norms). ``block_size >= n_k`` is one
    block holding every key."""

    block_size: int = 256
    n_bits: int = 7
    norm_aware: bool = False
    order = 2

    def __post_init__(self):
        check_int(self.block_size, "block_size", minimum=1)
        check_int(self.n_bits, "n_bits", minimum=1, maximum=64)
        if not isinstance(self.norm_aware, bool | np.bool_):
            raise TypeError(f"norm_aware must be a bool, got {type(self.norm_aware).__name__}")

    def bind(self, prob, rng):
        nb, bq, bk = block_geometry(prob.n_q, prob.n_k, self.block_size)
        if nb == 1:  # one block holds every key: no hashing needed
            orders = [np.broadcast_to(np.arange(n), (prob.B, n)) for n in (prob.n_q, prob.n_k)]
        else:
            Q, K = mips_augment(prob.q, prob.k) if self.norm_aware else (prob.q, prob.k)
            h = SimHash(Q.shape[-1], self.n_bits, rng=rng)
            orders = [h._sort_order(Q, "Q"), h._sort_order(K, "K")[prob.kv_index]]
            if prob.pad is not None:  # padded keys after every real key: never in a block
                padded = np.take_along_axis(prob.padded, orders[1], axis=1)
                orders[1] = np.take_along_axis(
                    orders[1], np.argsort(padded, axis=1, kind="stable"), axis=1
                )
        return BlockSelection(QueryTiles(orders[0], nb, bq), orders[1], bk, prob.n_k)


class BlockSelection(Selection):
    """Rank-aligned blocks: sorted keys ``[j b_k, (j+1) b_k)`` form key block j."""

    def __init__(self, tiles: QueryTiles, k_order: np.ndarray, k_size: int, n_k: int):
        self.tiles, self.k_order, self.k_size, self.n_k = tiles, k_order, k_size, n_k
        #: one block holds every key: nothing is left to sample
        self.covers_all = tiles.n_tiles == 1
        self.query_block = tiles.of_query
        inv = np.empty_like(k_order)
        np.put_along_axis(inv, k_order, np.arange(n_k)[None, :], axis=-1)
        self.key_block = inv // k_size

    def member(self, b, q, k):
        qb = self.query_block[b[:, None], q]
        if (qb == qb[:, :1]).all():  # tiles of one block each (the sortLSH tiling)
            qb = qb[:, :1]
        return qb[:, :, None] == self.key_block[b[:, None], k][:, None, :]

    def partial(self, prob, exclude, stats, tile):
        nb, bk = self.tiles.n_tiles, self.k_size
        k_idx = np.zeros((prob.B, nb * bk), dtype=np.int64)
        k_idx[:, : self.n_k] = self.k_order
        ok = np.broadcast_to(np.arange(nb * bk) < self.n_k, k_idx.shape)
        shape = (prob.B, nb, bk)
        return tile_partial(
            prob, self.tiles, k_idx.reshape(shape), ok.reshape(shape), exclude, stats=stats
        )


# ------------------------------------------------------------------------------------------
# query-aware key blocks (Quest)
# ------------------------------------------------------------------------------------------
#: bounds (rows, n_blocks) formed per chunk of query rows, at most this many entries
_BOUND_ENTRIES = 2**22


@dataclass(frozen=True)
class TopBlocks(KeySelector):
    r"""Query-aware key blocks (Quest: Tang et al., ICML 2024, arXiv 2406.10774).

    The keys are cut into blocks of ``block_size`` consecutive keys, each summarised by its
    channel-wise maximum and minimum. For every query the upper bound of its logit over a
    block,

    .. math::
        u_{ij} = \sum_c \max(q_c\, \overline{k}_{jc},\ q_c\, \underline{k}_{jc})
               = q^+ \cdot \overline{k}_j + q^- \cdot \underline{k}_j
               \ \ge\ \max_{l \in j} q \cdot k_l ,

    is two matrix products (:math:`q^\pm` the positive and negative parts of q); each tile of
    ``query_tile`` consecutive queries attends exactly the ``n_blocks`` blocks with the largest
    :math:`\max_i (u_{ij} - \max_{j'} u_{ij'})` over its queries (causal: among the blocks
    that start at or before a query of the tile). Cost O(n_q n_k d / block_size) for the bounds
    (1/block_size of exact attention) and O(n_q n_blocks block_size d) for the tiles, all in
    BLAS; a budget of ``n_blocks * block_size`` keys per query. A heuristic: each bound is
    certified, the choice of blocks is not.
    """

    block_size: int = 64
    n_blocks: int = 8
    query_tile: int = 64
    order = 2

    def __post_init__(self):
        check_int(self.block_size, "block_size", minimum=1)
        check_int(self.n_blocks, "n_blocks", minimum=1)
        check_int(self.query_tile, "query_tile", minimum=1)

    def bind(self, prob, rng):
        p, r = self.block_size, min(self.query_tile, prob.n_q)
        n_kb = -(-prob.n_k // p)
        take = min(self.n_blocks, n_kb)
        tiles = index_tiles(prob.B, prob.n_q, r)
        kmax, kmin, empty = _block_boxes(prob, p, n_kb)
        chosen = np.empty((prob.B, tiles.n_tiles, take), dtype=np.int64)
        block_start = np.arange(n_kb) * p
        offset = prob.q_start - prob.k_start
        rows = max(r, (_BOUND_ENTRIES // n_kb) // r * r)
        for b, h in enumerate(prob.kv_index):
            for s in range(0, prob.n_q, rows):
                q = prob.q[b, s : s + rows].astype(np.float64)
                u = np.maximum(q, 0) @ kmax[h].T + np.minimum(q, 0) @ kmin[h].T
                u[:, empty[h]] = -np.inf
                if prob.causal:  # blocks that start after the query
                    qpos = np.arange(s, s + len(q)) + offset
                    u[block_start[None, :] > qpos[:, None]] = -np.inf
                top = u.max(axis=1, keepdims=True)
                u = np.where(np.isfinite(top), u - np.where(np.isfinite(top), top, 0), -np.inf)
                t0, t1 = s // r, -(-(s + len(q)) // r)
                u = np.concatenate([u, np.full((t1 * r - s - len(q), n_kb), -np.inf)])
                score = u.reshape(t1 - t0, r, n_kb).max(axis=1)
                chosen[b, t0:t1] = np.argsort(-score, axis=1, kind="stable")[:, :take]
        return BlockSetSelection(tiles, chosen, p, prob.n_k, n_kb)


def _block_boxes(prob: Problem, p: int, n_kb: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Channel-wise maximum and minimum of each block of p keys of every key/value head,
    ``(B_kv, n_kb, d)`` each (padding and the tail of the last block left out; 0 for blocks
    with no key), and the (B_kv, n_kb) mask of blocks with no key."""
    B_kv, n_k, d = prob.k.shape
    real = np.zeros((B_kv, n_kb * p), dtype=bool)
    real[:, :n_k] = True if prob.pad is None else ~prob.pad
    kmax = np.zeros((B_kv, n_kb, d))
    kmin = np.zeros((B_kv, n_kb, d))
    for h in range(B_kv):
        flat = np.zeros((n_kb * p, d))
        flat[:n_k] = prob.k[h]
        blocks = flat.reshape(n_kb, p, d)
        ok = real[h].reshape(n_kb, p, 1)
        kmax[h] = np.where(ok, blocks, -np.inf).max(axis=1)
        kmin[h] = np.where(ok, blocks, np.inf).min(axis=1)
    empty = np.logical_not(real.reshape(B_kv, n_kb, p).any(axis=2))
    kmax[empty], kmin[empty] = 0.0, 0.0
    return kmax, kmin, empty


class BlockSetSelection(Selection):
    """Each query tile attends the key blocks ``chosen (B, n_tiles, n_blocks)``."""

    def __init__(self, tiles: QueryTiles, chosen: np.ndarray, p: int, n_k: int, n_kb: int):
        self.query_tiles, self.chosen, self.p, self.n_k = tiles, chosen, p, n_k
        self.member_blocks = np.zeros((*chosen.shape[:2], n_kb), dtype=bool)
        np.put_along_axis(self.member_blocks, chosen, True, axis=2)

    def member(self, b, q, k):
        tile = q // self.query_tiles.size
        return self.member_blocks[b[:, None, None], tile[:, :, None], (k // self.p)[:, None, :]]

    def partial(self, prob, exclude, stats, tile):
        idx = self.chosen[..., None] * self.p + np.arange(self.p)
        idx = idx.reshape(*self.chosen.shape[:2], -1)
        ok = idx < self.n_k
        return tile_partial(
            prob, self.query_tiles, np.minimum(idx, self.n_k - 1), ok, exclude, stats=stats
        )


# ------------------------------------------------------------------------------------------
# multi-round code-aligned windows (per-query key sets, numba kernels)
# ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class MultiRoundLSH(KeySelector):
    """T = ``n_rounds`` independent SimHash rounds (stream ``STREAM_MULTIROUND_PLANES``); in
    each, query i's window is the ``block_size`` keys of the Gray-sorted key order centred on
    its own bucket (code-aligned); its keys are the union of its T windows, each key once
    (:mod:`sketchla.attention.multiround`). ``n_bits`` None: ``ceil(log2(n_k / b)) + 1``.

    Its light samples are drawn per query inside the same kernels, so it composes with key
    masks (``Sinks``, ``KeyIndices``, ``TopNorm``, ``UniversalSet``) and with the estimators
    ``Uniform(replace=False)`` and ``ControlVariate`` (or none), non-causally (the recursive
    causal scheme gives it non-causal quadrants)."""

    block_size: int = 16
    n_rounds: int = 32
    n_bits: int | None = None
    norm_aware: bool = False
    order = 3

    def __post_init__(self):
        from .multiround import MAX_BITS

        check_int(self.block_size, "block_size", minimum=1)
        check_int(self.n_rounds, "n_rounds", minimum=1)
        if self.n_bits is not None:
            check_int(self.n_bits, "n_bits", minimum=1, maximum=MAX_BITS)
        if not isinstance(self.norm_aware, bool | np.bool_):
            raise TypeError(f"norm_aware must be a bool, got {type(self.norm_aware).__name__}")

    def bits(self, n_k: int) -> int:
        from .multiround import default_bits

        return default_bits(n_k, self.block_size) if self.n_bits is None else self.n_bits

    def bind(self, prob, rng):  # the engine calls multiround_partials directly
        raise TypeError("MultiRoundLSH is evaluated by the engine together with its samples")
