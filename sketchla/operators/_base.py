"""The sketching-operator base class: one place for the ``@`` algebra, validation and dtypes.

A subclass implements four hooks on validated 2-D inputs:

* ``_forward_dense(A)``: (n, d) float32/float64 ndarray -> S @ A, (m, d)
* ``_forward_sparse(A)``: (n, d) CSR/CSC/COO with float data -> S @ A, dense (m, d)
* ``_adjoint_dense(Y)``: (m, d) finite float ndarray -> S.T @ Y, (n, d)
* ``_dense_matrix()``: the (m, n) float64 matrix

and the base class provides ``S @ A``, ``A @ S``, ``S.T @ Y``, ``B @ S.T`` for 1-D and 2-D
inputs, dtype handling (the policy of ``sketchla._backend``), the finiteness contract, the
``scipy.sparse.linalg.LinearOperator`` protocol (``shape``, ``dtype``, ``matvec``, ``rmatvec``,
``matmat``, ``rmatmat``) and ``todense``.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any, Self

import numpy as np
from scipy.sparse.linalg import LinearOperator

from .._backend import (
    as_dense,
    as_sparse,
    check_finite,
    check_int,
    is_sparse,
    raise_for_nonfinite,
)
from .._torch import accepts_torch
from ..random import (
    UNSET,
    RngLike,
    SeedLike,
    external_stacklevel,
    recorded_rng,
    resolve_rng,
    rng_repr,
)

__all__ = ["SketchOperator", "register_lazy"]

#: (predicate, forward, adjoint) for lazy array types: ``S @ A`` with ``predicate(A)`` true
#: returns ``forward(S, A, name)`` and ``S.T @ Y`` returns ``adjoint(S, Y, name)`` (the
#: right-multiplication forms follow by transposition). ``sketchla.distributed`` registers dask
#: arrays here, so this layer never imports an upper one (nor dask).
_LAZY: list[tuple[Callable[[Any], bool], Callable[..., Any], Callable[..., Any]]] = []


def register_lazy(
    predicate: Callable[[Any], bool], forward: Callable[..., Any], adjoint: Callable[..., Any]
) -> None:
    """Route ``S @ A`` / ``S.T @ Y`` (and ``sketchla.sketch``, ``B @ S.T``, ``Y @ S``) for
    inputs with ``predicate`` true to ``forward(S, A, name)`` / ``adjoint(S, Y, name)``, which
    return lazy results of the same array type."""
    _LAZY.append((predicate, forward, adjoint))


def _lazy_entry(A: Any) -> tuple | None:
    for entry in _LAZY:
        if entry[0](A):
            return entry
    return None


def lazy_forward(A: Any) -> Callable[..., Any] | None:
    """The registered lazy forward for ``A``, or None for eager inputs."""
    entry = _lazy_entry(A)
    return None if entry is None else entry[1]


class SketchOperator:
    """A random linear map S of shape (m, n) that sketches along axis 0 of an (n, d) input.

    Parameters
    ----------
    m : int
        Sketch size (rows of S), ``m >= 1``.
    n : int
        Input dimension (columns of S), ``n >= 1``.
    rng : int, numpy.random.SeedSequence, numpy.random.Generator or None, default None
        Seed of the counter-based generator (``sketchla.random``, SPEC 7). The same int or
        SeedSequence gives the same operator in every call, process and thread count. A
        Generator is mapped deterministically: four 32-bit words drawn from it (advancing it)
        become the entropy of a SeedSequence, so the same generator state gives the same
        operator. None draws fresh OS entropy. Either way the SeedSequence is kept in
        ``seed_sequence`` and shown by ``repr``, so the operator can be rebuilt.
    seed : deprecated
        Alias of ``rng`` (DeprecationWarning; passing both is a TypeError).

    Notes
    -----
    Outputs are NumPy arrays in the input's compute dtype (float32 stays float32, float64 stays
    float64, integer/bool become float64, float16 becomes float32, complex is a TypeError).
    Sparse inputs give dense outputs: sketches are meant for tall inputs, where (m, d) is small.
    An input holding NaN or infinity raises ValueError (checked on the output of the map, which
    every input entry reaches, so no extra pass over a large input is made).
    """

    #: numpy defers ``ndarray @ S`` to ``S.__rmatmul__`` instead of making an object array.
    __array_ufunc__ = None

    def __array_function__(self, func, types, args, kwargs):
        """numpy functions (``np.dot(S, A)``, ``np.linalg.norm(S)``, ...) are not forwarded
        to a sketch: a TypeError that says what to use instead (instead of numpy's "unsupported
        operand type(s) for *" from treating S as an object scalar)."""
        raise _numpy_function_error(func, type(self).__name__)

    #: global index of column 0: an operator cut by :meth:`column_block` is columns
    #: ``column_offset .. column_offset + n - 1`` of the operator it was cut from
    column_offset: int = 0

    def __init__(
        self, m: int, n: int, rng: RngLike = None, *, seed: SeedLike | object = UNSET
    ) -> None:
        self.m = check_int(m, "m", minimum=1)
        self.n = check_int(n, "n", minimum=1)
        self._full_n = self.n  # n of the operator that column blocks are cut from
        self.seed_sequence = resolve_rng(rng, seed, stacklevel=external_stacklevel())  # type: ignore[arg-type]
        #: the int or SeedSequence given as ``rng`` (for None or a Generator: the SeedSequence
        #: derived from it, so that ``repr`` and copies rebuild the same operator)
        self.rng: RngLike = recorded_rng(rng, seed, self.seed_sequence)

    @property
    def seed(self) -> RngLike:
        """The ``rng`` argument (this name predates SPEC 7's ``rng=``)."""
        return self.rng

    # -- LinearOperator protocol ------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, int]:
        """(m, n)."""
        return (self.m, self.n)

    @property
    def dtype(self) -> np.dtype:
        """float64: the dtype of ``todense()``; applications follow the input's dtype."""
        return np.dtype(np.float64)

    @property
    def ndim(self) -> int:
        return 2

    def matvec(self, x: Any) -> np.ndarray:
        """S @ x."""
        return self @ x

    def rmatvec(self, y: Any) -> np.ndarray:
        """S.T @ y."""
        return self.T @ y

    def matmat(self, X: Any) -> np.ndarray:
        """S @ X."""
        return self @ X

    def rmatmat(self, Y: Any) -> np.ndarray:
        """S.T @ Y."""
        return self.T @ Y

    def dot(self, X: Any) -> Any:
        """``S @ X`` (the ``ndarray.dot`` spelling; ``np.dot(S, X)`` is a TypeError)."""
        return self @ X

    def aslinearoperator(self) -> LinearOperator:
        """S as a :class:`scipy.sparse.linalg.LinearOperator` of shape (m, n) whose matrix
        products are single applications of S (``_matmat`` / ``_rmatmat`` overridden).

        ``scipy.sparse.linalg.aslinearoperator(S)`` also works on a sketch, but it forwards only
        ``matvec``/``rmatvec``/``rmatmat``: its ``@`` with an (n, k) matrix then applies S once
        per column (k hash passes or FWHTs instead of one). Use this view with scipy's solvers
        (``lsqr``, ``svds``, ...) and operator algebra (``L1 @ L2``, ``L.T``, ``L.H``).
        """
        return _SketchLinearOperator(self)

    @property
    def T(self) -> _TransposedSketch:
        """The adjoint S.T, shape (n, m): ``S.T @ Y`` and ``B @ S.T``."""
        return _TransposedSketch(self)

    def todense(self) -> np.ndarray:
        """The (m, n) matrix S as a float64 ndarray (for tests and small problems)."""
        return self._dense_matrix()

    def column_block(self, start: int, stop: int) -> Self:
        """The columns ``start:stop`` of S as an operator of shape (m, stop - start).

        ``S.column_block(a, b) @ A[a:b]`` is the contribution of rows a..b-1 of A to ``S @ A``,
        so ``S @ A`` is the sum of such products over any partition of the rows (how
        ``sketchla.distributed`` sketches row-chunked arrays). The block's entries are computed
        from the seed contract like the full operator's (nothing is materialised), and
        ``S.column_block(a, b).todense()`` equals ``S.todense()[:, a:b]``.
        """
        start = check_int(start, "start", minimum=0, maximum=self.n - 1)
        stop = check_int(stop, "stop", minimum=start + 1, maximum=self.n)
        block = copy.copy(self)  # shares the seed-derived parameters; keeps _full_n
        block.n = stop - start
        block.column_offset = self.column_offset + start
        block._rebase(start)
        return block

    def _rebase(self, start: int) -> None:
        """Adjust a shallow copy cut at local column ``start`` (see :meth:`column_block`)."""

    # -- application -----------------------------------------------------------------------
    @accepts_torch("A")
    def __matmul__(self, A: Any) -> np.ndarray:
        return self._forward(A, "A")

    @accepts_torch("Y")
    def __rmatmul__(self, Y: Any) -> np.ndarray:
        return _transpose_result(self._adjoint(_transpose_input(Y, "Y"), "Y.T"))

    def _forward(self, A: Any, name: str) -> np.ndarray:
        """S @ A for A of shape (n,) or (n, d), dense or scipy.sparse."""
        _reject_operator(A)
        lazy = lazy_forward(A)
        if lazy is not None:
            return lazy(self, A, name)
        if is_sparse(A):
            A = as_sparse(A, name)
            self._check_rows(A.shape[0], self.n, name)
            out = self._forward_sparse(A)
            raise_for_nonfinite(out, {name: A})
            return out.astype(A.dtype, copy=False)
        A = as_dense(A, name)
        self._check_rows(A.shape[0], self.n, name)
        vector = A.ndim == 1
        out = self._forward_dense(A[:, None] if vector else A).astype(A.dtype, copy=False)
        raise_for_nonfinite(out, {name: A})
        return out[:, 0] if vector else out

    def _adjoint(self, Y: Any, name: str) -> np.ndarray:
        """S.T @ Y for Y of shape (m,) or (m, d), dense."""
        _reject_operator(Y)
        lazy = _lazy_entry(Y)
        if lazy is not None:
            return lazy[2](self, Y, name)
        if is_sparse(Y):
            raise TypeError(
                f"{name} is a scipy.sparse matrix; the adjoint S.T @ Y takes dense sketch-space "
                f"arrays (m = {self.m} rows). Densify it explicitly with .toarray()."
            )
        Y = as_dense(Y, name)
        self._check_rows(Y.shape[0], self.m, name)
        check_finite(Y, name)
        vector = Y.ndim == 1
        out = self._adjoint_dense(Y[:, None] if vector else Y).astype(Y.dtype, copy=False)
        return out[:, 0] if vector else out

    def _check_rows(self, rows: int, expected: int, name: str) -> None:
        if rows != expected:
            raise ValueError(
                f"{name} has {rows} rows but {type(self).__name__} of shape {self.shape} "
                f"needs {expected}"
            )

    def __repr__(self) -> str:
        extra = "".join(f", {k}={v}" for k, v in self._repr_params().items())
        n, a = self._full_n, self.column_offset
        rng = rng_repr(self.rng, self.seed_sequence)
        text = f"{type(self).__name__}(m={self.m}, n={n}{extra}, rng={rng})"
        return text if self.n == n else f"{text}.column_block({a}, {a + self.n})"

    def _repr_params(self) -> dict[str, Any]:
        return {}

    # -- hooks -----------------------------------------------------------------------------
    def _forward_dense(self, A: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _forward_sparse(self, A: Any) -> np.ndarray:
        raise NotImplementedError

    def _adjoint_dense(self, Y: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _dense_matrix(self) -> np.ndarray:
        raise NotImplementedError


class _TransposedSketch:
    """S.T of a sketch S: ``S.T @ Y`` (adjoint) and ``B @ S.T`` (= (S @ B.T).T)."""

    __array_ufunc__ = None

    def __array_function__(self, func, types, args, kwargs):
        raise _numpy_function_error(func, f"{type(self._op).__name__}.T")

    def dot(self, Y: Any) -> Any:
        """``S.T @ Y``."""
        return self @ Y

    def aslinearoperator(self) -> LinearOperator:
        """S.T as a LinearOperator of shape (n, m) (see :meth:`SketchOperator.aslinearoperator`)."""
        return _SketchLinearOperator(self._op).T

    def __init__(self, op: SketchOperator) -> None:
        self._op = op

    @property
    def shape(self) -> tuple[int, int]:
        return (self._op.n, self._op.m)

    @property
    def dtype(self) -> np.dtype:
        return self._op.dtype

    @property
    def T(self) -> SketchOperator:
        return self._op

    def todense(self) -> np.ndarray:
        return self._op.todense().T

    def matvec(self, y: Any) -> np.ndarray:
        """S.T @ y."""
        return self @ y

    def rmatvec(self, x: Any) -> np.ndarray:
        """S @ x."""
        return self._op @ x

    matmat = matvec
    rmatmat = rmatvec

    @accepts_torch("Y")
    def __matmul__(self, Y: Any) -> np.ndarray:
        return self._op._adjoint(Y, "Y")

    @accepts_torch("B")
    def __rmatmul__(self, B: Any) -> np.ndarray:
        return _transpose_result(self._op._forward(_transpose_input(B, "B"), "B.T"))

    def __repr__(self) -> str:
        return f"{self._op!r}.T"


def _numpy_function_error(func: Any, name: str) -> TypeError:
    module = getattr(func, "__module__", None) or "numpy"
    prefix = module.replace("numpy", "np", 1) if module.startswith("numpy") else module
    fname = getattr(func, "__name__", str(func))
    if fname in ("dot", "matmul", "inner", "tensordot", "vdot"):
        return TypeError(
            f"{prefix}.{fname} does not apply a sketch operator ({name}); write S @ A (or "
            "S.dot(A)) for the sketch, S.T @ Y for its adjoint, or S.todense() for the matrix"
        )
    return TypeError(
        f"{prefix}.{fname} is not supported for a sketch operator ({name}); it is a linear map, "
        "not an array: use S @ A, S.T @ Y, S.aslinearoperator() or (small S) S.todense()"
    )


class _SketchLinearOperator(LinearOperator):
    """scipy LinearOperator view of a sketch whose matrix products are single applications."""

    def __init__(self, op: SketchOperator) -> None:
        self._op = op
        super().__init__(dtype=np.dtype(np.float64), shape=op.shape)

    def _matvec(self, x: np.ndarray) -> np.ndarray:
        return self._op @ np.asarray(x).reshape(-1)

    def _rmatvec(self, y: np.ndarray) -> np.ndarray:
        return self._op.T @ np.asarray(y).reshape(-1)

    def _matmat(self, X: np.ndarray) -> np.ndarray:
        return self._op @ X

    def _rmatmat(self, Y: np.ndarray) -> np.ndarray:
        return self._op.T @ Y

    def _adjoint(self) -> LinearOperator:
        return _AdjointSketchLinearOperator(self)

    _transpose = _adjoint  # real operator

    def __repr__(self) -> str:
        return f"<{self.shape[0]}x{self.shape[1]} LinearOperator of {self._op!r}>"


class _AdjointSketchLinearOperator(LinearOperator):
    """S.T of a :class:`_SketchLinearOperator` with the same single-application products."""

    def __init__(self, of: _SketchLinearOperator) -> None:
        self._of = of
        super().__init__(dtype=of.dtype, shape=(of.shape[1], of.shape[0]))

    def _matvec(self, y: np.ndarray) -> np.ndarray:
        return self._of._rmatvec(y)

    def _rmatvec(self, x: np.ndarray) -> np.ndarray:
        return self._of._matvec(x)

    def _matmat(self, Y: np.ndarray) -> np.ndarray:
        return self._of._rmatmat(Y)

    def _rmatmat(self, X: np.ndarray) -> np.ndarray:
        return self._of._matmat(X)

    def _adjoint(self) -> LinearOperator:
        return self._of

    _transpose = _adjoint


def _reject_operator(A: Any) -> None:
    if isinstance(A, (SketchOperator, _TransposedSketch)):
        raise TypeError(
            "products of sketch operators are not formed; apply them in sequence, "
            "e.g. S2 @ (S1 @ A)"
        )


def _transpose_input(B: Any, name: str) -> Any:
    """B.T for the right-multiplication forms (1-D stays 1-D; array-likes are validated)."""
    if not is_sparse(B) and _lazy_entry(B) is None:
        B = as_dense(B, name)
    return B.T


def _transpose_result(out: np.ndarray) -> np.ndarray:
    return out.T if out.ndim == 2 else out
