r"""HyperAttention (Han, Jayaram, Karbasi, Mirrokni, Woodruff & Zandieh, ICLR 2024).

Non-causal: for logits :math:`s_{ij} = \mathrm{scale}\; q_i \cdot k_j`, every query's keys are
split into three disjoint sets, each summarised as a partial softmax
(:mod:`sketchla.kde.partials`) and merged in log space (:func:`merge_partials`):

1. **heavy blocks** -- Q and K are sorted by SimHash bucket along the Gray sequence (sortLSH,
   :class:`sketchla.SimHash`) and cut into rank-aligned blocks; query block j attends key block
   j exactly (``ceil(n_k / block_size)`` blocks of at most ``block_size`` keys);
2. **global keys** (optional) -- keys attended exactly by every query (a universal set, the
   top-norm keys, ...), removed from the blocks and from sampling;
3. **light samples** -- m = ``sample_size`` keys drawn i.i.d. (uniformly, or by value norm) with
   weights :math:`1/(m p_j)`; a sample that falls in the query's own block is masked (it is
   already in the heavy part: nothing is counted twice). By default every query block draws
   its own m samples (same cost, same per-row distribution as the paper's single sampling
   matrix, which ``shared_samples=True`` reproduces); independent sets keep the sampling
   errors of different blocks from adding up coherently in operator norm.

With ``heavy="multiround"`` steps 1 and 3 are replaced by :mod:`sketchla.kde.multiround`:
T SimHash rounds, each query attending exactly the union of its code-aligned windows, and m
light samples drawn per query.

The result is :math:`\widetilde{\mathrm{Att}} = \tilde D^{-1} \tilde A V` where numerator and
denominator are the merged (heavy exact + light unbiased) sums: the paper's ApproxD estimate
of D combined with its sampled matrix product, sharing one set of samples.

Causal: recursive halving (the paper's Algorithm 4). The two diagonal halves recurse, the
off-diagonal quadrant (second-half queries, first-half keys) has no mask and uses the
non-causal routine, and its partial is merged into the second half's; below ``min_seq_len``
rows the exact causal attention is used. An odd n splits into halves of sizes floor(n/2) and
ceil(n/2); nothing is padded.
"""

from __future__ import annotations

import numbers

import numpy as np

from .._backend import check_int
from ..kde.multiround import default_bits, multiround_partials
from ..kde.partials import (
    Partial,
    block_partial,
    draw_samples,
    global_mask,
    global_partial,
    light_probabilities,
    lsh_blocks,
    sampled_partial,
    top_norm_mask,
)
from ..kde.rowsums import heavy_parameters
from ..random import SeedLike, as_seed_sequence, child_seed
from ._inputs import check_attention_inputs, flatten_heads, raise_for_overflow
from .exact import exact_attention_2d
from .merge import merge_partials

__all__ = ["hyper_attention"]


def hyper_attention(
    Q,
    K,
    V,
    causal: bool = False,
    scale: float | None = None,
    block_size: int | None = None,
    sample_size: int = 256,
    n_bits: int | None = None,
    min_seq_len: int = 4096,
    seed: SeedLike = 0,
    return_lse: bool = False,
    *,
    heavy: str = "sortlsh",
    n_rounds: int | None = None,
    light: str = "uniform",
    global_keys=None,
    norm_aware: bool = False,
    shared_samples: bool = False,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    r"""Approximate ``softmax(scale * Q K^T [+ causal mask]) V`` in near-linear time.

    See the module docstring for the algorithm. Work per query: ``block_size`` exact keys +
    ``sample_size`` sampled keys (+ the global keys), i.e. O(n (b + m) d) instead of
    O(n^2 d); memory O(n (d + d_v)) plus chunks of about 2^22 logits.

    Parameters
    ----------
    Q : array_like, shape (..., n_q, d)
    K : array_like, shape (..., n_k, d)
    V : array_like, shape (..., n_k, d_v)
        Equal leading (batch / head) dimensions; finite. See
        :mod:`sketchla.attention._inputs` for the dtype policy.
    causal : bool
        Query i attends keys j <= i (needs n_q == n_k).
    scale : float, optional
        Logit scale, default 1/sqrt(d).
    block_size : int >= 1 or None
        Keys per heavy block (default 256); with ``heavy="multiround"`` the window width b per
        round (default 16). ``block_size >= n_k`` makes the non-causal result exact.
    sample_size : int >= 0
        Sampled keys per (sub)problem (per query with ``heavy="multiround"``); 0 keeps the
        heavy part only.
    n_bits : int or None
        SimHash hyperplanes per round: in [1, 64] for "sortlsh" (default 7), in [1, 24] for
        "multiround" (default ``ceil(log2(n_k / block_size)) + 1``).
    min_seq_len : int >= 1
        Causal only: subproblems of at most this many rows are computed exactly.
    seed : int, SeedSequence or None
        Seeds the hash and, through ``child_seed(seed, node)``, the samples of each subproblem
        of the causal recursion.
    return_lse : bool
        Also return the log of the estimated denominator, :math:`\log \tilde D_{ii}`.
    heavy : {"sortlsh", "multiround"}
        Heavy-set finder. "sortlsh": one round of rank-aligned sortLSH blocks (the paper).
        "multiround": ``n_rounds`` independent SimHash rounds; each query attends exactly the
        union of its code-aligned windows (b keys centred on its bucket in each round's key
        order, each key once) and draws its own ``sample_size`` light keys without
        replacement (uniform; a sample in its windows or among the global keys contributes
        0), see :mod:`sketchla.kde.multiround`. Supports ``light="uniform"`` only and not
        ``shared_samples``. Cost O(n (T b + m) (d + d_v) + n T r d).
    n_rounds : int >= 1 or None
        "multiround" only: T, the number of hash rounds (default 32).
    light : {"uniform", "vnorm"}
        Sampling distribution: uniform over the sampled keys, or the paper's
        :math:`p_j \propto \|v_j\|^2` mixed half-and-half with uniform (so that the shared
        samples also give an unbiased denominator).
    global_keys : None, int or int array
        Keys attended exactly by every query and excluded from sampling (design note §3): an
        int k (the k keys of largest norm in each head; with ``causal`` chosen among the keys
        of each off-diagonal quadrant, so no query's output depends on future keys), a 1-D
        array of key indices (the same for every head, e.g. :func:`sketchla.universal_set`),
        or an array of shape (..., g) with per-head indices. With ``causal`` a query attends
        only the global keys in its past.
    norm_aware : bool
        Hash through :func:`sketchla.lsh.mips_augment` (keys of unequal norms).
    shared_samples : bool
        Use one sample set for every query (the paper's sampling matrix S) instead of an
        independent set per query block (default). Same cost and same per-row distribution;
        with one shared set the sampling errors of all rows move together, an almost rank-one
        error of spectral norm about sqrt(d/m) relative to ||V||_op on flat instances
        (measured on flat, n = 4096, m = 256: spectral ratio 0.41 shared, 0.17 per block).

    Returns
    -------
    out : ndarray, shape (..., n_q, d_v)
    lse : ndarray, shape (..., n_q), only if ``return_lse``

    Notes
    -----
    What the defaults trade (b = m = 256, 7 bits, min_seq_len = 4096, as in the authors' code):
    each query computes 512 logits instead of n_k, so non-causal work drops by n_k / 512 (128x
    at n = 65536) and causal work by roughly n / (min_seq_len / 2 + 512 log2(n/min_seq_len)).
    The price is accuracy where the assumptions of the paper fail: mass on keys that angular
    LSH does not put into the query's block (attention sinks, needles at a wide angle,
    large-norm keys) is only sampled, so its error falls like 1/sqrt(m) and is large when few
    keys hold much of a row's mass. ``global_keys`` and ``norm_aware`` target those cases;
    ``spectral_error`` measures the result. float32 inputs are computed in float32 (matmuls,
    exponentials) with every exponent <= 0 (log-space merges).

    Measured levers (spectral ratio, instances of :mod:`sketchla.testing.attention_instances`,
    n = 4096, d = 64, seed 0; defaults otherwise):

    ===============================  =======  ========  ======  ==========
    setting                          flat     planted   sink    large_norm
    ===============================  =======  ========  ======  ==========
    defaults                         0.162    0.259     0.097   0.150
    ``shared_samples=True``          0.402    0.326     0.105   0.182
    ``light="vnorm"``                0.176    0.259     0.099   0.151
    ``norm_aware=True``              0.164    0.291     0.096   0.152
    ``global_keys=universal_set``    0.162    0.259     0.097   0.012
    ``global_keys=[0]`` (sink)       --       --        0.011   --
    ``global_keys=n // 100``         0.172    0.255     0.097   0.012
    ``sample_size=1024``             0.085    0.232     0.096   0.143
    ===============================  =======  ========  ======  ==========

    (universal set: ``sketchla.universal_set(K, 4 d / n)``, which is empty except on
    large_norm, where it is exactly the 40 large keys.) Planted stays at ~0.25: one SimHash
    round puts a needle in its query's block for only ~10-20% of the queries.
    ``heavy="multiround"`` (32 rounds of 16-key code-aligned windows) finds it for ~84%:
    at n = 16384 (seed 0) the spectral ratio is 0.124 / 0.084 (flat / planted) with
    ``sample_size=256`` and 0.099 / 0.072 with 512, against 0.139 / 0.207 at the defaults
    and 0.065 / 0.208 for the all-zero output; it costs more time per computed logit (each
    query gathers its own keys, no BLAS), see ``sketchla bench attention``.

    Examples
    --------
    >>> import numpy as np, sketchla
    >>> rng = np.random.default_rng(0)
    >>> Q, K, V = rng.standard_normal((3, 2, 1000, 16))   # 2 heads
    >>> out = sketchla.hyper_attention(Q, K, V, block_size=1000)   # one block: exact
    >>> bool(np.allclose(out, sketchla.exact_attention(Q, K, V)))
    True
    """
    inp = check_attention_inputs(Q, K, V, causal, scale)
    if heavy not in ("sortlsh", "multiround"):
        raise ValueError(f"heavy must be 'sortlsh' or 'multiround', got {heavy!r}")
    n_k = inp.K.shape[-2]
    auto_bits = n_bits is None  # multiround: chosen per causal subproblem from its n_k
    block_size, n_bits, n_rounds = heavy_parameters(heavy, block_size, n_bits, n_rounds, n_k)
    sample_size = check_int(sample_size, "sample_size", minimum=0)
    min_seq_len = check_int(min_seq_len, "min_seq_len", minimum=1)
    for flag, name in (
        (return_lse, "return_lse"),
        (norm_aware, "norm_aware"),
        (shared_samples, "shared_samples"),
    ):
        if not isinstance(flag, (bool, np.bool_)):
            raise TypeError(f"{name} must be a bool, got {type(flag).__name__}")
    if light not in ("uniform", "vnorm"):
        raise ValueError(f"light must be 'uniform' or 'vnorm', got {light!r}")
    if heavy == "multiround" and (light != "uniform" or shared_samples):
        raise ValueError("heavy='multiround' supports light='uniform' only, without shared_samples")
    seed = as_seed_sequence(seed)  # one entropy draw for seed=None: all subproblems share it
    solver = _Solver(
        block_size,
        sample_size,
        n_bits,
        min_seq_len,
        seed,
        light,
        bool(norm_aware),
        bool(shared_samples),
        n_rounds if heavy == "multiround" else 0,
    )
    solver.auto_bits = auto_bits
    q = flatten_heads(inp.Q) * inp.dtype.type(inp.scale)
    k, v = flatten_heads(inp.K), flatten_heads(inp.V)
    G = _global_spec(global_keys, k, inp.batch_shape)
    with np.errstate(over="ignore", invalid="ignore"):  # reported below
        if inp.causal:
            lse, out = solver.causal(q, k, v, G, node=0)
        else:
            lse, out = solver.noncausal(q, k, v, G, node=0)
    raise_for_overflow(inp.dtype, out, lse)
    out = inp.unflatten(out.astype(inp.dtype, copy=False))
    if return_lse:
        return out, inp.unflatten(lse.astype(inp.dtype, copy=False))
    return out


def _global_spec(global_keys, k: np.ndarray, batch_shape: tuple[int, ...]):
    """None, an int (top-norm keys chosen per subproblem) or a (B, n_k) bool mask."""
    if global_keys is None:
        return None
    if isinstance(global_keys, numbers.Integral) and not isinstance(global_keys, bool):
        return check_int(global_keys, "global_keys", minimum=0) or None
    idx = np.asarray(global_keys)
    if idx.ndim <= 1:
        return global_mask(k, idx)
    if idx.shape[:-1] != batch_shape:
        raise ValueError(
            f"per-head global_keys must have shape (*{batch_shape}, g), got {idx.shape}"
        )
    if idx.dtype.kind not in "iu":
        raise TypeError(f"global_keys must hold integer key indices, got dtype {idx.dtype}")
    idx = idx.reshape(k.shape[0], -1)
    n_k = k.shape[1]
    if idx.size and (idx.min() < 0 or idx.max() >= n_k):
        raise ValueError(f"global_keys must be key indices in [0, {n_k})")
    mask = np.zeros(k.shape[:2], dtype=bool)
    np.put_along_axis(mask, idx, True, axis=1)
    return mask


class _Solver:
    """The parameters of one call; ``noncausal`` and ``causal`` return ``(lse, out)`` on
    flattened heads ``q (B, n_q, d)`` (already scaled), ``k (B, n_k, d)``, ``v (B, n_k, d_v)``."""

    def __init__(
        self,
        block_size,
        sample_size,
        n_bits,
        min_seq_len,
        seed,
        light,
        norm_aware,
        shared_samples,
        n_rounds=0,
    ):
        self.block_size, self.sample_size, self.n_bits = block_size, sample_size, n_bits
        self.min_seq_len, self.seed, self.light = min_seq_len, seed, light
        self.norm_aware, self.shared_samples = norm_aware, shared_samples
        #: 0: one round of sortLSH blocks; T >= 1: the multi-round heavy part
        self.n_rounds = n_rounds
        #: multiround: choose n_bits from each subproblem's n_k
        self.auto_bits = False

    def noncausal(self, q, k, v, G, node: int):
        B, n_k = k.shape[:2]
        if isinstance(G, int):
            G = top_norm_mask(k, G)
        if self.n_rounds:
            return self._multiround(q, k, v, G, node)
        blocks = lsh_blocks(q, k, self.block_size, self.n_bits, self.seed, self.norm_aware)
        part = block_partial(q, k, v, blocks, exclude=G)
        lse, out = part.lse, _values(part)
        if G is not None and G.any():
            lse, out = _merge(lse, out, global_partial(q, k, v, G))
        n_light = n_k - (0 if G is None else int(G.sum(axis=1).min()))
        if self.sample_size > 0 and blocks.n_blocks > 1 and n_light > 0:
            vnorm = None
            if self.light == "vnorm":
                vnorm = np.einsum("bnc,bnc->bn", v, v, dtype=np.float64)
            probs = light_probabilities(B, n_k, G, vnorm)
            groups = None if self.shared_samples else blocks.n_blocks
            samples = draw_samples(
                child_seed(self.seed, node), B, n_k, self.sample_size, probs, groups=groups
            )
            lse, out = _merge(lse, out, sampled_partial(q, k, v, samples, blocks))
        return lse, out

    def _multiround(self, q, k, v, G, node: int):
        """Non-causal subproblem with the multi-round heavy part and per-query samples."""
        heavy, light = multiround_partials(
            q,
            k,
            v,
            block_size=self.block_size,
            n_rounds=self.n_rounds,
            n_bits=default_bits(k.shape[1], self.block_size) if self.auto_bits else self.n_bits,
            sample_size=self.sample_size,
            seed=child_seed(self.seed, node),
            exclude=G,
            norm_aware=self.norm_aware,
        )
        lse, out = _merge(heavy.lse, _values(heavy), light)
        if G is not None and G.any():
            lse, out = _merge(lse, out, global_partial(q, k, v, G))
        return lse, out

    def causal(self, q, k, v, G, node: int):
        n = q.shape[1]
        if n <= self.min_seq_len:
            return _exact_causal(q, k, v)
        h = n // 2
        sub = (lambda a, b: G[:, a:b]) if isinstance(G, np.ndarray) else (lambda a, b: G)
        lse_top, out_top = self.causal(q[:, :h], k[:, :h], v[:, :h], sub(0, h), 2 * node + 1)
        lse_diag, out_diag = self.causal(q[:, h:], k[:, h:], v[:, h:], sub(h, n), 2 * node + 2)
        lse_off, out_off = self.noncausal(q[:, h:], k[:, :h], v[:, :h], sub(0, h), node)
        lse_bot, out_bot = merge_partials(lse_diag, out_diag, lse_off, out_off)
        return np.concatenate([lse_top, lse_bot], axis=1), np.concatenate([out_top, out_bot], 1)


def _values(part: Partial) -> np.ndarray:
    """The output of a partial computed with values (never None here)."""
    assert part.out is not None
    return part.out


def _merge(lse: np.ndarray, out: np.ndarray, part: Partial) -> tuple[np.ndarray, np.ndarray]:
    return merge_partials(lse, out, part.lse, _values(part))


def _exact_causal(q, k, v):
    """Exact causal attention of each head (q already scaled)."""
    lse = np.empty(q.shape[:2], dtype=q.dtype)
    out = np.empty((*q.shape[:2], v.shape[-1]), dtype=q.dtype)
    for b in range(q.shape[0]):
        out[b], lse[b] = exact_attention_2d(q[b], k[b], v[b], True, 1.0)
    return lse, out
