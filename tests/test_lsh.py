"""SimHash codes, the Gray order and the sortLSH permutation (issue 4)."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy.stats import binom

import sketchla
from sketchla.lsh import gray_code, gray_sort_order, inverse_gray_code, mips_augment


def popcount(x: np.ndarray) -> np.ndarray:
    return np.array([bin(int(v)).count("1") for v in np.asarray(x).ravel()])


def dense_codes(X: np.ndarray, planes: np.ndarray) -> np.ndarray:
    """Reference: matmul, sign, pack (bit b = hyperplane b)."""
    bits = (X @ planes > 0).astype(np.uint64)
    return (bits << np.arange(planes.shape[1], dtype=np.uint64)).sum(axis=-1, dtype=np.uint64)


@pytest.mark.parametrize("n_bits", range(1, 13))
def test_gray_order_visits_every_code_with_single_bit_steps(n_bits):
    codes = np.arange(2**n_bits, dtype=np.uint64)
    ordered = codes[np.argsort(inverse_gray_code(codes))]
    assert np.array_equal(np.sort(ordered), codes)
    assert np.all(popcount(ordered[1:] ^ ordered[:-1]) == 1)
    # the order is the Gray sequence itself, and sort_order on all codes realises it
    assert np.array_equal(ordered, gray_code(np.arange(2**n_bits)))
    assert np.array_equal(codes[gray_sort_order(codes, n_bits)], ordered)


def test_reference_order_by_gray_of_code_is_not_a_gray_path():
    """The bug design.md describes: sorting by gray(code) breaks adjacency (24% at r = 7)."""
    codes = np.arange(2**7, dtype=np.uint64)
    wrong = codes[np.argsort(gray_code(codes))]
    share = np.mean(popcount(wrong[1:] ^ wrong[:-1]) != 1)
    assert share == pytest.approx(0.24, abs=0.01)


@given(st.lists(st.integers(0, 2**64 - 1), min_size=1, max_size=50))
def test_inverse_gray_code_inverts_gray_code(values):
    k = np.array(values, dtype=np.uint64)
    assert np.array_equal(inverse_gray_code(gray_code(k)), k)
    assert np.array_equal(gray_code(inverse_gray_code(k)), k)


@given(
    st.integers(1, 24),
    st.integers(1, 3),
    st.integers(1, 600),
    st.integers(0, 2**32),
)
def test_sort_order_is_stable_sort_by_gray_position(n_bits, batch, n, seed):
    """Counting-sort and comparison-sort paths both equal numpy's stable argsort; equal codes
    are contiguous and in their original order."""
    rng = np.random.default_rng(seed)
    # few distinct codes, so that ties (stability) are exercised
    pool = rng.integers(0, 2**n_bits, size=max(1, n // 4), dtype=np.uint64)
    codes = rng.choice(pool, size=(batch, n))
    order = gray_sort_order(codes, n_bits)
    expected = np.argsort(inverse_gray_code(codes), axis=-1, kind="stable")
    assert np.array_equal(order, expected)
    for b in range(batch):
        sorted_codes = codes[b, order[b]]
        starts = np.flatnonzero(np.r_[True, sorted_codes[1:] != sorted_codes[:-1]])
        assert len(starts) == len(np.unique(codes[b]))  # each code forms one run


@given(st.integers(1, 40), st.integers(1, 64), st.integers(0, 2**32))
def test_codes_match_matmul_sign_pack(d, n_bits, seed):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((50, d))
    h = sketchla.SimHash(d, n_bits, rng=seed)
    P = X @ h.planes
    clear = np.all(np.abs(P) > 1e-9 * np.abs(X).sum(axis=1, keepdims=True), axis=1)
    assert np.array_equal(h.codes(X)[clear], dense_codes(X, h.planes)[clear])
    assert h.codes(X).dtype == np.uint64
    np.testing.assert_allclose(h.project(X), P)


def test_codes_float32_batched_and_reproducible():
    rng = np.random.default_rng(1)
    X = rng.standard_normal((2, 3, 200, 16))
    h = sketchla.SimHash(16, 9, rng=5)
    codes = h.codes(X)
    order = h.sort_order(X)
    assert codes.shape == order.shape == (2, 3, 200)
    for i in range(2):
        for j in range(3):
            assert np.array_equal(codes[i, j], h.codes(X[i, j]))
            assert np.array_equal(order[i, j], h.sort_order(X[i, j]))
    agree = np.mean(h.codes(X.astype(np.float32)) == codes)
    assert agree > 0.99  # float32 rounding may flip a sign only for near-orthogonal pairs
    assert np.array_equal(sketchla.SimHash(16, 9, rng=5).codes(X), codes)
    assert not np.array_equal(sketchla.SimHash(16, 9, rng=6).codes(X), codes)


def test_hash_of_dimension_d_plus_one_extends_dimension_d():
    assert np.array_equal(
        sketchla.SimHash(9, 5, rng=3).planes[:8], sketchla.SimHash(8, 5, rng=3).planes
    )


@pytest.mark.parametrize("theta", [np.pi / 8, np.pi / 3, np.pi / 2, 2 * np.pi / 3, 0.9 * np.pi])
def test_collision_probability_per_bit_is_one_minus_theta_over_pi(theta):
    """Charikar: P[bit agrees] = 1 - theta/pi. 64 bits x 60 seeds = 3840 Bernoulli trials per
    angle (bits of one hash are independent hyperplanes); the count must lie in the central
    1 - 1e-6 binomial interval (fixed seeds; a wrong law fails by many sigmas)."""
    d = 12
    x = np.zeros(d)
    x[0] = 1.0
    y = np.zeros(d)
    y[0], y[1] = np.cos(theta), np.sin(theta)
    rot = np.linalg.qr(np.random.default_rng(0).standard_normal((d, d)))[0]
    X = np.stack([x, y]) @ rot
    trials = agree = 0
    for seed in range(60):
        c = sketchla.SimHash(d, 64, rng=seed).codes(X)
        agree += 64 - popcount(c[0] ^ c[1])[0]
        trials += 64
    p = 1 - theta / np.pi
    lo, hi = binom.interval(1 - 1e-6, trials, p)
    assert lo <= agree <= hi


def test_close_vectors_share_buckets_and_sort_order_groups_them():
    rng = np.random.default_rng(2)
    centers = rng.standard_normal((8, 32))
    X = np.repeat(centers, 50, axis=0) + 1e-3 * rng.standard_normal((400, 32))
    h = sketchla.SimHash(32, 6, rng=0)
    codes = h.codes(X).reshape(8, 50)
    assert np.mean(codes == codes[:, :1]) > 0.95
    runs = codes.ravel()[h.sort_order(X)]
    assert np.count_nonzero(runs[1:] != runs[:-1]) < 8 + 20


def test_mips_augment_maps_inner_products_to_angles():
    rng = np.random.default_rng(3)
    Q = rng.standard_normal((20, 6))
    K = rng.standard_normal((30, 6)) * rng.lognormal(0, 1, (30, 1))
    Qa, Ka = mips_augment(Q, K)
    M = np.linalg.norm(K, axis=1).max()
    np.testing.assert_allclose(np.linalg.norm(Ka, axis=1), 1.0)
    np.testing.assert_allclose(Qa @ Ka.T, Q @ K.T / M, atol=1e-12)
    # for each query, cosine to augmented keys is increasing in the inner product
    cos = (Qa @ Ka.T) / np.linalg.norm(Qa, axis=1, keepdims=True)
    ip = Q @ K.T
    for i in range(20):
        assert np.all(np.diff(cos[i][np.argsort(ip[i])]) >= -1e-12)
    Z = mips_augment(Q, np.zeros((4, 6)))[1]
    assert np.all(np.isfinite(Z))


def test_bad_input():
    with pytest.raises(ValueError, match="n_bits"):
        sketchla.SimHash(4, 0)
    with pytest.raises(ValueError, match="n_bits"):
        sketchla.SimHash(4, 65)
    with pytest.raises(TypeError, match="n_bits"):
        sketchla.SimHash(4, 3.0)
    with pytest.raises(ValueError, match="d="):
        sketchla.SimHash(4, 3).codes(np.ones((5, 3)))
    X = np.ones((5, 4))
    X[2, 1] = np.nan
    with pytest.raises(ValueError, match="X contains NaN"):
        sketchla.SimHash(4, 3).codes(X)
    with pytest.raises(ValueError, match="X"):
        sketchla.SimHash(4, 3).sort_order(np.ones(4))
    with pytest.raises(TypeError, match="X"):
        sketchla.SimHash(4, 3).codes("abc")
    with pytest.raises(ValueError, match="overflowed"):
        sketchla.SimHash(64, 8).codes(np.full((2, 64), 1.5e308))
