"""Subsampled randomized Hadamard transform (fast JL)."""

from __future__ import annotations

from functools import cached_property
from typing import Any, Self

import numpy as np

from .._kernels import cpu
from ..random import STREAM_SRHT_ROWS, STREAM_SRHT_SIGNS, UNSET, RngLike, SeedLike, stream
from ._base import SketchOperator

__all__ = ["SRHT"]

#: cache budget (bytes) of one FWHT block and of one across-block tile
_CACHE_BYTES = 2**19
#: columns are transformed in chunks of one 64-byte cache line, through one reused (N, chunk)
#: buffer: the work buffer is N * 64 bytes instead of N * d * itemsize (first-touch page faults
#: of a large fresh buffer cost more than the transform), and every line of A is read once.
_CHUNK_BYTES = 64


def fwht_plan(N: int, row_bytes: int) -> tuple[int, int]:
    """(B, T): rows per in-cache block (about sqrt(N), at most ``_CACHE_BYTES``) and rows per
    block in one across-block tile, both powers of two dividing N."""
    B = 1 << ((N.bit_length() - 1 + 1) // 2)
    while B > 1 and B * row_bytes > _CACHE_BYTES:
        B //= 2
    n_blocks = N // B
    T = 1
    while T < B and 2 * T * n_blocks * row_bytes <= _CACHE_BYTES:
        T *= 2
    return B, T


class SRHT(SketchOperator):
    r"""Subsampled randomized Hadamard transform :math:`S = \sqrt{N/m}\, P H D`, shape (m, n).

    Here N = 2^ceil(log2 n) (the input is zero-padded to N rows inside, explicitly), D is a
    diagonal of n random signs, H the N x N Walsh-Hadamard matrix normalised by
    :math:`1/\sqrt N` (Sylvester order) and P samples m of its N rows uniformly without
    replacement (kept in ascending order). So every entry of S is :math:`\pm 1/\sqrt m` and
    :math:`\mathbb E[S^\top S] = I_n`.

    Guarantee (Tropp 2011, "Improved analysis of the subsampled randomized Hadamard
    transform"): for an n x d orthonormal U, all singular values of S U lie in
    :math:`[\sqrt{1-\varepsilon}, \sqrt{1+\varepsilon}]` with probability
    :math:`\ge 1 - O(1/d)` once :math:`m \gtrsim \varepsilon^{-2} (\sqrt d + \sqrt{8 \log(N)})^2
    \log d`. Cost O(N d log N) for S @ A by a cache-blocked fast Walsh-Hadamard transform (two
    passes over an (N, d) work buffer), whatever the sparsity of A: a sparse A is expanded into
    that buffer. Use :class:`CountSketch` or :class:`SparseSign` for input-sparsity time.

    Signs: ``signs(j)`` of stream ``STREAM_SRHT_SIGNS``; rows: ``sample_without_replacement(m, N)``
    of stream ``STREAM_SRHT_ROWS`` (see :mod:`sketchla.random`).

    Column blocks (:meth:`column_block`, used to sketch row-chunked arrays) are exact too,
    although H mixes all rows: entry (k, j) of S is
    :math:`\pm m^{-1/2} (-1)^{\mathrm{popcount}(r_k \,\&\, j)}`, and for an aligned dyadic
    interval j = a + t, 0 <= t < c = 2^q, a divisible by c, the bits of a and t are disjoint, so
    :math:`(-1)^{\mathrm{popcount}(r \& j)} = (-1)^{\mathrm{popcount}(r \& a)}
    (H_c)_{r \bmod c,\, t}`. A block splits into at most 2 log2(n) such intervals, each
    applied by a length-c FWHT: O(c log c) per column of the block, no N-length transform.

    Parameters
    ----------
    m : int
        Sketch size, ``1 <= m <= n``.
    n : int
        Input dimension.
    rng : int, SeedSequence, numpy Generator or None, default None
        See :class:`SketchOperator` (``seed=`` is its deprecated alias).
    """

    def __init__(
        self, m: int, n: int, rng: RngLike = None, *, seed: SeedLike | object = UNSET
    ) -> None:
        super().__init__(m, n, rng, seed=seed)
        if self.m > self.n:
            raise ValueError(
                f"m must be <= n for SRHT (it samples rows of an n-dimensional transform), "
                f"got m={self.m}, n={self.n}"
            )
        self.n_padded = 1 << (self.n - 1).bit_length()
        self._scale = 1.0 / np.sqrt(self.m)

    @cached_property
    def signs(self) -> np.ndarray:
        """The n diagonal signs of D (float64 +-1)."""
        a = self.column_offset
        return stream(self.seed_sequence, STREAM_SRHT_SIGNS).signs(np.arange(a, a + self.n))

    @cached_property
    def rows(self) -> np.ndarray:
        """The m sampled rows of H, ascending, in [0, n_padded)."""
        return stream(self.seed_sequence, STREAM_SRHT_ROWS).sample_without_replacement(
            self.m, self.n_padded
        )

    def column_block(self, start: int, stop: int) -> Self:
        _ = self.rows  # sample the rows once, on the parent, for all its blocks
        return super().column_block(start, stop)

    def _rebase(self, start: int) -> None:
        self.__dict__.pop("signs", None)  # a cached parent's signs; rows stay the parent's

    @property
    def _is_block(self) -> bool:
        return self.n != self._full_n

    def _dyadic_pieces(self):
        """(local start, global start a, length c) of the aligned intervals [a, a + c),
        c a power of two dividing a, that partition this operator's global columns."""
        a, b = self.column_offset, self.column_offset + self.n
        while a < b:
            c = (a & -a) if a else 1 << (b - a).bit_length()
            while a + c > b:
                c //= 2
            yield a - self.column_offset, a, c
            a += c

    def _piece_signs(self, a: int) -> np.ndarray:
        """(-1)^popcount(rows & a) for the sampled rows (float64)."""
        x = self.rows & a
        for shift in (32, 16, 8, 4, 2, 1):
            x ^= x >> shift
        return 1.0 - 2.0 * (x & 1)

    def _fwht(self, buf: np.ndarray) -> None:
        """Unnormalised FWHT of a (2^q, w) C-contiguous buffer along axis 0, in place."""
        B, T = fwht_plan(buf.shape[0], buf.shape[1] * buf.itemsize)
        cpu.fwht_blocks(buf, B, work=buf.nbytes)
        cpu.fwht_across_inplace(buf, B, T, work=buf.nbytes)

    def _forward_block(self, A: np.ndarray) -> np.ndarray:
        out = np.zeros((self.m, A.shape[1]), dtype=A.dtype)
        signs = self.signs.astype(A.dtype)
        for lo, a, c in self._dyadic_pieces():
            # C order: the in-place FWHT walks rows of a C-contiguous buffer, and the product
            # would otherwise inherit an F-ordered A's layout
            buf = np.multiply(signs[lo : lo + c, None], A[lo : lo + c], order="C")
            self._fwht(buf)
            coef = (self._scale * self._piece_signs(a)).astype(A.dtype)
            out += coef[:, None] * buf[self.rows % c]
        return out

    def _adjoint_block(self, Y: np.ndarray) -> np.ndarray:
        out = np.empty((self.n, Y.shape[1]), dtype=Y.dtype)
        for lo, a, c in self._dyadic_pieces():
            buf = np.zeros((c, Y.shape[1]), dtype=Y.dtype)
            coef = (self._scale * self._piece_signs(a)).astype(Y.dtype)
            np.add.at(buf, self.rows % c, coef[:, None] * Y)
            self._fwht(buf)
            out[lo : lo + c] = buf * self.signs[lo : lo + c, None].astype(Y.dtype)
        return out

    def _tiles(self, B: int, T: int) -> tuple[np.ndarray, np.ndarray]:
        """Group the sampled rows by across-block tile: (tile_ptr, order of rows by tile)."""
        tile = (self.rows % B) // T
        order = np.argsort(tile, kind="stable")
        ptr = np.zeros(B // T + 1, dtype=np.int64)
        np.cumsum(np.bincount(tile, minlength=B // T), out=ptr[1:])
        return ptr, order

    def _forward_dense(self, A: np.ndarray) -> np.ndarray:
        if self._is_block:
            return self._forward_block(A)
        d = A.shape[1]
        N = self.n_padded
        chunk = min(d, max(1, _CHUNK_BYTES // A.itemsize))
        B, T = fwht_plan(N, chunk * A.itemsize)
        ptr, order = self._tiles(B, T)
        # one reused buffer; each chunk's (N, width) work array is a contiguous prefix of it
        # (a column slice buf[:, :width] of an (N, chunk) array would not be contiguous)
        buf = np.empty(N * chunk, dtype=A.dtype)
        out = np.empty((self.m, d), dtype=A.dtype)
        for c0 in range(0, d, chunk):
            c1 = min(d, c0 + chunk)
            work = buf[: N * (c1 - c0)].reshape(N, c1 - c0)
            cpu.fwht_fill_blocks(A[:, c0:c1], self.signs, work, B, work=work.nbytes)
            cpu.fwht_across_gather(
                work, B, T, ptr, order, self.rows, self._scale, out[:, c0:c1], work=work.nbytes
            )
        return out

    def _forward_sparse(self, A: Any) -> np.ndarray:
        return self._forward_dense(A.toarray())

    def _adjoint_dense(self, Y: np.ndarray) -> np.ndarray:
        if self._is_block:
            return self._adjoint_block(Y)
        N = self.n_padded
        B, T = fwht_plan(N, Y.shape[1] * Y.itemsize)
        work = N * Y.shape[1] * Y.itemsize
        buf = cpu.scatter_rows(Y, self.rows, self._scale, N, work=work)
        cpu.fwht_blocks(buf, B, work=work)
        cpu.fwht_across_inplace(buf, B, T, work=work)
        return buf[: self.n] * self.signs[:, None].astype(Y.dtype)

    def _dense_matrix(self) -> np.ndarray:
        if self._is_block:
            return self._adjoint_block(np.eye(self.m)).T.copy()
        return cpu.srht_dense_matrix(
            self.rows, self.signs, self.n, self._scale, work=8 * self.m * self.n
        )
