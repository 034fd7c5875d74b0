"""Dask: column blocks of operators, sketches of row-chunked dask arrays, distributed leverage
scores and universal sets -- on a 2-worker ``distributed.LocalCluster``.

Workers are separate processes started with ``spawn`` (distributed's default, pinned here):
numba's GNU-OpenMP threading layer is not fork-safe, and separate processes check that
operators travel to the workers as seeds (pickled) and are rebuilt there identically.
"""

import itertools
import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import sketchla
from sketchla.operators import KINDS
from sketchla.testing import make_operator
from sketchla.testing.inputs import OPERATOR_KINDS, sketch_tolerance

da = pytest.importorskip("dask.array")
dask = pytest.importorskip("dask")
distributed = pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def client():
    # LocalCluster sets OMP/MKL/OPENBLAS_NUM_THREADS=1 in this process's environment for good;
    # restore it so subprocesses of later tests (test_determinism) get the caller's threads
    saved = dict(os.environ)
    try:
        with dask.config.set({"distributed.worker.multiprocessing-method": "spawn"}):
            cluster = distributed.LocalCluster(
                n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
            )
            with distributed.Client(cluster) as c:
                yield c
            cluster.close()
    finally:
        os.environ.clear()
        os.environ.update(saved)


@st.composite
def partitions(draw, min_n=1, max_n=300):
    """(n, chunks): a partition of n rows into consecutive chunks (one chunk, uneven chunks,
    many single-row chunks all occur)."""
    n = draw(st.integers(min_n, max_n))
    shape = draw(st.sampled_from(["one", "uneven", "many"]))
    if shape == "one":
        return n, (n,)
    if shape == "many":
        size = draw(st.integers(max(1, n // 64), max(1, n // 8)))  # 8 to 64+ chunks
        return n, (size,) * (n // size) + ((n % size,) if n % size else ())
    cuts = draw(st.lists(st.integers(1, max(1, n - 1)), max_size=6, unique=True))
    edges = [0, *sorted(c for c in cuts if 0 < c < n), n]
    return n, tuple(b - a for a, b in itertools.pairwise(edges))


def _ops(m, n, seed=0):
    return {kind: make_operator(kind, m, n, rng=seed) for kind in OPERATOR_KINDS}


# ---------------------------------------------------------------------------------------------
# column blocks (no dask)
# ---------------------------------------------------------------------------------------------
@given(
    kind=st.sampled_from(OPERATOR_KINDS),
    n=st.integers(1, 200),
    m=st.integers(1, 20),
    cut=st.tuples(st.floats(0, 1), st.floats(0, 1)),
    seed=st.integers(0, 2**32),
)
def test_column_block_is_the_slice_of_the_dense_matrix(kind, n, m, cut, seed):
    S = make_operator(kind, m, n, rng=seed)
    a = min(n - 1, int(cut[0] * n))
    b = a + 1 + int(cut[1] * (n - a - 1))
    D = S.todense()
    B = S.column_block(a, b)
    assert B.shape == (S.m, b - a) and B.column_offset == a
    np.testing.assert_allclose(B.todense(), D[:, a:b], rtol=0, atol=1e-14)
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((b - a, 3))
    Y = rng.standard_normal((S.m, 2))
    np.testing.assert_allclose(B @ X, D[:, a:b] @ X, atol=sketch_tolerance(B, X, np.float64))
    np.testing.assert_allclose(B.T @ Y, D[:, a:b].T @ Y, rtol=1e-12, atol=1e-12)
    if b - a >= 3:  # a block of a block is the slice of the slice
        np.testing.assert_allclose(B.column_block(1, b - a - 1).todense(), D[:, a + 1 : b - 1])


@pytest.mark.parametrize("kind", OPERATOR_KINDS)
@pytest.mark.parametrize("layout", ["C", "F", "strided"])
def test_column_block_any_input_layout(kind, layout):
    """Regression: SRHT blocks once returned wrong numbers for an F-ordered X (the in-place
    FWHT ran on a buffer that inherited X's layout)."""
    rng = np.random.default_rng(1)
    S = make_operator(kind, 16, 200, rng=3)
    D = S.todense()
    for a, b in [(0, 8), (3, 29), (64, 200), (0, 200)]:
        X = rng.standard_normal((b - a, 5))
        Xl = {"C": X, "F": np.asfortranarray(X), "strided": np.repeat(X, 2, axis=1)[:, ::2]}
        B = S.column_block(a, b)
        np.testing.assert_allclose(
            B @ Xl[layout], D[:, a:b] @ X, atol=sketch_tolerance(B, X, np.float64)
        )


def test_column_block_rejects_bad_ranges():
    S = sketchla.CountSketch(4, 10, rng=0)
    for start, stop in [(-1, 3), (3, 3), (5, 11), (10, 11)]:
        with pytest.raises(ValueError, match=r"start|stop"):
            S.column_block(start, stop)
    with pytest.raises(TypeError, match="start"):
        S.column_block(1.5, 3)
    assert "column_block(2, 5)" in repr(S.column_block(2, 5))


# ---------------------------------------------------------------------------------------------
# S @ A for dask A
# ---------------------------------------------------------------------------------------------
@given(part=partitions(), d=st.integers(1, 4), seed=st.integers(0, 2**32))
def test_dask_sketch_equals_numpy_for_every_operator_and_chunking(client, part, d, seed):
    n, chunks = part
    rng = np.random.default_rng(seed)
    ops = _ops(8, n, seed=seed)
    ops["sparse_sign s=4"] = sketchla.SparseSign(8, n, nnz_per_col=4, rng=seed)
    A_int = rng.integers(-8, 9, size=(n, d)).astype(np.float64)
    A = rng.standard_normal((n, d))
    lazy = {}
    for kind, S in ops.items():
        lazy[kind, "int"] = S @ da.from_array(A_int, chunks=(chunks, d))
        lazy[kind, "float"] = S @ da.from_array(A, chunks=(chunks, d))
    assert all(isinstance(v, da.Array) for v in lazy.values())
    got = dict(zip(lazy, dask.compute(*lazy.values()), strict=True))
    for (kind, data), out in got.items():
        X = A_int if data == "int" else A
        ref = ops[kind] @ X
        assert out.shape == ref.shape and out.dtype == ref.dtype
        if data == "int" and kind in ("countsketch", "sparse_sign s=4"):
            # entries +-1 and +-1/2: every partial sum is exact in float64, so any summation
            # order gives the same bits -- this checks each chunk's hashes and signs exactly
            np.testing.assert_array_equal(out, ref)
        else:
            np.testing.assert_allclose(out, ref, rtol=0, atol=sketch_tolerance(ops[kind], X, "f8"))


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.int32])
def test_single_chunk_is_bitwise_the_in_memory_sketch(client, dtype):
    A = (np.random.default_rng(1).standard_normal((500, 3)) * 10).astype(dtype)
    X = da.from_array(A, chunks=(500, 3))
    for S in _ops(16, 500, seed=3).values():
        out = (S @ X).compute()
        ref = S @ A
        assert out.dtype == ref.dtype
        np.testing.assert_array_equal(out, ref)


def test_result_does_not_depend_on_workers_or_scheduler(client):
    # 2 worker processes, 1 thread in-process, a thread pool: the same bits (fixed tree)
    A = np.random.default_rng(2).standard_normal((3001, 5))
    X = da.from_array(A, chunks=((1, 999, 1000, 1001), 5))
    for S in _ops(32, 3001, seed=4).values():
        cluster = (S @ X).compute()
        np.testing.assert_array_equal(cluster, (S @ X).compute(scheduler="sync"))
        np.testing.assert_array_equal(cluster, (S @ X).compute(scheduler="threads"))
    cs = sketchla.CountSketch(32, 3001, rng=4) @ da.from_array(A, chunks=(100, 5))
    assert len({(cs.compute(scheduler=s)).tobytes() for s in ("sync", "threads")}) == 1


def test_vectors_functional_form_dtypes_and_column_chunks(client):
    rng = np.random.default_rng(5)
    A = rng.standard_normal((400, 6))
    S = sketchla.SparseSign(20, 400, rng=6)
    x = da.from_array(A[:, 0], chunks=150)
    np.testing.assert_allclose((S @ x).compute(), S @ A[:, 0], atol=1e-13)
    assert (S @ x).shape == (20,)
    # column-chunked input is merged into row chunks of all columns
    Xc = da.from_array(A, chunks=(150, 2))
    np.testing.assert_allclose((S @ Xc).compute(), S @ A, atol=1e-13)
    for kind in KINDS:
        out = sketchla.sketch(Xc, 16, kind=kind, rng=7)
        assert isinstance(out, da.Array)
        np.testing.assert_allclose(
            out.compute(), sketchla.sketch(A, 16, kind=kind, rng=7), atol=1e-12
        )
    f32 = (S @ Xc.astype(np.float32)).compute()
    assert f32.dtype == np.float32
    np.testing.assert_allclose(f32, S @ A.astype(np.float32), rtol=1e-5, atol=1e-5)
    ints = (S @ da.from_array(np.arange(400), chunks=100)).compute()
    assert ints.dtype == np.float64


def test_dask_result_is_lazy():
    from dask import delayed

    def explode():
        raise RuntimeError("computed")

    X = da.from_delayed(delayed(explode)(), shape=(100, 3), dtype=np.float64)
    out = sketchla.CountSketch(8, 100, rng=0) @ X  # builds the graph only
    assert isinstance(out, da.Array) and out.shape == (8, 3)
    with pytest.raises(RuntimeError, match="computed"):
        out.compute(scheduler="sync")


def test_dask_bad_input():
    S = sketchla.CountSketch(8, 100, rng=0)
    with pytest.raises(ValueError, match="A has 99 rows"):
        S @ da.zeros((99, 3), chunks=50)
    with pytest.raises(TypeError, match="complex"):
        S @ da.zeros((100, 3), chunks=50, dtype=complex)
    with pytest.raises(ValueError, match=r"3-D|2-D"):
        S @ da.zeros((100, 3, 2), chunks=50)
    X = da.from_array(np.arange(300.0).reshape(100, 3), chunks=40)
    with pytest.raises(ValueError, match="unknown chunk sizes"):
        S @ X[X[:, 0] > 10]
    bad = np.ones((100, 3))
    bad[77, 1] = np.nan
    lazy = S @ da.from_array(bad, chunks=30)  # data errors surface on compute
    with pytest.raises(ValueError, match="A contains NaN"):
        lazy.compute(scheduler="sync")
    with pytest.raises(ValueError, match="overflowed"):
        (S @ da.from_array(np.full((100, 1), 1e308), chunks=10)).compute(scheduler="sync")


def test_sketchla_imports_and_runs_without_dask():
    code = (
        "import sys; sys.modules['dask'] = None\n"
        "import numpy as np, sketchla\n"
        "S = sketchla.CountSketch(4, 10, rng=0)\n"
        "assert (S @ np.ones((10, 2))).shape == (4, 2)\n"
        "assert not sketchla.distributed.is_dask_array(np.ones(3))\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


# ---------------------------------------------------------------------------------------------
# leverage scores
# ---------------------------------------------------------------------------------------------
def _keys(n, d, rank, seed):
    rng = np.random.default_rng(seed)
    K = rng.standard_normal((n, rank)) @ rng.standard_normal((rank, d))
    return K * np.exp(rng.standard_normal((n, 1)))  # uneven row norms: a spread of scores


@pytest.mark.parametrize(("rank", "chunks"), [(6, (7, 993, 500)), (4, (1500,)), (6, (100,) * 15)])
def test_exact_leverage_scores_match_numpy(client, rank, chunks):
    K = _keys(1500, 6, rank, seed=rank)
    scores = sketchla.distributed.leverage_scores(da.from_array(K, chunks=(chunks, 6)))
    assert isinstance(scores, da.Array) and scores.chunks[0] == chunks
    out = scores.compute()
    np.testing.assert_allclose(out, sketchla.leverage_scores(K, method="svd"), atol=1e-12)
    assert out.sum() == pytest.approx(rank, abs=1e-9)


def test_sketched_leverage_scores_match_the_in_memory_method(client):
    K = _keys(4000, 8, 8, seed=9)
    X = da.from_array(K, chunks=((1, 1999, 2000), 8))
    kw = {"method": "sketch", "rng": 11, "sketch_kind": "sparse_sign", "nnz_per_col": 4}
    out = sketchla.distributed.leverage_scores(X, **kw).compute()
    ref = sketchla.leverage_scores(K, **kw)
    # same sketch (same seed); the in-memory method may run its last product in float32
    # (documented: <= 4e-3 relative), this one is float64
    np.testing.assert_allclose(out, ref, rtol=1e-2)
    exact = sketchla.leverage_scores(K)
    assert np.all(out / exact > 0.5) and np.all(out / exact < 2.0)  # constant-factor accurate


def test_distributed_scores_bad_input():
    with pytest.raises(TypeError, match="dask array"):
        sketchla.distributed.leverage_scores(np.ones((10, 2)))
    X = da.ones((10, 2), chunks=5)
    with pytest.raises(ValueError, match="method"):
        sketchla.distributed.leverage_scores(X, method="svd")
    with pytest.raises(ValueError, match="eps"):
        sketchla.distributed.universal_set(X, 0.0)
    with pytest.raises(ValueError, match="method"):
        sketchla.distributed.universal_set(X, 0.5, method="exact")
    with pytest.raises(ValueError, match="2-D"):
        sketchla.distributed.universal_set(da.ones(10, chunks=5), 0.5)
    bad = np.ones((10, 2))
    bad[3, 0] = np.inf
    with pytest.raises(ValueError, match="NaN or inf"):
        sketchla.distributed.universal_set(da.from_array(bad, chunks=4), 0.5)


# ---------------------------------------------------------------------------------------------
# universal set
# ---------------------------------------------------------------------------------------------
def _eps_between_scores(scores, q):
    """A threshold halfway between two consecutive distinct scores near quantile q, so no
    score lies within rounding of it (the test then checks sets, not rounding)."""
    s = np.unique(scores)
    i = min(len(s) - 2, int(q * (len(s) - 1)))
    return float((s[i] + s[i + 1]) / 2)


@given(part=partitions(min_n=20, max_n=400), q=st.floats(0.5, 0.99), seed=st.integers(0, 2**32))
def test_universal_set_gram_equals_batch_and_gather_is_a_bounded_superset(client, part, q, seed):
    n, chunks = part
    d = 5
    rank = 5 if seed % 3 else 3
    K = _keys(n, d, rank, seed)
    eps = _eps_between_scores(sketchla.leverage_scores(K), q)
    batch = sketchla.universal_set(K, eps)
    X = da.from_array(K, chunks=(chunks, d))
    gram, info_g = sketchla.distributed.universal_set(X, eps, method="gram", return_info=True)
    np.testing.assert_array_equal(gram, batch)
    assert info_g["n_chunks"] == len(chunks) and info_g["bytes_to_driver"] == 8 * len(batch)
    sup, info = sketchla.distributed.universal_set(X, eps, method="gather", return_info=True)
    assert set(batch) <= set(sup)
    assert len(sup) <= rank / eps * (1 + 1e-9)
    assert np.all(np.diff(sup) > 0)
    # each chunk sends at most rank(chunk) / eps candidates, each a row of d floats + an index
    assert info["n_candidates"] <= len(chunks) * rank / eps * (1 + 1e-9)
    assert info["bytes_to_driver"] == info["n_candidates"] * (8 * d + 8)


def test_adjoint_and_right_multiplication_forms_are_lazy(client):
    rng = np.random.default_rng(12)
    Y = rng.standard_normal((16, 3))
    B = rng.standard_normal((4, 700))
    Yd = da.from_array(Y, chunks=(5, 2))
    Bd = da.from_array(B, chunks=(3, 200))
    for kind, S in _ops(16, 700, seed=13).items():
        lazy = [S.T @ Yd, S.T @ Yd[:, 0], Bd @ S.T, Yd.T @ S]
        ref = [S.T @ Y, S.T @ Y[:, 0], B @ S.T, Y.T @ S]
        assert all(isinstance(x, da.Array) for x in lazy)
        blocks = sketchla.distributed.dask_adjoint(S, Yd, chunk_rows=300)
        assert blocks.chunks[0] == (300, 300, 100)
        for out, r in zip(dask.compute(*lazy, blocks), [*ref, ref[0]], strict=True):
            assert out.shape == r.shape
            if kind == "srht" or out.shape == (4, 16):  # shorter transforms / chunked sums
                np.testing.assert_allclose(out, r, rtol=1e-12, atol=1e-12)
            else:  # the rows of the adjoint are computed alike: same bits
                np.testing.assert_array_equal(out, r)


# ---------------------------------------------------------------------------------------------
# LevAttention with dask keys and values
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kernel", ["softmax", ("poly", 2)])
def test_lev_attention_with_dask_keys_equals_in_memory(client, kernel):
    rng = np.random.default_rng(14)
    K = _keys(2000, 8, 8, seed=15)
    V = rng.standard_normal((2000, 5))
    Q = rng.standard_normal((300, 8))
    eps = _eps_between_scores(sketchla.leverage_scores(K), 0.9)
    Kd = da.from_array(K, chunks=((13, 987, 1000), 8))
    Vd = da.from_array(V, chunks=(600, 2))
    ref = sketchla.lev_attention(Q, K, V, eps=eps, kernel=kernel)
    out, info = sketchla.distributed.lev_attention(Q, Kd, Vd, eps, kernel=kernel, return_info=True)
    np.testing.assert_allclose(out, ref, rtol=1e-12, atol=1e-14)
    np.testing.assert_array_equal(info["keys"], sketchla.universal_set(K, eps))
    assert info["bytes_to_driver"] == len(info["keys"]) * (8 + 8 * 8 + 5 * 8)
    lazy = sketchla.distributed.lev_attention(
        da.from_array(Q, chunks=100), Kd, Vd, eps, kernel=kernel
    )
    assert isinstance(lazy, da.Array)
    np.testing.assert_allclose(lazy.compute(), ref, rtol=1e-12, atol=1e-14)
    # the gather set is a superset: for ("poly", 2) every excluded key still has weight < eps
    sup = sketchla.distributed.lev_attention(Q, Kd, Vd, eps, kernel=kernel, set_method="gather")
    assert sup.shape == ref.shape and np.isfinite(sup).all()


def test_lev_attention_distributed_limits():
    K = da.from_array(np.random.default_rng(0).standard_normal((50, 4)), chunks=20)
    Q = np.ones((3, 4))
    with pytest.raises(NotImplementedError, match="poly"):
        sketchla.distributed.lev_attention(Q, K, K, 0.1, kernel=("poly", 4))
    with pytest.raises(TypeError, match="V must be a dask array"):
        sketchla.distributed.lev_attention(Q, K, np.ones((50, 4)), 0.1)
    with pytest.raises(ValueError, match="same number of rows"):
        sketchla.distributed.lev_attention(Q, K, K[:40], 0.1)
    out = sketchla.distributed.lev_attention(Q, K, K, 1.0)  # no key has leverage 1: empty set
    np.testing.assert_array_equal(out, np.zeros((3, 4)))


def test_sketch_of_a_dask_array_with_unknown_rows_names_A():
    A = da.from_array(np.ones((100, 3)), chunks=20)
    A = A[A[:, 0] > 0]  # boolean indexing: unknown chunk sizes, shape (nan, 3)
    with pytest.raises(ValueError, match=r"A must have a known number of rows"):
        sketchla.sketch(A, 10)
    np.testing.assert_allclose(
        sketchla.sketch(A.compute_chunk_sizes(), 10, rng=1).compute(),
        sketchla.sketch(np.ones((100, 3)), 10, rng=1),
    )
