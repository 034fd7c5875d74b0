r"""Log-space merge of partial softmax attentions over disjoint key sets.

A *partial* attention over a key subset :math:`S` (with optional positive weights
:math:`w_j`, e.g. :math:`1/(m p_j)` for sampled keys) is the pair

.. math::
    \mathrm{lse}_i = \log \sum_{j \in S} w_j e^{s_{ij}}, \qquad
    \mathrm{out}_i = \frac{\sum_{j \in S} w_j e^{s_{ij}} v_j}{\sum_{j \in S} w_j e^{s_{ij}}},

with logits :math:`s_{ij}`. For disjoint :math:`S_1, S_2` the partial over :math:`S_1 \cup S_2`
is :math:`\mathrm{lse} = \operatorname{logaddexp}(\mathrm{lse}_1, \mathrm{lse}_2)` and
:math:`\mathrm{out} = e^{\mathrm{lse}_1 - \mathrm{lse}}\,\mathrm{out}_1 +
e^{\mathrm{lse}_2 - \mathrm{lse}}\,\mathrm{out}_2`, computed without ever forming
:math:`e^{\mathrm{lse}}` (no overflow for logits of any size). An empty partial is
:math:`(\mathrm{lse}, \mathrm{out}) = (-\infty, \text{anything finite})`; it contributes weight 0.
"""

from __future__ import annotations

import numpy as np

__all__ = ["merge_partials"]


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
