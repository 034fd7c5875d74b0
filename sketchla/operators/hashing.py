"""Hashing sketches: CountSketch and SparseSign (SJLT / OSNAP)."""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from .._backend import as_sparse, check_int, is_sparse, raise_for_nonfinite
from .._kernels import cpu
from .._kernels.sparse import hash_table_at
from .._torch import accepts_torch
from ..random import STREAM_HASH_BUCKETS, STREAM_HASH_SIGNS, UNSET, RngLike, SeedLike, stream
from ._base import SketchOperator

__all__ = ["CountSketch", "SparseSign"]


class _HashSketch(SketchOperator):
    """Column j of S holds ``s`` entries ``sign(j, t) / sqrt(s)`` at distinct rows ``h(j, t)``.

    ``h(j, 0..s-1)``: Floyd's sample of s distinct rows of [0, m) from stream
    ``STREAM_HASH_BUCKETS`` at counter offset ``j * s``; ``sign(j, t)``: stream
    ``STREAM_HASH_SIGNS`` at index ``j * s + t`` (see :mod:`sketchla.random`). Row-major inputs
    (C-order dense, CSR) hash each row on the fly in the same pass that reads it; column-major
    inputs (F-order dense) first tabulate the (n, s) rows and signs; CSC and COO inputs
    tabulate them for their stored nonzeros only (O(nnz s) memory, whatever n). Accumulation
    is in float64 in a fixed order (bitwise reproducible for any thread count).
    """

    def __init__(
        self,
        m: int,
        n: int,
        nnz_per_col: int,
        rng: RngLike = None,
        *,
        seed: SeedLike | object = UNSET,
    ) -> None:
        super().__init__(m, n, rng, seed=seed)
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

    def table_at(self, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(rows, values) of shape (k, s): rows ``cols`` of :meth:`table` (k = len(cols)),
        computed for those columns of S only."""
        cols = np.ascontiguousarray(cols, dtype=np.int64)
        s = self.nnz_per_col
        return hash_table_at(*self._params, cols, self.m, s, self._scale, work=16 * cols.size * s)

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
        # CSC / COO: the hash of each stored nonzero's row, tabulated per nonzero (O(nnz s)
        # memory; a table of all n columns of S would be O(n s)); the kernels then index that
        # table by nonzero position instead of by row
        position = np.arange(A.nnz, dtype=np.int64)
        if A.format == "csc":
            rows, vals = self.table_at(A.indices)
            return cpu.hash_apply_csc(A.indptr, position, A.data, rows, vals, m, work=work)
        rows, vals = self.table_at(A.coords[0])  # coo
        args = (position, A.coords[1], A.data, d, rows, vals, m)
        return self._partials(cpu.hash_apply_coo, args, A.nnz, d, work)

    @accepts_torch("A")
    def apply(self, A: Any, *, sparse_output: bool = False) -> Any:
        """``S @ A``; with ``sparse_output=True`` and scipy.sparse ``A``, a sparse (m, d) CSR
        result (as ``scipy.linalg.clarkson_woodruff_transform`` returns for sparse input).

        The sparse result is built from the nonzeros of A alone: nonzero (j, c, x) of A adds
        ``x * value(j, t)`` at entry ``(row(j, t), c)`` for t < s (the hash of column j of S
        computed for that nonzero only), and duplicates are summed in float64. So it costs
        O(nnz(A) s) time and memory whatever n (no n-length index array, also for n > 2^31);
        its data is in A's compute dtype, and it equals ``S @ A`` to rounding (the sums run in
        another order than the dense kernels').
        Dense ``A`` with ``sparse_output=True`` is a TypeError (the result would be dense).
        """
        if not isinstance(sparse_output, (bool, np.bool_)):
            raise TypeError(f"sparse_output must be a bool, got {type(sparse_output).__name__}")
        if not sparse_output:
            return self @ A
        if not is_sparse(A):
            raise TypeError(
                f"sparse_output=True needs a scipy.sparse A, got {type(A).__name__}; a sketch of "
                "dense input is dense (use S @ A)"
            )
        A = as_sparse(A, "A")
        self._check_rows(A.shape[0], self.n, "A")
        coo = A if A.format == "coo" else A.tocoo()  # CSR: O(nnz + n), which CSR already is
        rows, vals = self.table_at(coo.coords[0])  # (nnz, s): the hash of each nonzero's row
        s = self.nnz_per_col
        with np.errstate(over="ignore", invalid="ignore"):  # reported below
            data = (vals * coo.data.astype(np.float64)[:, None]).ravel()
        out = sp.coo_array(
            (data, (rows.ravel(), np.repeat(coo.coords[1], s))), shape=(self.m, A.shape[1])
        ).tocsr()  # sums duplicates
        out = out.astype(A.dtype)
        raise_for_nonfinite(out.data, {"A": A})
        return out

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

    Same as ``SparseSign(m, n, nnz_per_col=1, rng=rng)`` entry for entry. For sparse A,
    ``S.apply(A, sparse_output=True)`` returns a sparse result.

    Parameters
    ----------
    m, n : int
        Shape of S; any ``m >= 1``.
    rng : int, SeedSequence, numpy Generator or None, default None
        See :class:`SketchOperator` (``seed=`` is its deprecated alias).
    """

    def __init__(
        self, m: int, n: int, rng: RngLike = None, *, seed: SeedLike | object = UNSET
    ) -> None:
        super().__init__(m, n, 1, rng, seed=seed)


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
    rng : int, SeedSequence, numpy Generator or None, default None
        See :class:`SketchOperator` (``seed=`` is its deprecated alias).
    """

    def __init__(
        self,
        m: int,
        n: int,
        nnz_per_col: int | None = None,
        rng: RngLike = None,
        *,
        seed: SeedLike | object = UNSET,
    ) -> None:
        if nnz_per_col is None:
            nnz_per_col = min(8, check_int(m, "m", minimum=1))
        super().__init__(m, n, nnz_per_col, rng, seed=seed)

    def _repr_params(self) -> dict[str, Any]:
        return {"nnz_per_col": self.nnz_per_col}
