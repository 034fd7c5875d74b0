"""Exact blockwise attention against a dense float64 softmax; input contract; memory bound."""

import tracemalloc

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy.special import logsumexp, softmax

from sketchla import exact_attention
from sketchla.attention._inputs import check_attention_inputs


def dense_reference(Q, K, V, causal=False, scale=None):
    """softmax(scale Q K^T + mask) V and its log row sums, dense, float64."""
    Q, K, V = (np.asarray(X, dtype=np.float64) for X in (Q, K, V))
    scale = 1 / np.sqrt(Q.shape[-1]) if scale is None else scale
    S = scale * Q @ np.swapaxes(K, -1, -2)
    if causal:
        n = S.shape[-1]
        S = S + np.triu(np.full((n, n), -np.inf), 1)
    return softmax(S, axis=-1) @ V, logsumexp(S, axis=-1)


@st.composite
def attention_problems(draw):
    batch = tuple(draw(st.lists(st.integers(1, 3), max_size=2)))
    causal = draw(st.booleans())
    n_q = draw(st.integers(1, 70))
    n_k = n_q if causal else draw(st.integers(1, 70))
    d, d_v = draw(st.integers(1, 9)), draw(st.integers(1, 6))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    scale = draw(st.one_of(st.none(), st.floats(0.01, 3.0)))
    block_q, block_k = draw(st.integers(1, 80)), draw(st.integers(1, 80))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    Q = rng.standard_normal((*batch, n_q, d)) * draw(st.sampled_from([0.1, 1.0, 5.0]))
    K = rng.standard_normal((*batch, n_k, d))
    V = rng.standard_normal((*batch, n_k, d_v))
    return [X.astype(dtype) for X in (Q, K, V)], causal, scale, (block_q, block_k)


@given(attention_problems())
def test_matches_dense_float64_softmax(problem):
    (Q, K, V), causal, scale, (block_q, block_k) = problem
    out, lse = exact_attention(
        Q, K, V, causal=causal, scale=scale, return_lse=True, block_q=block_q, block_k=block_k
    )
    ref, ref_lse = dense_reference(Q, K, V, causal, scale)
    assert out.shape == ref.shape and lse.shape == ref_lse.shape
    assert out.dtype == lse.dtype == Q.dtype
    # float32: logits, exponentials and tile products in float32, so ~1e-6 relative per term
    tol = 1e-12 if Q.dtype == np.float64 else 2e-5
    scale_v = np.abs(V).max()
    np.testing.assert_allclose(out, ref, rtol=0, atol=tol * 10 * scale_v)
    np.testing.assert_allclose(lse, ref_lse, rtol=tol, atol=tol * 10)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("causal", [False, True])
def test_no_overflow_for_logits_of_1e4(dtype, causal):
    rng = np.random.default_rng(1)
    n, d = 300, 4
    Q = rng.standard_normal((n, d))
    Q *= 1e4 * np.sqrt(d) / np.abs(Q @ rng.standard_normal((d, n))).max()
    K, V = rng.standard_normal((n, d)), rng.standard_normal((n, 3))
    # logits of magnitude up to ~1e4: exp() of them overflows float64, log-sum-exp does not
    out, lse = exact_attention(
        *(X.astype(dtype) for X in (Q, K, V)), causal=causal, return_lse=True
    )
    ref, ref_lse = dense_reference(*(X.astype(dtype) for X in (Q, K, V)), causal)
    assert np.abs(ref_lse).max() > 100
    assert np.isfinite(out).all() and np.isfinite(lse).all()
    tol = 1e-9 if dtype == np.float64 else 1e-2  # float32 logits of 1e4 carry ~1e-3 abs error
    np.testing.assert_allclose(lse, ref_lse, rtol=tol)
    np.testing.assert_allclose(out, ref, atol=tol * 10 * np.abs(V).max())


def test_causal_never_looks_at_the_future():
    rng = np.random.default_rng(2)
    n = 200
    Q, K, V = rng.standard_normal((3, n, 8))
    out = exact_attention(Q, K, V, causal=True, block_q=32, block_k=48)
    for i in (0, 1, 57, 128, 199):
        K2, V2 = K.copy(), V.copy()
        K2[i + 1 :] = 100 * rng.standard_normal((n - i - 1, 8))
        V2[i + 1 :] = 100 * rng.standard_normal((n - i - 1, 8))
        out2 = exact_attention(Q, K2, V2, causal=True, block_q=32, block_k=48)
        np.testing.assert_array_equal(out2[: i + 1], out[: i + 1])


def test_dtype_policy():
    rng = np.random.default_rng(3)
    Q, K, V = rng.standard_normal((3, 20, 4))
    assert exact_attention(
        Q.astype(np.float16), K.astype(np.float16), V.astype(np.float16)
    ).dtype == (np.float32)
    ints = [np.round(3 * X).astype(np.int32) for X in (Q, K, V)]
    out = exact_attention(*ints)
    assert out.dtype == np.float64
    np.testing.assert_allclose(out, dense_reference(*ints)[0], atol=1e-12)
    mixed = exact_attention(Q.astype(np.float32), K, V.astype(np.float32))
    assert mixed.dtype == np.float64


@pytest.mark.parametrize(("blocks", "fraction"), [({}, 8), ({"block_q": 128, "block_k": 1024}, 64)])
def test_memory_is_linear_in_n(blocks, fraction):
    """n = 8192: the n x n matrix would be 512 MiB of float64; the blocked pass needs one tile
    (32 MiB at the default 1024 x 4096, 1 MiB at 128 x 1024) and O(n d_v) accumulators."""
    n, d = 8192, 16
    rng = np.random.default_rng(4)
    Q, K, V = rng.standard_normal((3, n, d))
    tracemalloc.start()
    try:
        exact_attention(Q, K, V, **blocks)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < n * n * 8 / fraction, f"peak {peak / 2**20:.1f} MiB"


def test_blocks_do_not_change_the_result_beyond_rounding():
    rng = np.random.default_rng(5)
    Q, K, V = rng.standard_normal((3, 2, 130, 8))
    a = exact_attention(Q, K, V, causal=True, block_q=1, block_k=1)
    b = exact_attention(Q, K, V, causal=True, block_q=1000, block_k=1000)
    np.testing.assert_allclose(a, b, atol=1e-13)


@pytest.mark.parametrize(
    ("args", "kwargs", "exc", "match"),
    [
        ((np.ones((4, 3)), np.ones((5, 2)), np.ones((5, 2))), {}, ValueError, "K must have"),
        ((np.ones((4, 3)), np.ones((5, 3)), np.ones((6, 2))), {}, ValueError, "V must have"),
        ((np.ones((2, 4, 3)), np.ones((3, 5, 3)), np.ones((3, 5, 2))), {}, ValueError, "leading"),
        ((np.ones((2, 4, 3)), np.ones((5, 3)), np.ones((5, 2))), {}, ValueError, "dimensions"),
        ((np.ones(3), np.ones((5, 3)), np.ones((5, 2))), {}, ValueError, "Q must have shape"),
        (  # causal aligns bottom-right: more queries than keys leave the first ones no key
            (np.ones((6, 3)), np.ones((5, 3)), np.ones((5, 2))),
            {"causal": True},
            ValueError,
            "causal",
        ),
        ((np.ones((4, 3)), np.ones((4, 3)), np.ones((4, 2))), {"causal": 1}, TypeError, "causal"),
        ((np.ones((4, 3)), np.ones((4, 3)), np.ones((4, 2))), {"scale": 0.0}, ValueError, "scale"),
        (
            (np.ones((4, 3)), np.ones((4, 3)), np.ones((4, 2))),
            {"scale": np.inf},
            ValueError,
            "scale",
        ),
        (
            (np.ones((4, 3)), np.ones((4, 3)), np.ones((4, 2))),
            {"block_q": 0},
            ValueError,
            "block_q",
        ),
        ((np.ones((4, 3)), np.ones((4, 3)) * 1j, np.ones((4, 2))), {}, TypeError, "K"),
        ((np.ones((4, 3)), np.ones((4, 3)), "abc"), {}, TypeError, "V"),
        ((np.ones((0, 3)), np.ones((4, 3)), np.ones((4, 2))), {}, ValueError, "Q is empty"),
    ],
)
def test_bad_input_names_the_argument(args, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        exact_attention(*args, **kwargs)


@pytest.mark.parametrize("name", ["Q", "K", "V"])
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nonfinite_input_names_the_argument(name, bad):
    arrays = dict(Q=np.ones((2, 4, 3)), K=np.ones((2, 4, 3)), V=np.ones((2, 4, 2)))
    arrays[name][1, 2, 1] = bad
    with pytest.raises(ValueError, match=f"{name} contains NaN"):
        exact_attention(**arrays)


def test_validated_inputs_iterate_heads_in_c_order():
    rng = np.random.default_rng(6)
    Q, K = rng.standard_normal((2, 2, 3, 5, 4))
    V = rng.standard_normal((2, 3, 5, 2))
    inp = check_attention_inputs(Q, K, V)
    heads = list(inp.heads())
    assert inp.n_heads == 6 and inp.batch_shape == (2, 3) and inp.scale == 0.5
    np.testing.assert_array_equal(heads[4][0], Q[1, 1])
    stacked = np.stack([v for _, _, v in heads])
    np.testing.assert_array_equal(inp.unflatten(stacked), V)


def test_attention_benchmark_runs_at_a_tiny_size():
    from sketchla.bench import SUITES

    result = SUITES["attention"].run(n=256, repeat=1, spectral_max_n=256)
    labels = [row[0].label for row in result["rows"]]
    assert "lev vs exact, n=256 non-causal" in labels and "lev vs exact, n=256 causal" in labels
    assert all(np.isfinite(row[3]) and row[3] > 0 for row in result["rows"])
    spectral = [v for k, v in result["sizes"].items() if k.startswith("spectral lev")]
    assert len(spectral) == 2 and all(0 <= float(x) < 10 for v in spectral for x in v.split("/"))
