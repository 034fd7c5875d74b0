"""The attention engine: key selectors (each key once), light estimators (unbiased), causal
schemes, grouped-query heads, key padding, bottom-right causal alignment, and composition
errors."""

from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy.special import softmax

import sketchla
from sketchla.attention import (
    AttentionResult,
    ControlVariate,
    Importance,
    KeyIndices,
    MultiRoundLSH,
    Sinks,
    SortLSH,
    TopBlocks,
    TopNorm,
    Uniform,
    UniversalSet,
    Window,
)
from sketchla.attention._tiles import Problem
from sketchla.attention.selectors import MaskSelector


def dense(Q, K, V, allowed, scale=None):
    """Softmax attention restricted to the bool mask ``allowed (n_q, n_k)``, in float64."""
    scale = 1 / np.sqrt(Q.shape[-1]) if scale is None else scale
    S = scale * Q.astype(np.float64) @ K.astype(np.float64).T
    S = np.where(allowed, S, -np.inf)
    with np.errstate(invalid="ignore"):  # rows with nothing allowed: NaN, set to 0 below
        P = softmax(S, axis=1)
    return np.nan_to_num(P) @ V


def causal_mask(n_q, n_k):
    """Bottom-right: query i at position n_k - n_q + i."""
    return np.arange(n_k)[None, :] <= (n_k - n_q + np.arange(n_q))[:, None]


@st.composite
def problems(draw, max_n=60):
    n = draw(st.integers(2, max_n))
    d = draw(st.integers(1, 6))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    Q, K, V = (rng.standard_normal((n, c)) for c in (d, d, 3))
    return Q, K, V


@given(
    problems(),
    st.booleans(),
    st.integers(0, 5),
    st.integers(1, 12),
    st.integers(1, 30),
    st.integers(1, 64),
    st.integers(0, 2**16),
)
def test_a_union_counts_each_key_once(QKV, causal, n_sinks, window, block, tile, seed):
    """Sinks | Window | SortLSH | KeyIndices without samples equals softmax attention over the
    union of their key sets, built by brute force: a key in several sets counts once."""
    Q, K, V = QKV
    n = Q.shape[0]
    idx = np.arange(0, n, 7)
    lsh = SortLSH(block, n_bits=3)
    keys = Sinks(n_sinks) | Window(window) | lsh | KeyIndices(idx)
    out = sketchla.approx_attention(Q, K, V, keys=keys, causal=causal, rng=seed, tile=tile)
    qs = Q[None] * (1 / np.sqrt(Q.shape[1]))
    sel = lsh.bind(Problem(qs, K[None], None, False), np.random.SeedSequence(seed))
    member = sel.query_block[0][:, None] == sel.key_block[0][None, :]
    lag = np.arange(n)[:, None] - np.arange(n)[None, :]
    band = (lag >= 0) & (lag < window) if causal else np.abs(lag) < window
    union = member | band
    union[:, :n_sinks] = True
    union[:, idx] = True
    if causal:
        union &= causal_mask(n, n)
    np.testing.assert_allclose(out, dense(Q, K, V, union), rtol=1e-10, atol=1e-12)


@given(problems(), st.booleans(), st.integers(1, 70), st.sampled_from(["blocks", "halving"]))
def test_every_key_selected_is_exact_attention(QKV, causal, tile, scheme):
    Q, K, V = QKV
    n = Q.shape[0]
    kw = {"causal": causal, "tile": tile, "causal_scheme": scheme, "min_seq_len": 7}
    ref = sketchla.exact_attention(Q, K, V, causal=causal)
    for keys in (Window(n), SortLSH(n), Sinks(n)):
        out = sketchla.approx_attention(Q, K, V, keys=keys, **kw)
        np.testing.assert_allclose(out, ref, rtol=1e-10, atol=1e-12)
    # samples without replacement that cover every key are exact too
    out = sketchla.approx_attention(
        Q, K, V, keys=Window(2), rest=Uniform(n, replace=False), rng=1, **kw
    )
    np.testing.assert_allclose(out, ref, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize(
    ("keys", "rest"),
    [
        (Window(4), Uniform(8)),
        (Sinks(2) | Window(4), Uniform(8, replace=False)),
        (Window(4), Importance(8, weights="vnorm")),
    ],
)
def test_block_causal_samples_are_unbiased(keys, rest):
    """E[numerator] and E[denominator] of every row equal the exact ones (400 seeds): each
    entry's mean lies within 6 standard errors (Gaussian tail: failure probability < 1e-6 over
    the 48 x 4 entries tested)."""
    rng = np.random.default_rng(3)
    n = 48
    Q, K, V = rng.standard_normal((3, n, 4)) * 0.7
    ref, ref_lse = sketchla.exact_attention(Q, K, V, causal=True, return_lse=True)
    ref_num = np.exp(ref_lse)[:, None] * np.c_[ref, np.ones(n)]
    ests = []
    for s in range(400):
        out, lse = sketchla.approx_attention(
            Q, K, V, keys=keys, rest=rest, causal=True, tile=8, rng=s, return_lse=True
        )
        ests.append(np.exp(lse)[:, None] * np.c_[out, np.ones(n)])
    ests = np.array(ests)
    mean, se = ests.mean(axis=0), ests.std(axis=0, ddof=1) / np.sqrt(len(ests))
    z = np.abs(mean - ref_num) / np.maximum(se, 1e-12 * np.abs(ref_num))
    assert z.max() < 6, f"largest z-score {z.max():.2f}"


def test_causal_output_never_depends_on_future_keys():
    rng = np.random.default_rng(0)
    Q, K, V = rng.standard_normal((3, 300, 8))
    kw = {
        "keys": Sinks(4) | Window(16) | SortLSH(32) | UniversalSet(eps=0.05),
        "rest": Uniform(16),
        "causal": True,
        "rng": 5,
        "tile": 32,
    }
    out = sketchla.approx_attention(Q, K, V, **kw)
    K2, V2 = K.copy(), V.copy()
    K2[200:] = 9 * rng.standard_normal(K2[200:].shape)
    V2[200:] = 9 * rng.standard_normal(V2[200:].shape)
    out2 = sketchla.approx_attention(Q, K2, V2, **kw)
    # sortLSH hashes every key, so the rows of block-mates of later keys may change; the key
    # masks, window and samples never look ahead: compare without the sortLSH blocks
    kw["keys"] = Sinks(4) | Window(16) | UniversalSet(eps=0.05)
    a = sketchla.approx_attention(Q, K, V, **kw)
    b = sketchla.approx_attention(Q, K2, V2, **kw)
    np.testing.assert_array_equal(a[:200], b[:200])
    assert out.shape == out2.shape


SOLVERS = {
    "exact": lambda Q, K, V: sketchla.exact_attention(Q, K, V, causal=True),
    "hyper": lambda Q, K, V: sketchla.hyper_attention(Q, K, V, block_size=16, sample_size=8, rng=0),
    "hyper causal": lambda Q, K, V: sketchla.hyper_attention(
        Q, K, V, block_size=16, sample_size=8, causal=True, min_seq_len=16, rng=0
    ),
    "lev": lambda Q, K, V: sketchla.lev_attention(Q, K, V, eps=0.05, local_window=4, causal=True),
    "engine": lambda Q, K, V: sketchla.approx_attention(
        Q, K, V, keys=Sinks(2) | Window(4) | SortLSH(16) | TopNorm(2), rest=Uniform(8), rng=0
    ),
    "multiround": lambda Q, K, V: sketchla.approx_attention(
        Q, K, V, keys=MultiRoundLSH(4, 3), rest=Uniform(8, replace=False), rng=0
    ),
    "spectral_error": lambda Q, K, V: np.array(
        sketchla.spectral_error(Q, K, V, 0.5 * sketchla.exact_attention(Q, K, V))
    ),
}


@pytest.mark.parametrize("solver", sorted(SOLVERS))
def test_grouped_query_heads_equal_repeated_kv(solver):
    """K/V with H_kv heads shared by groups of H / H_kv query heads, as torch SDPA's
    enable_gqa=True: the same output as K/V repeated per query head."""
    rng = np.random.default_rng(1)
    Q = rng.standard_normal((2, 6, 64, 8))
    K, V = rng.standard_normal((2, 2, 2, 64, 8))
    rep = [np.repeat(X, 3, axis=1) for X in (K, V)]
    np.testing.assert_array_equal(SOLVERS[solver](Q, K, V), SOLVERS[solver](Q, *rep))


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize(
    "solve",
    [
        lambda Q, K, V, **kw: sketchla.exact_attention(Q, K, V, **kw),
        lambda Q, K, V, **kw: sketchla.approx_attention(Q, K, V, keys=Window(100), **kw),
        lambda Q, K, V, **kw: sketchla.approx_attention(
            Q, K, V, keys=Sinks(3) | Window(4), rest=Uniform(100, replace=False), rng=0, **kw
        ),
        lambda Q, K, V, **kw: sketchla.lev_attention(Q, K, V, eps=1e-12, **kw),
        lambda Q, K, V, **kw: sketchla.hyper_attention(
            Q, K, V, block_size=100, min_seq_len=8, rng=0, **kw
        ),
    ],
    ids=["exact", "window", "samples", "lev", "hyper"],
)
def test_a_padded_batch_equals_its_sequences_one_by_one(solve, causal):
    """Left padding (decoding) on sequence 0, right padding on sequence 1: padded keys never
    enter a softmax, so the real queries get their unpadded outputs."""
    rng = np.random.default_rng(2)
    n = 70
    Q, K, V = rng.standard_normal((3, 2, 2, n, 8))
    pad = np.zeros((2, n), dtype=bool)
    pad[0, :15] = True
    pad[1, 50:] = True
    out = solve(Q, K, V, key_padding_mask=pad, causal=causal)
    for b, real in ((0, slice(15, n)), (1, slice(0, 50))):
        q = Q[b][:, real] if causal else Q[b]
        ref = solve(q, K[b][:, real], V[b][:, real], causal=causal)
        got = out[b][:, real] if causal else out[b]
        np.testing.assert_allclose(got, ref, rtol=1e-10, atol=1e-12)


def test_sinks_are_the_first_real_keys():
    rng = np.random.default_rng(4)
    Q, K, V = rng.standard_normal((3, 40, 4))
    pad = np.zeros(40, dtype=bool)
    pad[:10] = True
    out = sketchla.approx_attention(Q, K, V, keys=Sinks(3), key_padding_mask=pad)
    allowed = np.zeros((40, 40), dtype=bool)
    allowed[:, 10:13] = True
    np.testing.assert_allclose(out, dense(Q, K, V, allowed), rtol=1e-10)


@pytest.mark.parametrize(
    "keys",
    [Window(300), Sinks(2) | Window(3) | SortLSH(500), UniversalSet(k=300)],
    ids=["window", "union", "universal"],
)
def test_bottom_right_causal_equals_the_last_rows_of_the_full_problem(keys):
    """KV-cache decoding: n_q < n_k queries sit at the last positions."""
    rng = np.random.default_rng(5)
    Q, K, V = rng.standard_normal((3, 2, 120, 8))
    full = sketchla.exact_attention(Q, K, V, causal=True)
    for n_q in (1, 17):
        last = Q[:, -n_q:]
        np.testing.assert_allclose(
            sketchla.exact_attention(last, K, V, causal=True), full[:, -n_q:], rtol=1e-10
        )
        out = sketchla.approx_attention(last, K, V, keys=keys, causal=True, tile=8)
        np.testing.assert_allclose(out, full[:, -n_q:], rtol=1e-10, atol=1e-12)


def test_attn_mask_matches_dense_and_masked_rows_are_zero():
    rng = np.random.default_rng(6)
    Q, K, V = rng.standard_normal((3, 2, 30, 4))
    allowed = rng.random((30, 30)) < 0.5
    allowed[3] = False  # a row with nothing to attend
    out, lse = sketchla.exact_attention(
        Q, K, V, attn_mask=allowed, block_q=7, block_k=5, return_lse=True
    )
    for h in range(2):
        np.testing.assert_allclose(out[h], dense(Q[h], K[h], V[h], allowed), atol=1e-12)
    assert np.all(out[:, 3] == 0) and np.all(lse[:, 3] == -np.inf)
    bias = rng.standard_normal((2, 30, 30))
    out = sketchla.exact_attention(Q, K, V, attn_mask=bias, block_k=8)
    S = Q @ K.swapaxes(-1, -2) / 2 + bias
    np.testing.assert_allclose(out, softmax(S, axis=-1) @ V, rtol=1e-10)


def test_results_are_typed_and_keyword_only():
    rng = np.random.default_rng(7)
    Q, K, V = rng.standard_normal((3, 50, 4))
    res = sketchla.approx_attention(Q, K, V, keys=Window(8), return_lse=True)
    assert isinstance(res, AttentionResult) and res.out.shape == (50, 4) and res.lse.shape == (50,)
    assert isinstance(sketchla.hyper_attention(Q, K, V, return_lse=True, rng=0), AttentionResult)
    rows = sketchla.approx_rowsums(Q, K, return_stderr=True, rng=0)
    assert rows.log_d.shape == rows.stderr.shape == (50,)
    with pytest.raises(TypeError):
        sketchla.hyper_attention(Q, K, V, True)  # causal is keyword-only
    with pytest.raises(TypeError):
        sketchla.exact_attention(Q, K, V, True)


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"keys": MultiRoundLSH() | Window(4), "rest": None}, ValueError, "keys"),
        ({"keys": MultiRoundLSH(), "rest": Uniform(8)}, ValueError, "rest"),
        ({"keys": SortLSH(), "rest": ControlVariate(8)}, ValueError, "rest"),
        ({"keys": "window", "rest": None}, TypeError, "keys"),
        ({"keys": Window(4), "rest": 8}, TypeError, "rest"),
        ({"keys": TopNorm(4), "rest": None, "causal": True}, ValueError, "TopNorm"),
        ({"keys": UniversalSet(k=4), "rest": None, "causal": True}, ValueError, "causal"),
        ({"keys": Window(4), "rest": Uniform(4, shared=True), "causal": True}, ValueError, "rest"),
        ({"keys": Window(4), "rest": None, "causal_scheme": "recursive"}, ValueError, "scheme"),
        ({"keys": Window(4), "rest": None, "tile": 0}, ValueError, "tile"),
        ({"keys": Window(4), "rest": None, "key_padding_mask": np.ones(3)}, TypeError, "bool"),
        (
            {"keys": Window(4), "rest": None, "key_padding_mask": np.ones(3, bool)},
            ValueError,
            "n_k",
        ),
    ],
)
def test_invalid_compositions_name_the_argument(kwargs, exc, match):
    Q = K = V = np.ones((16, 4))
    with pytest.raises(exc, match=match):
        sketchla.approx_attention(Q, K, V, **kwargs)


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: Window(0), "size"),
        (lambda: Sinks(-1), "k"),
        (lambda: SortLSH(block_size=0), "block_size"),
        (lambda: SortLSH(n_bits=65), "n_bits"),
        (lambda: MultiRoundLSH(n_rounds=0), "n_rounds"),
        (lambda: UniversalSet(), "exactly one"),
        (lambda: KeyIndices([0.5]), "indices"),
        (lambda: Uniform(-1), "sample_size"),
        (lambda: Importance(8, weights="magic"), "weights"),
        (lambda: Importance(8, weights=[-1.0, 2.0]), "weights"),
    ],
)
def test_selector_and_estimator_parameters_are_checked(make, match):
    with pytest.raises((ValueError, TypeError), match=match):
        make()


def test_the_transposed_layout_warns():
    """(batch, n, heads, d) -- the Hugging Face / flash-attn layout -- looks like many heads
    and few positions: a warning names the layout instead of a silent wrong answer."""
    rng = np.random.default_rng(8)
    Q, K, V = rng.standard_normal((3, 1, 64, 4, 8))
    with pytest.warns(UserWarning, match="batch, n, heads, d"):
        sketchla.exact_attention(Q, K, V)


@dataclass(frozen=True)
class EveryKth(MaskSelector):
    """A new key selector is one small class: every k-th key."""

    k: int = 5

    def mask(self, prob, rng):
        mask = np.zeros((prob.B, prob.n_k), dtype=bool)
        mask[:, (np.arange(prob.n_k) + prob.k_start) % self.k == 0] = True
        return mask


def test_a_new_selector_is_one_small_class():
    rng = np.random.default_rng(9)
    Q, K, V = rng.standard_normal((3, 60, 4))
    for causal in (False, True):
        out = sketchla.approx_attention(Q, K, V, keys=EveryKth(5) | Window(3), causal=causal)
        lag = np.arange(60)[:, None] - np.arange(60)[None, :]
        allowed = ((lag >= 0) & (lag < 3)) if causal else np.abs(lag) < 3
        allowed |= (np.arange(60) % 5 == 0)[None, :]
        if causal:
            allowed &= lag >= 0
        np.testing.assert_allclose(out, dense(Q, K, V, allowed), rtol=1e-10)


def test_polynomial_kernel_through_the_engine_matches_dense():
    rng = np.random.default_rng(10)
    Q, K, V = rng.standard_normal((3, 40, 5))
    out = sketchla.lev_attention(Q, K, V, k=40, kernel=("poly", 3))
    W = np.abs(Q @ K.T) ** 3
    np.testing.assert_allclose(out, (W / W.sum(axis=1, keepdims=True)) @ V, rtol=1e-10)


@given(problems(), st.booleans(), st.integers(1, 9), st.integers(1, 5), st.integers(1, 20))
def test_top_blocks_attend_the_chosen_blocks_once(QKV, causal, p, n_blocks, r):
    """TopBlocks | Window equals softmax attention over the union of each tile's chosen blocks
    and the window (brute force from the selection), and all blocks is exact attention."""
    Q, K, V = QKV
    n = Q.shape[0]
    sel = TopBlocks(p, n_blocks, r)
    out = sketchla.approx_attention(Q, K, V, keys=sel | Window(2), causal=causal)
    qs = Q[None] / np.sqrt(Q.shape[1])
    chosen = sel.bind(Problem(qs, K[None], None, causal), np.random.SeedSequence(0))
    blocks = chosen.member_blocks[0][np.arange(n) // min(r, n)]  # (n_q, n_key_blocks)
    lag = np.arange(n)[:, None] - np.arange(n)[None, :]
    allowed = blocks[:, np.arange(n) // p] | (
        ((lag >= 0) & (lag < 2)) if causal else (abs(lag) < 2)
    )
    if causal:
        allowed &= lag >= 0
    np.testing.assert_allclose(out, dense(Q, K, V, allowed), rtol=1e-10, atol=1e-12)
    every = sketchla.approx_attention(Q, K, V, keys=TopBlocks(p, n, r), causal=causal)
    np.testing.assert_allclose(every, sketchla.exact_attention(Q, K, V, causal=causal), rtol=1e-10)


def test_top_blocks_find_the_block_of_a_needle():
    """A key aligned with every query and far larger than the rest: its block has the
    largest bound for every tile, and is attended."""
    rng = np.random.default_rng(11)
    Q, K = rng.standard_normal((2, 512, 16))
    Q[:, 0] = np.abs(Q[:, 0]) + 3.0
    K[300, 0] = 40.0
    chosen = TopBlocks(32, 1, 64).bind(
        Problem(Q[None] / 4, K[None], None, False), np.random.SeedSequence(0)
    )
    assert np.all(chosen.chosen[0, :, 0] == 300 // 32)
