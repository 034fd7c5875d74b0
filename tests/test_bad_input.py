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
        (lambda: sketchla.CountSketch(4, 9, rng=-3), ValueError, "rng must be non-negative"),
        (lambda: sketchla.CountSketch(4, 9, rng=0.5), TypeError, "rng must be"),
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
    return make_operator(request.param, 4, 10, rng=0)


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


# -- issue 20, defect 1: ndarray subclasses, masked arrays; defect 7: big-endian ------------
def _public_calls(X):
    """(name, function of one (n, d) array) for public entry points that take a dense matrix."""
    return [
        ("leverage_scores svd", lambda A: sketchla.leverage_scores(A, method="svd")),
        ("leverage_scores qr", lambda A: sketchla.leverage_scores(A)),
        ("lewis_weights", lambda A: sketchla.lewis_weights(A, 1.0)),
        ("sensitivity_bounds", lambda A: sketchla.sensitivity_bounds(A, 3.0)),
        ("universal_set", lambda A: sketchla.universal_set(A, 0.2)),
        ("online_leverage_scores", lambda A: sketchla.online_leverage_scores(A, ridge=1.0)),
        ("SimHash.project", lambda A: sketchla.SimHash(A.shape[1], 4, rng=0).project(A)),
        ("SimHash.codes", lambda A: sketchla.SimHash(A.shape[1], 4, rng=0).codes(A)),
        ("CountSketch @", lambda A: sketchla.CountSketch(5, A.shape[0], rng=0) @ A),
        ("SRHT @", lambda A: sketchla.SRHT(5, A.shape[0], rng=0) @ A),
        ("sketch", lambda A: sketchla.sketch(A, 5, kind="gaussian", rng=0)),
        ("exact_attention", lambda A: sketchla.exact_attention(A, A, A)),
    ]


@pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")  # np.matrix itself
@pytest.mark.parametrize("call", range(12))
def test_np_matrix_input_gives_the_ndarray_answer(call):
    """np.matrix (scipy.sparse's .todense()) used to give IndexError (leverage_scores svd),
    'shapes not aligned' (lewis_weights), an np.matrix result (SimHash.project) or silently
    wrong attention. Every entry point now returns the plain-ndarray answer."""
    A = np.random.default_rng(3).standard_normal((40, 3))
    name, fn = _public_calls(A)[call]
    expected = fn(A)
    got = fn(np.matrix(A))
    assert type(got) is type(expected), name
    np.testing.assert_array_equal(got, expected, err_msg=name)


@pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")
def test_np_matrix_attention_of_the_issue():
    """The issue's example: [2, 2] for np.matrix queries where the answer is [2, 2.144]."""
    Q = np.array([[1.0, 0.0]])
    K = np.array([[1.0, 0.0], [0.0, 1.0]])
    V = np.array([[2.0, 2.0], [2.0, 2.5]])
    np.testing.assert_allclose(
        sketchla.exact_attention(np.matrix(Q), K, V), sketchla.exact_attention(Q, K, V)
    )
    assert not np.allclose(sketchla.exact_attention(Q, K, V)[0], [2.0, 2.0])


@pytest.mark.parametrize("call", range(12))
def test_masked_arrays_raise_type_error_naming_the_argument(call):
    """Masked arrays used to raise NumbaTypeError or 'could not be broadcast'; now a TypeError
    names the argument (the mask is never dropped silently)."""
    A = np.random.default_rng(3).standard_normal((40, 3))
    _, fn = _public_calls(A)[call]
    masked = np.ma.masked_array(A, mask=np.abs(A) > 2)
    with pytest.raises(TypeError, match=r"(A|X|K|Q) is a numpy masked array"):
        fn(masked)


@pytest.mark.parametrize("call", range(12))
@pytest.mark.parametrize("dtype", [">f8", ">f4"])
def test_big_endian_input_gives_the_native_answer(call, dtype):
    """'>f8' used to be rejected as an unsupported dtype; now it computes like the native
    dtype of the same width (FITS data is big-endian)."""
    A = np.random.default_rng(3).standard_normal((40, 3)).astype(dtype[1:])
    name, fn = _public_calls(A)[call]
    expected = fn(A)
    got = fn(A.astype(dtype))
    assert got.dtype == expected.dtype, name
    np.testing.assert_array_equal(got, expected, err_msg=name)
