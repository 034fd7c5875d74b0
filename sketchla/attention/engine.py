r"""The attention engine: exact attention on a selected key set, plus an estimate of the rest.

For every query i the keys split into the exact set :math:`S_i` (the union of the key
selectors of :mod:`sketchla.attention.selectors`, each key once) and the rest, whose softmax
mass a light estimator (:mod:`sketchla.attention.estimators`) estimates without bias. Both are
partial softmaxes (:mod:`sketchla.attention.partial`) merged in log space:

.. math::
    \widetilde{\mathrm{Att}}_i = \frac{\sum_{j \in S_i} e^{s_{ij}} v_j + \hat N_i}
                                      {\sum_{j \in S_i} e^{s_{ij}} + \hat D_i}, \qquad
    \mathbb E \hat N_i = \sum_{j \notin S_i} e^{s_{ij}} v_j, \quad
    \mathbb E \hat D_i = \sum_{j \notin S_i} e^{s_{ij}} .

HyperAttention is ``SortLSH`` + ``Uniform`` (or ``Importance``), LevAttention is
``UniversalSet`` + ``Window`` with no estimate, StreamingLLM is ``Sinks`` + ``Window``, and
ApproxD (:func:`sketchla.approx_rowsums`) is the same engine without V.

Causal attention (query i sees the keys at positions <= its own; bottom-right aligned when
n_q < n_k) has two schemes:

* ``"blocks"`` (linear): queries in tiles of ``tile`` consecutive rows; each tile attends its
  diagonal tile exactly (causal mask inside), the selectors' keys restricted to the past, and
  draws its samples from the keys before the tile (all of them when there are at most m).
* ``"halving"`` (the paper's Algorithm 4, O(n log n)): the two diagonal halves recurse, the
  off-diagonal quadrant (second-half queries, first-half keys) is a non-causal problem of its
  own, and subproblems of at most ``min_seq_len`` rows are exact.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .._backend import check_int
from .._torch import accepts_torch
from ..random import UNSET, RngLike, SeedLike, child_seed, external_stacklevel, resolve_rng
from ._inputs import check_attention_inputs, flatten_heads, raise_for_overflow
from ._tiles import Membership, Problem, Standardisation, index_tiles, tile_partial
from .control import logit_standardisation, regression_light_sums
from .estimators import ControlVariate, Importance, LightEstimator, Uniform
from .exact import exact_attention_2d
from .multiround import multiround_partials
from .partial import AttentionResult, Partial, merge_all, merge_partials
from .selectors import (
    KeyIndices,
    KeySelector,
    MaskSelection,
    MaskSelector,
    MultiRoundLSH,
    Selection,
    Sinks,
    TopNorm,
    _members,
)

__all__ = ["AttentionResult", "Composition", "approx_attention", "evaluate"]

CAUSAL_SCHEMES = ("blocks", "halving")


@dataclass(frozen=True)
class Composition:
    """A validated key set and light estimator (see :func:`approx_attention`)."""

    masks: tuple[MaskSelector, ...]
    tiled: tuple[KeySelector, ...]
    multiround: MultiRoundLSH | None
    rest: LightEstimator | None
    #: block-causal scheme: attend each tile's diagonal tile exactly (always with samples,
    #: which come from before the tile)
    diagonal: bool = False

    @classmethod
    def of(
        cls,
        keys: KeySelector | None,
        rest: LightEstimator | None,
        *,
        with_values: bool,
        diagonal: bool = False,
    ) -> Composition:
        if keys is not None and not isinstance(keys, KeySelector):
            raise TypeError(
                f"keys must be a key selector (e.g. Window(256) | SortLSH()) or None, got "
                f"{type(keys).__name__}"
            )
        if rest is not None and not isinstance(rest, LightEstimator):
            raise TypeError(
                f"rest must be a light estimator (Uniform, Importance, ControlVariate) or None, "
                f"got {type(rest).__name__}"
            )
        parts = () if keys is None else _members(keys)
        if all(_selects_nothing(p) for p in parts) and (rest is None or rest.sample_size == 0):
            raise ValueError(
                f"keys and rest select no key at all (keys={keys!r}, rest={rest!r}): give a key "
                "selector or a light estimator with sample_size > 0"
            )
        masks = tuple(p for p in parts if isinstance(p, MaskSelector))
        rounds = [p for p in parts if isinstance(p, MultiRoundLSH)]
        tiled = tuple(
            sorted(
                (p for p in parts if not isinstance(p, MaskSelector | MultiRoundLSH)),
                key=lambda p: p.order,
            )
        )
        if len(rounds) > 1:
            raise ValueError(f"keys may hold at most one MultiRoundLSH, got {len(rounds)}")
        if rounds and tiled:
            raise ValueError(
                "keys: MultiRoundLSH composes with key masks (Sinks, KeyIndices, TopNorm, "
                f"UniversalSet) only, got {keys!r}"
            )
        per_query = isinstance(rest, Uniform | ControlVariate) and not rest.replace
        if rounds and rest is not None and not (per_query and not rest.shared):
            raise ValueError(
                "rest: MultiRoundLSH draws its samples per query without replacement (never "
                "shared): use Uniform(m, replace=False), ControlVariate(m, replace=False) or None, "
                f"got {rest!r}"
            )
        if isinstance(rest, ControlVariate) and with_values:
            raise ValueError(
                "rest: ControlVariate estimates row sums only (approx_rowsums); attention "
                "needs Uniform or Importance"
            )
        if isinstance(rest, Importance) and rest.weights == "vnorm" and not with_values:
            raise ValueError("rest: Importance(weights='vnorm') needs V; use weights='pilot'")
        return cls(masks, tiled, rounds[0] if rounds else None, rest, diagonal or rest is not None)

    def check_block_causal(self) -> None:
        for mask in self.masks:
            mask.check_causal()
        if self.multiround is not None:
            raise ValueError(
                "keys: MultiRoundLSH has no causal form of its own; use causal_scheme='halving'"
            )
        if isinstance(self.rest, ControlVariate):
            raise ValueError("rest: ControlVariate is non-causal")
        if self.rest is not None and self.rest.shared:
            raise ValueError("rest: shared samples are non-causal (each tile draws its own)")


def _selects_nothing(sel: KeySelector) -> bool:
    """True for the selectors that hold no key whatever the data (``Sinks(0)``, ...)."""
    if isinstance(sel, Sinks | TopNorm):
        return sel.k == 0
    if isinstance(sel, KeyIndices):
        return np.asarray(sel.indices).size == 0
    return False


class DiagonalSelection(Selection):
    """Block-causal scheme: tile j of ``r`` consecutive queries attends its own positions."""

    def __init__(self, prob: Problem, r: int):
        self.r, self.offset = r, prob.q_start - prob.k_start

    def member(self, b, q, k):
        start = (q // self.r) * self.r + self.offset
        return (k[:, None, :] >= start[:, :, None]) & (k[:, None, :] < start[:, :, None] + self.r)

    def partial(self, prob, exclude, stats, tile):
        tiles = index_tiles(prob.B, prob.n_q, self.r)
        lo = np.clip(np.arange(tiles.n_tiles) * self.r + self.offset, 0, max(prob.n_k - 1, 0))
        k_idx = np.minimum(lo[:, None] + np.arange(self.r)[None, :], prob.n_k - 1)
        ok = (lo[:, None] + np.arange(self.r)[None, :]) < prob.n_k
        shape = (prob.B, tiles.n_tiles, self.r)
        return tile_partial(
            prob,
            tiles,
            np.broadcast_to(k_idx[None], shape),
            np.broadcast_to(ok[None], shape),
            exclude,
            stats=stats,
        )


def _union(a: Membership | None, b: Membership) -> Membership:
    if a is None:
        return b
    return lambda bt, q, k: a(bt, q, k) | b(bt, q, k)


@dataclass
class Evaluation:
    """The exact partials (each key once) and the light partial (or None) of one problem;
    ``never`` is the key mask that no sample draws, ``fpc`` the light draws' finite-population
    factor, ``removed`` (control variate) the moments of the exact keys."""

    exact: list[Partial]
    light: Partial | None
    never: np.ndarray | None = None
    fpc: float | np.ndarray = 1.0
    removed: np.ndarray | None = None
    claimed: Membership | None = None


def evaluate(
    prob: Problem,
    comp: Composition,
    rng: np.random.SeedSequence,
    node: int,
    tile: int,
    *,
    want_sq: bool = False,
) -> Evaluation:
    """Exact partials and light partial of one non-causal (or block-causal) problem."""
    node_seed = rng if node == 0 else child_seed(rng, node)
    control = isinstance(comp.rest, ControlVariate)
    stats = None
    if control and comp.multiround is None:  # the multi-round kernels standardise their own
        pairs = [logit_standardisation(prob.q[b], prob.keys_of(b)) for b in range(prob.B)]
        stats = Standardisation(np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs]))
    sels: list[Selection] = []
    never = None
    if comp.masks:
        never = np.zeros((prob.B, prob.n_k), dtype=bool)
        for mask in comp.masks:
            never |= mask.mask(prob, rng)
        if never.any():
            sels.append(MaskSelection(never))
        else:
            never = None
    if prob.causal and comp.diagonal:  # samples come from before each tile
        sels.append(DiagonalSelection(prob, min(tile, prob.n_q)))
    sels.extend(sel.bind(prob, rng) for sel in comp.tiled)
    exact: list[Partial] = []
    claimed: Membership | None = None
    for sel in sels:
        exact.append(sel.partial(prob, claimed, stats, tile))
        claimed = _union(claimed, sel.member)
    removed = None
    if stats is not None:
        removed = np.zeros((prob.B, prob.n_q, 3))
        for part in exact:
            if part.mom is not None:
                removed += part.mom[..., 0, :3]
    rest = comp.rest
    if comp.multiround is not None:
        mr = comp.multiround
        padded = prob.padded
        exclude = padded if never is None else (never if padded is None else never | padded)
        heavy, light = multiround_partials(
            prob.q,
            prob.k,
            prob.v,
            kv=prob.kv_index,
            block_size=mr.block_size,
            n_rounds=mr.n_rounds,
            n_bits=mr.bits(prob.n_k),
            sample_size=0 if rest is None else rest.sample_size,
            seed=node_seed,
            exclude=exclude,
            norm_aware=mr.norm_aware,
            control=control,
        )
        exact.append(heavy)
        return Evaluation(exact, None if rest is None else light, never, claimed=claimed)
    covered = any(getattr(sel, "covers_all", False) for sel in sels)
    if rest is None or rest.sample_size == 0 or covered:
        return Evaluation(exact, None, never, removed=removed, claimed=claimed)
    tiles = next((sel.tiles for sel in sels if sel.tiles is not None), None)
    if tiles is None or prob.causal:
        tiles = index_tiles(prob.B, prob.n_q, tile)
    draws = rest.draws(prob, tiles, never, node_seed, claimed)
    halves = None if stats is None else Standardisation(stats.mu, stats.inv_sigma, halves=True)
    light = tile_partial(
        prob, tiles, draws.idx, draws.ok, claimed, draws.log_w, want_sq, stats=halves
    )
    if stats is not None:
        light = _regression(prob, light, stats, removed, never, rest)
    return Evaluation(exact, light, never, draws.fpc, removed, claimed)


def _regression(prob, light, stats, removed, never, rest) -> Partial:
    """The light partial (``lse`` and ``lse_se``) by the cross-fitted control variate of
    :mod:`sketchla.attention.control`, from the moments of the sampled tiles."""
    B, n_q, n_k = prob.B, prob.n_q, prob.n_k
    assert light.mom is not None and light.mom_max is not None
    n_pop = np.full((B, n_q), n_k) if never is None else np.repeat(n_k - never.sum(axis=1), n_q)
    total, se = regression_light_sums(
        light.mom.reshape(-1, 2, 9),
        removed.reshape(-1, 3),
        stats.inv_sigma.ravel(),
        n_k,
        rest.sample_size,
        n_pop=np.ravel(n_pop),
        replace=rest.replace,
    )
    shift = np.where(np.isfinite(light.mom_max), light.mom_max, 0.0)
    with np.errstate(divide="ignore"):
        lse = np.log(total).reshape(B, n_q) + shift
        log_se = np.log(se).reshape(B, n_q) + shift
    return Partial(lse.astype(prob.dtype), lse_se=log_se)


def solve(
    prob: Problem,
    comp: Composition,
    rng: np.random.SeedSequence,
    *,
    scheme: str,
    min_seq_len: int,
    tile: int,
    node: int = 0,
) -> Partial:
    """The merged partial (lse, out) of ``prob`` (with values)."""
    if prob.causal and scheme == "halving":
        return _halving(prob, comp, rng, node, tile, min_seq_len)
    ev = evaluate(prob, comp, rng, node, tile)
    parts = ev.exact if ev.light is None else [*ev.exact, ev.light]
    merged = merge_all(parts, (prob.B, prob.n_q), prob.dtype)
    if merged.out is None:  # no part at all: an empty key set
        assert prob.v is not None
        merged = Partial(merged.lse, np.zeros((prob.B, prob.n_q, prob.v.shape[-1]), prob.dtype))
    return merged


def _halving(prob, comp, rng, node, tile, min_seq_len) -> Partial:
    n = prob.n_q
    if n <= min_seq_len:
        lse = np.empty((prob.B, n), dtype=prob.dtype)
        out = np.empty((prob.B, n, prob.v.shape[-1]), dtype=prob.dtype)
        padded = prob.padded
        for b, h in enumerate(prob.kv_index):
            out[b], lse[b] = exact_attention_2d(
                prob.q[b], prob.k[h], prob.v[h], True, 1.0,
                key_padding=None if padded is None else padded[b],
            )  # fmt: skip
        return Partial(lse, out)
    h = n // 2
    kw = {"scheme": "halving", "min_seq_len": min_seq_len, "tile": tile}
    top = solve(prob.sub(0, h, 0, h, True), comp, rng, node=2 * node + 1, **kw)
    diag = solve(prob.sub(h, n, h, n, True), comp, rng, node=2 * node + 2, **kw)
    off = solve(prob.sub(h, n, 0, h, False), comp, rng, node=node, **kw)
    assert diag.out is not None and off.out is not None and top.out is not None
    lse, out = merge_partials(diag.lse, diag.out, off.lse, off.out)
    return Partial(np.concatenate([top.lse, lse], axis=1), np.concatenate([top.out, out], axis=1))


def check_scheme(causal_scheme: str, min_seq_len: int, tile: int) -> tuple[str, int, int]:
    if causal_scheme not in CAUSAL_SCHEMES:
        raise ValueError(f"causal_scheme must be one of {CAUSAL_SCHEMES}, got {causal_scheme!r}")
    return (
        causal_scheme,
        check_int(min_seq_len, "min_seq_len", minimum=1),
        check_int(tile, "tile", minimum=1),
    )


def run_attention(
    Q: Any,
    K: Any,
    V: Any,
    comp: Composition,
    *,
    causal: bool,
    scale: float | None,
    rng: RngLike,
    seed: SeedLike | Any,
    causal_scheme: str,
    min_seq_len: int,
    tile: int,
    return_lse: bool,
    key_padding_mask: Any = None,
    kernel_p: float | None = None,
) -> np.ndarray | AttentionResult:
    """Validate, flatten the heads, solve, and put the result back in the caller's shape."""
    if not isinstance(return_lse, bool | np.bool_):
        raise TypeError(f"return_lse must be a bool, got {type(return_lse).__name__}")
    scheme, min_seq_len, tile = check_scheme(causal_scheme, min_seq_len, tile)
    inp = check_attention_inputs(Q, K, V, causal, scale, key_padding_mask=key_padding_mask)
    if inp.causal and scheme == "blocks":
        comp.check_block_causal()
    if inp.key_padding is not None and isinstance(comp.rest, ControlVariate):
        raise ValueError("rest: ControlVariate does not support key_padding_mask")
    if inp.causal and scheme == "halving" and inp.n_q != inp.n_k:
        raise ValueError(
            f"causal_scheme='halving' needs n_q == n_k, got n_q = {inp.n_q} and n_k = {inp.n_k}; "
            "the 'blocks' scheme aligns the queries bottom-right"
        )
    seq = resolve_rng(rng, seed, stacklevel=external_stacklevel())
    q = flatten_heads(inp.Q) * inp.dtype.type(inp.scale)
    k, v = flatten_heads(inp.K), flatten_heads(inp.V)
    prob = Problem(
        q,
        k,
        v,
        inp.causal,
        q_start=inp.n_k - inp.n_q if inp.causal else 0,
        kv=inp.kv_index if inp.group > 1 else None,
        pad=inp.key_padding,
        kernel_p=kernel_p,
    )
    with np.errstate(over="ignore", invalid="ignore"):  # reported below
        part = solve(prob, comp, seq, scheme=scheme, min_seq_len=min_seq_len, tile=tile)
    assert part.out is not None
    # a row with a kept key whose weights overflowed has lse = +inf or nan: report it
    bad = ~np.isfinite(part.lse) & ~np.isneginf(part.lse)
    raise_for_overflow(inp.dtype, np.where(bad[..., None], np.nan, part.out), part.lse)
    out = inp.unflatten(part.out.astype(inp.dtype, copy=False))
    if return_lse:
        return AttentionResult(out, inp.unflatten(part.lse.astype(inp.dtype, copy=False)))
    return out


@accepts_torch("Q", "K", "V")
def approx_attention(
    Q: Any,
    K: Any,
    V: Any,
    *,
    keys: KeySelector | None = None,
    rest: LightEstimator | None = None,
    causal: bool = False,
    scale: float | None = None,
    key_padding_mask: Any = None,
    rng: RngLike = None,
    causal_scheme: str = "blocks",
    min_seq_len: int = 4096,
    tile: int = 256,
    return_lse: bool = False,
) -> np.ndarray | AttentionResult:
    r"""Attention computed exactly on a selected key set, plus an estimate of the rest.

    The general entry point of the engine (see the module docstring):
    :func:`sketchla.hyper_attention` and :func:`sketchla.lev_attention` are presets of it.

    Parameters
    ----------
    Q, K, V : array_like, shapes (..., H, n_q, d), (..., H_kv, n_k, d), (..., H_kv, n_k, d_v)
        Validated as by :func:`sketchla.exact_attention` (grouped-query K and V included).
    keys : KeySelector or None
        The keys each query attends exactly: a selector of :mod:`sketchla.attention` or a union
        of them, e.g. ``Sinks(4) | Window(256) | SortLSH(256)``. None: no exact keys.
    rest : LightEstimator or None
        The estimate of the other keys: ``Uniform(m)``, ``Importance(m)``, or None (renormalise
        over the exact keys only).
    causal : bool
        Query i sees the keys at positions <= its own, bottom-right aligned: query i sits at
        position ``n_k - n_q + i`` (the KV-cache decoding case; top-left and bottom-right agree
        for n_q == n_k). torch's SDPA aligns top-left instead.
    scale : float, optional
        Logit scale, default ``1/sqrt(d)``.
    key_padding_mask : array_like of bool, optional
        ``(*batch, n_k)``; True marks a padded key: it never enters a softmax, is never drawn
        and takes no part in any key selection (sortLSH orders it after every real key).
    rng : int, SeedSequence, numpy Generator or None
        Seeds the hashes and the samples (SPEC 7); None draws fresh entropy.
    causal_scheme : {"blocks", "halving"}
        How causal attention is organised (module docstring). "blocks" is linear in n;
        "halving" is the paper's recursion (needs n_q == n_k), exact below ``min_seq_len``.
    min_seq_len : int >= 1
        "halving" only: subproblems of at most this many rows are computed exactly.
    tile : int >= 1
        Rows per query tile (windows, key masks, the causal diagonal tiles and the samples of
        each tile when there are no sortLSH blocks).
    return_lse : bool
        Also return the log of each row's estimated denominator, as an :class:`AttentionResult`.

    Returns
    -------
    out : ndarray (..., n_q, d_v), or AttentionResult(out, lse) with ``return_lse``

    Raises
    ------
    ValueError
        A composition the engine cannot evaluate (the message names ``keys`` or ``rest``), or
        the arguments of :func:`sketchla.exact_attention`.

    Examples
    --------
    >>> import numpy as np, sketchla
    >>> from sketchla.attention import Sinks, SortLSH, Uniform, Window
    >>> rng = np.random.default_rng(0)
    >>> Q, K, V = rng.standard_normal((3, 2, 1024, 16))
    >>> out = sketchla.approx_attention(
    ...     Q, K, V, keys=Sinks(4) | Window(64) | SortLSH(128), rest=Uniform(128),
    ...     causal=True, rng=0)
    >>> out.shape
    (2, 1024, 16)
    >>> exact = sketchla.approx_attention(Q, K, V, keys=Window(1024), causal=True)
    >>> bool(np.allclose(exact, sketchla.exact_attention(Q, K, V, causal=True)))
    True
    """
    comp = Composition.of(keys, rest, with_values=True)
    return run_attention(
        Q, K, V, comp, causal=causal, scale=scale, rng=rng, seed=UNSET,
        causal_scheme=causal_scheme, min_seq_len=min_seq_len, tile=tile, return_lse=return_lse,
        key_padding_mask=key_padding_mask,
    )  # fmt: skip
