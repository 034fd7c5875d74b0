r"""SimHash (random-hyperplane LSH) codes and the sortLSH permutation.

For hyperplanes :math:`h_1, \dots, h_r \sim \mathcal N(0, I_d)`, the code of x has bit b set iff
:math:`h_b \cdot x > 0`. Two vectors at angle :math:`\theta` agree on each bit with probability
:math:`1 - \theta/\pi` independently across bits (Charikar, STOC 2002), so a full r-bit code
collides with probability :math:`(1 - \theta/\pi)^r`.

sortLSH (HyperAttention, Han et al., ICLR 2024, Algorithm 1) orders the rows of Q and of K by
their bucket, with the buckets visited along the Gray sequence (:mod:`sketchla.lsh.gray`), so
neighbouring buckets in the order differ in one hyperplane; then query block j is paired with
key block j of the sorted orders.

Angular LSH ignores norms. For keys of unequal norms, :func:`mips_augment` applies the
asymmetric maximum-inner-product reduction of Neyshabur & Srebro (ICML 2015): keys become
:math:`(k/M, \sqrt{1 - \|k\|^2/M^2})` with :math:`M = \max_j \|k_j\|` and queries
:math:`(q, 0)`, so the angle between the augmented vectors decreases as :math:`q \cdot k`
grows, for every key.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .._backend import as_dense, check_finite, check_int, raise_for_nonfinite
from .._kernels import lsh as kernels
from .._torch import accepts_torch
from ..random import (
    STREAM_SIMHASH_PLANES,
    UNSET,
    RngLike,
    SeedLike,
    external_stacklevel,
    recorded_rng,
    resolve_rng,
    rng_repr,
    stream,
)

__all__ = ["SimHash", "mips_augment"]

#: counting sort is used when 2^n_bits <= this factor times the number of rows and
#: n_bits <= _COUNTING_MAX_BITS; otherwise numpy's stable argsort of the Gray positions.
#: Measured (2 cores, loaded): counting / argsort speed-up 12x at n = 2^16, r <= 12; 5x at
#: n = 2^16, r = 16; 2.2x at n = 2^16, r = 20 (2^r = 16 n) but 0.5x at n = 2^12, r = 16;
#: 2.2-3.2x at n = 2^20, r <= 16 and 0.9x at r = 20 (a 2^20-bucket histogram per chunk).
_COUNTING_BUCKETS_PER_ROW = 4
_COUNTING_MAX_BITS = 18
#: rows per parallel chunk of the counting sort
_CHUNK_ROWS = 2**16
_MAX_CHUNKS = 8
_MAX_NDIM = 8


class SimHash:
    r"""Random-hyperplane LSH of dimension ``d`` with ``n_bits`` hyperplanes.

    Hyperplane b has entries ``planes[i, b] = normal(i * n_bits + b)`` of stream
    ``STREAM_SIMHASH_PLANES`` of ``rng`` (see :mod:`sketchla.random`): the same seed gives the
    same hash in every call and process, and the hash of dimension d + 1 extends the one of
    dimension d by one coordinate (used by :func:`mips_augment`).

    Parameters
    ----------
    d : int
        Dimension of the hashed vectors.
    n_bits : int in [1, 64]
        Number of hyperplanes = bits per code; codes are stored as uint64.
    rng : int, SeedSequence, numpy Generator or None, default None
        Seed (SPEC 7; see :class:`sketchla.SketchOperator` for how a Generator is used). None
        draws fresh entropy, shown by ``repr`` so the hash can be rebuilt. ``seed=`` is a
        deprecated alias.

    Examples
    --------
    >>> import numpy as np, sketchla
    >>> h = sketchla.SimHash(16, 7, rng=0)
    >>> X = np.random.default_rng(0).standard_normal((1000, 16))
    >>> order = h.sort_order(X)
    >>> codes = h.codes(X)[order]
    >>> ranks = sketchla.lsh.inverse_gray_code(codes)
    >>> bool(np.all(np.diff(ranks.astype(np.int64)) >= 0))
    True
    """

    def __init__(
        self, d: int, n_bits: int, rng: RngLike = None, *, seed: SeedLike | object = UNSET
    ) -> None:
        self.d = check_int(d, "d", minimum=1)
        self.n_bits = check_int(n_bits, "n_bits", minimum=1, maximum=64)
        self.seed_sequence = resolve_rng(rng, seed, stacklevel=external_stacklevel())  # type: ignore[arg-type]
        #: the int or SeedSequence given (for None or a Generator: the derived SeedSequence)
        self.rng: RngLike = recorded_rng(rng, seed, self.seed_sequence)
        s = stream(self.seed_sequence, STREAM_SIMHASH_PLANES)
        self._planes = s.normal(np.arange(self.d * self.n_bits)).reshape(self.d, self.n_bits)
        self._planes32 = self._planes.astype(np.float32)

    def __repr__(self) -> str:
        rng = rng_repr(self.rng, self.seed_sequence)
        return f"SimHash(d={self.d}, n_bits={self.n_bits}, rng={rng})"

    @property
    def planes(self) -> np.ndarray:
        """The hyperplanes as the columns of a (d, n_bits) float64 array (a copy)."""
        return self._planes.copy()

    @accepts_torch("X")
    def project(self, X: Any) -> np.ndarray:
        """``X @ planes`` for X of shape (..., d): shape (..., n_bits), in X's compute dtype."""
        X = self._check(X, "X")
        planes = self._planes32 if X.dtype == np.float32 else self._planes
        P = X @ planes
        raise_for_nonfinite(P, {"X": X})
        return P

    @accepts_torch("X")
    def codes(self, X: Any) -> np.ndarray:
        """Codes of the rows of X (..., d): uint64 array of shape (...), bit b = sign of
        hyperplane b (set iff the projection is > 0; projections accumulate in float64)."""
        return self._codes(X, "X")

    def _codes(self, X: Any, name: str) -> np.ndarray:
        """:meth:`codes` with errors naming the caller's argument ``name``."""
        X = self._check(X, name)
        flat = np.ascontiguousarray(X.reshape(-1, self.d))
        planes_t = np.ascontiguousarray(self._planes.T, dtype=flat.dtype)
        codes, bad = kernels.simhash_codes(flat, planes_t, work=flat.nbytes)
        if bad.any():
            check_finite(X, name)
            raise ValueError(
                f"the SimHash projections of {name} overflowed although {name} is finite; "
                f"rescale {name}"
            )
        return codes.reshape(X.shape[:-1])

    @accepts_torch("X")
    def sort_order(self, X: Any) -> np.ndarray:
        """The sortLSH permutation of the rows of X (..., n, d): shape (..., n) int64.

        Row ``order[..., t]`` is the t-th in the stable sort by the Gray-sequence position of
        the code (:func:`sketchla.lsh.inverse_gray_code`): equal codes are contiguous and in
        their original order, and consecutive buckets of the order differ in one bit whenever
        no bucket between them is empty.
        """
        return self._sort_order(X, "X")

    def _sort_order(self, X: Any, name: str) -> np.ndarray:
        """:meth:`sort_order` with errors naming the caller's argument ``name``."""
        X = self._check(X, name, min_ndim=2)
        return gray_sort_order(self._codes(X, name), self.n_bits)

    def _check(self, X: Any, name: str, min_ndim: int = 1) -> np.ndarray:
        X = as_dense(X, name, ndim=tuple(range(min_ndim, _MAX_NDIM + 1)))
        if X.shape[-1] != self.d:
            raise ValueError(
                f"{name} has {X.shape[-1]} columns but the hash has dimension d={self.d}"
            )
        return X


def gray_sort_order(codes: np.ndarray, n_bits: int) -> np.ndarray:
    """Stable argsort along the last axis of ``codes`` (uint64, < 2^n_bits) by Gray position.

    A counting sort over the 2^n_bits buckets when that is cheaper than a comparison sort
    (see ``_COUNTING_BUCKETS_PER_ROW``), numpy's stable argsort of the positions otherwise.
    """
    shape = codes.shape
    n = shape[-1]
    flat = np.ascontiguousarray(codes.reshape(-1, n), dtype=np.uint64)
    if n_bits <= _COUNTING_MAX_BITS and 2**n_bits <= _COUNTING_BUCKETS_PER_ROW * max(n, 256):
        chunks = 1 if flat.shape[0] > 1 else int(min(_MAX_CHUNKS, max(1, n // _CHUNK_ROWS)))
        order = kernels.gray_counting_argsort(flat, 2**n_bits, chunks, work=flat.nbytes)
    else:
        from .gray import inverse_gray_code

        order = np.argsort(inverse_gray_code(flat), axis=-1, kind="stable")
    return order.reshape(shape)


@accepts_torch("Q", "K")
def mips_augment(Q: Any, K: Any) -> tuple[np.ndarray, np.ndarray]:
    r"""Asymmetric MIPS transform: ``(Q (..., n_q, d), K (..., n_k, d))`` to dimension d + 1.

    Keys become :math:`(k_j / M, \sqrt{1 - \|k_j\|^2 / M^2})` with
    :math:`M = \max_j \|k_j\|` (per leading index), queries :math:`(q_i, 0)`. All augmented
    keys have unit norm and :math:`\tilde q \cdot \tilde k_j = q \cdot k_j / M`, so for a fixed
    query the angle to :math:`\tilde k_j` is decreasing in :math:`q \cdot k_j`: SimHash of the
    augmented vectors collides more often for larger inner products (not merely smaller
    angles). Hash both with a :class:`SimHash` of dimension d + 1.
    """
    Q = as_dense(Q, "Q", ndim=tuple(range(2, _MAX_NDIM + 1)))
    K = as_dense(K, "K", ndim=tuple(range(2, _MAX_NDIM + 1)))
    if Q.shape[-1] != K.shape[-1]:
        raise ValueError(f"Q has d={Q.shape[-1]} columns but K has {K.shape[-1]}")
    sq = np.einsum("...i,...i->...", K, K)
    M2 = sq.max(axis=-1, keepdims=True)
    M2 = np.where(M2 > 0, M2, 1.0).astype(K.dtype)
    extra = np.sqrt(np.clip(1.0 - sq / M2, 0.0, 1.0))
    Ka = np.concatenate([K / np.sqrt(M2)[..., None], extra[..., None]], axis=-1)
    Qa = np.concatenate([Q, np.zeros((*Q.shape[:-1], 1), dtype=Q.dtype)], axis=-1)
    return Qa, Ka.astype(K.dtype, copy=False)
