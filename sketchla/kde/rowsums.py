r"""Attention row sums :math:`D_{ii} = \sum_j e^{q_i \cdot k_j}` in near-linear time (ApproxD).

HyperAttention's Algorithm 2 (Han et al., ICLR 2024) splits each row into a *heavy* part,
computed exactly, and a *light* part, estimated by sampling, and clamps the light estimate from
below:

.. math::
    \tilde D_{ii} = \underbrace{\sum_{j \in H_i} e^{s_{ij}}}_{\text{exact}}
      + \max\Big(\sum_{t=1}^m \frac{1[\ell_t \notin H_i]\, e^{s_{i\ell_t}}}{m\, p_{\ell_t}},
                 \ \tau/\kappa\Big),

with :math:`s_{ij} = q_i \cdot k_j`, samples :math:`\ell_t \sim p` i.i.d., and :math:`\tau` the
largest exact light row sum :math:`\sum_{j \notin H_i} e^{s_{ij}}` over a few random "pilot"
rows (the paper's estimate of the maximum light row sum; :math:`\kappa` bounds the ratio of the
largest to the smallest light row sum, the paper's second parameter). Without the clamp the
light term is unbiased, so :math:`\mathbb E \tilde D_{ii} = D_{ii}`; the clamp only raises
estimates that fell below :math:`\tau/\kappa`. Everything is done in log space
(``logaddexp``), so logits of :math:`\pm 10^4` neither overflow nor underflow to a wrong answer.
"""

from __future__ import annotations

import numpy as np

from .._backend import as_dense, check_finite, check_int, check_real
from ..random import STREAM_PILOT_ROWS, SeedLike, as_seed_sequence, stream
from .control import key_set_moments, logit_standardisation, regression_light_sums
from .multiround import MAX_BITS, default_bits, light_sample_count, multiround_partials
from .partials import (
    Partial,
    Standardisation,
    block_partial,
    draw_samples,
    global_mask,
    global_partial,
    light_probabilities,
    lsh_blocks,
    query_tiles,
    sampled_partial,
    softmax_partial,
)

__all__ = ["approx_rowsums"]

_MAX_NDIM = 8


def approx_rowsums(
    Q,
    K,
    block_size: int | None = None,
    sample_size: int = 256,
    n_bits: int | None = None,
    seed: SeedLike = 0,
    *,
    heavy: str | None = "sortlsh",
    n_rounds: int | None = None,
    global_keys=None,
    light: str = "uniform",
    replace: bool = True,
    kappa: float | None = None,
    pilot_size: int = 32,
    norm_aware: bool = False,
    shared_samples: bool = False,
    control: str | None = None,
    return_stderr: bool = False,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    r"""Estimate :math:`\log D_{ii} = \log \sum_j \exp(q_i \cdot k_j)` for every query (ApproxD).

    No logit scale is applied: pass ``Q * scale`` for scaled attention. See the module
    docstring for the estimator.

    Parameters
    ----------
    Q : array_like, shape (..., n_q, d)
    K : array_like, shape (..., n_k, d)
        Equal leading (batch / head) dimensions; finite.
    block_size : int >= 1 or None
        Heavy part. "sortlsh" (default 256): the keys are cut into ``ceil(n_k / block_size)``
        rank-aligned sortLSH blocks (query block j attends key block j of the Gray-sorted
        orders, see :class:`sketchla.SimHash`). "multiround" (default 16): the width b of each
        query's window per round. ``block_size >= n_k`` puts every key in the heavy part
        (exact result).
    sample_size : int >= 0
        m, the number of sampled key columns of the light part (0: heavy part only).
    n_bits : int or None
        Hyperplanes of each SimHash: in [1, 64] for "sortlsh" (default 7), in [1, 24] for
        "multiround" (default ``ceil(log2(n_k / block_size)) + 1``).
    seed : int, SeedSequence or None
        Seeds the hash (``STREAM_SIMHASH_PLANES``; ``STREAM_MULTIROUND_PLANES`` for
        "multiround"), the samples (``STREAM_LIGHT_SAMPLES``; ``STREAM_MULTIROUND_SAMPLES``) and
        the pilot rows (``STREAM_PILOT_ROWS``).
    heavy : {"sortlsh", "multiround", None}
        Heavy-set finder: one round of sortLSH blocks; ``n_rounds`` rounds of code-aligned
        SimHash windows with per-query light samples (:mod:`sketchla.kde.multiround`: each
        query computes the union of its T windows, at most T b keys, exactly, and draws its
        own m light samples without replacement); or none (only ``global_keys`` are exact).
        "multiround" supports ``light="uniform"`` only and no ``kappa`` or
        ``shared_samples``; its samples are always drawn without replacement (``replace``
        does not apply) and ``sample_size >= n_k`` gives the exact result.
    n_rounds : int >= 1 or None
        "multiround" only: T, the number of hash rounds (default 32). Cost
        O(n_q (T b + m) d + n T r d).
    global_keys : None, int or 1-D int array
        Extra keys computed exactly for every query and excluded from sampling: an index set
        (e.g. :func:`sketchla.universal_set`), or an int k for the k keys of largest norm of
        each batch entry (the "top-k" heavy-set finder).
    light : {"uniform", "importance"}
        Light estimator. "uniform": :math:`p_j = 1/N` over the N non-global keys.
        "importance": :math:`p_j \propto` the average softmax weight of key j over the pilot
        rows (a KDE-style column-mass estimate, as in KDEformer), mixed half-and-half with the
        uniform distribution so that no weight exceeds :math:`2N/m`. Measured at n = 65536
        (``sketchla bench lsh``): on the attention-sink instance it lowers the median
        relative error from 0.30 to 0.056; on the others it changes little. For keys of
        large norm, ``global_keys`` (top 1% by norm) lowers it from 0.79 to 0.007.
    replace : bool
        Sample with replacement (default). ``False`` (uniform only) draws m distinct keys with
        Horvitz-Thompson weight N/m; with m = N every key is drawn once and the result is exact.
    kappa : float > 0 or None
        The paper's lower clamp :math:`\tau/\kappa` of the light estimate; None (default)
        disables it, and the estimate is then unbiased in the linear domain. The clamp assumes
        that light row sums differ by at most a factor kappa; where they differ more it biases
        rows upward. Measured at n = 4096 (3 seeds, default sizes): largest-to-smallest light
        row sum 1.9 (flat), 20 (sink), 1e3 (planted), 2e4 (large-norm); kappa = 16 raised the
        median relative error on planted from 0.18 to 0.45 and on large-norm from 0.44 to
        1.6, kappa = 64 changed nothing, and no instance improved. With logits of 1e4 the
        ratio is astronomic: use the clamp only where the paper's assumption holds.
    pilot_size : int >= 1
        Number of random query rows whose light sums are computed exactly (for :math:`\tau` and
        the importance probabilities); O(pilot_size n_k d) work.
    norm_aware : bool
        Hash through :func:`sketchla.lsh.mips_augment` (keys of unequal norms).
    shared_samples : bool
        One sample set for all queries (the paper's sampling matrix) instead of an independent
        set per query block (default). Each row's estimate has the same distribution either
        way; independent sets decorrelate the errors of different blocks.
    control : {None, "quadratic"}
        "quadratic": each light sum is a cross-fitted regression estimate
        (:mod:`sketchla.kde.control`): a quadratic in the row's standardised logit
        :math:`z = (s - \mu_i)/\sigma_i`, fitted on one half of the row's draws and summed
        exactly over its light keys (their moments come from one d x d matrix, O(n d^2)),
        plus the other half's residuals; unbiased like None, with about :math:`1 - R^2` of
        its variance (:math:`R^2`: the share of the light terms' variance a quadratic in the
        logit explains). Any heavy finder; ``light="uniform"`` only, no ``kappa``. Measured at
        n = 65536, d = 64 (``sketchla bench lsh``): median relative error on flat 5.4% ->
        1.9% at the default sizes (about 2.2x their time), and with "multiround" 3.8% ->
        1.3% on flat, 6.9% -> 4.9% on planted (about the same time). None (default): the
        Horvitz-Thompson sum.
    return_stderr : bool
        Also return a per-row standard-error estimate of :math:`\log \tilde D_{ii}`: the sample
        standard deviation of the light terms (times the finite-population factor without
        replacement), by the delta method, relative to :math:`\tilde D_{ii}`; 0 where every key
        is exact, inf for m = 1. It describes the sampling estimate before the clamp.

    Returns
    -------
    log_d : ndarray, shape (..., n_q)
        In the compute dtype of the inputs (float32 stays float32).
    stderr : ndarray, shape (..., n_q), only if ``return_stderr``

    Examples
    --------
    >>> import numpy as np, sketchla
    >>> from scipy.special import logsumexp
    >>> rng = np.random.default_rng(0)
    >>> Q, K = rng.standard_normal((2, 4096, 16)) / 4
    >>> est = sketchla.approx_rowsums(Q, K, sample_size=1024, seed=0)
    >>> exact = logsumexp(Q @ K.T, axis=1)
    >>> bool(np.median(np.abs(np.expm1(est - exact))) < 0.05)
    True
    """
    Q, K = _check_inputs(Q, K)
    if heavy not in ("sortlsh", "multiround", None):
        raise ValueError(f"heavy must be 'sortlsh', 'multiround' or None, got {heavy!r}")
    mr = heavy == "multiround"
    block_size, n_bits, n_rounds = heavy_parameters(
        heavy, block_size, n_bits, n_rounds, K.shape[-2]
    )
    m = check_int(sample_size, "sample_size", minimum=0)
    pilot_size = check_int(pilot_size, "pilot_size", minimum=1)
    if light not in ("uniform", "importance"):
        raise ValueError(f"light must be 'uniform' or 'importance', got {light!r}")
    if kappa is not None:
        kappa = check_real(kappa, "kappa", 0.0, None, min_inclusive=False)
    for flag, name in (
        (replace, "replace"),
        (norm_aware, "norm_aware"),
        (shared_samples, "shared_samples"),
        (return_stderr, "return_stderr"),
    ):
        if not isinstance(flag, (bool, np.bool_)):
            raise TypeError(f"{name} must be a bool, got {type(flag).__name__}")
    if not replace and light != "uniform":
        raise ValueError("replace=False is only supported with light='uniform'")
    if mr and (light != "uniform" or kappa is not None or shared_samples):
        raise ValueError(
            "heavy='multiround' supports light='uniform' only, without kappa or shared_samples"
        )
    if control not in (None, "quadratic"):
        raise ValueError(f"control must be None or 'quadratic', got {control!r}")
    if control is not None and (light != "uniform" or kappa is not None):
        raise ValueError(
            f"control={control!r} supports light='uniform' only, without kappa, got "
            f"light={light!r}, kappa={kappa!r}"
        )

    seed = as_seed_sequence(seed)  # one entropy draw for seed=None
    batch_shape = Q.shape[:-2]
    Qb, Kb = Q.reshape(-1, *Q.shape[-2:]), K.reshape(-1, *K.shape[-2:])
    B, n_q, n_k = Qb.shape[0], Qb.shape[1], Kb.shape[1]
    G = global_mask(Kb, global_keys)
    if mr:
        log_d, stderr = _multiround(
            Qb, Kb, G, block_size, n_bits, n_rounds, m, seed, norm_aware, control is not None
        )
        return _finish(log_d, stderr if return_stderr else None, batch_shape, n_q)
    parts = []
    blocks = None
    stats = _standardisation(Qb, Kb) if control is not None else None
    removed = np.zeros((B, n_q, 3))  # control variate: moments of the exact keys
    if heavy == "sortlsh":
        blocks = lsh_blocks(Qb, Kb, block_size, n_bits, seed, norm_aware)
        heavy_part = block_partial(Qb, Kb, None, blocks, exclude=G, stats=stats)
        parts.append(heavy_part)
        if heavy_part.mom is not None:
            removed += heavy_part.mom[..., 0, :3]
    if G is not None:
        parts.append(global_partial(Qb, Kb, None, G))
        if stats is not None:
            for b in range(B):
                removed[b] += key_set_moments(Qb[b], Kb[b], G[b], stats.mu[b], stats.inv_sigma[b])
    n_light = n_k - (0 if G is None else int(G.sum(axis=1).min()))
    all_heavy = (blocks is not None and blocks.n_blocks == 1) or n_light == 0
    stderr = np.zeros((B, n_q), dtype=Qb.dtype)
    heavy_lse = _logaddexp_all([p.lse for p in parts], (B, n_q), Qb.dtype)
    if m > 0 and not all_heavy:
        if not replace and (m > n_light or G is not None):
            raise ValueError(
                f"replace=False needs sample_size <= the {n_light} sampled keys and no "
                f"global_keys, got sample_size={m}"
            )
        need_pilot = kappa is not None or light == "importance"
        pilot = _pilot(Qb, Kb, blocks, G, pilot_size, seed) if need_pilot else None
        column_mass = None
        if light == "importance":
            assert pilot is not None
            column_mass = pilot[1]
        probs = light_probabilities(B, n_k, G, column_mass)
        tiles = blocks if blocks is not None else query_tiles(B, n_q, n_k, block_size)
        groups = None if shared_samples else tiles.n_blocks
        samples = draw_samples(seed, B, n_k, m, probs, replace, groups)
        if stats is not None:
            light_part = _regression_light(Qb, Kb, samples, tiles, stats, removed, G, m, replace)
        else:
            light_part = sampled_partial(Qb, Kb, None, samples, tiles, want_sq=return_stderr)
        light_lse = light_part.lse
        if kappa is not None:
            assert pilot is not None
            floor = (pilot[0] - np.log(kappa)).astype(Qb.dtype)
            light_lse = np.maximum(light_lse, floor[:, None])
        log_d = np.logaddexp(heavy_lse, light_lse)
        if return_stderr:
            stderr = _log_stderr(light_part, log_d, m, samples.fpc)
    else:
        log_d = heavy_lse
    return _finish(log_d, stderr if return_stderr else None, batch_shape, n_q)


def heavy_parameters(
    heavy: str | None, block_size, n_bits, n_rounds, n_k: int
) -> tuple[int, int, int]:
    """Validated ``(block_size, n_bits, n_rounds)`` with the defaults of the heavy finder
    (see :func:`approx_rowsums`; shared with :func:`sketchla.hyper_attention`)."""
    if heavy == "multiround":
        b = 16 if block_size is None else check_int(block_size, "block_size", minimum=1)
        bits = (
            default_bits(n_k, b)
            if n_bits is None
            else check_int(n_bits, "n_bits", minimum=1, maximum=MAX_BITS)
        )
        rounds = 32 if n_rounds is None else check_int(n_rounds, "n_rounds", minimum=1)
        return b, bits, rounds
    b = 256 if block_size is None else check_int(block_size, "block_size", minimum=1)
    bits = 7 if n_bits is None else check_int(n_bits, "n_bits", minimum=1, maximum=64)
    if n_rounds is not None and check_int(n_rounds, "n_rounds", minimum=1) != 1:
        raise ValueError(f"n_rounds must be 1 (or None) unless heavy='multiround', got {n_rounds}")
    return b, bits, 1


def _multiround(Qb, Kb, G, block_size, n_bits, n_rounds, m, seed, norm_aware, control):
    """``(log_d, stderr)`` with the multi-round heavy part (:mod:`sketchla.kde.multiround`)."""
    B, n_q, n_k = Qb.shape[0], Qb.shape[1], Kb.shape[1]
    heavy, light = multiround_partials(
        Qb,
        Kb,
        None,
        block_size=block_size,
        n_rounds=n_rounds,
        n_bits=n_bits,
        sample_size=m,
        seed=seed,
        exclude=G,
        norm_aware=norm_aware,
        control=control,
    )
    lses = [heavy.lse, light.lse]
    if G is not None:
        lses.append(global_partial(Qb, Kb, None, G).lse)
    log_d = _logaddexp_all(lses, (B, n_q), Qb.dtype)
    m_eff = light_sample_count(m, n_k)
    if m_eff == 0:
        return log_d, np.zeros((B, n_q), dtype=Qb.dtype)
    with np.errstate(invalid="ignore", divide="ignore"):
        stderr = _log_stderr(light, log_d, m_eff, 1.0 - m_eff / n_k)
    return log_d, stderr


def _standardisation(Qb, Kb) -> Standardisation:
    """Per-query logit standardisation of every batch entry (control variate)."""
    pairs = [logit_standardisation(q, k) for q, k in zip(Qb, Kb, strict=True)]
    return Standardisation(np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs]))


def _regression_light(Qb, Kb, samples, tiles, stats, removed, G, m, replace) -> Partial:
    """The light partial (``lse`` and ``lse_se``) by the cross-fitted control variate of
    :mod:`sketchla.kde.control`, from the moments of the sampled tiles."""
    B, n_q, n_k = Qb.shape[0], Qb.shape[1], Kb.shape[1]
    halves = Standardisation(stats.mu, stats.inv_sigma, halves=True)
    part = sampled_partial(Qb, Kb, None, samples, tiles, stats=halves)
    assert part.mom is not None and part.mom_max is not None
    n_pop = np.full((B, n_q), n_k) if G is None else np.repeat(n_k - G.sum(axis=1), n_q)
    total, se = regression_light_sums(
        part.mom.reshape(-1, 2, 9),
        removed.reshape(-1, 3),
        stats.inv_sigma.ravel(),
        n_k,
        m,
        n_pop=np.ravel(n_pop),
        replace=replace,
    )
    shift = np.where(np.isfinite(part.mom_max), part.mom_max, 0.0)
    with np.errstate(divide="ignore"):
        lse = np.log(total).reshape(B, n_q) + shift
        log_se = np.log(se).reshape(B, n_q) + shift
    return Partial(lse.astype(Qb.dtype), lse_se=log_se)


def _finish(log_d, stderr, batch_shape, n_q):
    if not np.isfinite(log_d).all():  # Q and K are finite: their logits overflowed
        raise ValueError(
            f"the logits Q K^T overflowed {log_d.dtype} although Q and K are finite; rescale Q or K"
        )
    log_d = log_d.reshape(*batch_shape, n_q)
    if stderr is not None:
        return log_d, stderr.reshape(*batch_shape, n_q)
    return log_d


def _logaddexp_all(lses: list[np.ndarray], shape, dtype) -> np.ndarray:
    total = np.full(shape, -np.inf, dtype=dtype)
    for lse in lses:
        total = np.logaddexp(total, lse)
    return total


def _pilot(Qb, Kb, blocks, G, pilot_size: int, seed) -> tuple[np.ndarray, np.ndarray]:
    r"""``(log_tau (B,), column_mass (B, n_k))`` from pilot rows computed exactly.

    ``log_tau`` is the log of the largest exact light row sum over the pilot rows;
    ``column_mass`` is the average over pilot rows of the light softmax weights of each key
    (sums to 1 per batch entry where some pilot row has light mass).
    """
    n_q = Qb.shape[1]
    t = min(pilot_size, n_q)
    rows = stream(seed, STREAM_PILOT_ROWS).sample_without_replacement(t, n_q)
    S = Qb[:, rows] @ Kb.transpose(0, 2, 1)  # (B, t, n_k)
    if blocks is not None and blocks.pairs_keys:
        own = blocks.query_block[:, rows]
        np.copyto(S, -np.inf, where=own[:, :, None] == blocks.key_block[:, None, :])
    if G is not None:
        np.copyto(S, -np.inf, where=G[:, None, :])
    lse, _, _ = softmax_partial(S, None)  # S now holds exp(s - rowmax)
    with np.errstate(invalid="ignore", divide="ignore"):
        weights = S / S.sum(axis=-1, keepdims=True)
    weights = np.nan_to_num(weights, nan=0.0)
    mass = weights.sum(axis=1)
    mass /= np.maximum(mass.sum(axis=1, keepdims=True), np.finfo(np.float64).tiny)
    return lse.max(axis=1), mass


def _log_stderr(light, log_d: np.ndarray, m: int, fpc: float) -> np.ndarray:
    r"""Delta-method standard error of :math:`\log \tilde D`: with light terms
    :math:`x_t = w_t e^{s_t}` (0 for masked samples) and :math:`r = \sum x_t^2 / (\sum x_t)^2`,
    the relative standard error of the light sum is :math:`\sqrt{(m r - 1)/(m - 1)}`."""
    if light.lse_se is not None:  # the estimator's own (control variate)
        return np.exp(light.lse_se - log_d).astype(log_d.dtype)
    if m == 1:
        return np.full_like(log_d, np.inf)
    with np.errstate(invalid="ignore", over="ignore"):
        r = np.exp(light.lse2 - 2 * light.lse)
        rel = np.sqrt(np.maximum(m * r - 1, 0) / (m - 1) * fpc)
        se = np.exp(light.lse - log_d) * rel
    return np.where(np.isfinite(light.lse), se, 0).astype(log_d.dtype)


def _check_inputs(Q, K) -> tuple[np.ndarray, np.ndarray]:
    ndims = tuple(range(2, _MAX_NDIM + 1))
    Q, K = as_dense(Q, "Q", ndim=ndims), as_dense(K, "K", ndim=ndims)
    if Q.shape[:-2] != K.shape[:-2] or Q.shape[-1] != K.shape[-1]:
        raise ValueError(
            f"Q (..., n_q, d) and K (..., n_k, d) need equal leading dimensions and d, got "
            f"Q {Q.shape} and K {K.shape}"
        )
    dtype = np.result_type(Q.dtype, K.dtype)
    Q, K = Q.astype(dtype, copy=False), K.astype(dtype, copy=False)
    check_finite(Q.reshape(-1, Q.shape[-1]), "Q")
    check_finite(K.reshape(-1, K.shape[-1]), "K")
    return np.ascontiguousarray(Q), np.ascontiguousarray(K)
