"""HyperAttention: exactness limits, causality, padding, cross attention, spectral accuracy."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy.sparse.linalg import svds
from scipy.special import softmax

import sketchla
from sketchla.attention import (
    Importance,
    KeyIndices,
    MultiRoundLSH,
    SortLSH,
    TopNorm,
    Uniform,
)
from sketchla.attention._tiles import Problem
from sketchla.testing.attention_instances import attention_instance


def dense_attention(Q, K, V, causal=False, scale=None):
    scale = 1 / np.sqrt(Q.shape[-1]) if scale is None else scale
    S = scale * Q.astype(np.float64) @ K.astype(np.float64).swapaxes(-1, -2)
    if causal:
        S = S + np.triu(np.full(S.shape[-2:], -np.inf), 1)
    return softmax(S, axis=-1) @ V


@st.composite
def qkv(draw, max_n=120, self_attention=False):
    batch = draw(st.sampled_from([(), (3,), (2, 2)]))
    n_q = draw(st.integers(1, max_n))
    n_k = n_q if self_attention else draw(st.integers(1, max_n))
    d, d_v = draw(st.integers(1, 8)), draw(st.integers(1, 5))
    rng = np.random.default_rng(draw(st.integers(0, 2**32)))
    dtype = draw(st.sampled_from([np.float64, np.float32]))
    c = draw(st.sampled_from([0.3, 1.0, 4.0]))
    return tuple(
        (c * rng.standard_normal((*batch, n, k))).astype(dtype)
        for n, k in ((n_q, d), (n_k, d), (n_k, d_v))
    )


def exact_lse(Q, K):
    from scipy.special import logsumexp

    return logsumexp(Q.astype(np.float64) @ K.astype(np.float64).swapaxes(-1, -2), axis=-1)


def close(a, b, dtype):
    np.testing.assert_allclose(
        a,
        b,
        rtol=1e-4 if dtype == np.float32 else 1e-10,
        atol=1e-4 if dtype == np.float32 else 1e-10,
    )


@given(qkv(), st.integers(0, 2**16))
def test_exact_when_one_block_holds_every_key(QKV, seed):
    Q, K, V = QKV
    out, lse = sketchla.hyper_attention(Q, K, V, block_size=K.shape[-2], rng=seed, return_lse=True)
    ref, ref_lse = sketchla.exact_attention(Q, K, V, return_lse=True)
    assert out.dtype == Q.dtype and out.shape == ref.shape and lse.shape == ref_lse.shape
    close(out, dense_attention(Q, K, V), Q.dtype)
    close(lse, ref_lse, Q.dtype)


@given(qkv(self_attention=True), st.integers(0, 2**16))
def test_causal_exact_at_or_below_min_seq_len(QKV, seed):
    Q, K, V = QKV
    out = sketchla.hyper_attention(Q, K, V, causal=True, min_seq_len=Q.shape[-2], rng=seed)
    close(out, dense_attention(Q, K, V, causal=True), Q.dtype)


@given(qkv(max_n=300, self_attention=True), st.integers(1, 40))
def test_causal_recursion_and_merges_are_exact_when_every_quadrant_is(QKV, min_seq_len):
    """Recursive halving (odd n included) with exact off-diagonal quadrants (one block) must
    reproduce exact causal attention: checks the splits, offsets and log-space merges."""
    Q, K, V = QKV
    out, lse = sketchla.hyper_attention(
        Q, K, V, causal=True, min_seq_len=min_seq_len, block_size=10**6, return_lse=True, rng=0
    )
    ref, ref_lse = sketchla.exact_attention(Q, K, V, causal=True, return_lse=True)
    close(out, ref, Q.dtype)
    close(lse, ref_lse, Q.dtype)


@given(qkv(max_n=150), st.integers(1, 40), st.integers(0, 64), st.integers(0, 2**16))
def test_output_rows_are_convex_combinations_of_values(QKV, block_size, m, seed):
    """Every weight is positive, so each output row lies in the convex hull of V's rows: in
    particular every entry is within [min, max] of its column (cross attention, odd sizes)."""
    Q, K, V = QKV
    for rest in (Uniform(m), Importance(m, weights="vnorm")):
        out = sketchla.approx_attention(Q, K, V, keys=SortLSH(block_size, 3), rest=rest, rng=seed)
        assert out.shape == (*Q.shape[:-1], V.shape[-1]) and np.all(np.isfinite(out))
        tol = 1e-5 * (1 + np.abs(V).max())
        assert np.all(out >= V.min(axis=-2, keepdims=True) - tol)
        assert np.all(out <= V.max(axis=-2, keepdims=True) + tol)


@given(qkv(max_n=200), st.integers(1, 50), st.integers(1, 8))
def test_padding_never_changes_the_output(QKV, block_size, bits):
    """Heavy part only: each query's output is exactly softmax attention over its block's keys
    (brute force from the layout), for any n, i.e. no padded key enters a softmax."""
    Q, K, V = QKV
    scale = 1 / np.sqrt(Q.shape[-1])
    out = sketchla.hyper_attention(
        Q, K, V, block_size=block_size, sample_size=0, n_bits=bits, rng=0
    )
    Qb, Kb, Vb = (X.reshape(-1, *X.shape[-2:]) for X in (Q, K, V))
    prob = Problem(Qb * Qb.dtype.type(scale), Kb, None, False)
    blocks = SortLSH(block_size, bits).bind(prob, np.random.SeedSequence(0))
    qb, kb = blocks.query_block, blocks.key_block
    outb = out.reshape(-1, *out.shape[-2:])
    for b in range(Qb.shape[0]):
        S = scale * Qb[b].astype(np.float64) @ Kb[b].T.astype(np.float64)
        member = qb[b][:, None] == kb[b][None, :]
        close(outb[b], softmax(np.where(member, S, -np.inf), axis=1) @ Vb[b], Q.dtype)


def test_causal_output_never_depends_on_future_keys_or_values():
    Q, K, V = attention_instance("flat", 1001, 16, rng=0)
    kw = {
        "causal": True,
        "causal_scheme": "halving",
        "min_seq_len": 100,
        "keys": TopNorm(4) | SortLSH(32),
        "rest": Uniform(32),
        "rng": 0,
    }
    out = sketchla.approx_attention(Q, K, V, **kw)
    K2, V2 = K.copy(), V.copy()
    K2[700:] = 10 * np.random.default_rng(1).standard_normal(K2[700:].shape)
    V2[700:] += 5.0
    out2 = sketchla.approx_attention(Q, K2, V2, **kw)
    np.testing.assert_array_equal(out2[:700], out[:700])
    assert not np.allclose(out2[700:], out[700:])


def test_seed_and_float32():
    Q, K, V = attention_instance("flat", 700, 16, rng=2)
    a = sketchla.hyper_attention(Q, K, V, block_size=64, rng=3)
    assert np.array_equal(a, sketchla.hyper_attention(Q, K, V, block_size=64, rng=3))
    assert not np.array_equal(a, sketchla.hyper_attention(Q, K, V, block_size=64, rng=4))
    a32 = sketchla.hyper_attention(*(X.astype(np.float32) for X in (Q, K, V)), block_size=64, rng=0)
    assert a32.dtype == np.float32 and np.all(np.isfinite(a32))
    big = [X * 100 for X in (Q, K)]  # logits ~ +-1e4
    out, lse = sketchla.hyper_attention(*big, V, block_size=64, return_lse=True, rng=0)
    assert np.all(np.isfinite(out)) and np.all(np.isfinite(lse))


def test_global_keys_are_exact_and_excluded_from_sampling():
    """With every key global the result is exact; per-head index arrays work."""
    rng = np.random.default_rng(5)
    Q, K, V = rng.standard_normal((3, 2, 90, 6))
    rest = Uniform(256)
    keys = KeyIndices(np.arange(90)) | SortLSH(8)
    out = sketchla.approx_attention(Q, K, V, keys=keys, rest=rest, rng=0)
    np.testing.assert_allclose(out, dense_attention(Q, K, V), atol=1e-12)
    per_head = np.stack([np.arange(90), np.arange(90)[::-1]])
    keys = KeyIndices(per_head) | SortLSH(8)
    out = sketchla.approx_attention(Q, K, V, keys=keys, rest=rest, rng=0)
    np.testing.assert_allclose(out, dense_attention(Q, K, V), atol=1e-12)


# ------------------------------------------------------------------------------------------
# spectral accuracy on the synthetic instances
# ------------------------------------------------------------------------------------------
class Reference:
    """Exact Att and the denominator ||softmax||_op ||V||_op of the spectral ratio (dense)."""

    def __init__(self, Q, K, V):
        P = softmax(Q @ K.T / np.sqrt(Q.shape[1]), axis=1)
        self.att = P @ V
        self.den = svds(P, k=1, return_singular_vectors=False)[0] * np.linalg.norm(V, 2)

    def ratio(self, approx):
        return np.linalg.norm(self.att - approx, 2) / self.den


#: spectral ratio ||Att - approx||_op / (||softmax||_op ||V||_op), instance seed 0, solver
#: seed 0, d = 64. Measured at n = 1024 / 4096 (defaults b = m = 256, 7 bits):
#: flat 0.20 / 0.16, planted 0.25 / 0.26, sink 0.16 / 0.10, large_norm 0.17 / 0.15.
#: Bounds ~1.3x the measurements. The paper's eps is not reached at these sizes on planted
#: (LSH misses ~80% of the needles: their mass is sampled).
DEFAULT_BOUND = {"flat": 0.27, "planted": 0.34, "sink": 0.22, "large_norm": 0.22}
#: levers of design.md §3, measured: global key 0 (the sink) -> 0.019 / 0.011; the top 1%
#: keys by norm on large_norm -> 0.029 / 0.012
LEVERS = {"sink": ("KeyIndices([0])", 0.04), "large_norm": ("TopNorm(n // 100)", 0.05)}


@pytest.mark.parametrize("n", [1024, 4096])
@pytest.mark.parametrize("kind", ["flat", "planted", "sink", "large_norm"])
def test_spectral_ratio_bounded_and_decreasing_in_sample_size(kind, n, capsys):
    Q, K, V = attention_instance(kind, n, 64, rng=0)
    ref = Reference(Q, K, V)
    ratios = {
        m: ref.ratio(sketchla.hyper_attention(Q, K, V, sample_size=m, rng=0))
        for m in (64, 256, 1024)
    }
    line = ", ".join(f"m={m}: {r:.3f}" for m, r in ratios.items())
    if kind in LEVERS:
        lever_name, bound = LEVERS[kind]
        G = KeyIndices([0]) if kind == "sink" else TopNorm(n // 100)
        approx = sketchla.approx_attention(
            Q, K, V, keys=G | SortLSH(256, 7), rest=Uniform(256), rng=0
        )
        lever = ref.ratio(approx)
        line += f"; with {lever_name}: {lever:.3f}"
        assert lever <= bound
    if n == 1024:  # causal: recursion to depth 2 (two approximate levels)
        causal_ref = dense_attention(Q, K, V, causal=True)
        causal = sketchla.hyper_attention(Q, K, V, causal=True, min_seq_len=n // 4, rng=0)
        causal_ratio = np.linalg.norm(causal_ref - causal, 2) / ref.den
        line += f"; causal (min_seq_len n/4): {causal_ratio:.3f} (non-causal denominator)"
        assert causal_ratio <= 0.2  # measured 0.066 - 0.149
    with capsys.disabled():
        print(f"\n  hyper_attention {kind} n={n}: {line}")
    assert ratios[256] <= DEFAULT_BOUND[kind]
    # decreasing in m over fixed seeds (deterministic; measured smallest gap 0.006 on
    # large_norm at n = 4096, where the error is dominated by unsampled large-norm keys)
    assert ratios[1024] < ratios[64]


def test_dense_ratio_agrees_with_spectral_error():
    Q, K, V = attention_instance("planted", 1024, 64, rng=0)
    approx = sketchla.hyper_attention(Q, K, V, rng=0)
    ratio = sketchla.spectral_error(Q, K, V, approx)
    assert ratio == pytest.approx(Reference(Q, K, V).ratio(approx), rel=1e-4)


def test_bad_input():
    Q = K = V = np.ones((8, 4))
    with pytest.raises(ValueError, match="block_size"):
        sketchla.hyper_attention(Q, K, V, block_size=0)
    with pytest.raises(ValueError, match="sample_size"):
        sketchla.hyper_attention(Q, K, V, sample_size=-1)
    with pytest.raises(ValueError, match="n_bits"):
        sketchla.hyper_attention(Q, K, V, n_bits=65)
    with pytest.raises(ValueError, match="causal"):
        sketchla.hyper_attention(np.ones((9, 4)), K, V, causal=True)
    bad = np.ones((8, 4))
    bad[2, 2] = np.nan
    with pytest.raises(ValueError, match="K contains NaN"):
        sketchla.hyper_attention(Q, bad, V)
    with pytest.raises(ValueError, match="V"):
        sketchla.hyper_attention(Q, K, np.ones((7, 4)))
    with pytest.raises(ValueError, match="K"):
        sketchla.hyper_attention(Q, np.ones((8, 5)), V)
    with pytest.raises(ValueError, match="weights"):
        sketchla.approx_attention(Q, K, V, keys=SortLSH(), rest=Importance(256, weights="leverage"))
    with pytest.raises(ValueError, match="indices"):
        sketchla.approx_attention(Q, K, V, keys=KeyIndices([8]) | SortLSH(), rest=Uniform())
    with pytest.raises(ValueError, match="indices"):
        sketchla.approx_attention(
            Q[None], K[None], V[None], keys=KeyIndices(np.zeros((2, 3), int)) | SortLSH()
        )
    with pytest.raises(TypeError, match="return_lse"):
        sketchla.hyper_attention(Q, K, V, return_lse=1)


# ------------------------------------------------------------------------------------------
# multi-round hashing: keys=MultiRoundLSH(...), rest=Uniform(m, replace=False)
# ------------------------------------------------------------------------------------------
@given(qkv(), st.integers(1, 4), st.integers(0, 2**16), st.booleans())
def test_multiround_exact_when_windows_or_samples_cover_every_key(QKV, rounds, seed, windows):
    Q, K, V = QKV
    n_k = K.shape[-2]
    b, m = (n_k, 256) if windows else (2, n_k)
    out, lse = sketchla.approx_attention(
        Q,
        K,
        V,
        keys=MultiRoundLSH(b, rounds),
        rest=Uniform(m, replace=False),
        causal_scheme="halving",
        rng=seed,
        return_lse=True,
    )
    close(out, dense_attention(Q, K, V), Q.dtype)
    scale = 1 / np.sqrt(Q.shape[-1])
    close(lse, exact_lse(scale * Q, K), Q.dtype)


@given(qkv(max_n=300, self_attention=True), st.integers(1, 40), st.booleans())
def test_multiround_causal_exact_when_every_quadrant_is(QKV, min_seq_len, with_globals):
    Q, K, V = QKV
    keys = MultiRoundLSH(2, 32)
    if with_globals:
        keys = TopNorm(2) | keys
    out = sketchla.approx_attention(
        Q,
        K,
        V,
        keys=keys,
        rest=Uniform(10**6, replace=False),
        causal=True,
        causal_scheme="halving",
        min_seq_len=min_seq_len,
        rng=0,
    )
    close(out, dense_attention(Q, K, V, causal=True), Q.dtype)


@given(qkv(max_n=150), st.integers(1, 20), st.integers(0, 64), st.integers(0, 2**16))
def test_multiround_rows_are_convex_combinations_of_values(QKV, block_size, m, seed):
    Q, K, V = QKV
    out = sketchla.approx_attention(
        Q, K, V, keys=MultiRoundLSH(block_size, 3), rest=Uniform(m, replace=False), rng=seed
    )
    tol = 1e-4 if Q.dtype == np.float32 else 1e-10
    span = np.abs(V).max() + 1
    assert np.all(out <= V.max(axis=-2, keepdims=True) + tol * span)
    assert np.all(out >= V.min(axis=-2, keepdims=True) - tol * span)


def test_multiround_global_keys_and_causality():
    """Global keys are exact and never sampled (all keys global: exact); the causal output of
    the first rows never depends on later keys or values."""
    rng = np.random.default_rng(2)
    Q, K, V = rng.standard_normal((3, 600, 8))
    out = sketchla.approx_attention(
        Q,
        K,
        V,
        keys=KeyIndices(np.arange(600)) | MultiRoundLSH(4, 32),
        rest=Uniform(256, replace=False),
        rng=0,
    )
    close(out, dense_attention(Q, K, V), np.float64)
    kw = {
        "causal": True,
        "causal_scheme": "halving",
        "min_seq_len": 100,
        "keys": TopNorm(4) | MultiRoundLSH(16, 32),
        "rest": Uniform(256, replace=False),
        "rng": 0,
    }
    a = sketchla.approx_attention(Q, K, V, **kw)
    K2, V2 = K.copy(), V.copy()
    K2[300:] *= 3
    V2[300:] = -V2[300:]
    b = sketchla.approx_attention(Q, K2, V2, **kw)
    np.testing.assert_array_equal(a[:300], b[:300])


def test_multiround_bad_input():
    Q = K = V = np.ones((8, 4))
    for make, name in (
        (lambda: MultiRoundLSH(n_rounds=0), "n_rounds"),
        (lambda: MultiRoundLSH(n_bits=25), "n_bits"),
    ):
        with pytest.raises(ValueError, match=name):
            sketchla.approx_attention(Q, K, V, keys=make(), rest=Uniform(256, replace=False))
    for rest in (Importance(256, weights="vnorm"), Uniform(256, replace=False, shared=True)):
        with pytest.raises(ValueError, match="rest"):
            sketchla.approx_attention(Q, K, V, keys=MultiRoundLSH(), rest=rest)
    # one round of sortLSH blocks and multi-round windows do not combine
    with pytest.raises(ValueError, match="keys"):
        sketchla.approx_attention(Q, K, V, keys=SortLSH() | MultiRoundLSH(), rest=None)
    # the removed flags are rejected, not ignored
    with pytest.raises(TypeError, match="n_rounds"):
        sketchla.hyper_attention(Q, K, V, n_rounds=3)
    with pytest.raises(TypeError, match="heavy"):
        sketchla.hyper_attention(Q, K, V, heavy=None)
