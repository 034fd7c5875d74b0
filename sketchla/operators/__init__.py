"""Sketching operators: S of shape (m, n) applied along axis 0 of an (n, d) input."""

from __future__ import annotations

import numbers
from collections.abc import Callable
from typing import Any

import numpy as np

from .._backend import as_dense, compute_dtype, is_sparse
from ..random import SeedLike
from ._base import SketchOperator, lazy_forward
from .gaussian import GaussianSketch
from .hashing import CountSketch, SparseSign
from .srht import SRHT

__all__ = ["SRHT", "CountSketch", "GaussianSketch", "SketchOperator", "SparseSign", "sketch"]

#: operator constructors by name (constructors, not a common signature: SparseSign also takes
#: ``nnz_per_col``)
KINDS: dict[str, Callable[..., SketchOperator]] = {
    "gaussian": GaussianSketch,
    "srht": SRHT,
    "countsketch": CountSketch,
    "sparse_sign": SparseSign,
}


def sketch(
    A: Any, m: int, kind: str = "countsketch", seed: SeedLike = None, **params: Any
) -> np.ndarray:
    """Sketch ``A`` along axis 0: ``Op(m, A.shape[0], seed=seed, **params) @ A``.

    Parameters
    ----------
    A : array_like or scipy.sparse matrix, shape (n,) or (n, d)
        The input.
    m : int
        Sketch size.
    kind : {"countsketch", "sparse_sign", "srht", "gaussian"}
        The operator (:class:`CountSketch`, :class:`SparseSign`, :class:`SRHT`,
        :class:`GaussianSketch`).
    seed : int, SeedSequence or None
        Seed of the operator.
    **params
        Extra operator parameters (``nnz_per_col`` for ``"sparse_sign"``).

    Returns
    -------
    ndarray, shape (m,) or (m, d); a lazy dask array for a dask input (see
    :mod:`sketchla.distributed`)
    """
    if not isinstance(kind, str) or kind not in KINDS:
        raise ValueError(f"kind must be one of {sorted(KINDS)}, got {kind!r}")
    if not is_sparse(A) and lazy_forward(A) is None:  # dask arrays stay lazy
        A = as_dense(A, "A")
    n = A.shape[0]
    if not isinstance(n, numbers.Integral):  # a dask array with unknown chunk sizes
        compute_dtype(A.dtype, "A")  # TypeError for complex / object dtypes first
        raise ValueError(
            f"A must have a known number of rows, got shape {A.shape} (for a dask array, "
            "call A.compute_chunk_sizes() first)"
        )
    return KINDS[kind](m, n, seed=seed, **params) @ A
