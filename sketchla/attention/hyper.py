r"""HyperAttention (Han, Jayaram, Karbasi, Mirrokni, Woodruff & Zandieh, ICLR 2024), as a preset
of the attention engine (:func:`sketchla.approx_attention`).

Non-causal, for logits :math:`s_{ij} = \mathrm{scale}\; q_i \cdot k_j`, every query's keys
split into

1. **heavy blocks** (:class:`~sketchla.attention.SortLSH`) -- Q and K sorted by SimHash bucket
   along the Gray sequence and cut into rank-aligned blocks; query block j attends key block j
   exactly (``ceil(n_k / block_size)`` blocks of at most ``block_size`` keys);
2. **light samples** (:class:`~sketchla.attention.Uniform`) -- m = ``sample_size`` keys drawn
   i.i.d. uniformly per query block with weights n_k/m; a sample that falls in the query's own
   block is masked (it is already in the heavy part: nothing is counted twice).

Both are partial softmaxes merged in log space: the result is
:math:`\tilde D^{-1} \tilde A V`, numerator and denominator estimated from one set of samples
(the paper's ApproxD estimate of D combined with its sampled matrix product).

Causal: the paper's recursive halving (Algorithm 4) by default: the two diagonal halves
recurse, the off-diagonal quadrant uses the non-causal routine, and subproblems of at most
``min_seq_len`` rows are exact. ``causal_scheme="blocks"`` uses the engine's linear
block-causal scheme instead.

Everything beyond the paper -- sinks, windows, global keys, multi-round hashing, importance
sampling, a control variate -- is a composition of :func:`sketchla.approx_attention`; the
measured effect of each lever is in the benchmark pages (``docs/benchmarks/attention.md``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .._backend import check_int
from .._torch import accepts_torch
from ..random import UNSET, RngLike, SeedLike
from .engine import AttentionResult, Composition, run_attention
from .estimators import Uniform
from .selectors import SortLSH

__all__ = ["hyper_attention"]


@accepts_torch("Q", "K", "V")
def hyper_attention(
    Q: Any,
    K: Any,
    V: Any,
    *,
    causal: bool = False,
    scale: float | None = None,
    key_padding_mask: Any = None,
    block_size: int = 256,
    sample_size: int = 256,
    n_bits: int = 7,
    min_seq_len: int = 4096,
    causal_scheme: str | None = None,
    rng: RngLike = None,
    seed: SeedLike | Any = UNSET,
    return_lse: bool = False,
) -> np.ndarray | AttentionResult:
    r"""HyperAttention: sortLSH blocks + uniform samples (the paper's algorithm and defaults).

    ``approx_attention(Q, K, V, keys=SortLSH(block_size, n_bits), rest=Uniform(sample_size))``
    with the paper's causal recursion; see the module docstring. Work per query:
    ``block_size`` exact keys + ``sample_size`` sampled keys, i.e. O(n (b + m) d) instead of
    O(n^2 d) non-causal.

    Parameters
    ----------
    Q, K, V : array_like, shapes (..., n_q, d), (..., n_k, d), (..., n_k, d_v)
        Validated as by :func:`sketchla.exact_attention`.
    causal : bool
        Query i attends keys j <= i.
    scale : float, optional
        Logit scale, default 1/sqrt(d).
    key_padding_mask : array_like of bool, optional
        ``(*batch, n_k)``, True marks a padded key: never attended, never drawn, and hashed
        after every real key (it lands in no block's softmax).
    block_size : int >= 1
        Keys per heavy block (the authors' default 256). ``block_size >= n_k`` makes the
        non-causal result exact.
    sample_size : int >= 0
        Sampled keys per query block (per subproblem); 0 keeps the heavy part only.
    n_bits : int in [1, 64]
        SimHash hyperplanes (default 7, as in the authors' code).
    min_seq_len : int >= 1
        Causal, "halving" only: subproblems of at most this many rows are computed exactly
        (the authors' default 4096: below it the result is exact attention, and no faster).
    causal_scheme : {"halving", "blocks"} or None
        See :func:`sketchla.approx_attention`. None: the paper's "halving" for self-attention
        (n_q == n_k), "blocks" for queries aligned bottom-right against a longer key sequence
        (n_q < n_k, decoding against a KV cache), where the recursion is not defined.
    rng : int, SeedSequence, numpy Generator or None
        Seeds the hash and the samples (SPEC 7); None draws fresh entropy.
    seed : deprecated alias of ``rng``.
    return_lse : bool
        Also return the log of the estimated denominator, as an ``AttentionResult(out, lse)``.

    Returns
    -------
    out : ndarray, shape (..., n_q, d_v), or AttentionResult(out, lse) with ``return_lse``

    Notes
    -----
    The paper's guarantee assumes that angular LSH puts each query's large entries into its
    block. Mass on keys it misses -- attention sinks, needles at a wide angle, large-norm
    keys -- is only sampled, so its error falls like 1/sqrt(m) and is large where few keys
    hold much of a row's mass. :func:`sketchla.spectral_error` measures the result, and the
    validation suite shows it next to the all-zero output and uniform attention.

    Examples
    --------
    >>> import numpy as np, sketchla
    >>> rng = np.random.default_rng(0)
    >>> Q, K, V = rng.standard_normal((3, 2, 1000, 16))   # 2 heads
    >>> out = sketchla.hyper_attention(Q, K, V, block_size=1000)   # one block: exact
    >>> bool(np.allclose(out, sketchla.exact_attention(Q, K, V)))
    True
    """
    sample_size = check_int(sample_size, "sample_size", minimum=0)
    if causal_scheme is None:
        square = np.ndim(Q) >= 2 and np.ndim(K) >= 2 and np.shape(Q)[-2] == np.shape(K)[-2]
        causal_scheme = "halving" if square else "blocks"
    comp = Composition.of(
        SortLSH(block_size, n_bits),
        Uniform(sample_size) if sample_size else None,
        with_values=True,
        diagonal=True,  # the paper's causal algorithm attends the diagonal blocks exactly
    )
    return run_attention(
        Q, K, V, comp, causal=causal, scale=scale, rng=rng, seed=seed,
        causal_scheme=causal_scheme, min_seq_len=min_seq_len, tile=256, return_lse=return_lse,
        key_padding_mask=key_padding_mask,
    )  # fmt: skip
