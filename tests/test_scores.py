"""Leverage scores, online scores and the universal set: the properties issue 3 lists."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import sketchla
from sketchla.testing import make_operator


@st.composite
def keys(draw, max_n=40, max_d=8):
    """(K, rank): K = B C with inner dimension r (so rank r), some rows zeroed, scaled."""
    n = draw(st.integers(1, max_n))
    d = draw(st.integers(1, max_d))
    r = draw(st.integers(0, min(n, d)))
    rng = np.random.default_rng(draw(st.integers(0, 2**32)))
    K = rng.standard_normal((n, r)) @ rng.standard_normal((r, d))
    zero = rng.random(n) < draw(st.floats(0, 0.3))
    K[zero] = 0.0
    K *= 10.0 ** draw(st.integers(-3, 3))
    return K, np.linalg.matrix_rank(K)


def lstsq_scores(K):
    """diag of the hat matrix K K^+, from a least-squares solve (independent of our code)."""
    X = np.linalg.lstsq(K, np.eye(K.shape[0]), rcond=None)[0]
    return np.einsum("ij,ji->i", K, X)


@given(keys())
def test_bounds_sum_and_agreement_of_exact_methods(kr):
    K, rank = kr
    l_qr = sketchla.leverage_scores(K, method="qr")
    l_svd = sketchla.leverage_scores(K, method="svd")
    assert l_qr.shape == (K.shape[0],)
    assert np.all(l_qr >= -1e-12) and np.all(l_qr <= 1 + 1e-12)
    assert l_qr.sum() == pytest.approx(rank, abs=1e-9)
    np.testing.assert_allclose(l_qr, l_svd, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(l_qr, lstsq_scores(K), rtol=1e-10, atol=1e-10)
    assert np.all(l_qr[~K.any(axis=1)] == 0)


@given(keys(), st.integers(0, 2**32), st.floats(-100, 100).filter(lambda c: abs(c) > 1e-3))
def test_invariance_under_column_maps_scaling_and_permutation(kr, seed, c):
    K, _ = kr
    rng = np.random.default_rng(seed)
    G = rng.standard_normal((K.shape[1], K.shape[1])) + 3 * np.eye(K.shape[1])  # invertible
    perm = rng.permutation(K.shape[0])
    base = sketchla.leverage_scores(K)
    np.testing.assert_allclose(sketchla.leverage_scores(K @ G), base, atol=1e-9)
    np.testing.assert_allclose(sketchla.leverage_scores(c * K), base, atol=1e-10)
    np.testing.assert_allclose(sketchla.leverage_scores(K[perm]), base[perm], atol=1e-10)


@given(keys(), st.integers(0, 2**32))
def test_adding_rows_never_raises_scores(kr, seed):
    K, _ = kr
    extra = np.random.default_rng(seed).standard_normal((3, K.shape[1]))
    before = sketchla.leverage_scores(K)
    after = sketchla.leverage_scores(np.vstack([K, extra]))[: K.shape[0]]
    assert np.all(after <= before + 1e-10)


@given(keys(), st.floats(1e-3, 1e3))
def test_ridge_scores(kr, lam):
    K, _ = kr
    lam *= max(1.0, np.abs(K).max()) ** 2  # a ridge on the scale of the data
    plain = sketchla.leverage_scores(K)
    for method in ("qr", "svd"):
        ridge = sketchla.leverage_scores(K, method=method, ridge=lam)
        s = np.linalg.svd(K, compute_uv=False)
        assert ridge.sum() == pytest.approx(np.sum(s**2 / (s**2 + lam)), rel=1e-9, abs=1e-12)
        assert np.all(ridge <= plain + 1e-12)


def test_witness_query_makes_column_exactly_heavy():
    K = np.random.default_rng(0).standard_normal((200, 6))
    lev = sketchla.leverage_scores(K)
    for j in (0, 17, 199):
        q = np.linalg.pinv(K.T @ K) @ K[j]
        w = (K @ q) ** 2
        assert w[j] / w.sum() == pytest.approx(lev[j], rel=1e-10)


def heavy_keys(Q, K, eps):
    w = (Q @ K.T) ** 2
    w /= w.sum(axis=1, keepdims=True)
    return np.unique(np.nonzero(w >= eps)[1])


@given(keys(max_n=60), st.floats(0.01, 1.0), st.integers(0, 2**32))
def test_universal_set_contains_every_heavy_key_and_is_small(kr, eps, seed):
    K, rank = kr
    U = sketchla.universal_set(K, eps)
    assert U.dtype == np.int64 and np.all(np.diff(U) > 0)
    assert len(U) <= rank / eps + 1e-9
    if rank == 0:
        assert len(U) == 0
        return
    rng = np.random.default_rng(seed)
    pinv = np.linalg.pinv(K.T @ K)
    Q = np.vstack([rng.standard_normal((50, K.shape[1])), (pinv @ K.T).T])  # random + witnesses
    Q = Q[np.abs(Q @ K.T).sum(axis=1) > 0]
    assert set(heavy_keys(Q, K, eps)) <= set(U.tolist())


def test_leverage_catches_a_heavy_key_that_row_norms_miss():
    # 50 copies of a large key along e1 and one small key along e2: the small key has the
    # smallest norm but leverage 1, and for q = e2 it carries all of the x^2 attention
    K = np.zeros((51, 2))
    K[:50, 0] = 10.0
    K[50, 1] = 0.1
    top_by_norm = np.argsort(-np.linalg.norm(K, axis=1))[:50]
    assert 50 not in top_by_norm
    assert 50 in heavy_keys(np.array([[0.0, 1.0]]), K, eps=0.5)
    assert 50 in sketchla.universal_set(K, eps=0.5)


def _two_matrices():
    rng = np.random.default_rng(0)
    gaussian = rng.standard_normal((4000, 16))
    heavy_tailed = rng.standard_normal((4000, 16)) * rng.lognormal(0, 2, (4000, 1))
    return gaussian, heavy_tailed


@pytest.mark.parametrize("kind", ["countsketch", "sparse_sign", "srht", "gaussian"])
def test_sketched_scores_obey_the_embedding_bound(kind):
    # if S distorts range(K) by eps1 (measured from the singular values of S U), every sketched
    # score lies in [l / (1 + eps1)^2, l / (1 - eps1)^2] (DMMW 2012, Lemma 3 without the JL step)
    for K in _two_matrices():
        U = np.linalg.qr(K)[0]
        exact = sketchla.leverage_scores(K)
        for seed in range(10):
            approx = sketchla.leverage_scores(K, method="sketch", rng=seed, sketch_kind=kind)
            ratio = approx / exact
            sv = np.linalg.svd(_sketch_of(kind, seed) @ U, compute_uv=False)
            lo, hi = 1 / sv.max() ** 2, 1 / sv.min() ** 2
            assert np.all(ratio >= lo * (1 - 1e-9)) and np.all(ratio <= hi * (1 + 1e-9))


def _sketch_of(kind, seed):
    """The operator leverage_scores(method="sketch", rng=seed) draws: child 0 of the seed."""
    child = np.random.SeedSequence(seed).spawn(2)[0]
    return make_operator(kind, 32 * 16, 4000, rng=child, nnz_per_col=4)


def test_default_sketched_scores_within_documented_range():
    # documented: measured [-0.24, +0.43] at the defaults on these matrices; asserted with margin
    for K in _two_matrices():
        exact = sketchla.leverage_scores(K)
        for seed in range(10):
            rel = sketchla.leverage_scores(K, method="sketch", rng=seed) / exact - 1
            assert -0.25 <= rel.min() and rel.max() <= 0.45, (seed, rel.min(), rel.max())


def test_sketched_float32_products_match_float64(monkeypatch):
    # the sketched method runs its final products in float32 when cond(R) <= 1e3: compare with
    # the float64 computation of the same sketch (documented bound: 4e-3 relative)
    from sketchla.scores import leverage

    K = np.random.default_rng(5).standard_normal((20_000, 32)) * np.linspace(1, 30, 32)
    fast = sketchla.leverage_scores(K, method="sketch", rng=1)
    monkeypatch.setattr(leverage, "_FLOAT32_MAX_COND", 0.0)
    slow = sketchla.leverage_scores(K, method="sketch", rng=1)
    np.testing.assert_allclose(fast, slow, rtol=4e-3)
    assert not np.array_equal(fast, slow)  # the float32 path was taken


def test_sketched_scores_with_jl_step():
    K = np.random.default_rng(1).standard_normal((3000, 40))
    exact = sketchla.leverage_scores(K)
    approx = sketchla.leverage_scores(K, method="sketch", rng=3, jl_dim=20)
    # k = 20 Gaussian columns: each score is a chi^2_20 / 20 multiple (times the sketch factor)
    assert np.median(np.abs(approx / exact - 1)) < 0.35
    assert abs(approx.sum() / exact.sum() - 1) < 0.1


def test_sketch_universal_set_is_a_superset():
    rng = np.random.default_rng(2)
    K = rng.standard_normal((5000, 8)) * rng.lognormal(0, 2, (5000, 1))
    exact = set(sketchla.universal_set(K, 0.05).tolist())
    for seed in range(5):
        approx = sketchla.universal_set(K, 0.05, method="sketch", rng=seed)
        assert exact <= set(approx.tolist())
        assert len(approx) <= 8 / (0.5 * 0.05)


@given(keys(max_n=50), st.integers(1, 17))
def test_online_scores(kr, block):
    K, _ = kr
    lam = 1e-2 * max(1.0, np.abs(K).max()) ** 2
    x = sketchla.online_leverage_scores(K, ridge=lam, block_size=block)
    ref = np.array(
        [
            K[i] @ np.linalg.solve(K[:i].T @ K[:i] + lam * np.eye(K.shape[1]), K[i])
            for i in range(K.shape[0])
        ]
    )
    np.testing.assert_allclose(x, ref, rtol=1e-8, atol=1e-10)
    logdet = np.linalg.slogdet(np.eye(K.shape[1]) + K.T @ K / lam)[1]
    assert np.log1p(x).sum() == pytest.approx(logdet, rel=1e-9, abs=1e-9)
    final = sketchla.leverage_scores(K, ridge=lam)
    assert np.all(x >= final - 1e-10)  # online (against fewer rows) >= final ridge score


@pytest.mark.parametrize(
    "call, exc, msg",
    [
        (lambda: sketchla.universal_set(np.ones((4, 2)), 0.0), ValueError, "eps must be"),
        (lambda: sketchla.universal_set(np.ones((4, 2)), 1.5), ValueError, "eps must be"),
        (lambda: sketchla.universal_set(np.ones((4, 2)), 0.1, method="fast"), ValueError, "method"),
        (lambda: sketchla.leverage_scores(np.array([[np.nan, 1.0]])), ValueError, "A contains NaN"),
        (lambda: sketchla.leverage_scores(np.ones((0, 3))), ValueError, "A is empty"),
        (lambda: sketchla.leverage_scores(np.ones(3)), ValueError, "A must be 2-D"),
        (lambda: sketchla.leverage_scores(np.ones((3, 2)), method="lu"), ValueError, "method"),
        (lambda: sketchla.leverage_scores(np.ones((3, 2)), ridge=-1.0), ValueError, "ridge"),
        (lambda: sketchla.online_leverage_scores(np.ones((3, 2)), ridge=0.0), ValueError, "ridge"),
        (
            lambda: sketchla.leverage_scores(np.ones((3, 2)), method="sketch", ridge=1.0),
            ValueError,
            "ridge must be 0",
        ),
    ],
)
def test_bad_input(call, exc, msg):
    with pytest.raises(exc, match=msg):
        call()


@pytest.mark.parametrize("sketch_size", [None, 3, 7])
def test_sketched_scores_of_a_wide_matrix_name_its_shape(sketch_size):
    # n < d leaves no valid sketch size (d <= m <= n): the error is about A, whatever
    # sketch_size is, and says what to use instead
    A = np.random.default_rng(0).standard_normal((5, 10))
    with pytest.raises(ValueError, match=r"needs a tall A .* shape \(5, 10\); use an exact"):
        sketchla.leverage_scores(A, method="sketch", sketch_size=sketch_size)
    assert sketchla.leverage_scores(A).sum() == pytest.approx(5.0)  # the exact methods work


@pytest.mark.parametrize("sketch_size", [9, 101, 0, -4])
def test_sketch_size_out_of_range_names_the_range_from_the_shape(sketch_size):
    A = np.random.default_rng(0).standard_normal((100, 10))
    msg = r"sketch_size must be in \[d, n\] = \[10, 100\] for A of shape \(100, 10\), got "
    msg += str(sketch_size)
    with pytest.raises(ValueError, match=msg):
        sketchla.leverage_scores(A, method="sketch", sketch_size=sketch_size)
    with pytest.raises(TypeError, match="sketch_size must be an integer"):
        sketchla.leverage_scores(A, method="sketch", sketch_size=20.0)
    for m in (10, 100):  # both ends of the range are valid
        assert sketchla.leverage_scores(A, method="sketch", sketch_size=m).shape == (100,)


@pytest.mark.parametrize("c", [5e-324, 1e-300, 1e300, 1.7e308])
def test_scores_of_denormal_and_huge_matrices_equal_the_rescaled_ones(c):
    # leverage scores are invariant under A -> c A; denormal entries used to lose the QR's
    # accuracy (error 0.07 at c = 5e-324) and the sketch's (error > 1)
    signs = np.sign(np.random.default_rng(0).standard_normal((10, 4)))
    for method in ("qr", "svd"):
        got = sketchla.leverage_scores(c * signs, method=method)
        np.testing.assert_allclose(got, sketchla.leverage_scores(signs), atol=1e-12)
    np.testing.assert_allclose(
        sketchla.leverage_scores(c * signs, method="sketch", rng=2),
        sketchla.leverage_scores(signs, method="sketch", rng=2),
        rtol=1e-6,
    )


def test_sketched_scores_reproducible_for_a_seed_sequence_argument():
    K = np.random.default_rng(0).standard_normal((500, 5))
    ss = np.random.SeedSequence(42)
    first = sketchla.leverage_scores(K, method="sketch", rng=ss)
    np.testing.assert_array_equal(first, sketchla.leverage_scores(K, method="sketch", rng=ss))
    np.testing.assert_array_equal(first, sketchla.leverage_scores(K, method="sketch", rng=42))
    with pytest.raises(ValueError, match="rng must be non-negative"):
        sketchla.leverage_scores(K, method="sketch", rng=-1)


def test_rank_zero_keys_give_an_empty_set_and_zero_scores():
    assert sketchla.universal_set(np.zeros((5, 3)), 0.1).size == 0
    assert np.all(sketchla.leverage_scores(np.zeros((5, 3))) == 0)
    assert np.all(sketchla.leverage_scores(np.zeros((5, 3)), method="sketch", rng=0) == 0)


def test_float32_in_float32_out():
    K = np.random.default_rng(0).standard_normal((50, 4)).astype(np.float32)
    assert sketchla.leverage_scores(K).dtype == np.float32
    assert sketchla.online_leverage_scores(K).dtype == np.float32


@given(keys(max_n=80), st.floats(0.02, 1.0), st.integers(1, 30))
def test_streaming_exact_equals_batch_and_merge_is_a_small_superset(kr, eps, block):
    K, rank = kr
    batch = sketchla.universal_set(K, eps)
    for mode in ("exact", "merge"):
        s = sketchla.StreamingLeverage(K.shape[1], eps, mode=mode)
        for lo in range(0, K.shape[0], block):
            s.update(K[lo : lo + block])
        U = s.universal_set()
        assert U.dtype == np.int64 and np.all(np.diff(U) > 0)
        if mode == "exact":
            np.testing.assert_array_equal(U, batch)
        else:
            assert set(batch.tolist()) <= set(U.tolist())
            assert len(U) <= rank / eps + 1e-9


def test_streaming_memory_is_flat_in_n():
    d, eps, block = 16, 0.05, 1000
    row = d * 8 + 8
    # documented: at most 2 d/eps + b candidates (exact; d/eps + b merge), the block, the Gram
    bounds = {
        "exact": (2 * d / eps + block) * row + block * d * 8 + d * d * 8,
        "merge": (d / eps + block) * row,
    }
    rng = np.random.default_rng(0)
    for mode in ("exact", "merge"):
        peaks = []
        for n in (5_000, 100_000):
            s = sketchla.StreamingLeverage(d, eps, mode=mode)
            for _ in range(0, n, block):
                s.update(rng.standard_normal((block, d)) * rng.lognormal(0, 1, (block, 1)))
            peaks.append(s.peak_bytes)
            assert s.n_seen == n and s.n_candidates <= (2 if mode == "exact" else 1) * d / eps
        assert max(peaks) <= bounds[mode]


def test_streaming_exact_filter_keeps_the_batch_set_on_hard_inputs():
    # anisotropic columns, heavy-tailed norms, a rank-deficient stretch and a late new
    # direction: the certified filter must never drop a member of U_eps
    rng = np.random.default_rng(11)
    n, d, eps = 30_000, 8, 0.02
    K = rng.standard_normal((n, d)) * np.logspace(0, 3, d) * rng.lognormal(0, 2, (n, 1))
    K[:5000, 5:] = 0.0  # rank 5 at first
    K[25_000, :] = 0.0
    K[25_000, 0] = 1e4  # a large late key
    batch = sketchla.universal_set(K, eps)
    for block in (997, 4096, 30_000):
        s = sketchla.StreamingLeverage(d, eps)
        for lo in range(0, n, block):
            s.update(K[lo : lo + block])
        np.testing.assert_array_equal(s.universal_set(), batch)
        assert s.n_candidates <= 2 * d / eps + block


def test_streaming_bad_input():
    s = sketchla.StreamingLeverage(3, 0.1)
    with pytest.raises(ValueError, match="block has 2 columns, expected d=3"):
        s.update(np.ones((4, 2)))
    with pytest.raises(ValueError, match="block contains NaN"):
        s.update(np.array([[1.0, np.nan, 0.0]]))
    with pytest.raises(ValueError, match="block contains NaN or inf"):
        s.update(np.array([[1.0, 0.0, -np.inf]]))
    with pytest.raises(ValueError, match="overflows"):
        s.update(np.array([[1e200, 0.0, 0.0]]))
    for mode in ("exact", "merge"):
        with pytest.raises(ValueError, match="block contains NaN"):
            sketchla.StreamingLeverage(3, 0.1, mode=mode).update(np.full((2, 3), np.nan))
    with pytest.raises(ValueError, match="eps must be"):
        sketchla.StreamingLeverage(3, 0.0)
    with pytest.raises(ValueError, match="mode must be one of"):
        sketchla.StreamingLeverage(3, 0.1, mode="approx")
    assert sketchla.StreamingLeverage(3, 0.1).universal_set().size == 0  # nothing seen yet


def test_sketched_universal_set_of_a_wide_K_names_K():
    with pytest.raises(ValueError, match=r"tall K .* shape \(3, 5\)"):
        sketchla.universal_set(np.ones((3, 5)), 0.5, method="sketch")


@pytest.mark.parametrize(
    "mode, bad",
    # 1e200 is valid input in merge mode (scaled scores); the exact mode's Gram overflows
    [("exact", np.nan), ("exact", np.inf), ("exact", 1e200), ("merge", np.nan), ("merge", np.inf)],
)
def test_streaming_failed_update_leaves_the_stream_unchanged(mode, bad):
    """Issue 20, defect 3: update() added each 8192-row chunk to the Gram and the candidates
    before checking the next one, then raised without rolling back or advancing n_seen (25
    keys wrongly kept, 41 missed afterwards). A rejected block now leaves the state as it was:
    skipping it gives exactly the batch answer of the blocks that were consumed."""
    rng = np.random.default_rng(0)
    d, eps = 6, 0.002
    good = [rng.standard_normal((n, d)) * rng.lognormal(0, 1, (n, 1)) for n in (3000, 9000, 500)]
    bad_block = rng.standard_normal((20000, d))
    bad_block[15000, 2] = bad  # in the second 8192-row chunk: the first one was consumed
    s = sketchla.StreamingLeverage(d, eps, mode=mode)
    s.update(good[0])
    before = (s.n_seen, s.n_candidates, s.universal_set().copy())
    with pytest.raises(ValueError, match="block"):
        s.update(bad_block)
    assert (s.n_seen, s.n_candidates) == before[:2]
    np.testing.assert_array_equal(s.universal_set(), before[2])
    for block in good[1:]:
        s.update(block)
    K = np.vstack(good)
    batch = sketchla.universal_set(K, eps)
    if mode == "exact":
        np.testing.assert_array_equal(s.universal_set(), batch)
    else:  # a superset of the batch set
        assert np.isin(batch, s.universal_set()).all()
