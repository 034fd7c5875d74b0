"""Every operator against its materialised matrix, on every input kind (hypothesis).

Properties: S @ A == S.todense() @ A to rounding for dense C/F/strided, CSR/CSC/COO and 1-D
inputs; the three transposed forms; linearity; dtype in == dtype out; structure of S; same
seed => bitwise-identical operator (also across processes and thread counts).
"""

import hashlib
import subprocess
import sys

import numba
import numpy as np
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as spla
from hypothesis import given
from hypothesis import strategies as st

import sketchla
from sketchla.testing import (
    INPUT_LAYOUTS,
    OPERATOR_KINDS,
    as_layout,
    make_operator,
    sketch_tolerance,
)
from sketchla.testing.strategies import finite_matrices, layouts, operator_kinds, seeds

dims = st.integers(1, 40)


def _dense(X):
    return X.toarray() if sp.issparse(X) else np.asarray(X)


@given(
    kind=operator_kinds,
    m=dims,
    n=dims,
    d=st.integers(1, 20),  # past SRHT's column chunk (8 float64 columns), not a multiple of it
    layout=layouts,
    seed=seeds,
    data=st.data(),
)
def test_apply_equals_dense_matrix(kind, m, n, d, layout, seed, data):
    S = make_operator(kind, m, n, seed)
    A = data.draw(finite_matrices(n, d))
    X = as_layout(A, layout)
    out = S @ X
    assert out.shape == (S.m, d) and out.dtype == np.float64
    assert isinstance(out, np.ndarray)
    tol = sketch_tolerance(S, A, np.float64)
    np.testing.assert_allclose(out, S.todense() @ A, rtol=0, atol=tol)


@given(kind=operator_kinds, m=dims, n=dims, seed=seeds, data=st.data())
def test_vectors(kind, m, n, seed, data):
    S = make_operator(kind, m, n, seed)
    M = S.todense()
    x = data.draw(finite_matrices(n, 1))[:, 0]
    y = data.draw(finite_matrices(S.m, 1))[:, 0]
    assert (S @ x).shape == (S.m,)
    np.testing.assert_allclose(S @ x, M @ x, atol=sketch_tolerance(S, x, np.float64))
    np.testing.assert_allclose(S.T @ y, M.T @ y, atol=sketch_tolerance(S.T, y, np.float64))
    np.testing.assert_allclose(x @ S.T, M @ x, atol=sketch_tolerance(S, x, np.float64))
    np.testing.assert_allclose(y @ S, M.T @ y, atol=sketch_tolerance(S.T, y, np.float64))


@given(kind=operator_kinds, m=dims, n=dims, k=st.integers(1, 5), seed=seeds, data=st.data())
def test_transposed_forms(kind, m, n, k, seed, data):
    S = make_operator(kind, m, n, seed)
    M = S.todense()
    Y = data.draw(finite_matrices(S.m, k))
    B = data.draw(finite_matrices(k, n))
    assert S.T.shape == (n, S.m) and S.T.T is S
    np.testing.assert_allclose(S.T @ Y, M.T @ Y, atol=sketch_tolerance(S.T, Y, np.float64))
    np.testing.assert_allclose(Y.T @ S, Y.T @ M, atol=sketch_tolerance(S.T, Y, np.float64))
    tol = sketch_tolerance(S, B.T, np.float64)
    np.testing.assert_allclose(B @ S.T, B @ M.T, atol=tol)
    np.testing.assert_allclose(sp.csr_array(B) @ S.T, B @ M.T, atol=tol)  # sparse B: forward path
    np.testing.assert_array_equal(S.T.todense(), M.T)


@given(
    kind=operator_kinds,
    m=dims,
    n=dims,
    seed=seeds,
    a=st.floats(-10, 10),
    b=st.floats(-10, 10),
    data=st.data(),
)
def test_linearity(kind, m, n, seed, a, b, data):
    S = make_operator(kind, m, n, seed)
    X = data.draw(finite_matrices(n, 3))
    Y = data.draw(finite_matrices(n, 3))
    tol = sketch_tolerance(S, np.abs(a * X) + np.abs(b * Y), np.float64) * 4
    np.testing.assert_allclose(S @ (a * X + b * Y), a * (S @ X) + b * (S @ Y), atol=tol)


@given(kind=operator_kinds, m=dims, n=dims, seed=seeds, layout=layouts, data=st.data())
def test_float32_stays_float32(kind, m, n, seed, layout, data):
    S = make_operator(kind, m, n, seed)
    A = data.draw(finite_matrices(n, 3, dtype=np.float32))
    out = S @ as_layout(A, layout)
    assert out.dtype == np.float32
    ref = S.todense() @ A.astype(np.float64)
    np.testing.assert_allclose(out, ref, atol=sketch_tolerance(S, A, np.float32))
    Y = A[: S.m] if S.m <= n else np.ones((S.m, 3), np.float32)
    assert (S.T @ Y).dtype == np.float32


@pytest.mark.parametrize("kind", OPERATOR_KINDS)
def test_integer_and_bool_inputs_are_computed_in_float64(kind):
    S = make_operator(kind, 5, 9, rng=1)
    A = np.arange(27).reshape(9, 3)
    for X in (A, A.astype(np.int8), A > 10, sp.csr_array(A)):
        out = S @ X
        assert out.dtype == np.float64
        np.testing.assert_allclose(out, S.todense() @ _dense(X).astype(float), atol=1e-10)
    assert (S @ A.astype(np.float16)).dtype == np.float32


def test_structure_of_each_operator():
    m, n = 16, 50
    C = sketchla.CountSketch(m, n, rng=3).todense()
    assert np.all((C != 0).sum(axis=0) == 1) and set(np.unique(C)) <= {-1.0, 0.0, 1.0}
    P = sketchla.SparseSign(m, n, nnz_per_col=5, rng=3).todense()
    assert np.all((P != 0).sum(axis=0) == 5)
    np.testing.assert_allclose(np.abs(P[P != 0]), 1 / np.sqrt(5))
    H = sketchla.SRHT(m, n, rng=3)
    np.testing.assert_allclose(np.abs(H.todense()), 1 / np.sqrt(m))
    assert H.n_padded == 64 and len(set(H.rows.tolist())) == m
    G = sketchla.GaussianSketch(m, n, rng=3).todense()
    assert abs(G.std() * np.sqrt(m) - 1) < 0.1


def test_srht_rows_of_a_power_of_two_are_orthogonal():
    H = sketchla.SRHT(16, 64, rng=9)
    M = H.todense()
    np.testing.assert_allclose(M @ M.T, np.eye(16) * 64 / 16, atol=1e-12)


@pytest.mark.parametrize("kind", OPERATOR_KINDS)
def test_isotropy_in_expectation(kind):
    # E[S^T S] = I: the mean of S^T S over 400 seeds is within 5 standard errors of I
    n, m, runs = 12, 6, 400
    acc = np.zeros((n, n))
    for seed in range(runs):
        M = make_operator(kind, m, n, seed).todense()
        acc += M.T @ M
    mean = acc / runs
    assert np.abs(mean - np.eye(n)).max() < 5 * np.sqrt(2.0 / runs) * 1.5


@pytest.mark.parametrize("kind", OPERATOR_KINDS)
def test_large_inputs_use_the_blocked_paths(kind):
    # big enough for several scatter partitions, several FWHT blocks and tiles, several
    # Gaussian column blocks; checked against the dense matrix
    n, d, m = 40_000, 3, 24
    S = make_operator(kind, m, n, rng=5)
    A = np.random.default_rng(0).standard_normal((n, d))
    ref = S.todense() @ A
    for layout in ("C", "F", "csr", "csc", "coo"):
        np.testing.assert_allclose(S @ as_layout(A, layout), ref, atol=1e-9)
    Y = np.random.default_rng(1).standard_normal((S.m, 2))
    np.testing.assert_allclose(S.T @ Y, S.todense().T @ Y, atol=1e-9)


@pytest.mark.parametrize("kind", OPERATOR_KINDS)
def test_same_seed_same_operator_different_seed_different(kind):
    A = np.random.default_rng(0).standard_normal((30, 4))
    S1, S2, S3 = (make_operator(kind, 8, 30, seed) for seed in (42, 42, 43))
    np.testing.assert_array_equal(S1.todense(), S2.todense())
    np.testing.assert_array_equal(S1 @ A, S2 @ A)
    assert not np.array_equal(S1.todense(), S3.todense())
    ss = np.random.SeedSequence(42)
    np.testing.assert_array_equal(make_operator(kind, 8, 30, ss).todense(), S1.todense())


def _digests() -> str:
    """Digest of every operator's results on fixed data. Hash sketches and SRHT: the applied
    results (numba kernels, fixed reduction order). GaussianSketch: its entries only -- its
    products go through BLAS, whose summation order depends on the BLAS build and thread count,
    so they are reproducible to rounding (checked separately), not bitwise."""
    rng = np.random.default_rng(0)
    A = rng.standard_normal((20_000, 5))
    parts = []
    for kind in OPERATOR_KINDS:
        S = make_operator(kind, 64, A.shape[0], rng=99)
        if kind == "gaussian":
            parts.append(S.todense())
        else:
            parts += [S @ A, S @ sp.csr_array(A * (A > 1)), S.T @ A[:64]]
    return hashlib.sha256(b"".join(p.tobytes() for p in parts)).hexdigest()


def test_bitwise_identical_across_processes_and_thread_counts():
    here = _digests()
    code = "from tests.test_sketch_operators import _digests; print(_digests())"
    for threads in ("1", "2"):
        out = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            env={
                "NUMBA_NUM_THREADS": threads,
                "OMP_NUM_THREADS": threads,
                "PATH": "",
                "PYTHONPATH": ".",
            },
        ).stdout.strip()
        assert out == here, f"NUMBA_NUM_THREADS={threads} changed the result"
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        assert _digests() == here
    finally:
        numba.set_num_threads(before)


def test_gaussian_products_reproducible_to_rounding():
    A = np.random.default_rng(0).standard_normal((20_000, 5))
    S = sketchla.GaussianSketch(64, A.shape[0], rng=99)
    np.testing.assert_allclose(S @ A, S.todense() @ A, rtol=1e-12, atol=1e-11)


@pytest.mark.parametrize("kind", OPERATOR_KINDS)
def test_scipy_linear_operator(kind):
    S = make_operator(kind, 7, 20, rng=2)
    L = spla.aslinearoperator(S)
    M = S.todense()
    assert L.shape == (S.m, 20) and L.dtype == np.float64
    x, y = np.arange(20.0), np.arange(float(S.m))
    np.testing.assert_allclose(L.matvec(x), M @ x, atol=1e-10)
    np.testing.assert_allclose(L.rmatvec(y), M.T @ y, atol=1e-10)
    np.testing.assert_allclose(L @ np.ones((20, 2)), M @ np.ones((20, 2)), atol=1e-10)
    np.testing.assert_allclose(L.H @ np.ones((S.m, 2)), M.T @ np.ones((S.m, 2)), atol=1e-10)
    LT = spla.aslinearoperator(S.T)
    assert LT.shape == (20, S.m)
    np.testing.assert_allclose(LT.matvec(y), M.T @ y, atol=1e-10)
    np.testing.assert_allclose(LT.rmatvec(x), M @ x, atol=1e-10)


@pytest.mark.parametrize("kind", OPERATOR_KINDS)
def test_sketch_shortcut(kind):
    A = np.random.default_rng(3).standard_normal((25, 3))
    np.testing.assert_array_equal(
        sketchla.sketch(A, 6, kind=kind, rng=4), make_operator(kind, 6, 25, rng=4) @ A
    )
    assert sketchla.sketch(A.tolist(), 6, kind=kind, rng=4).shape == (6, 3)


def test_sparse_input_is_never_densified(monkeypatch):
    A = sp.random_array((5000, 50), density=0.01, format="csr", rng=1)
    S = sketchla.CountSketch(30, 5000, rng=0)
    ref = S @ A.toarray()

    def refuse(*args, **kwargs):
        raise AssertionError("densified")

    for fmt in ("csr", "csc", "coo"):
        X = A.asformat(fmt)
        monkeypatch.setattr(type(X), "toarray", refuse)
        monkeypatch.setattr(type(X), "todense", refuse)
        np.testing.assert_allclose(S @ X, ref, atol=1e-12)
        np.testing.assert_allclose(
            sketchla.SparseSign(30, 5000, rng=0) @ X,
            sketchla.SparseSign(30, 5000, rng=0) @ A.tocsr(),
            atol=1e-12,
        )
        monkeypatch.undo()


def test_repr():
    assert (
        repr(sketchla.SparseSign(4, 9, nnz_per_col=2, rng=1))
        == "SparseSign(m=4, n=9, nnz_per_col=2, rng=1)"
    )
    assert repr(sketchla.SRHT(4, 9, rng=1).T) == "SRHT(m=4, n=9, rng=1).T"


@pytest.mark.parametrize("layout", INPUT_LAYOUTS)
def test_countsketch_equals_sparse_sign_with_one_nonzero(layout):
    A = np.random.default_rng(0).standard_normal((300, 4))
    np.testing.assert_array_equal(
        sketchla.CountSketch(20, 300, rng=8) @ as_layout(A, layout),
        sketchla.SparseSign(20, 300, nnz_per_col=1, rng=8) @ as_layout(A, layout),
    )


def test_serial_and_parallel_compiles_agree_bitwise(monkeypatch):
    from sketchla import _jit

    def results():
        A = np.random.default_rng(2).standard_normal((9000, 4))
        A_csr, A_coo = sp.csr_array(A * (A > 0.5)), sp.coo_array(A * (A > 0.5))
        out = []
        for kind in OPERATOR_KINDS:
            S = make_operator(kind, 32, A.shape[0], rng=7)
            out += [S @ A, S @ np.asfortranarray(A), S @ A_csr, S @ A_coo, S.T @ A[:32]]
        return out

    monkeypatch.setattr(_jit, "PARALLEL_MIN_BYTES", 0)
    parallel = results()
    monkeypatch.setattr(_jit, "PARALLEL_MIN_BYTES", 2**62)
    for p, s in zip(parallel, results(), strict=True):
        np.testing.assert_array_equal(p, s)


def test_serial_twin_has_its_own_cache_identity():
    # numba caches by qualified name, not by compile flags: a shared name let one compile serve
    # both dispatchers (the parallel kernel silently ran serially)
    from sketchla._kernels import cpu

    k = cpu.hash_apply_rows
    assert k.parallel.targetoptions.get("parallel") and not k.serial.targetoptions.get("parallel")
    assert k.parallel.py_func.__qualname__ != k.serial.py_func.__qualname__


# -- issue 20 ----------------------------------------------------------------------------------
def _mix64(z: int) -> int:
    """sketchla.random.mix64 in Python ints (an independent reference)."""
    mask = 2**64 - 1
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
    return z ^ (z >> 31)


def _reference_normal(stream, e: int) -> float:
    """Entry e of the stream's normal variate (module docstring of sketchla.random), for any
    e < 2^64, in Python ints and math."""
    import math

    def uniform(i: int) -> float:
        x = _mix64((int(stream.key) + int(stream.gamma) * (i + 1)) % 2**64)
        return (x >> 11) * 2.0**-53

    k = e // 2
    u1, u2 = 1.0 - uniform(2 * k), uniform(2 * k + 1)
    r = math.sqrt(-2.0 * math.log(u1))
    return r * (math.cos if e % 2 == 0 else math.sin)(2 * math.pi * u2)


def test_gaussian_column_block_past_2_63_counters():
    """Defect 6: GaussianSketch(2**16, 2**48).column_block(2**47, 2**47 + 1) gave denormals and
    non-finite values (int64 counters j m + r wrapped past 2^63). The entries now follow the
    seed contract for every counter < 2^64 (checked against a pure-Python reference)."""
    from sketchla.random import STREAM_GAUSSIAN, stream

    m = 2**16
    S = sketchla.GaussianSketch(m, 2**48, rng=5)
    col = S.column_block(2**47, 2**47 + 1).todense()[:, 0]
    assert np.isfinite(col).all() and np.abs(col).min() > 1e-12
    s = stream(np.random.SeedSequence(5), STREAM_GAUSSIAN)
    for r in (0, 1, 2, 12345, m - 1):
        expected = _reference_normal(s, 2**47 * m + r) / np.sqrt(m)
        np.testing.assert_allclose(col[r], expected, rtol=1e-12)
    # the full column has the N(0, 1/m) moments (2^16 draws: |mean| < 5 sd, P(fail) < 1e-6)
    assert abs(col.mean() * np.sqrt(m)) < 5 / np.sqrt(m)
    assert abs(col.std() * np.sqrt(m) - 1) < 0.03


def test_gaussian_counter_limit_is_a_value_error():
    """More than 2^64 entries would repeat counters: a ValueError at construction."""
    sketchla.GaussianSketch(2**16, 2**48, rng=0)  # 2^64 entries: allowed
    with pytest.raises(ValueError, match="m \\* n must be at most 2\\^64"):
        sketchla.GaussianSketch(2**16, 2**48 + 1, rng=0)


def test_gaussian_small_counters_unchanged():
    """The counter rebasing leaves every published entry as it was (reference in Python)."""
    from sketchla.random import STREAM_GAUSSIAN, stream

    S = sketchla.GaussianSketch(3, 11, rng=2)
    s = stream(np.random.SeedSequence(2), STREAM_GAUSSIAN)
    ref = np.array([[_reference_normal(s, j * 3 + r) for j in range(11)] for r in range(3)])
    np.testing.assert_allclose(S.todense(), ref / np.sqrt(3), rtol=1e-12)
    np.testing.assert_array_equal(S.column_block(3, 8).todense(), S.todense()[:, 3:8])


def test_srht_column_block_of_a_huge_operator():
    """Defect 5: SRHT(10, 10**12).column_block(10**12 - 8, 10**12) raised MemoryError (an
    N-byte mask to sample 10 of N = 2^40 rows). The rows are now sampled with O(m) memory, and
    the block's entries follow the definition sqrt(N/m) P H D (Python-int reference)."""
    n = 10**12
    S = sketchla.SRHT(10, n, rng=3)
    block = S.column_block(n - 8, n)
    x = np.arange(1.0, 9.0)
    y = block @ x
    rows = S.rows
    assert rows.shape == (10,) and np.all(np.diff(rows) > 0) and rows.max() < S.n_padded
    signs = sketchla.random.stream(np.random.SeedSequence(3), 2).signs(np.arange(n - 8, n))
    ref = np.array(
        [[signs[t] * (-1) ** bin(int(r) & (n - 8 + t)).count("1") for t in range(8)] for r in rows]
    ) / np.sqrt(10)
    np.testing.assert_allclose(block.todense(), ref, rtol=1e-12)
    np.testing.assert_allclose(y, ref @ x, rtol=1e-12)


@pytest.mark.parametrize("fmt", ["coo", "csc"])
@pytest.mark.parametrize("s", [1, 3])
def test_hash_sketch_of_huge_sparse_input_is_o_nnz(fmt, s):
    """Defect 4: CountSketch / SparseSign of COO or CSC input tabulated all n columns of S
    (O(n s) memory: MemoryError at n = 2^31 + 10). Now O(nnz s): the product with 3 nonzeros
    in int64 coordinates is instant and equals the sum of the columns of S it touches."""
    n = 2**31 + 10
    rows = np.array([5, 2**31 + 3, 2**31 + 9], dtype=np.int64)
    cols = np.array([0, 1, 0], dtype=np.int64)
    data = np.array([1.5, -2.0, 0.25])
    A = sp.coo_array((data, (rows, cols)), shape=(n, 2)).asformat(fmt)
    S = sketchla.SparseSign(16, n, nnz_per_col=s, rng=4)
    out = S @ A
    expected = np.zeros((16, 2))
    for r, c, v in zip(rows, cols, data, strict=True):
        expected[:, c] += v * S.column_block(int(r), int(r) + 1).todense()[:, 0]
    np.testing.assert_allclose(out, expected, rtol=1e-15, atol=0)
    import tracemalloc

    tracemalloc.start()  # numpy / scipy allocations are traced (n-length arrays: 17 GB)
    try:
        sparse = S.apply(A, sparse_output=True)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2**20, peak  # O(nnz s), not O(n)
    np.testing.assert_allclose(sparse.toarray(), expected, rtol=1e-15)


@pytest.mark.parametrize("layout", ["csr", "csc", "coo"])
@pytest.mark.parametrize("kind", ["countsketch", "sparse_sign"])
def test_sparse_output_of_sparse_input(kind, layout):
    """CountSketch / SparseSign of sparse input can return a sparse result (as scipy's
    clarkson_woodruff_transform does); it equals the dense S @ A to rounding, keeps the
    compute dtype, and is reached from sketchla.sketch(..., sparse_output=True)."""
    A = sp.random_array((500, 7), density=0.02, format="csr", rng=np.random.default_rng(1))
    A = A.asformat(layout)
    S = make_operator(kind, 40, 500, rng=6)
    dense = S @ A
    out = S.apply(A, sparse_output=True)
    assert sp.issparse(out) and out.format == "csr" and out.shape == (40, 7)
    np.testing.assert_allclose(out.toarray(), dense, rtol=1e-14, atol=1e-15)
    assert S.apply(A.astype(np.float32), sparse_output=True).dtype == np.float32
    via = sketchla.sketch(A, 40, kind=kind, rng=6, sparse_output=True)
    np.testing.assert_array_equal(via.toarray(), out.toarray())
    with pytest.raises(TypeError, match=r"sparse_output=True needs a scipy\.sparse A"):
        S.apply(A.toarray(), sparse_output=True)
    with pytest.raises(ValueError, match=r"sparse_output=True is for kind="):
        sketchla.sketch(A, 40, kind="srht", rng=6, sparse_output=True)


def test_scipy_clarkson_woodruff_comparison_shape():
    """The sparse output matches scipy's convention: (m, d) sparse for sparse (n, d) input."""
    from scipy.linalg import clarkson_woodruff_transform

    A = sp.random_array((300, 4), density=0.05, format="csc", rng=np.random.default_rng(2))
    theirs = clarkson_woodruff_transform(A, 20, rng=0)
    ours = sketchla.CountSketch(20, 300, rng=0).apply(A, sparse_output=True)
    assert sp.issparse(theirs) and sp.issparse(ours) and theirs.shape == ours.shape


# -- SPEC 7: rng= ------------------------------------------------------------------------------
_RNG_CALLS = {
    "CountSketch": lambda A, **kw: sketchla.CountSketch(8, A.shape[0], **kw) @ A,
    "SparseSign": lambda A, **kw: sketchla.SparseSign(8, A.shape[0], **kw) @ A,
    "SRHT": lambda A, **kw: sketchla.SRHT(8, A.shape[0], **kw) @ A,
    "GaussianSketch": lambda A, **kw: sketchla.GaussianSketch(8, A.shape[0], **kw) @ A,
    "sketch": lambda A, **kw: sketchla.sketch(A, 8, kind="srht", **kw),
    "leverage_scores": lambda A, **kw: sketchla.leverage_scores(A, method="sketch", **kw),
    "universal_set": lambda A, **kw: sketchla.universal_set(A, 0.3, method="sketch", **kw),
    "SimHash": lambda A, **kw: sketchla.SimHash(A.shape[1], 5, **kw).codes(A),
    "approx_matmul": lambda A, **kw: sketchla.approx_matmul(A.T, A, 20, **kw),
    "make_operator": lambda A, **kw: make_operator("countsketch", 8, A.shape[0], **kw) @ A,
}


@pytest.mark.parametrize("name", sorted(_RNG_CALLS))
def test_rng_keyword_spec7(name):
    """rng= takes an int, a SeedSequence or a numpy Generator (same state, same result);
    seed= is a deprecated alias (DeprecationWarning pointing at the caller's line) and passing
    both is a TypeError."""
    import warnings

    call = _RNG_CALLS[name]
    A = np.random.default_rng(0).standard_normal((64, 3))
    same = call(A, rng=7)
    np.testing.assert_array_equal(call(A, rng=np.random.SeedSequence(7)), same)
    g1, g2 = np.random.default_rng(11), np.random.default_rng(11)
    np.testing.assert_array_equal(call(A, rng=g1), call(A, rng=g2))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        np.testing.assert_array_equal(call(A, seed=7), same)
    deprecations = [w for w in caught if issubclass(w.category, DeprecationWarning)]
    assert len(deprecations) == 1 and "pass rng= instead" in str(deprecations[0].message)
    assert deprecations[0].filename == __file__, "the warning points at the caller"
    with pytest.raises(TypeError, match="pass rng= only"):
        call(A, rng=7, seed=7)


def test_rng_default_is_fresh_entropy_and_repr_rebuilds():
    """One default across the package: rng=None draws fresh entropy (two operators differ);
    the repr shows the entropy, so eval(repr(S)) rebuilds the same operator."""
    A = np.random.default_rng(0).standard_normal((100, 2))
    for make in (sketchla.CountSketch, sketchla.SRHT, sketchla.GaussianSketch):
        S1, S2 = make(10, 100), make(10, 100)
        assert not np.array_equal(S1 @ A, S2 @ A)  # P(equal) ~ 2^-128
        rebuilt = eval(repr(S1), {**vars(sketchla), "SeedSequence": np.random.SeedSequence})
        np.testing.assert_array_equal(rebuilt @ A, S1 @ A)
    h = sketchla.SimHash(2, 6, rng=np.random.default_rng(3))
    assert "rng=SeedSequence(" in repr(h)
    rebuilt = eval(repr(h), {**vars(sketchla), "SeedSequence": np.random.SeedSequence})
    np.testing.assert_array_equal(rebuilt.planes, h.planes)
    assert repr(sketchla.SimHash(4, 3, rng=5)) == "SimHash(d=4, n_bits=3, rng=5)"
    import inspect

    for fn in (
        sketchla.CountSketch,
        sketchla.SparseSign,
        sketchla.SRHT,
        sketchla.GaussianSketch,
        sketchla.SimHash,
        sketchla.sketch,
        sketchla.leverage_scores,
        sketchla.universal_set,
        sketchla.approx_matmul,
    ):
        assert inspect.signature(fn).parameters["rng"].default is None, fn


# -- LinearOperator view, S.dot, np.dot --------------------------------------------------------
@pytest.mark.parametrize("kind", OPERATOR_KINDS)
def test_aslinearoperator_applies_s_once_per_product(kind, monkeypatch):
    """scipy's aslinearoperator(S) @ X applies S once per column of X (it forwards matvec, not
    matmat); S.aslinearoperator() overrides _matmat/_rmatmat: one application per product,
    with the same numbers, and its transpose / adjoint / algebra work."""
    from scipy.sparse.linalg import LinearOperator, aslinearoperator

    S = make_operator(kind, 12, 40, rng=3)
    X = np.random.default_rng(0).standard_normal((40, 6))
    Y = np.random.default_rng(1).standard_normal((12, 6))
    calls = {"forward": 0}
    forward = type(S)._forward_dense

    def counting(self, A):
        calls["forward"] += 1
        return forward(self, A)

    monkeypatch.setattr(type(S), "_forward_dense", counting)
    L = S.aslinearoperator()
    assert isinstance(L, LinearOperator) and L.shape == (12, 40) and L.dtype == np.float64
    np.testing.assert_allclose(L @ X, S @ X, rtol=1e-13)
    calls["forward"] = 0
    L @ X
    assert calls["forward"] == 1
    calls["forward"] = 0
    aslinearoperator(S) @ X
    assert calls["forward"] == 6  # scipy's generic wrapper: one per column (why this exists)
    np.testing.assert_allclose(L.T @ Y, S.T @ Y, rtol=1e-13)
    np.testing.assert_allclose(L.H @ Y, S.T @ Y, rtol=1e-13)
    np.testing.assert_allclose(L.matvec(X[:, 0]), S @ X[:, 0], rtol=1e-13)
    np.testing.assert_allclose(L.rmatvec(Y[:, 0]), S.T @ Y[:, 0], rtol=1e-13)
    np.testing.assert_allclose((L.T @ L) @ X, S.T @ (S @ X), rtol=1e-12)
    np.testing.assert_allclose(S.T.aslinearoperator() @ Y, S.T @ Y, rtol=1e-13)
    np.testing.assert_array_equal(S.dot(X), S @ X)
    np.testing.assert_array_equal(S.T.dot(Y), S.T @ Y)


def test_lsqr_through_the_linear_operator():
    """The view works with scipy's iterative solvers: lsqr on S A x = S b of a consistent
    system recovers x (S of full column rank on range(A) for this seed)."""
    from scipy.sparse.linalg import lsqr

    rng = np.random.default_rng(2)
    A = rng.standard_normal((200, 4))
    x = rng.standard_normal(4)
    S = sketchla.SparseSign(40, 200, rng=1)
    SA = S @ A
    sol = lsqr(SA, S.aslinearoperator() @ (A @ x), atol=1e-12, btol=1e-12)[0]
    np.testing.assert_allclose(sol, x, rtol=1e-8)


@pytest.mark.parametrize("kind", OPERATOR_KINDS)
def test_np_dot_is_a_clear_type_error(kind):
    """np.dot(S, A) used to fail with "unsupported operand type(s) for *: 'CountSketch' and
    'float'"; now a TypeError says to write S @ A. Other numpy functions say what S is."""
    S = make_operator(kind, 4, 10, rng=0)
    A = np.ones((10, 2))
    with pytest.raises(TypeError, match=r"np\.dot does not apply a sketch.*S @ A"):
        np.dot(S, A)
    with pytest.raises(TypeError, match=r"np\.dot does not apply"):
        np.dot(S.T, np.ones((4, 2)))
    with pytest.raises(TypeError, match=r"np\.linalg\.norm is not supported.*todense"):
        np.linalg.norm(S)
