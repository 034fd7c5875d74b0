"""spectral_error against dense float64 computations (numpy.linalg.norm(., 2)) at n <= 2048."""

import tracemalloc

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy.special import logsumexp, softmax

from sketchla import exact_attention, spectral_error
from sketchla.attention import errors as errors_module
from sketchla.attention.errors import softmax_op_norm
from sketchla.testing.attention_instances import ATTENTION_INSTANCES, attention_instance


def dense_softmax(Q, K, causal=False, scale=None):
    scale = 1 / np.sqrt(Q.shape[-1]) if scale is None else scale
    S = scale * np.asarray(Q, np.float64) @ np.asarray(K, np.float64).T
    if causal:
        S = S + np.triu(np.full(S.shape, -np.inf), 1)
    return softmax(S, axis=1), logsumexp(S, axis=1), S


def dense_ratio(Q, K, V, approx, causal=False, scale=None):
    P = dense_softmax(Q, K, causal, scale)[0]
    return np.linalg.norm(P @ V - approx, 2) / (np.linalg.norm(P, 2) * np.linalg.norm(V, 2))


@pytest.mark.parametrize("kind", ATTENTION_INSTANCES)
@pytest.mark.parametrize("causal", [False, True])
def test_ratio_and_diagnostics_match_dense(kind, causal):
    Q, K, V = attention_instance(kind, 256, 16, rng=7)
    P, lse, S = dense_softmax(Q, K, causal)
    rng = np.random.default_rng(1)
    approx = P @ V + 0.05 * rng.standard_normal(V.shape)
    approx_lse = lse + 0.01 * rng.standard_normal(lse.shape)
    ratio, diag = spectral_error(
        Q, K, V, approx, causal=causal, return_diagnostics=True, approx_lse=approx_lse
    )
    assert diag["converged"]
    np.testing.assert_allclose(ratio, dense_ratio(Q, K, V, approx, causal), rtol=1e-8)
    np.testing.assert_allclose(diag["softmax_op_norm"], np.linalg.norm(P, 2), rtol=1e-8)
    assert diag["softmax_op_norm"] <= np.linalg.norm(P, 2) * (1 + 1e-12)  # a lower estimate
    assert np.linalg.norm(P, 2) <= diag["softmax_op_norm_upper"] * (1 + 1e-12)
    col_sq = (P**2).sum(axis=0)
    np.testing.assert_allclose(diag["alpha"], len(Q) * col_sq.max(), rtol=1e-10)
    np.testing.assert_allclose(diag["max_col_norm"], np.sqrt(col_sq.max()), rtol=1e-10)
    heavy = P >= 1 / np.sqrt(len(K))
    light_log_rowsum = logsumexp(np.where(heavy, -np.inf, S), axis=1)
    if np.isfinite(light_log_rowsum).all():
        np.testing.assert_allclose(
            diag["log_kappa"], light_log_rowsum.max() - light_log_rowsum.min(), rtol=1e-8
        )
    else:
        assert diag["kappa"] == np.inf
    np.testing.assert_allclose(diag["lse_max_abs_error"], np.abs(approx_lse - lse).max())
    np.testing.assert_allclose(
        diag["rowsum_max_rel_error"], np.abs(np.exp(approx_lse - lse) - 1).max()
    )


@pytest.mark.parametrize("causal", [False, True])
def test_softmax_op_norm_alone(causal):
    Q, K, _ = attention_instance("sink", 200, 8, rng=8)
    norm, converged, passes = softmax_op_norm(Q, K, causal, scale=0.3)
    P = dense_softmax(Q, K, causal, 0.3)[0]
    assert converged and passes <= 300
    np.testing.assert_allclose(norm, np.linalg.norm(P, 2), rtol=1e-8)


@pytest.mark.parametrize(("n_q", "n_k"), [(2048, 384), (384, 2048)])
def test_agrees_with_dense_at_n_2048(n_q, n_k):
    """Cross attention with 2048 queries or keys (a square 2048 x 2048 dense SVD would take
    tens of seconds on the shared 2-core machine)."""
    Q, K, V = attention_instance("planted", n_q, 32, n_k=n_k, rng=3)
    approx = exact_attention(Q, K, V) + 1e-3 * np.random.default_rng(2).standard_normal((n_q, 32))
    ratio, diag = spectral_error(Q, K, V, approx, return_diagnostics=True)
    P = dense_softmax(Q, K)[0]
    np.testing.assert_allclose(diag["softmax_op_norm"], np.linalg.norm(P, 2), rtol=1e-8)
    np.testing.assert_allclose(ratio, dense_ratio(Q, K, V, approx), rtol=1e-8)


@st.composite
def problems(draw):
    causal = draw(st.booleans())
    n_q = draw(st.integers(1, 40))
    n_k = n_q if causal else draw(st.integers(1, 40))
    d, d_v = draw(st.integers(1, 6)), draw(st.integers(1, 4))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    spread = draw(st.sampled_from([0.3, 1.0, 4.0]))
    Q = spread * rng.standard_normal((n_q, d))
    K, V = rng.standard_normal((n_k, d)), rng.standard_normal((n_k, d_v))
    approx = rng.standard_normal((n_q, d_v))
    scale = draw(st.one_of(st.none(), st.floats(0.1, 2.0)))
    return Q, K, V, approx, causal, scale


@given(problems())
def test_property_matches_dense(problem):
    Q, K, V, approx, causal, scale = problem
    ratio, diag = spectral_error(
        Q, K, V, approx, causal=causal, scale=scale, return_diagnostics=True
    )
    P = dense_softmax(Q, K, causal, scale)[0]
    np.testing.assert_allclose(ratio, dense_ratio(Q, K, V, approx, causal, scale), rtol=1e-7)
    assert diag["softmax_op_norm"] <= np.linalg.norm(P, 2) * (1 + 1e-12)
    assert np.linalg.norm(P, 2) <= diag["softmax_op_norm_upper"] * (1 + 1e-12)


def test_exact_output_has_zero_error_and_float32_inputs_work():
    Q, K, V = attention_instance("flat", 300, 8, dtype=np.float32, rng=4)
    assert spectral_error(Q, K, V, exact_attention(Q, K, V)) < 1e-6  # float32 rounding of approx
    Q, K, V = (X.astype(np.float64) for X in (Q, K, V))
    assert spectral_error(Q, K, V, exact_attention(Q, K, V), causal=False) < 1e-14


def test_batch_dims_return_the_worst_head():
    rng = np.random.default_rng(5)
    Q, K, V = rng.standard_normal((3, 2, 3, 50, 4))
    approx = exact_attention(Q, K, V) + rng.standard_normal((2, 3, 50, 4)) * np.arange(
        1, 7
    ).reshape(2, 3, 1, 1)
    ratio, diag = spectral_error(Q, K, V, approx, return_diagnostics=True)
    per_head = [
        dense_ratio(Q[i, j], K[i, j], V[i, j], approx[i, j]) for i in (0, 1) for j in (0, 1, 2)
    ]
    assert diag["ratio"].shape == (2, 3)
    np.testing.assert_allclose(diag["ratio"].ravel(), per_head, rtol=1e-8)
    np.testing.assert_allclose(ratio, max(per_head), rtol=1e-8)


def test_never_holds_the_n_by_n_matrix(monkeypatch):
    """With panels of 2^13 entries, n = 1024 peaks far below the 8 MiB of the dense matrix."""
    monkeypatch.setattr(errors_module, "PANEL_ENTRIES", 2**13)
    n = 1024
    Q, K, V = attention_instance("flat", n, 8, rng=6)
    approx = np.zeros_like(V)
    tracemalloc.start()
    try:
        spectral_error(Q, K, V, approx)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < n * n * 8 / 8, f"peak {peak / 2**20:.1f} MiB"


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"approx": np.zeros((10, 2))}, ValueError, "approx must have"),
        ({"approx": np.full((10, 3), np.nan)}, ValueError, "approx contains NaN"),
        ({"approx_lse": np.zeros(9)}, ValueError, "approx_lse must have"),
        ({"heavy_threshold": 0.0}, ValueError, "heavy_threshold"),
        ({"tol": -1.0}, ValueError, "tol"),
        ({"max_passes": 0}, ValueError, "max_passes"),
        ({"causal": True, "K": np.ones((12, 4)), "V": np.ones((12, 3))}, ValueError, "causal"),
    ],
)
def test_bad_input_names_the_argument(kwargs, exc, match):
    args = {"Q": np.ones((10, 4)), "K": np.ones((10, 4)), "V": np.ones((10, 3))}
    args["approx"] = np.zeros((10, 3))
    args.update(kwargs)
    with pytest.raises(exc, match=match):
        spectral_error(**args)
