"""LevAttention: exactness cases, the polynomial-kernel guarantee as a property, causality,
the softmax counterexample, bad input."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy.special import softmax

from sketchla import exact_attention, lev_attention, leverage_scores, sensitivity_bounds
from sketchla.attention.lev import lev_key_set
from sketchla.testing.attention_instances import attention_instance


def dense_weights(Q, K, kernel, causal=False, scale=None):
    """Exact attention weights (n_q, n_k), float64, rows summing to 1 (0-rows stay 0)."""
    scale = 1 / np.sqrt(Q.shape[-1]) if scale is None else scale
    S = scale * np.asarray(Q, np.float64) @ np.asarray(K, np.float64).T
    future = np.triu(np.ones(S.shape, bool), 1) if causal else np.zeros(S.shape, bool)
    if kernel == "softmax":
        return softmax(np.where(future, -np.inf, S), axis=1)
    W = np.where(future, 0.0, np.abs(S) ** kernel[1])
    total = W.sum(axis=1, keepdims=True)
    return np.divide(W, total, out=np.zeros_like(W), where=total > 0)


def kept_mask(n_q, n_k, keys, local_window, causal):
    """S_i of the module docstring as a boolean (n_q, n_k) matrix."""
    kept = np.zeros((n_q, n_k), bool)
    kept[:, keys] = True
    if local_window:
        offset = np.arange(n_q)[:, None] - np.arange(n_k)[None, :]
        near = (offset >= 0) if causal else (offset > -local_window)
        kept |= near & (offset < local_window)
    if causal:
        kept &= np.tril(np.ones((n_q, n_k), bool))
    return kept


def check_guarantee(Q, K, V, out, W, kept, eps=None):
    """Guarantees 1-3 of sketchla.attention.lev for one head, from dense weights W."""
    if eps is not None:  # 1: every eps-heavy entry is kept
        assert not (W >= eps * (1 + 1e-9))[~kept].any()
    excluded = np.where(kept, 0.0, W).sum(axis=1)
    exact = W @ V
    vmax = np.linalg.norm(V, axis=1).max()
    err = np.linalg.norm(out - exact, axis=1)
    # 2: ||out_i - exact_i|| <= 2 m_i max ||v_j|| (+ rounding)
    assert (err <= 2 * excluded * vmax + 1e-9 * vmax).all()
    # 3: rows with zero excluded mass and a kept positive weight are exact
    exact_rows = (excluded == 0) & (np.where(kept, W, 0).sum(axis=1) > 0)
    np.testing.assert_allclose(out[exact_rows], exact[exact_rows], atol=1e-10 * vmax)


@st.composite
def poly_problems(draw):
    causal = draw(st.booleans())
    n = draw(st.integers(2, 60))
    n_k = n if causal else draw(st.integers(2, 60))
    d, d_v = draw(st.integers(1, 6)), draw(st.integers(1, 3))
    p = draw(st.sampled_from([1.0, 1.5, 2.0, 4.0] + ([] if causal else [3.0])))
    eps = draw(st.floats(0.01, 0.6))
    k = None if causal or draw(st.booleans()) else draw(st.integers(1, n_k))
    window = draw(st.integers(0, 5)) if n == n_k else 0
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    K = rng.standard_normal((n_k, d)) * rng.lognormal(0, 1, (n_k, 1))
    Q = rng.standard_normal((n, d))
    V = rng.standard_normal((n_k, d_v))
    return Q, K, V, ("poly", p), (eps, None) if k is None else (None, k), window, causal


@given(poly_problems())
def test_poly_guarantee_random_queries(problem):
    Q, K, V, kernel, (eps, k), window, causal = problem
    out = lev_attention(Q, K, V, eps=eps, k=k, local_window=window, kernel=kernel, causal=causal)
    keys = lev_key_set(K, eps, k, kernel, causal)
    kept = kept_mask(len(Q), len(K), keys, window, causal)
    W = dense_weights(Q, K, kernel, causal)
    check_guarantee(Q, K, V, out, W, kept, eps)
    if k is not None:  # top-k: excluded weights are at most the largest excluded score
        p = kernel[1]
        scores = leverage_scores(K) if p == 2 else sensitivity_bounds(K, p)
        dropped = np.setdiff1d(np.arange(len(K)), keys)
        bound = scores[dropped].max() if dropped.size else 0.0
        assert (W[~kept] <= bound * (1 + 1e-9) + 1e-12).all()


@pytest.mark.parametrize("causal", [False, True])
def test_poly2_guarantee_at_the_witness_queries(causal):
    """q_j = (K^T K)^+ k_j gives key j the weight l_j (its leverage score), the largest any
    query can give it: the universal set must keep exactly the keys that reach eps there."""
    rng = np.random.default_rng(11)
    n, d, eps = 120, 5, 0.08
    K = rng.standard_normal((n, d)) * rng.lognormal(0, 1.2, (n, 1))
    V = rng.standard_normal((n, 3))
    lev = leverage_scores(K)
    Q = (np.linalg.pinv(K.T @ K) @ K.T).T  # row j is the witness of key j (non-causal)
    W = dense_weights(Q, K, ("poly", 2), causal=False)
    np.testing.assert_allclose(np.diag(W), lev, rtol=1e-8)
    if not causal:
        keys = lev_key_set(K, eps=eps, kernel=("poly", 2))
        np.testing.assert_array_equal(keys, np.flatnonzero(lev >= eps))
        assert len(keys) <= d / eps
    else:  # causal witnesses: query t = j with q = (K_<=j^T K_<=j)^+ k_j
        Q = np.stack([np.linalg.pinv(K[: j + 1].T @ K[: j + 1]) @ K[j] for j in range(n)])
        keys = lev_key_set(K, eps=eps, kernel=("poly", 2), causal=True)
    out = lev_attention(Q, K, V, eps=eps, kernel=("poly", 2), causal=causal)
    W = dense_weights(Q, K, ("poly", 2), causal)
    check_guarantee(Q, K, V, out, W, kept_mask(n, n, keys, 0, causal), eps)


def test_poly2_equals_exact_when_excluded_keys_carry_no_weight():
    """Keys e_d (40 copies: leverage 1/40 < eps each) and zero keys are excluded;
    the queries have no e_d component, so those keys have weight 0 and the output is exact."""
    rng = np.random.default_rng(12)
    d, copies = 6, 40
    K = np.vstack(
        [
            np.hstack([rng.standard_normal((12, d - 1)), np.zeros((12, 1))]),
            np.tile(np.eye(d)[-1], (copies, 1)),
            np.zeros((10, d)),
        ]
    )
    Q = np.hstack([rng.standard_normal((50, d - 1)), np.zeros((50, 1))])
    V = rng.standard_normal((len(K), 4))
    eps = 0.04
    keys = lev_key_set(K, eps=eps, kernel=("poly", 2))
    assert keys.max() < 12  # the e_d copies and the zero keys are out
    assert len(keys) < len(K) / 4  # most keys are dropped
    out = lev_attention(Q, K, V, eps=eps, kernel=("poly", 2))
    exact = dense_weights(Q, K, ("poly", 2)) @ V
    np.testing.assert_allclose(out, exact, atol=1e-12)


@st.composite
def softmax_problems(draw):
    causal = draw(st.booleans())
    batch = tuple(draw(st.lists(st.integers(1, 2), max_size=2)))
    n = draw(st.integers(1, 50))
    n_k = n if causal else draw(st.integers(1, 50))
    d = draw(st.integers(1, 6))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    Q, K, V = (rng.standard_normal((*batch, m, d)).astype(dtype) for m in (n, n_k, n_k))
    return Q, K, V, causal, draw(st.integers(0, 3))


@given(softmax_problems())
def test_all_keys_equal_exact_attention(problem):
    Q, K, V, causal, extra = problem
    n_k = K.shape[-2]
    out = lev_attention(Q, K, V, k=n_k + extra, causal=causal)
    ref = exact_attention(Q, K, V, causal=causal)
    assert out.dtype == Q.dtype and out.shape == ref.shape
    np.testing.assert_allclose(out, ref, atol=1e-12 if Q.dtype == np.float64 else 1e-5)
    if K.ndim == 2:
        window = (
            lev_attention(Q, K, V, eps=1.0, local_window=n_k, causal=causal)
            if (Q.shape[-2] == n_k)
            else ref
        )
        np.testing.assert_allclose(window, ref, atol=1e-12 if Q.dtype == np.float64 else 1e-5)


@pytest.mark.parametrize("kind", ["flat", "sink", "large_norm"])
@pytest.mark.parametrize("causal", [False, True])
def test_softmax_error_within_the_a_posteriori_bound(kind, causal):
    """For softmax nothing bounds the excluded mass m_i, but bound 2 holds with it."""
    Q, K, V = attention_instance(kind, 256, 8, rng=13)
    eps, window = 0.02, 8
    out = lev_attention(Q, K, V, eps=eps, local_window=window, causal=causal)
    keys = lev_key_set(K, eps=eps, causal=causal)
    kept = kept_mask(256, 256, keys, window, causal)
    check_guarantee(Q, K, V, out, dense_weights(Q, K, "softmax", causal), kept)


def test_softmax_random_sign_counterexample():
    """Q = K = random signs: every key is the heaviest entry of its own query, yet every
    leverage score is about d/n, so the universal set is empty and the heavy entries are lost:
    LevAttention is a heuristic for softmax."""
    n, d = 512, 64
    Q, K, V = attention_instance("random_sign", n, d, rng=14)
    W = dense_weights(Q, K, "softmax")
    assert (W.argmax(axis=1) == np.arange(n)).all()
    assert np.diag(W).min() > 0.5  # logit sqrt(d) = 8 against about N(0, 1) for the others
    assert leverage_scores(K).max() < 2 * d / n
    eps = 2 * d / n
    assert lev_key_set(K, eps=eps).size == 0
    out = lev_attention(Q, K, V, eps=eps, local_window=0)
    assert not out.any()  # no key kept: rows are 0, while the exact rows are not
    assert np.linalg.norm(W @ V, axis=1).min() > 0.1


def test_causal_never_looks_at_the_future():
    rng = np.random.default_rng(15)
    n, d = 160, 6
    Q, K, V = rng.standard_normal((3, n, d))
    for kernel in ("softmax", ("poly", 2), ("poly", 1.0), ("poly", 4)):
        out = lev_attention(Q, K, V, eps=0.1, local_window=7, kernel=kernel, causal=True)
        for i in (0, 3, 64, 100):
            K2, V2 = K.copy(), V.copy()
            K2[i + 1 :] = 50 * rng.standard_normal((n - i - 1, d))
            V2[i + 1 :] = 50 * rng.standard_normal((n - i - 1, d))
            out2 = lev_attention(Q, K2, V2, eps=0.1, local_window=7, kernel=kernel, causal=True)
            np.testing.assert_array_equal(out2[: i + 1], out[: i + 1])


def test_top_k_keeps_the_k_highest_scores_and_batches_per_head():
    rng = np.random.default_rng(16)
    Q, K, V = rng.standard_normal((3, 2, 80, 4))
    K[1] *= rng.lognormal(0, 1, (80, 1))
    keys = lev_key_set(K[1], k=10)
    lev = leverage_scores(K[1])
    assert len(keys) == 10 and lev[keys].min() >= np.delete(lev, keys).max()
    out = lev_attention(Q, K, V, k=10)
    for h in (0, 1):
        sel = lev_key_set(K[h], k=10)
        np.testing.assert_allclose(out[h], exact_attention(Q[h], K[h, sel], V[h, sel]), atol=1e-12)


def test_sketched_scores_are_seeded():
    Q, K, V = attention_instance("large_norm", 400, 8, rng=17)
    a = lev_attention(Q, K, V, k=40, score_method="sketch", rng=3)
    b = lev_attention(Q, K, V, k=40, score_method="sketch", rng=3)
    np.testing.assert_array_equal(a, b)


ONES = {"Q": np.ones((6, 3)), "K": np.ones((6, 3)), "V": np.ones((6, 2))}


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"eps": 0.0}, ValueError, "eps"),
        ({"eps": 1.5}, ValueError, "eps"),
        ({"eps": np.nan}, ValueError, "eps"),
        ({"k": 0}, ValueError, "k must be"),
        ({"k": -3}, ValueError, "k must be"),
        ({"k": 2.5}, TypeError, "k must be"),
        ({"eps": None}, ValueError, "exactly one"),
        ({"eps": 0.1, "k": 2}, ValueError, "exactly one"),
        ({"eps": 0.1, "kernel": "relu"}, ValueError, "kernel"),
        ({"eps": 0.1, "kernel": ("poly", -1.0)}, ValueError, "kernel exponent"),
        ({"eps": 0.1, "kernel": ("poly", 3), "causal": True}, ValueError, "p"),
        ({"eps": 0.1, "local_window": -1}, ValueError, "local_window"),
        ({"k": 2, "causal": True}, ValueError, "causal=True needs eps"),
        (
            {"eps": 0.1, "K": np.ones((7, 3)), "V": np.ones((7, 2)), "local_window": 2},
            ValueError,
            "local_window",
        ),
        (  # causal aligns bottom-right: more queries than keys leave the first ones no key
            {"eps": 0.1, "Q": np.ones((8, 3)), "causal": True},
            ValueError,
            "causal",
        ),
        ({"eps": 0.1, "K": np.ones((6, 4))}, ValueError, "K must have"),
        ({"eps": 0.1, "V": np.ones((5, 2))}, ValueError, "V must have"),
        ({"eps": 0.1, "Q": np.full((6, 3), np.nan)}, ValueError, "Q contains NaN"),
        ({"eps": 0.1, "score_method": "magic"}, ValueError, "score_method"),
    ],
)
def test_bad_input_names_the_argument(kwargs, exc, match):
    args = dict(ONES)
    args.update(kwargs)
    with pytest.raises(exc, match=match):
        lev_attention(**args)


@pytest.mark.parametrize("kernel", ["softmax", ("poly", 2)])
@pytest.mark.parametrize("n_q", [1, 2])
def test_overflowing_logits_raise_instead_of_zero_rows(kernel, n_q):
    """Regression: one query whose logits overflow to inf/NaN (finite inputs near the largest
    float) came back as a silent zero row; it must raise like exact attention does."""
    rng = np.random.default_rng(0)
    K = rng.standard_normal((2, 4)) * 1e307
    V = rng.standard_normal((2, 3))
    with pytest.raises(ValueError, match="overflowed"):
        lev_attention(K[:n_q], K, V, k=2, kernel=kernel)


@given(
    tile=st.integers(1, 300),
    local_window=st.integers(0, 40),
    causal=st.booleans(),
    kernel=st.sampled_from(["softmax", ("poly", 2)]),
)
def test_tile_does_not_change_the_output(tile, local_window, causal, kernel):
    """tile (queries per tile, default 256) is a speed knob: every tile size gives the same
    output to rounding."""
    Q, K, V = attention_instance("planted", 257, 8, rng=3)
    ref = lev_attention(
        Q, K, V, eps=0.1, local_window=local_window, causal=causal, kernel=kernel, tile=257
    )
    out = lev_attention(
        Q, K, V, eps=0.1, local_window=local_window, causal=causal, kernel=kernel, tile=tile
    )
    np.testing.assert_allclose(out, ref, rtol=1e-12, atol=1e-12)
