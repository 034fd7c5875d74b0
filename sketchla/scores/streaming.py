"""One pass over row blocks of K: LevAttention's universal set without holding K."""

from __future__ import annotations

import numpy as np

from .._backend import as_dense, check_finite, check_int, check_real
from .leverage import leverage_scores

__all__ = ["StreamingLeverage"]

_MODES = ("exact", "merge")
#: same relative slack below eps as ``universal_set`` (rounding must not drop a key at eps)
_SLACK = 1e-10


class StreamingLeverage:
    r"""Universal set :math:`U_\varepsilon = \{j : l_j(K) \ge \varepsilon\}` in one pass over
    row blocks of K (n x d), with memory independent of n.

    Both modes rest on one fact: adding rows never raises a leverage score, so the score of
    row j within any subset of K's rows that contains j is at least its score in K.

    * ``mode="exact"``: keeps the d x d Gram matrix of the rows seen so far and the candidate
      rows whose score against it is >= eps (scores only decrease as rows arrive, so no member
      of the final set is ever dropped). ``universal_set()`` re-scores the candidates against
      the final Gram: exactly the batch U_eps (to rounding; Gram-based scores carry relative
      error ~ cond(K)^2 * eps_machine, so use it for keys with cond(K) << 1e8).
    * ``mode="merge"`` (merge and reduce): keeps candidate rows only; each block is merged with
      the candidates and reduced to the rows whose leverage *within the merged set* is >= eps.
      Returns a superset of U_eps of size <= rank(K) / eps <= d / eps.

    Memory: at most ``d / eps`` candidate rows plus one block (plus d x d in exact mode);
    ``peak_bytes`` reports the largest amount held.

    Parameters
    ----------
    d : int
        Columns of K.
    eps : float in (0, 1]
        Threshold.
    mode : {"exact", "merge"}

    Examples
    --------
    >>> import numpy as np, sketchla
    >>> K = np.random.default_rng(0).standard_normal((10_000, 8))
    >>> s = sketchla.StreamingLeverage(8, 0.01)
    >>> for lo in range(0, 10_000, 1000):
    ...     _ = s.update(K[lo:lo + 1000])
    >>> np.array_equal(s.universal_set(), sketchla.universal_set(K, 0.01))
    True
    """

    def __init__(self, d: int, eps: float, mode: str = "exact") -> None:
        self.d = check_int(d, "d", minimum=1)
        self.eps = check_real(eps, "eps", 0.0, 1.0, min_inclusive=False)
        if mode not in _MODES:
            raise ValueError(f"mode must be one of {_MODES}, got {mode!r}")
        self.mode = mode
        self.n_seen = 0
        self.peak_bytes = 0
        self._gram = np.zeros((self.d, self.d)) if mode == "exact" else None
        self._rows = np.empty((0, self.d))
        self._index = np.empty(0, dtype=np.int64)

    def update(self, block) -> StreamingLeverage:
        """Consume the next rows of K (shape (b, d)); returns self."""
        block = as_dense(block, "block", ndim=(2,))
        if block.shape[1] != self.d:
            raise ValueError(f"block has {block.shape[1]} columns, expected d={self.d}")
        check_finite(block, "block")
        block = block.astype(np.float64, copy=False)
        index = np.arange(self.n_seen, self.n_seen + block.shape[0])
        self.n_seen += block.shape[0]
        rows = np.vstack([self._rows, block])
        idx = np.concatenate([self._index, index])
        self.peak_bytes = max(self.peak_bytes, rows.nbytes + idx.nbytes + self._gram_bytes())
        if self.mode == "exact":
            self._gram += block.T @ block
            scores = self._gram_scores(rows)
        else:
            scores = leverage_scores(rows)
        keep = scores >= self.eps * (1.0 - _SLACK)
        self._rows, self._index = rows[keep], idx[keep]
        return self

    def universal_set(self) -> np.ndarray:
        """Sorted global row indices (int64): U_eps (exact) or a superset of size <= d/eps."""
        if self.mode == "exact" and len(self._index):
            keep = self._gram_scores(self._rows) >= self.eps * (1.0 - _SLACK)
            return np.sort(self._index[keep])
        return np.sort(self._index)

    @property
    def n_candidates(self) -> int:
        """Rows currently held."""
        return len(self._index)

    def _gram_bytes(self) -> int:
        return 0 if self._gram is None else self._gram.nbytes

    def _gram_scores(self, rows: np.ndarray) -> np.ndarray:
        """rows_i^T G^+ rows_i with the pseudo-inverse of the Gram (eigenvalues below
        d * eps_machine * max eigenvalue count as zero)."""
        w, V = np.linalg.eigh(self._gram)
        if w[-1] <= 0:
            return np.zeros(rows.shape[0])
        keep = w > self.d * np.finfo(np.float64).eps * w[-1]
        Z = rows @ V[:, keep]
        return (Z**2) @ (1.0 / w[keep])
