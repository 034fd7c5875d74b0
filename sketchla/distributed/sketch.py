"""Sketches of row-chunked dask arrays: one partial sketch per chunk, summed in a fixed tree.

For S of shape (m, n) and A of shape (n, d) split into row chunks A_1, ..., A_K (rows
[o_k, o_k + c_k)), linearity gives

    S @ A = sum_k S[:, o_k : o_k + c_k] @ A_k,

and each column block ``S.column_block(o_k, o_k + c_k)`` is computed from the seed contract
(:mod:`sketchla.random`) by the task that holds A_k: no operator is stored or shipped beyond its
seed. The K partial sketches (m x d, float64) are summed in a tree of fan-in ``split_every``
whose shape depends only on K, each node adding its children left to right, so the result is
the same bits on any scheduler, worker count or completion order.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .._backend import (
    as_dense,
    as_sparse,
    check_int,
    compute_dtype,
    is_sparse,
    raise_for_nonfinite,
)
from ..operators import SketchOperator
from ._detect import require_dask

__all__ = [
    "ADJOINT_CHUNK_BYTES",
    "SPLIT_EVERY",
    "dask_adjoint",
    "dask_forward",
    "row_chunked",
    "row_offsets",
    "tree_sum",
]

#: fan-in of the summation tree of partial sketches
SPLIT_EVERY = 8
#: row chunks of the (n, d) result of a lazy adjoint hold about this many bytes
ADJOINT_CHUNK_BYTES = 2**26


def row_chunked(A: Any, name: str, ndim: tuple[int, ...] = (1, 2)) -> Any:
    """Validate a dask array for row-wise work: a real dtype, known chunk sizes, non-empty, and
    all columns in one chunk (a column-chunked array is rechunked to ``{1: -1}``: each task
    needs whole rows, and for the tall, narrow inputs these functions are for a row chunk of
    all d columns is no larger than the chunks a user would pick anyway)."""
    # TypeError for complex / object dtypes first (as the in-memory validation), before any work
    compute_dtype(A.dtype, name)
    if any(math.isnan(s) for s in A.shape):
        raise ValueError(
            f"{name} has unknown chunk sizes (shape {A.shape}); call {name}.compute_chunk_sizes() "
            "first"
        )
    if A.ndim not in ndim:
        allowed = " or ".join(f"{k}-D" for k in ndim)
        raise ValueError(f"{name} must be {allowed}, got a dask array of shape {A.shape}")
    if 0 in A.shape:
        raise ValueError(f"{name} is empty (shape {A.shape}); expected at least one entry")
    if A.ndim == 2 and A.numblocks[1] > 1:
        A = A.rechunk({1: -1})
    return A


def row_offsets(A: Any) -> np.ndarray:
    """Start rows of A's row chunks, and n at the end (length numblocks[0] + 1)."""
    return np.concatenate([[0], np.cumsum(A.chunks[0])]).astype(np.int64)


def tree_sum(parts: list, split_every: int = SPLIT_EVERY, combine: Any = None) -> Any:
    """Delayed sum of delayed arrays in a tree of fan-in ``split_every`` >= 2 (fixed shape and
    order: groups of consecutive parts, each summed left to right). ``combine(*parts)``
    replaces the sum for other reductions (default: :func:`_sum_in_order`)."""
    from dask import delayed

    split_every = check_int(split_every, "split_every", minimum=2)
    combine = _sum_in_order if combine is None else combine
    if not parts:
        raise ValueError("nothing to sum")
    while len(parts) > 1:
        parts = [
            delayed(combine, pure=True)(*parts[i : i + split_every])
            for i in range(0, len(parts), split_every)
        ]
    return parts[0]


def _sum_in_order(*parts: np.ndarray) -> np.ndarray:
    out = parts[0].copy()
    with np.errstate(over="ignore", invalid="ignore"):  # non-finite sums are raised on later
        for p in parts[1:]:
            out += p
    return out


def _partial_sketch(block_op: SketchOperator, chunk: Any, name: str) -> np.ndarray:
    """float64 partial S[:, rows of chunk] @ chunk, with the finiteness contract of ``S @ A``
    checked on this chunk (so a bad entry is named by the chunk that holds it)."""
    if is_sparse(chunk):
        chunk = as_sparse(chunk, name)
        out = block_op._forward_sparse(chunk)
    else:
        # C order: chunks of a transposed dask array (B @ S.T) are F-ordered views, and
        # SRHT.column_block(...)'s dyadic-piece transform mis-computes those (sketchla/sketch/
        # srht.py _forward_block runs the in-place FWHT on a non-C-contiguous buffer)
        chunk = np.ascontiguousarray(as_dense(chunk, name))
        out = block_op._forward_dense(chunk[:, None] if chunk.ndim == 1 else chunk)
    raise_for_nonfinite(out, {name: chunk})
    return np.asarray(out, dtype=np.float64)


def _finish(total: np.ndarray, dtype: np.dtype, vector: bool, name: str) -> np.ndarray:
    out = total.astype(dtype, copy=False)
    if not np.isfinite(out).all():
        raise ValueError(
            f"the sketch of {name} overflowed {dtype} although every chunk's partial sketch is "
            f"finite; rescale {name}"
        )
    return out[:, 0] if vector else out


def dask_forward(op: SketchOperator, A: Any, name: str = "A", split_every: int = SPLIT_EVERY):
    """``op @ A`` for a dask array A of shape (n,) or (n, d): a lazy dask array (m,) or (m, d)
    in one chunk, equal to the in-memory ``op @ A.compute()`` up to rounding (bitwise when the
    sums are exact, e.g. integer data with CountSketch, and for a single chunk).

    Parameters
    ----------
    op : SketchOperator
        Any operator with :meth:`~sketchla.SketchOperator.column_block` (all four built-in).
    A : dask.array.Array, shape (n,) or (n, d)
        Chunked along rows in any way (uneven chunks allowed); column chunks are merged.
    name : str
        Argument name for error messages.
    split_every : int >= 2
        Fan-in of the summation tree.

    Notes
    -----
    Errors that need the data (NaN / infinity in a chunk, overflow) are raised when the result
    is computed, as a ValueError naming ``name``; shape and dtype errors are raised at once.
    Memory per task: one chunk, one (m, d) float64 partial and the operator's own workspace
    (SRHT: one chunk-sized buffer; Gaussian: m x 2^22/m generated entries).
    """
    require_dask("sketching a dask array")
    import dask.array as da
    from dask import delayed

    split_every = check_int(split_every, "split_every", minimum=2)
    A = row_chunked(A, name)
    op._check_rows(A.shape[0], op.n, name)
    dtype = compute_dtype(A.dtype, name)
    offsets = row_offsets(A)
    chunks = A.to_delayed().ravel()
    parts = [
        delayed(_partial_sketch, pure=True)(op.column_block(lo, hi), chunk, name)
        for lo, hi, chunk in zip(offsets[:-1].tolist(), offsets[1:].tolist(), chunks, strict=True)
    ]
    vector = A.ndim == 1
    out = delayed(_finish, pure=True)(tree_sum(parts, split_every), dtype, vector, name)
    shape = (op.m,) if vector else (op.m, A.shape[1])
    return da.from_delayed(out, shape=shape, dtype=dtype)


def _adjoint_block(block_op: SketchOperator, Y: np.ndarray, name: str) -> np.ndarray:
    return block_op.T @ Y  # validates Y (finite, rows) in the task


def dask_adjoint(op: SketchOperator, Y: Any, name: str = "Y", chunk_rows: int | None = None):
    """``op.T @ Y`` for a dask array Y of shape (m,) or (m, d): a lazy dask array (n,) or
    (n, d) in row chunks of ``chunk_rows`` rows (default about 64 MiB per chunk); chunk k is
    ``op.column_block(a_k, b_k).T @ Y``: rows a_k..b_k-1 of the in-memory adjoint (bitwise
    for the hash and Gaussian sketches, which compute each row alike; to rounding for SRHT,
    whose blocks use shorter transforms). Y is small (m rows) and goes to every task whole.
    Non-finite Y raises ValueError on compute."""
    require_dask("the adjoint of a dask array")
    import dask.array as da
    from dask import delayed

    Y = row_chunked(Y, name)
    op._check_rows(Y.shape[0], op.m, name)
    dtype = compute_dtype(Y.dtype, name)
    width = 1 if Y.ndim == 1 else Y.shape[1]
    if chunk_rows is None:
        chunk_rows = max(1, ADJOINT_CHUNK_BYTES // (8 * width))
    chunk_rows = check_int(chunk_rows, "chunk_rows", minimum=1)
    Yd = Y.rechunk(-1).to_delayed().ravel()[0]
    blocks = []
    for lo in range(0, op.n, chunk_rows):
        hi = min(op.n, lo + chunk_rows)
        part = delayed(_adjoint_block, pure=True)(op.column_block(lo, hi), Yd, name)
        blocks.append(da.from_delayed(part, shape=(hi - lo, *Y.shape[1:]), dtype=dtype))
    return da.concatenate(blocks, axis=0)
