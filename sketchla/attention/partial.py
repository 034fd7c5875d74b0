r"""Partial softmax attentions over key subsets, and their log-space merge.

A *partial* attention over a key subset :math:`S_i` of each query i (with optional positive
weights :math:`w_j`, e.g. :math:`1/(m p_j)` for sampled keys) is the pair

.. math::
    \mathrm{lse}_i = \log \sum_{j \in S_i} w_j e^{s_{ij}}, \qquad
    \mathrm{out}_i = \frac{\sum_{j \in S_i} w_j e^{s_{ij}} v_j}{\sum_{j \in S_i} w_j e^{s_{ij}}},

with logits :math:`s_{ij}`. For disjoint :math:`S_1, S_2` the partial over :math:`S_1 \cup S_2`
is :math:`\mathrm{lse} = \operatorname{logaddexp}(\mathrm{lse}_1, \mathrm{lse}_2)` and
:math:`\mathrm{out} = e^{\mathrm{lse}_1 - \mathrm{lse}}\,\mathrm{out}_1 +
e^{\mathrm{lse}_2 - \mathrm{lse}}\,\mathrm{out}_2`, computed without ever forming
:math:`e^{\mathrm{lse}}` (no overflow for logits of any size). An empty partial is
:math:`(\mathrm{lse}, \mathrm{out}) = (-\infty, \text{anything finite})`; it contributes weight 0.

Every solver of :mod:`sketchla.attention` is a merge of such partials: the exact partials of its
key selectors (each key once) and the estimate of its light estimator.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

__all__ = ["AttentionResult", "Partial", "merge_all", "merge_partials", "softmax_partial"]


class AttentionResult(NamedTuple):
    """``out (..., n_q, d_v)`` and ``lse (..., n_q)``, the log of each row's (estimated)
    softmax denominator; returned by every solver called with ``return_lse=True``."""

    out: np.ndarray
    lse: np.ndarray


@dataclass(frozen=True)
class Partial:
    """One partial softmax, batched over B flattened heads and n_q queries.

    ``lse (B, n_q)``; ``out (B, n_q, d_v)`` or None (row sums only); ``lse2 (B, n_q)`` = log of
    the sum of the squared weighted terms (sampled partials that were asked for it, for standard
    errors); ``lse_se (B, n_q)`` = log of the standard error of ``exp(lse)`` where the estimator
    supplies its own; ``mom``/``mom_max``: control-variate moments of the standardised logits
    (:func:`sketchla._kernels.control.tile_moments`)."""

    lse: np.ndarray
    out: np.ndarray | None = None
    lse2: np.ndarray | None = None
    lse_se: np.ndarray | None = None
    mom: np.ndarray | None = None
    mom_max: np.ndarray | None = None


def softmax_partial(
    S: np.ndarray, V: np.ndarray | None, want_sq: bool = False
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """``(lse, out, lse2)`` of logits ``S (..., r, c)`` (``-inf`` = excluded, overwritten in
    place) against ``V (..., c, d_v)`` (or None). Rows with every entry excluded give
    ``lse = -inf``, ``out = 0``. Every exponent is <= 0: no overflow for any finite logit."""
    mx = S.max(axis=-1)
    mx = np.where(np.isfinite(mx), mx, 0).astype(S.dtype, copy=False)
    S -= mx[..., None]
    np.exp(S, out=S)
    total = S.sum(axis=-1)
    with np.errstate(divide="ignore"):
        lse = np.log(total) + mx
        lse2 = np.log(np.einsum("...c,...c->...", S, S)) + 2 * mx if want_sq else None
    out = None
    if V is not None:
        out = S @ V
        out /= np.where(total > 0, total, 1)[..., None]
    return lse, out, lse2


def merge_partials(
    lse1: np.ndarray, out1: np.ndarray, lse2: np.ndarray, out2: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Combine two partial softmax attentions over disjoint key sets (see module docstring).

    Parameters
    ----------
    lse1, lse2 : ndarray, shape (...,)
        Log of each partial's (weighted) denominator; ``-inf`` marks an empty partial.
    out1, out2 : ndarray, shape (..., d_v)
        Each partial's normalised output. Entries of an empty partial are ignored (they must
        be finite).

    Returns
    -------
    lse : ndarray, shape (...,)
        ``logaddexp(lse1, lse2)``; ``-inf`` only where both are.
    out : ndarray, shape (..., d_v)
        The normalised output over the union; 0 in rows where both partials are empty.

    Examples
    --------
    >>> import numpy as np
    >>> s = np.array([[0.5, 2.0, -1.0]]); v = np.array([[1.0], [2.0], [3.0]])
    >>> def part(cols):
    ...     lse = np.logaddexp.reduce(s[:, cols], axis=1)
    ...     return lse, np.exp(s[:, cols] - lse[:, None]) @ v[cols]
    >>> lse, out = merge_partials(*part([0]), *part([1, 2]))
    >>> bool(np.allclose(out, part([0, 1, 2])[1]))
    True
    """
    lse = np.logaddexp(lse1, lse2)
    # lse = -inf exactly where both partials are empty: weights 0 there instead of nan
    finite = np.isfinite(lse)
    safe = np.where(finite, lse, 0.0)
    w1 = np.where(finite, np.exp(lse1 - safe), 0.0)
    w2 = np.where(finite, np.exp(lse2 - safe), 0.0)
    out = w1[..., None] * out1 + w2[..., None] * out2
    return lse, out.astype(np.result_type(out1, out2), copy=False)


def merge_all(parts: list[Partial], shape: tuple[int, int], dtype: np.dtype) -> Partial:
    """The partial over the union of the disjoint key sets of ``parts`` (lse and out only;
    an empty list is the empty partial of shape ``(B, n_q)``)."""
    lse = np.full(shape, -np.inf, dtype=dtype)
    out = None
    for p in parts:
        if p.out is None:
            lse = np.logaddexp(lse, p.lse)
        elif out is None:
            lse, out = p.lse, p.out
        else:
            lse, out = merge_partials(lse, out, p.lse, p.out)
    return Partial(lse, out)

