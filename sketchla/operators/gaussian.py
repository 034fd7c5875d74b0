"""Dense Gaussian sketch."""

from __future__ import annotations

from typing import Any

import numpy as np

from .._kernels import cpu
from ..random import STREAM_GAUSSIAN, UNSET, RngLike, SeedLike, stream
from ._base import SketchOperator

__all__ = ["GaussianSketch"]

#: entries of S generated per block while applying (32 MiB of float64)
_BLOCK_ENTRIES = 2**22
#: counters are 64-bit: entries (r, j) with j * m + r < 2^64 are distinct
_MAX_ENTRIES = 2**64


class GaussianSketch(SketchOperator):
    r"""Gaussian sketch: :math:`S_{rj} \sim \mathcal N(0, 1/m)` i.i.d., shape (m, n).

    :math:`\mathbb E[S^\top S] = I_n`. For an n x d matrix A of rank r, with probability at least
    :math:`1 - \delta` every singular value of :math:`S U` (U an orthonormal basis of range(A))
    lies in :math:`[1 - \varepsilon, 1 + \varepsilon]` once
    :math:`m \gtrsim (r + \log(1/\delta)) / \varepsilon^2` (Gordon's theorem; see Woodruff,
    "Sketching as a Tool for Numerical Linear Algebra", 2014, Thm 2.3). The best constants of the
    four operators, at O(m n d) time.

    Entry (r, j) is ``normal(j * m + r) / sqrt(m)`` of stream ``STREAM_GAUSSIAN`` (see
    :mod:`sketchla.random`), a 64-bit counter: ``m * n <= 2^64`` (ValueError otherwise). S is
    never stored: it is regenerated in blocks of columns on each application (O(m n) normals
    plus one GEMM), so memory stays O(m d + 2^22).

    Parameters
    ----------
    m, n : int
        Shape of S; any ``m >= 1`` (m > n is allowed but is no reduction).
    rng : int, SeedSequence, numpy Generator or None, default None
        See :class:`SketchOperator` (``seed=`` is its deprecated alias).

    Examples
    --------
    >>> import numpy as np, sketchla
    >>> S = sketchla.GaussianSketch(64, 1000, rng=0)
    >>> (S @ np.ones((1000, 3))).shape
    (64, 3)
    """

    def __init__(
        self, m: int, n: int, rng: RngLike = None, *, seed: SeedLike | object = UNSET
    ) -> None:
        super().__init__(m, n, rng, seed=seed)
        if self.m * self.n > _MAX_ENTRIES:
            raise ValueError(
                f"m * n must be at most 2^64 for GaussianSketch (entry (r, j) is counter j * m + r "
                f"of a 64-bit stream), got m={self.m}, n={self.n}"
            )
        self._stream = stream(self.seed_sequence, STREAM_GAUSSIAN)
        self._block = max(1, _BLOCK_ENTRIES // self.m)

    def _columns(self, j0: int, j1: int, dtype: np.dtype) -> np.ndarray:
        """S[:, j0:j1].T as a (j1 - j0, m) array of ``dtype``."""
        out = np.empty((j1 - j0) * self.m, dtype=dtype)
        s = self._stream
        a = self.column_offset  # global column of local column 0 (see column_block)
        e0, e1 = (a + j0) * self.m, (a + j1) * self.m
        # Counter e of stream (key, gamma) is mix64(key + gamma (e + 1)) mod 2^64, so the stream
        # with key + gamma * base is the same stream advanced by base entries: the kernel gets
        # small local counters (an int64 counter would wrap once j m + r >= 2^63), and base is
        # even so Box-Muller pairs (2k, 2k + 1) stay pairs.
        base = e0 - e0 % 2
        key = np.uint64((int(s.key) + int(s.gamma) * base) % 2**64)
        scale = 1.0 / np.sqrt(self.m)
        cpu.normal_range(key, s.gamma, e0 - base, e1 - base, scale, out, work=8 * out.size)
        return out.reshape(j1 - j0, self.m)

    def _blocks(self):
        for j0 in range(0, self.n, self._block):
            yield j0, min(self.n, j0 + self._block)

    def _forward_dense(self, A: np.ndarray) -> np.ndarray:
        out = np.zeros((self.m, A.shape[1]), dtype=A.dtype)
        with np.errstate(over="ignore", invalid="ignore"):  # the caller checks the result
            for j0, j1 in self._blocks():
                out += self._columns(j0, j1, A.dtype).T @ A[j0:j1]
        return out

    def _forward_sparse(self, A: Any) -> np.ndarray:
        A = A.tocsr()  # row slices of CSR cost O(nnz of the slice)
        outT = np.zeros((A.shape[1], self.m), dtype=A.dtype)
        with np.errstate(over="ignore", invalid="ignore"):
            for j0, j1 in self._blocks():
                outT += A[j0:j1].T @ self._columns(j0, j1, A.dtype)
        return outT.T

    def _adjoint_dense(self, Y: np.ndarray) -> np.ndarray:
        out = np.empty((self.n, Y.shape[1]), dtype=Y.dtype)
        for j0, j1 in self._blocks():
            out[j0:j1] = self._columns(j0, j1, Y.dtype) @ Y
        return out

    def _dense_matrix(self) -> np.ndarray:
        return self._columns(0, self.n, np.dtype(np.float64)).T.copy()
