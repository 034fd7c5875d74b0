"""Array namespace, dtype policy and input validation shared by every public function.

This is the single place where "clear error on bad input" lives. Public functions call these
helpers on entry; nothing above this layer re-implements a shape, dtype or finiteness check.

Dtype policy (applies to every array input of the library)
----------------------------------------------------------
==================  =====================  ===============================================
input dtype         computed / returned    note
==================  =====================  ===============================================
float64             float64                unchanged
float32             float32                unchanged (kernels may accumulate in float64)
float16             float32                half precision has too few bits to accumulate in
bool, (u)int*       float64                explicit conversion, documented here
complex*            TypeError              sketches of complex data are not supported
anything else       TypeError              object, str, datetime, longdouble, ...
==================  =====================  ===============================================
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp

__all__ = [
    "as_dense",
    "as_sparse",
    "check_finite",
    "check_int",
    "check_real",
    "compute_dtype",
    "is_cupy",
    "is_sparse",
    "raise_for_nonfinite",
]

#: sparse formats handled natively by the kernels; others are converted to CSR (never densified).
NATIVE_SPARSE_FORMATS = ("csr", "csc", "coo")


def is_sparse(A: Any) -> bool:
    """True for scipy.sparse matrices and arrays."""
    return sp.issparse(A)


def is_cupy(A: Any) -> bool:
    """True for a CuPy ndarray; does not import cupy."""
    return type(A).__module__.split(".")[0] == "cupy"


def compute_dtype(dtype: Any, name: str) -> np.dtype:
    """The floating dtype an input of ``dtype`` is computed and returned in (policy above).

    Byte order does not matter: a big-endian ``>f8`` (FITS data, for example) computes in the
    native float64, like numpy and scipy.linalg do; the conversion is explicit (one copy).
    """
    dtype = np.dtype(dtype)
    if dtype.byteorder not in "=|":
        dtype = dtype.newbyteorder("=")
    if dtype == np.float64 or dtype == np.float32:
        return dtype
    if dtype == np.float16:
        return np.dtype(np.float32)
    if dtype.kind in "biu":
        return np.dtype(np.float64)
    if dtype.kind == "c":
        raise TypeError(f"{name} has complex dtype {dtype}; sketchla supports real inputs only")
    raise TypeError(
        f"{name} has unsupported dtype {dtype}; expected float32, float64, float16, integer or bool"
    )


def _check_ndim_and_size(shape: tuple[int, ...], name: str, ndim: Sequence[int]) -> None:
    if len(shape) not in ndim:
        allowed = " or ".join(f"{k}-D" for k in ndim)
        raise ValueError(f"{name} must be {allowed}, got an array of shape {shape}")
    if 0 in shape:
        raise ValueError(f"{name} is empty (shape {shape}); expected at least one entry")


def as_dense(A: Any, name: str, ndim: Sequence[int] = (1, 2)) -> np.ndarray:
    """Validate a dense host input and convert it to its compute dtype.

    Returns ``A`` itself (no copy, any memory layout) when it already is a native-byte-order
    float32/float64 ndarray; otherwise a new array in the dtype of the policy (big-endian
    input is byte-swapped to native order). Finiteness is *not* checked here (see
    :func:`check_finite` and :func:`raise_for_nonfinite`), so that kernels that must read
    every entry anyway can check in the same pass.

    ndarray subclasses are viewed as plain ndarrays (``np.matrix``, what scipy.sparse's
    ``.todense()`` returns, would otherwise turn row indexing and ``*`` into matrix
    operations; a 1-D input given as ``np.matrix`` arrives as shape (1, n)). Masked arrays are
    a TypeError naming the argument: dropping the mask silently would use the masked values.
    """
    if is_sparse(A):
        raise TypeError(f"{name} must be a dense array, got a scipy.sparse {A.format} matrix")
    if is_cupy(A):
        raise TypeError(
            f"{name} is a CuPy array; this function runs on host (NumPy) arrays only in this "
            "version. Pass cupy.asnumpy(...) explicitly."
        )
    if isinstance(A, np.ma.MaskedArray):
        raise TypeError(
            f"{name} is a numpy masked array; sketchla does not interpret masks. Pass "
            f"{name}.filled(value) (masked entries replaced) or {name}.data (mask ignored) "
            "explicitly"
        )
    if isinstance(A, np.ndarray) and type(A) is not np.ndarray:
        A = A.view(np.ndarray)  # np.matrix, memmap, ...: same data, plain ndarray semantics
    if not isinstance(A, np.ndarray):
        if isinstance(A, (str, bytes)) or A is None:
            raise TypeError(f"{name} must be an array, got {type(A).__name__}")
        try:
            A = np.asarray(A)
        except (ValueError, TypeError) as exc:
            raise TypeError(f"{name} could not be converted to an array: {exc}") from None
    dtype = compute_dtype(A.dtype, name)
    _check_ndim_and_size(A.shape, name, ndim)
    if A.dtype != dtype:
        A = A.astype(dtype)
    return A


def as_sparse(A: Any, name: str) -> sp.sparray | sp.spmatrix:
    """Validate a 2-D scipy.sparse input: CSR/CSC/COO kept as they are, other formats
    converted to CSR (an O(nnz) conversion, never a densification); data converted to the
    compute dtype of the policy."""
    if A.ndim != 2:
        raise ValueError(f"{name} must be 2-D, got a sparse array of shape {A.shape}")
    _check_ndim_and_size(A.shape, name, (2,))
    if A.format not in NATIVE_SPARSE_FORMATS:
        A = A.tocsr()
    dtype = compute_dtype(A.dtype, name)
    if A.dtype != dtype:
        A = A.astype(dtype)
    return A


#: dense arrays are checked for finiteness in row blocks of about this many bytes, so the check
#: streams through cache instead of allocating an input-sized boolean temporary
_FINITE_BLOCK_BYTES = 2**20


def check_finite(A: Any, name: str) -> None:
    """Raise ValueError if ``A`` (dense or sparse) holds NaN or +-inf."""
    data = A.data if is_sparse(A) else np.asarray(A)
    rows = max(1, _FINITE_BLOCK_BYTES // max(1, data[:1].nbytes)) if data.ndim else 1
    blocks = [data] if data.ndim == 0 else (data[i : i + rows] for i in range(0, len(data), rows))
    if not all(np.isfinite(block).all() for block in blocks):
        raise ValueError(f"{name} contains NaN or infinity; expected finite values")


def raise_for_nonfinite(result: np.ndarray, inputs: dict[str, Any]) -> None:
    """Post-condition check for linear maps whose every input entry reaches the output.

    For such maps (all sketches in ``sketchla.sketch``), a NaN or infinity anywhere in the
    input makes some output entry non-finite, because IEEE arithmetic never cancels them. So
    checking the small output replaces a full extra pass over a large input. If the output is
    not finite the inputs are inspected, to tell bad input (ValueError "contains NaN") from
    overflow of finite input (ValueError "overflowed"); both name the argument.
    """
    if np.isfinite(result).all():
        return
    for name, A in inputs.items():
        check_finite(A, name)
    names = ", ".join(inputs)
    raise ValueError(
        f"the result overflowed {result.dtype} although {names} is finite; its values are too "
        f"large to sketch in {result.dtype} (rescale {names}, e.g. by its largest absolute value)"
    )


def check_int(value: Any, name: str, minimum: int | None = None, maximum: int | None = None) -> int:
    """``value`` as a Python int, with a TypeError for non-integers (bool and 3.0 included)
    and a ValueError naming the allowed range."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__} {value!r}")
    value = int(value)
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        lo = "-inf" if minimum is None else str(minimum)
        hi = "inf" if maximum is None else str(maximum)
        raise ValueError(f"{name} must be in [{lo}, {hi}], got {value}")
    return value


def check_real(
    value: Any,
    name: str,
    minimum: float | None = None,
    maximum: float | None = None,
    *,
    min_inclusive: bool = True,
    max_inclusive: bool = True,
) -> float:
    """``value`` as a finite Python float within the stated interval."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__} {value!r}")
    value = float(value)
    below = minimum is not None and (value < minimum if min_inclusive else value <= minimum)
    above = maximum is not None and (value > maximum if max_inclusive else value >= maximum)
    if not np.isfinite(value) or below or above:
        # an unbounded side is open: infinities are never accepted (the value must be finite)
        lo = "(-inf" if minimum is None else ("[" if min_inclusive else "(") + f"{minimum:g}"
        hi = "inf)" if maximum is None else f"{maximum:g}" + ("]" if max_inclusive else ")")
        raise ValueError(f"{name} must be a finite number in {lo}, {hi}, got {value!r}")
    return value
