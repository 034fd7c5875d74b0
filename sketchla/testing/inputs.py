"""Operator factories and the input layouts every operator must accept."""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from ..operators import KINDS, SketchOperator
from ..random import UNSET, RngLike, external_stacklevel, rng_alias

#: operator kinds of :func:`sketchla.sketch`
OPERATOR_KINDS: tuple[str, ...] = tuple(KINDS)

#: every memory layout / container a 2-D input may come in
INPUT_LAYOUTS: tuple[str, ...] = ("C", "F", "strided", "csr", "csc", "coo")


def make_operator(
    kind: str,
    m: int,
    n: int,
    rng: RngLike = 0,
    nnz_per_col: int | None = None,
    *,
    seed: Any = UNSET,
) -> SketchOperator:
    """An operator of ``kind`` with shape (m, n), clipping parameters into their valid range
    (SRHT needs m <= n, SparseSign nnz_per_col <= m) so property tests can draw m, n freely.
    ``nnz_per_col=None`` keeps SparseSign's default. ``rng`` defaults to 0 here (a test
    fixture is reproducible by default; the operators themselves default to None); ``seed=``
    is its deprecated alias."""
    if seed is not UNSET and rng == 0:
        rng = None  # seed= given: rng_alias needs rng unset
    rng = rng_alias(rng, seed, stacklevel=external_stacklevel())
    if kind == "srht":
        return KINDS[kind](min(m, n), n, rng=rng)
    if kind == "sparse_sign":
        s = None if nnz_per_col is None else min(nnz_per_col, m)
        return KINDS[kind](m, n, nnz_per_col=s, rng=rng)
    return KINDS[kind](m, n, rng=rng)


def as_layout(A: np.ndarray, layout: str) -> Any:
    """A copy of the 2-D array ``A`` in ``layout`` (see ``INPUT_LAYOUTS``). "strided" is a
    non-contiguous view (every other column of a wider array); sparse layouts keep A's zeros
    out of the structure."""
    if layout == "C":
        return np.ascontiguousarray(A)
    if layout == "F":
        return np.asfortranarray(A)
    if layout == "strided":
        wide = np.zeros((A.shape[0], 2 * A.shape[1]), dtype=A.dtype)
        wide[:, ::2] = A
        return wide[:, ::2]
    if layout in ("csr", "csc", "coo"):
        return sp.coo_array(A).asformat(layout)
    raise ValueError(f"layout must be one of {INPUT_LAYOUTS}, got {layout!r}")


def sketch_tolerance(S: Any, X: Any, dtype: Any) -> float:
    """Absolute tolerance for comparing ``S @ X`` with ``S.todense() @ X``: a few units of
    rounding of the dtype times the size of the terms summed (|S| |X| entrywise), plus the
    dtype's underflow threshold per term (denormal inputs may flush to zero)."""
    Xd = X.toarray() if sp.issparse(X) else np.asarray(X, dtype=np.float64)
    Xd = Xd.reshape(Xd.shape[0], -1)
    scale = float((np.abs(S.todense()) @ np.abs(Xd)).max(initial=0.0))
    eps = np.finfo(dtype).eps
    underflow = np.finfo(dtype).tiny * S.shape[1]
    return 8 * eps * scale * np.log2(max(2, S.shape[1])) + underflow
