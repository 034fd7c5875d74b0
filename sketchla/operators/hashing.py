"""Hashing sketches: CountSketch and SparseSign (SJLT / OSNAP)."""

from __future__ import annotations

from typing import Any

import numpy as np

from .._backend import check_int
from .._kernels import cpu
from ..random import STREAM_HASH_BUCKETS, STREAM_HASH_SIGNS, SeedLike, stream
from ._base import SketchOperator

__all__ = ["CountSketch", "SparseSign"]


class _HashSketch(SketchOperator):
    """Column j of S holds ``s`` entries ``sign(j, t) / sqrt(s)`` at distinct rows ``h(j, t)``.

    ``h(j, 0..s-1)``: Floyd's sample of s distinct rows of [0, m) from stream
    ``STREAM_HASH_BUCKETS`` at counter offset ``j * s``; ``sign(j, t)``: stream
    ``STREAM_HASH_SIGNS`` at index ``j * s + t`` (see :mod:`sketchla.random`). Row-major inputs
    (C-order dense, CSR) hash each row on the fly in the same pass that reads it; column-major
    inputs (F-order, CSC, COO) first tabulate the (n, s) rows and signs. Accumulation is in
    float64 in a fixed order (bitwise reproducible for any thread count).
    """

    def __init__(self, m: int, n: int, nnz_per_col: int, seed: SeedLike) -> None:
        super().__init__(m, n, seed)
        self.nnz_per_col = check_int(nnz_per_col, "nnz_per_col", minimum=1)
        if self.nnz_per_col > self.m:
            raise ValueError(
                f"nnz_per_col must be <= m (distinct rows per column), got "
                f"nnz_per_col={self.nnz_per_col}, m={self.m}"
            )
        b = stream(self.seed_sequence, STREAM_HASH_BUCKETS)
        g = stream(self.seed_sequence, STREAM_HASH_SIGNS)
        self._params = (b.key, b.gamma, g.key, g.gamma)
        self._scale = 1.0 / np.sqrt(self.nnz_per_col)

    def _rebase(self, start: int) -> None:
        # entry i of a stream (key, gamma) is mix64(key + gamma (i + 1)), so the stream
        # (key + gamma o, gamma) is the same stream advanced by o entries (mod 2^64): a column
        # block starting at column `start` is the full operator with both streams advanced
        # by start * s (its local column j hashes with the counters of column start + j)
        offset = start * self.nnz_per_col
        kb, gb, ks, gs = self._params
        self._params = (_advance(kb, gb, offset), gb, _advance(ks, gs, offset), gs)

    def table(self) -> tuple[np.ndarray, np.ndarray]:
        """(rows, values): the (n, s) row indices and values of the nonzeros of each column."""
        s = self.nnz_per_col
        return cpu.hash_table(*self._params, self.n, self.m, s, self._scale, work=16 * self.n * s)

    def _partials(self, kernel, args: tuple, n_items: int, d: int, work: int) -> np.ndarray:
        """Run a row/nnz-partitioned scatter kernel and reduce its partial sums in order."""
        parts = cpu.n_partitions(n_items, self.m * d)
        bufs = kernel(*args, parts, work=work)
        return cpu.reduce_partitions(bufs, work=bufs.nbytes)

    def _forward_dense(self, A: np.ndarray) -> np.ndarray:
        s, m = self.nnz_per_col, self.m
        work = A.nbytes * s
        if A.flags.f_contiguous and not A.flags.c_contiguous:
            return cpu.hash_apply_cols(A.T, *self.table(), m, work=work)
        args = (A, *self._params, m, s, self._scale)
        return self._partials(cpu.hash_apply_rows, args, A.shape[0], A.shape[1], work)

    def _forward_sparse(self, A: Any) -> np.ndarray:
        s, m = self.nnz_per_col, self.m
        d = A.shape[1]
        work = (A.data.itemsize + 8) * A.nnz * s
        args: tuple[Any, ...]
        if A.format == "csr":
            args = (A.indptr, A.indices, A.data, d, *self._params, m, s, self._scale)
            return self._partials(cpu.hash_apply_csr, args, A.shape[0], d, work)
        if A.format == "csc":
            return cpu.hash_apply_csc(A.indptr, A.indices, A.data, *self.table(), m, work=work)
        args = (A.coords[0], A.coords[1], A.data, d, *self.table(), m)  # coo
        return self._partials(cpu.hash_apply_coo, args, A.nnz, d, work)

    def _adjoint_dense(self, Y: np.ndarray) -> np.ndarray:
        return cpu.hash_adjoint(Y, *self.table(), work=8 * self.n * Y.shape[1] * self.nnz_per_col)

    def _dense_matrix(self) -> np.ndarray:
        rows, vals = self.table()
        out = np.zeros((self.m, self.n))
        out[rows, np.arange(self.n)[:, None]] = vals
        return out


def _advance(key: np.uint64, gamma: np.uint64, offset: int) -> np.uint64:
    """The key of the stream (key, gamma) advanced by ``offset`` entries."""
    return np.uint64((int(key) + int(gamma) * offset) % 2**64)


class CountSketch(_HashSketch):
    r"""CountSketch (Charikar, Chen & Farach-Colton 2002): one :math:`\pm 1` per column of S.

    Column j of the (m, n) matrix S has a single nonzero, a random sign at a random row
    (hash bucket). S @ A costs one pass over A: O(nnz(A)) for CSR, CSC and COO input, which is
    never densified. Guarantee (Clarkson & Woodruff 2013; Nelson & Nguyen 2013): for an n x d
    orthonormal U, all singular values of S U lie in :math:`[1-\varepsilon, 1+\varepsilon]` with
    probability :math:`\ge 1 - \delta` once :math:`m \ge (d^2 + d) / (\delta \varepsilon^2)`
    (in practice far smaller m suffice; see the tests and ``sketchla demo``).

    Same as ``SparseSign(m, n, nnz_per_col=1, seed)`` entry for entry.

    Parameters
    ----------
    m, n : int
        Shape of S; any ``m >= 1``.
    seed : int, SeedSequence or None
        See :class:`SketchOperator`.
    """

    def __init__(self, m: int, n: int, seed: SeedLike = None) -> None:
        super().__init__(m, n, 1, seed)


class SparseSign(_HashSketch):
    r"""Sparse sign embedding (SJLT / OSNAP): ``nnz_per_col`` = s nonzeros per column of S.

    Column j of the (m, n) matrix S has entries :math:`\pm 1/\sqrt s` at s distinct random
    rows. S @ A costs O(s nnz(A)). Guarantee (Nelson & Nguyen 2013, OSNAP; Cohen 2016): for an
    n x d orthonormal U, all singular values of S U lie in :math:`[1-\varepsilon, 1+\varepsilon]`
    with constant probability once :math:`m = O(d \log(d) / \varepsilon^2)` and
    :math:`s = O(\log(d) / \varepsilon)`; s = 8 is the usual practical choice
    (Tropp et al. 2019 recommend s around 8), which is the default when m allows it.

    Parameters
    ----------
    m, n : int
        Shape of S; ``m >= nnz_per_col``.
    nnz_per_col : int or None, default None
        Nonzeros per column, ``1 <= nnz_per_col <= m``; None means ``min(8, m)``.
    seed : int, SeedSequence or None
        See :class:`SketchOperator`.
    """

    def __init__(
        self, m: int, n: int, nnz_per_col: int | None = None, seed: SeedLike = None
    ) -> None:
        if nnz_per_col is None:
            nnz_per_col = min(8, check_int(m, "m", minimum=1))
        super().__init__(m, n, nnz_per_col, seed)

    def _repr_params(self) -> dict[str, Any]:
        return {"nnz_per_col": self.nnz_per_col}
