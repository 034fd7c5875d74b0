"""Bad input gets a ValueError/TypeError whose message names the argument."""

import numpy as np
import pytest
import scipy.sparse as sp

import sketchla
from sketchla.testing import OPERATOR_KINDS, make_operator


@pytest.mark.parametrize(
    "ctor, exc, msg",
    [
        (lambda: sketchla.CountSketch(0, 5), ValueError, "m must be in"),
        (lambda: sketchla.GaussianSketch(-2, 5), ValueError, "m must be in"),
        (lambda: sketchla.SRHT(3, 0), ValueError, "n must be in"),
        (lambda: sketchla.CountSketch(2.0, 5), TypeError, "m must be an integer"),
        (lambda: sketchla.CountSketch(True, 5), TypeError, "m must be an integer"),
        (lambda: sketchla.CountSketch(2, "5"), TypeError, "n must be an integer"),
        (lambda: sketchla.SRHT(6, 5), ValueError, "m must be <= n for SRHT"),
        (lambda: sketchla.SparseSign(4, 9, nnz_per_col=5), ValueError, "nnz_per_col must be <= m"),
        (lambda: sketchla.SparseSign(4, 9, nnz_per_col=0), ValueError, "nnz_per_col must be in"),
        (lambda: sketchla.CountSketch(4, 9, seed=-3), ValueError, "seed must be non-negative"),
        (lambda: sketchla.CountSketch(4, 9, seed=0.5), TypeError, "seed must be"),
        (
            lambda: sketchla.sketch(np.ones((4, 2)), 2, kind="fft"),
            ValueError,
            "kind must be one of",
        ),
    ],
)
def test_constructor_errors(ctor, exc, msg):
    with pytest.raises(exc, match=msg):
        ctor()


@pytest.fixture(params=OPERATOR_KINDS)
def S(request):
    return make_operator(request.param, 4, 10, seed=0)


def test_wrong_ndim_and_rows(S):
    with pytest.raises(ValueError, match="A must be 1-D or 2-D"):
        S @ np.ones((10, 2, 2))
    with pytest.raises(ValueError, match=r"A has 9 rows but .* needs 10"):
        S @ np.ones((9, 2))
    with pytest.raises(ValueError, match="A has 9 rows"):
        S @ np.ones(9)
    with pytest.raises(ValueError, match="A has 11 rows"):
        S @ sp.csr_array(np.ones((11, 2)))
    with pytest.raises(ValueError, match=r"Y has 5 rows but .* needs 4"):
        S.T @ np.ones((5, 2))
    with pytest.raises(ValueError, match=r"B\.T has 9 rows"):
        np.ones((3, 9)) @ S.T
    with pytest.raises(ValueError, match=r"Y\.T has 3 rows"):
        np.ones((2, 3)) @ S


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite(S, bad):
    A = np.ones((10, 3))
    A[7, 1] = bad
    for X in (A, np.asfortranarray(A), A[:, 1], sp.csr_array(A), sp.csc_array(A), sp.coo_array(A)):
        with pytest.raises(ValueError, match="A contains NaN or infinity"):
            S @ X
    Y = np.ones((4, 2))
    Y[0, 0] = bad
    with pytest.raises(ValueError, match="Y contains NaN or infinity"):
        S.T @ Y


def test_overflow_of_finite_input_is_an_error_not_inf(S):
    A = np.full((10, 2), 1e308)
    A[::2] *= -1
    A[1::4] *= -1
    try:
        out = S @ A
    except ValueError as exc:
        assert "overflowed float64 although A is finite" in str(exc)
    else:
        assert np.isfinite(out).all()


def test_empty_complex_and_objects(S):
    with pytest.raises(ValueError, match="A is empty"):
        S @ np.ones((10, 0))
    with pytest.raises(TypeError, match="A has complex dtype"):
        S @ np.ones((10, 2), dtype=complex)
    with pytest.raises(TypeError, match="A has complex dtype"):
        S @ sp.csr_array(np.ones((10, 2), dtype=complex))
    with pytest.raises(TypeError, match="A has unsupported dtype"):
        S @ np.array([["a"]] * 10)
    with pytest.raises(TypeError, match="A must be an array"):
        S @ "abc"
    with pytest.raises(TypeError, match=r"Y is a scipy\.sparse matrix"):
        S.T @ sp.csr_array(np.ones((4, 2)))
    with pytest.raises(TypeError, match="products of sketch operators"):
        S @ S.T
