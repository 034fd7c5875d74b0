"""Dtype policy and validation helpers of sketchla._backend."""

import numpy as np
import pytest
import scipy.sparse as sp

from sketchla import _backend as be


@pytest.mark.parametrize(
    "dtype, expected",
    [
        (np.float64, np.float64),
        (np.float32, np.float32),
        (np.float16, np.float32),
        (np.int8, np.float64),
        (np.int64, np.float64),
        (np.uint32, np.float64),
        (np.bool_, np.float64),
    ],
)
def test_dtype_policy(dtype, expected):
    assert be.compute_dtype(dtype, "A") == expected
    out = be.as_dense(np.ones((3, 2), dtype=dtype), "A")
    assert out.dtype == expected


def test_float_inputs_are_not_copied():
    A = np.ones((4, 3), dtype=np.float32, order="F")[:, ::2]
    assert be.as_dense(A, "A") is A


@pytest.mark.parametrize("dtype", [np.complex64, np.complex128, object, "U3", "datetime64[s]"])
def test_unsupported_dtypes_raise_type_error(dtype):
    A = np.zeros((2, 2), dtype=dtype)
    with pytest.raises(TypeError, match="A"):
        be.as_dense(A, "A")


def test_longdouble_rejected_where_distinct():
    if np.dtype(np.longdouble) == np.float64:
        pytest.skip("longdouble is float64 on this platform")
    with pytest.raises(TypeError, match="A has unsupported dtype"):
        be.as_dense(np.zeros((2, 2), dtype=np.longdouble), "A")


@pytest.mark.parametrize(
    "A, msg",
    [
        (np.zeros((2, 2, 2)), "A must be 1-D or 2-D"),
        (np.float64(3.0), "A must be 1-D or 2-D"),
        (np.zeros((0, 3)), "A is empty"),
        (np.zeros((3, 0)), "A is empty"),
        (np.zeros(0), "A is empty"),
    ],
)
def test_shape_errors(A, msg):
    with pytest.raises(ValueError, match=msg):
        be.as_dense(A, "A")


def test_array_likes_and_non_arrays():
    assert be.as_dense([[1, 2], [3, 4]], "A").dtype == np.float64
    for bad in ("abc", None, {"a": 1}):
        with pytest.raises(TypeError, match="A"):
            be.as_dense(bad, "A")
    with pytest.raises(TypeError, match="A must be a dense array"):
        be.as_dense(sp.eye(3, format="csr"), "A")


def test_sparse_formats():
    for fmt in ("csr", "csc", "coo"):
        assert be.as_sparse(sp.eye(3, format=fmt), "A").format == fmt
    for fmt in ("lil", "dok", "bsr", "dia"):
        assert be.as_sparse(sp.eye(3, format=fmt), "A").format == "csr"
    assert be.as_sparse(sp.csr_array(np.eye(3, dtype=np.int32)), "A").dtype == np.float64
    with pytest.raises(TypeError, match="complex"):
        be.as_sparse(sp.csr_array(np.eye(3, dtype=complex)), "A")
    with pytest.raises(ValueError, match="empty"):
        be.as_sparse(sp.csr_array((0, 3)), "A")


def test_finiteness_checks():
    be.check_finite(np.ones(3), "A")
    for bad in (
        np.array([1.0, np.nan]),
        np.array([np.inf, 1.0]),
        sp.csr_array(np.array([[np.nan]])),
    ):
        with pytest.raises(ValueError, match="A contains NaN or infinity"):
            be.check_finite(bad, "A")
    # post-check: a non-finite result is blamed on bad input, or on overflow of finite input
    with pytest.raises(ValueError, match="A contains NaN"):
        be.raise_for_nonfinite(np.array([np.nan]), {"A": np.array([np.nan])})
    with pytest.raises(ValueError, match="overflowed float64 although A is finite"):
        be.raise_for_nonfinite(np.array([np.inf]), {"A": np.array([1e308, 1e308])})
    be.raise_for_nonfinite(np.array([1.0]), {"A": np.array([np.nan])})  # finite result: no check


def test_check_int_and_real():
    assert be.check_int(np.int32(4), "m", minimum=1) == 4
    for bad, exc in [(0, ValueError), (3.0, TypeError), (True, TypeError), ("3", TypeError)]:
        with pytest.raises(exc, match="m must"):
            be.check_int(bad, "m", minimum=1)
    with pytest.raises(ValueError, match=r"m must be in \[1, 5\]"):
        be.check_int(6, "m", minimum=1, maximum=5)
    assert be.check_real(0.5, "eps", 0, 1, min_inclusive=False) == 0.5
    for bad in (0.0, 1.5, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="eps must be a finite number in"):
            be.check_real(bad, "eps", 0, 1, min_inclusive=False)


class _FakeCupyArray:
    __module__ = "cupy._core.core"


def test_cupy_arrays_get_a_clear_error():
    assert be.is_cupy(_FakeCupyArray())
    with pytest.raises(TypeError, match="A is a CuPy array"):
        be.as_dense(_FakeCupyArray(), "A")


# -- issue 20, defect 1: ndarray subclasses; defect 7: big-endian input ---------------------
@pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")  # np.matrix itself
def test_ndarray_subclasses_are_plain_arrays():
    """np.matrix (what scipy.sparse's .todense() returns) and memmap-like subclasses arrive as
    plain ndarrays with the same data (row indexing and * keep their array meaning)."""
    A = np.arange(12.0).reshape(4, 3)
    out = be.as_dense(np.matrix(A), "A")
    assert type(out) is np.ndarray
    np.testing.assert_array_equal(out, A)
    assert out[0].shape == (3,)  # a matrix row would be (1, 3)
    sub = be.as_dense(sp.csr_matrix(A).todense(), "A")
    assert type(sub) is np.ndarray and sub.shape == (4, 3)


@pytest.mark.parametrize("mask", [np.ma.nomask, [[True, False, False]] + [[False] * 3] * 3])
def test_masked_arrays_are_rejected_naming_the_argument(mask):
    """A mask is never dropped silently: a TypeError names the argument and the explicit
    alternatives (.filled, .data)."""
    A = np.ma.masked_array(np.ones((4, 3)), mask=mask)
    with pytest.raises(TypeError, match=r"K is a numpy masked array.*K\.filled"):
        be.as_dense(A, "K")


@pytest.mark.parametrize("dtype", [">f8", ">f4", ">f2", ">i4", "<f8"])
def test_big_endian_inputs_are_converted(dtype):
    """Non-native byte order is converted (explicitly, one copy), like numpy and scipy.linalg
    do; the values are unchanged and the result is native."""
    A = np.arange(6.0).reshape(3, 2).astype(dtype)
    out = be.as_dense(A, "A")
    assert out.dtype.isnative
    assert out.dtype == be.compute_dtype(np.dtype(dtype).newbyteorder("="), "A")
    np.testing.assert_array_equal(out, A.astype(np.float64))


def test_check_real_message_matches_what_it_accepts():
    """The 'scale' error said "(0, inf]" but rejected inf: an unbounded side is now shown open
    ("inf)"), as the finite-only check is."""
    with pytest.raises(ValueError, match=r"scale must be a finite number in \(0, inf\), got inf"):
        be.check_real(np.inf, "scale", 0.0, None, min_inclusive=False)
    with pytest.raises(ValueError, match=r"in \(-inf, 1\]"):
        be.check_real(2.0, "x", None, 1.0)
    with pytest.raises(ValueError, match=r"in \[0, 1\)"):
        be.check_real(1.0, "x", 0.0, 1.0, max_inclusive=False)
    assert be.check_real(1e300, "scale", 0.0, None, min_inclusive=False) == 1e300


def test_gitignore_ignores_the_validation_report():
    """`sketchla validate --out report/` (the README's first command) leaves no untracked
    files: report/ is ignored."""
    from pathlib import Path

    lines = (Path(__file__).resolve().parents[1] / ".gitignore").read_text().splitlines()
    assert "report/" in lines
