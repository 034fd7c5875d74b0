"""Sketching operators: S of shape (m, n) applied along axis 0 of an (n, d) input."""

from __future__ import annotations

import numbers
from collections.abc import Callable
from typing import Any

import numpy as np

from .._backend import as_dense, compute_dtype, is_sparse
from .._torch import accepts_torch
from ..random import UNSET, RngLike, SeedLike, external_stacklevel, resolve_rng
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


@accepts_torch("A")
def sketch(
    A: Any,
    m: int,
    kind: str = "countsketch",
    rng: RngLike = None,
    *,
    seed: SeedLike | object = UNSET,
    sparse_output: bool = False,
    **params: Any,
) -> Any:
    """Sketch ``A`` along axis 0: ``Op(m, A.shape[0], rng=rng, **params) @ A``.

    Parameters
    ----------
    A : array_like or scipy.sparse matrix, shape (n,) or (n, d)
        The input.
    m : int
        Sketch size.
    kind : {"countsketch", "sparse_sign", "srht", "gaussian"}
        The operator (:class:`CountSketch`, :class:`SparseSign`, :class:`SRHT`,
        :class:`GaussianSketch`).
    rng : int, SeedSequence, numpy Generator or None, default None
        Seed of the operator (SPEC 7; see :class:`SketchOperator`). ``seed=`` is a deprecated
        alias.
    sparse_output : bool, default False
        For ``"countsketch"`` / ``"sparse_sign"`` and scipy.sparse ``A``: return a sparse CSR
        (m, d) result (as ``scipy.linalg.clarkson_woodruff_transform`` does); see
        :meth:`CountSketch.apply`.
    **params
        Extra operator parameters (``nnz_per_col`` for ``"sparse_sign"``).

    Returns
    -------
    ndarray, shape (m,) or (m, d); a lazy dask array for a dask input (see
    :mod:`sketchla.distributed`); a scipy.sparse CSR array with ``sparse_output=True``

    Examples
    --------
    >>> import numpy as np, sketchla
    >>> sketchla.sketch(np.ones((1000, 3)), 50, kind="srht", rng=0).shape
    (50, 3)
    """
    seed_sequence = resolve_rng(rng, seed, stacklevel=external_stacklevel())  # type: ignore[arg-type]
    if not isinstance(sparse_output, (bool, np.bool_)):
        raise TypeError(f"sparse_output must be a bool, got {type(sparse_output).__name__}")
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
    rng_arg = rng if isinstance(rng, (numbers.Integral, np.random.SeedSequence)) else seed_sequence
    op = KINDS[kind](m, n, rng=rng_arg, **params)
    if sparse_output:
        if not isinstance(op, (CountSketch, SparseSign)):
            raise ValueError(
                f"sparse_output=True is for kind='countsketch' or 'sparse_sign', got {kind!r}"
            )
        return op.apply(A, sparse_output=True)
    return op @ A
