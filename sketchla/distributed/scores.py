"""Leverage scores and LevAttention's universal set of tall, row-chunked dask arrays.

For A (n x d) of rank r, l_i = ||U_i||^2 with U an orthonormal basis of range(A); the
universal set is U_eps = {i : l_i >= eps} (see :func:`sketchla.universal_set`). The
distributed forms rest on two facts:

* everything a row needs beyond itself is a d x d summary of all rows (R of a QR, the Gram
  matrix, or R of a sketch), which is small and computed by a reduction tree;
* adding rows never raises a leverage score, so the score of row i within any chunk (or any
  subset of rows) that contains it is at least its score in A -- the basis of
  select-locally / gather / re-select (LevAttention, arXiv 2410.05462).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.linalg

from .._backend import check_finite, check_int, check_real, compute_dtype
from ..operators import KINDS
from ..random import (
    UNSET,
    RngLike,
    SeedLike,
    child_seed,
    external_stacklevel,
    resolve_rng,
    rng_alias,
)
from ..scores import THRESHOLD_SLACK, numerical_rank
from ..scores import leverage_scores as _batch_leverage_scores
from ._detect import is_dask_array, require_dask
from .sketch import row_chunked, row_offsets, tree_sum

__all__ = ["leverage_scores", "universal_set"]

_LEVERAGE_METHODS = ("qr", "sketch")
_UNIVERSAL_METHODS = ("gram", "gather")


def _tall(A: Any, name: str):
    if not is_dask_array(A):
        raise TypeError(
            f"{name} must be a dask array (for NumPy input use sketchla.leverage_scores / "
            f"sketchla.universal_set), got {type(A).__name__}"
        )
    A = row_chunked(A, name, ndim=(2,))
    return A, compute_dtype(A.dtype, name)


def _range_basis_of_r(R: np.ndarray, n: int, rtol: float | None) -> np.ndarray:
    """(d, d) W whose first rank columns are the left singular vectors of R for the nonzero
    singular values (rank decided like the in-memory methods), the rest zero: with A = Q R,
    Q W spans range(A) (zero columns add nothing to row norms)."""
    if not np.isfinite(R).all():
        raise ValueError("A contains NaN or infinity; expected finite values")
    W, s, _ = np.linalg.svd(R, full_matrices=False)
    rank = numerical_rank(s, (n, R.shape[1]), rtol)
    out = np.zeros((R.shape[1], R.shape[1]))
    out[: W.shape[0], :rank] = W[:, :rank]
    return out


def _sketch_inverse(SA: np.ndarray) -> np.ndarray:
    """(d, d) M with the scores = squared row norms of A M: M = P_r R_r^{-1} from the pivoted
    QR of S A (as in the in-memory method "sketch"), zero-padded to d columns."""
    d = SA.shape[1]
    _, R, perm = scipy.linalg.qr(SA, mode="economic", pivoting=True)
    rank = numerical_rank(np.abs(np.diag(R)), SA.shape, None)
    M = np.zeros((d, d))
    if rank:
        M[perm[:rank], :rank] = scipy.linalg.solve_triangular(R[:rank, :rank], np.eye(rank))
    return M


def leverage_scores(
    A,
    method: str = "qr",
    rng: RngLike = None,
    *,
    seed: SeedLike | object = UNSET,
    rtol: float | None = None,
    sketch_size: int | None = None,
    sketch_kind: str = "sparse_sign",
    nnz_per_col: int = 4,
):
    r"""Leverage scores of a tall dask array A (n x d, chunked along rows), as a lazy dask
    array of shape (n,) chunked like A's rows.

    Parameters
    ----------
    A : dask.array.Array, shape (n, d), n >= d
        Finite real matrix of any rank; column chunks are merged (one chunk of all d columns).
        It is scaled by the power of two at max |A| first (exact; the scores are invariant).
    method : {"qr", "sketch"}
        * "qr": exact. A = Q R by ``dask.array.linalg.tsqr`` (a tree of chunk QRs), then
          R = W S V^T and l_i = ||(Q W_r)_i||^2 with W_r the left singular vectors of the r
          nonzero singular values (rank decided as :func:`sketchla.leverage_scores` does), so
          rank-deficient A scores sum to r. Two passes over A (tsqr, then the chunks of Q);
          O(n d^2) work, O(d^2) data reduced per chunk.
        * "sketch": Drineas, Magdon-Ismail, Mahoney & Woodruff (2012), as in
          :func:`sketchla.leverage_scores`: R from a pivoted QR of S A (S a ``sketch_kind``
          sketch of ``sketch_size`` rows, default min(n, 32 d), applied chunk by chunk by
          :func:`~sketchla.distributed.sketch.dask_forward`), then squared row norms of
          A R^{-1} per chunk (no JL step, float64). Same rng, same scores as the in-memory
          method up to rounding (which may run its last product in float32). Constant-factor
          accurate (see :func:`sketchla.leverage_scores`).
    rng : int, SeedSequence, numpy Generator or None, default None
        Seed of the sketch (method "sketch"; SPEC 7). ``seed=`` is a deprecated alias.
    rtol : float, optional
        Relative rank tolerance (method "qr"; default max(n, d) * eps).
    sketch_size, sketch_kind, nnz_per_col
        See method "sketch" (``nnz_per_col``: nonzeros per column of SparseSign, default 4
        as in :func:`sketchla.leverage_scores`).

    Returns
    -------
    dask.array.Array, shape (n,), float64 (float32 for float32 input); nothing is computed
    until the caller computes it (on whatever scheduler / ``distributed.Client`` is active).
    """
    rng = rng_alias(rng, seed, stacklevel=external_stacklevel())  # type: ignore[arg-type]
    da = require_dask("distributed leverage scores")
    from dask import delayed

    A, dtype = _tall(A, "A")
    if method not in _LEVERAGE_METHODS:
        raise ValueError(f"method must be one of {_LEVERAGE_METHODS}, got {method!r}")
    if rtol is not None:
        rtol = check_real(rtol, "rtol", minimum=0.0, maximum=1.0)
    n, d = A.shape
    if n < d:
        raise ValueError(
            f"A must be tall (n >= d rows: tsqr and the sketch both need it), got A of shape "
            f"{A.shape}; a wide A has fewer rows than columns, so compute its scores in memory "
            "with sketchla.leverage_scores"
        )
    # scores are invariant under A -> A / c: with c = 2^e the power of two at max |A|, the
    # scaling is exact, and denormal (or huge) entries neither underflow nor overflow in the
    # QR, its inverse or the sketch (one reduction over A, a scalar, before the passes below)
    _, e = da.frexp(da.absolute(A.astype(np.float64)).max())
    A64 = da.ldexp(A.astype(np.float64), -e)
    if method == "qr":
        Q, R = da.linalg.tsqr(A64)
        W = delayed(_range_basis_of_r, pure=True)(R, n, rtol)
        basis = Q @ da.from_delayed(W, shape=(d, d), dtype=np.float64)
    else:
        if sketch_kind not in KINDS:
            raise ValueError(f"sketch_kind must be one of {sorted(KINDS)}, got {sketch_kind!r}")
        m = sketch_size if sketch_size is not None else min(n, 32 * d)
        m = check_int(m, "sketch_size", minimum=d, maximum=n)
        nnz = check_int(nnz_per_col, "nnz_per_col", minimum=1)
        params = {"nnz_per_col": min(nnz, m)} if sketch_kind == "sparse_sign" else {}
        S = KINDS[sketch_kind](m, n, rng=child_seed(resolve_rng(rng), 0), **params)
        SA = S @ A64  # lazy (m, d)
        M = delayed(_sketch_inverse, pure=True)(SA)
        basis = A64 @ da.from_delayed(M, shape=(d, d), dtype=np.float64)
    return (basis**2).sum(axis=1).astype(dtype)


# ---------------------------------------------------------------------------------------------
# universal set
# ---------------------------------------------------------------------------------------------
# The Gram matrices are formed of K / 2^e, 2^e the power of two at max |K| (exact scaling;
# leverage scores are invariant under it), so that neither denormal entries underflow nor large
# ones (|k| > 1e154) overflow in K^T K. Each chunk scales by its own exponent e_c; a node of the
# reduction tree rescales its children's Grams to their largest exponent (exact: powers of two).
def _exponent(X: np.ndarray) -> int:
    """e with max |X| / 2^e in [0.5, 1) (0 for an all-zero or non-finite X)."""
    amax = float(np.abs(X).max(initial=0.0))
    return int(np.frexp(amax)[1]) if np.isfinite(amax) else 0


def _gram(chunk: np.ndarray) -> tuple[int, np.ndarray]:
    """(e, G) with G the Gram matrix of chunk / 2^e."""
    chunk = np.asarray(chunk, dtype=np.float64)
    e = _exponent(chunk)
    X = np.ldexp(chunk, -e)
    return e, X.T @ X


def _gram_sum(*parts: tuple[int, np.ndarray]) -> tuple[int, np.ndarray]:
    """The sum of scaled Grams (e_c, G_c) as (e, G) with e = max e_c, left to right."""
    e = max(p[0] for p in parts)
    G = np.zeros_like(parts[0][1])
    with np.errstate(over="ignore", invalid="ignore"):  # NaN / inf input: raised on next
        for e_c, G_c in parts:
            G += np.ldexp(G_c, 2 * (e_c - e))
    return e, G


def _gram_pinv_factor(eG: tuple[int, np.ndarray]) -> tuple[int, np.ndarray]:
    """(e, F) with F (d, d), F F^T = G^+ for the Gram G of K / 2^e (eigenvalues below
    d * eps_machine * max count as zero; zero columns for them), so the score of row k is
    ||(k / 2^e) F||^2."""
    e, G = eG
    if not np.isfinite(G).all():
        raise ValueError("K contains NaN or infinity; expected finite values")
    d = G.shape[0]
    w, V = np.linalg.eigh(G)
    F = np.zeros((d, d))
    if w[-1] > 0:
        keep = w > d * np.finfo(np.float64).eps * w[-1]
        F[:, keep] = V[:, keep] / np.sqrt(w[keep])
    return e, F


def _select_by_factor(
    chunk: np.ndarray, eF: tuple[int, np.ndarray], offset: int, thr: float
) -> np.ndarray:
    e, F = eF
    Z = np.ldexp(np.asarray(chunk, dtype=np.float64), -e) @ F
    scores = np.einsum("ij,ij->i", Z, Z)
    return np.flatnonzero(scores >= thr).astype(np.int64) + offset


def _local_candidates(chunk: np.ndarray, offset: int, thr: float) -> tuple[np.ndarray, np.ndarray]:
    """(global indices, rows) of the chunk's rows whose leverage within the chunk is >= thr
    (a superset of the chunk's members of U_eps, at most rank(chunk) / thr of them)."""
    chunk = np.asarray(chunk, dtype=np.float64)
    check_finite(chunk, "K")
    keep = _batch_leverage_scores(chunk) >= thr
    return np.flatnonzero(keep).astype(np.int64) + offset, chunk[keep]


def universal_set(
    K,
    eps: float,
    method: str = "gram",
    *,
    return_info: bool = False,
    split_every: int = 8,
):
    r"""LevAttention's universal set :math:`U_\varepsilon = \{j : l_j(K) \ge \varepsilon\}` of a
    tall dask array K (n x d, chunked along rows), computed now on the active scheduler.

    Parameters
    ----------
    K : dask.array.Array, shape (n, d)
        Keys, finite; column chunks are merged.
    eps : float in (0, 1]
        Threshold.
    method : {"gram", "gather"}
        * "gram" (one round, exact): the chunk Gram matrices K_c^T K_c are summed in a tree
          (fan-in ``split_every``) to G = K^T K, whose pseudo-inverse factor F (F F^T = G^+,
          d x d) goes back to every chunk; each chunk keeps its rows with
          :math:`\|k_j F\|^2 \ge \varepsilon` and sends their indices to the driver. Equals the
          batch :func:`sketchla.universal_set` up to rounding of the scores (Gram-based scores
          carry relative error ~ cond(K)^2 eps_machine: for cond(K) << 1e8). The Grams are
          of K scaled by powers of two (exact), so denormal or huge entries neither underflow
          nor overflow.
        * "gather" (select locally, gather, re-select; the LevAttention distributed scheme):
          each chunk keeps its rows whose leverage *within the chunk* is >= eps (its local
          score is at least its global one, so no member of U_eps is lost; at most
          rank(chunk)/eps rows per chunk), the candidate rows are gathered at the driver and
          re-selected by their leverage within the gathered set. Returns a superset of U_eps
          of size <= rank(K)/eps <= d/eps; one round, no Gram, no global pass, but the
          candidate rows themselves travel.
    return_info : bool, default False
        Also return a dict: ``n_chunks``, ``bytes_to_driver`` (sizes of everything the driver
        receives: indices, and for "gather" the candidate rows), ``bytes_between_tasks``
        (other intermediate results moved through the graph: the Gram partials and the
        broadcast factor for "gram", 0 for "gather"), ``n_candidates`` ("gather": rows
        gathered).
    split_every : int >= 2
        Fan-in of the Gram reduction tree (method "gram").

    Returns
    -------
    ndarray of int64, sorted (and the info dict when ``return_info``).
    """
    require_dask("the distributed universal set")
    import dask
    from dask import delayed

    K, _ = _tall(K, "K")
    eps = check_real(eps, "eps", 0.0, 1.0, min_inclusive=False)
    split_every = check_int(split_every, "split_every", minimum=2)
    if method not in _UNIVERSAL_METHODS:
        raise ValueError(f"method must be one of {_UNIVERSAL_METHODS}, got {method!r}")
    d = K.shape[1]
    thr = eps * (1.0 - THRESHOLD_SLACK)
    offsets = row_offsets(K)[:-1].tolist()
    chunks = K.to_delayed().ravel()
    info: dict[str, Any] = {"method": method, "n_chunks": len(chunks)}
    if method == "gram":
        G = tree_sum([delayed(_gram, pure=True)(c) for c in chunks], split_every, _gram_sum)
        F = delayed(_gram_pinv_factor, pure=True)(G)
        picked = dask.compute(
            *[
                delayed(_select_by_factor, pure=True)(c, F, off, thr)
                for c, off in zip(chunks, offsets, strict=True)
            ]
        )
        index = np.concatenate(picked)
        info["bytes_to_driver"] = int(sum(p.nbytes for p in picked))
        info["bytes_between_tasks"] = 2 * len(chunks) * d * d * 8  # Gram partials + F out
    else:
        found = dask.compute(
            *[
                delayed(_local_candidates, pure=True)(c, off, thr)
                for c, off in zip(chunks, offsets, strict=True)
            ]
        )
        cand_index = np.concatenate([f[0] for f in found])
        cand_rows = np.concatenate([f[1] for f in found])
        info["bytes_to_driver"] = int(sum(f[0].nbytes + f[1].nbytes for f in found))
        info["bytes_between_tasks"] = 0
        info["n_candidates"] = len(cand_index)
        index = cand_index
        if len(cand_index):
            index = cand_index[_batch_leverage_scores(cand_rows) >= thr]
    index = np.sort(index)
    return (index, info) if return_info else index
