"""Numerical robustness: large logits, float16 inputs, ill-conditioned and rank-deficient keys.

Already covered elsewhere (not repeated): ``exact_attention`` against a float64 log-sum-exp
reference at logits of +-1e4 (tests/test_attention_exact.py), ``approx_rowsums`` at +-1e4
(tests/test_kde.py), finiteness of ``hyper_attention`` at +-1e4 (tests/test_hyper_attention.py),
random rank-deficient keys (tests/test_scores.py).

Tolerances used here (float32 is the compute dtype of float16 input, see sketchla._backend):

* float16 input: results within ``1e-4 * max|V|`` (outputs) and ``1e-4 * max(1, |lse|)``
  (log row sums) of the float64 computation on the same (float16-rounded) values: float32
  logits of magnitude L carry an absolute error of about ``eps32 * L * d`` ~ 1e-5 here.
* logits of +-1e4 in float64: within ``1e-9`` relative of the reference.
* cond(K) = 1e12: leverage scores within ``1e-3`` of the exact ones (Householder QR perturbs the
  weakest direction of range(K) by about eps64 * cond = 2e-4).
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import logsumexp, softmax

import sketchla
from sketchla.attention import Importance, SortLSH, Uniform


def reference(Q, K, V, scale=None, causal=False):
    """float64 softmax(scale Q K^T) V and its log row sums, dense."""
    Q, K, V = (np.asarray(X, np.float64) for X in (Q, K, V))
    scale = 1 / np.sqrt(Q.shape[-1]) if scale is None else scale
    S = scale * Q @ K.T
    if causal:
        S = np.where(np.triu(np.ones(S.shape, bool), 1), -np.inf, S)
    return softmax(S, axis=1) @ V, logsumexp(S, axis=1)


def large_logit_problem(n=150, d=4, d_v=3, peak=1e4, seed=0):
    rng = np.random.default_rng(seed)
    Q, K = rng.standard_normal((n, d)), rng.standard_normal((n, d))
    Q *= peak * np.sqrt(d) / np.abs(Q @ K.T).max()
    return Q, K, rng.standard_normal((n, d_v))


# -- logits of +-1e4 ----------------------------------------------------------------------------


@pytest.mark.parametrize("causal", [False, True])
def test_lev_attention_with_logits_of_1e4(causal):
    """Softmax LevAttention over all keys (k = n) is exact attention: at logits of +-1e4 it
    must equal the float64 log-sum-exp reference; with a key subset it stays finite and is a
    convex combination of the value rows (within [min V, max V] per column)."""
    Q, K, V = large_logit_problem()
    ref, ref_lse = reference(Q, K, V, causal=causal)
    assert np.abs(ref_lse).max() > 1e3  # exp() of these overflows float64
    out = sketchla.lev_attention(Q, K, V, k=Q.shape[0], causal=causal)
    np.testing.assert_allclose(out, ref, atol=1e-9 * np.abs(V).max())
    for kernel in ("softmax", ("poly", 2)):
        sub = sketchla.lev_attention(
            Q, K, V, eps=0.05, local_window=4, kernel=kernel, causal=causal
        )
        assert np.isfinite(sub).all()
        assert np.all(sub >= V.min(axis=0) - 1e-9) and np.all(sub <= V.max(axis=0) + 1e-9)


@pytest.mark.parametrize("causal", [False, True])
def test_hyper_attention_with_logits_of_1e4_equals_reference_when_exact(causal):
    """block_size >= n (non-causal) or min_seq_len >= n (causal) makes HyperAttention exact:
    at logits of +-1e4 it must still match the float64 reference, lse included."""
    Q, K, V = large_logit_problem(n=130)
    ref, ref_lse = reference(Q, K, V, causal=causal)
    out, lse = sketchla.hyper_attention(
        Q, K, V, causal=causal, block_size=256, min_seq_len=256, return_lse=True, rng=0
    )
    np.testing.assert_allclose(lse, ref_lse, rtol=1e-9)
    np.testing.assert_allclose(out, ref, atol=1e-9 * np.abs(V).max())
    # the approximate regime (several blocks, sampling, causal recursion) stays finite
    out, lse = sketchla.hyper_attention(
        Q,
        K,
        V,
        causal=causal,
        block_size=16,
        sample_size=8,
        min_seq_len=32,
        return_lse=True,
        rng=0,
    )
    assert np.isfinite(out).all() and np.isfinite(lse).all()
    # sampled logsumexp estimates never fall below the heavy part nor far above the total
    assert np.all(lse <= ref_lse + np.log(2 * 130) + 1e-6 * np.abs(ref_lse))


def test_approx_rowsums_with_logits_of_minus_1e4_only():
    """All logits very negative (every exp() underflows to 0 in float64): the log-space
    estimate must still be finite and, in the exact regime, equal the reference."""
    Q, K, _ = large_logit_problem(n=90)
    Q = Q * 0.5
    K = np.abs(K)
    Q = -np.abs(Q)  # all logits <= 0, down to about -5e3
    S = Q @ K.T
    assert S.max() <= 0 and S.min() < -1e3
    exact = logsumexp(S, axis=1)
    est = sketchla.approx_rowsums(Q, K, keys=SortLSH(128), rng=0)
    np.testing.assert_allclose(est, exact, rtol=1e-12)
    est = sketchla.approx_rowsums(
        Q, K, keys=SortLSH(8), rest=Importance(16, weights="pilot"), rng=0
    )
    assert np.isfinite(est).all()


# -- float16 inputs -----------------------------------------------------------------------------


def half_problem(n=96, n_k=80, d=8, d_v=5, seed=1):
    rng = np.random.default_rng(seed)
    Q, K, V = (rng.standard_normal(s).astype(np.float16) for s in ((n, d), (n_k, d), (n_k, d_v)))
    return Q, K, V


@pytest.mark.parametrize("causal", [False, True])
def test_float16_attention_and_hyper_within_tolerance_of_float64(causal):
    Q, K, V = half_problem(n_k=96)
    ref, ref_lse = reference(Q, K, V, causal=causal)
    tol_out, tol_lse = (
        1e-4 * np.abs(V.astype(np.float64)).max(),
        1e-4 * max(1, np.abs(ref_lse).max()),
    )
    out, lse = sketchla.exact_attention(Q, K, V, causal=causal, return_lse=True)
    assert out.dtype == lse.dtype == np.float32
    np.testing.assert_allclose(out, ref, atol=tol_out)
    np.testing.assert_allclose(lse, ref_lse, atol=tol_lse)
    # exact regime of hyper_attention, float16 in, float32 out
    out, lse = sketchla.hyper_attention(
        Q, K, V, causal=causal, block_size=128, min_seq_len=128, return_lse=True, rng=0
    )
    assert out.dtype == lse.dtype == np.float32
    np.testing.assert_allclose(out, ref, atol=tol_out)
    np.testing.assert_allclose(lse, ref_lse, atol=tol_lse)
    # approximate regime: float32 result of the same seed close to the float64 run on the
    # same values unless a hash bit flipped (then a different but valid estimate): finite
    approx = sketchla.hyper_attention(Q, K, V, causal=causal, block_size=16, sample_size=16, rng=0)
    assert approx.dtype == np.float32 and np.isfinite(approx).all()


def test_float16_lev_attention_within_tolerance_of_float64():
    Q, K, V = half_problem(n_k=96)
    Q64, K64, V64 = (X.astype(np.float64) for X in (Q, K, V))
    tol = 1e-4 * np.abs(V64).max()
    for kwargs in (
        {"k": 96},
        {"eps": 0.05, "local_window": 3},
        {"eps": 0.1, "kernel": ("poly", 2)},
    ):
        out = sketchla.lev_attention(Q, K, V, **kwargs)
        assert out.dtype == np.float32
        np.testing.assert_allclose(out, sketchla.lev_attention(Q64, K64, V64, **kwargs), atol=tol)


def test_float16_approx_rowsums_within_tolerance_of_float64():
    Q, K, _ = half_problem()
    exact = logsumexp(Q.astype(np.float64) @ K.astype(np.float64).T, axis=1)
    est = sketchla.approx_rowsums(Q, K, keys=SortLSH(256), rng=0)  # one block: exact
    assert est.dtype == np.float32
    np.testing.assert_allclose(est, exact, atol=1e-4 * max(1, np.abs(exact).max()))
    est = sketchla.approx_rowsums(Q, K, keys=SortLSH(16), rest=Uniform(32), rng=3)
    est64 = sketchla.approx_rowsums(
        Q.astype(np.float64), K.astype(np.float64), keys=SortLSH(16), rest=Uniform(32), rng=3
    )
    assert est.dtype == np.float32 and np.isfinite(est).all()
    # same seed, same samples: equal to float32 rounding unless a SimHash bit flipped
    assert np.median(np.abs(est - est64)) < 1e-3


# -- ill-conditioned and rank-deficient keys ------------------------------------------------------


def keys_with_spectrum(n, singular_values, seed=0):
    """K = U diag(s) W^T with U (n, d) and W (d, d) orthonormal: exact leverage scores are the
    squared row norms of U[:, s > 0], known without factorising K."""
    rng = np.random.default_rng(seed)
    d = len(singular_values)
    U = np.linalg.qr(rng.standard_normal((n, d)))[0]
    W = np.linalg.qr(rng.standard_normal((d, d)))[0]
    s = np.asarray(singular_values, dtype=np.float64)
    # heavy-tailed rows, so that scores vary: scale rows of U, re-orthonormalise
    U = np.linalg.qr(U * rng.lognormal(0, 1, (n, 1)))[0]
    K = (U * s) @ W.T
    return K, np.einsum("ij,ij->i", U[:, s > 0], U[:, s > 0]), int((s > 0).sum())


SPECTRA = {
    "cond 1e12": np.logspace(0, -12, 8),
    "rank 5 of 8, cond 1e8 on the range": [1.0, 1e-2, 1e-4, 1e-6, 1e-8, 0.0, 0.0, 0.0],
    "rank 1": [3.0, 0, 0, 0, 0, 0],
}


@pytest.mark.parametrize("name", sorted(SPECTRA))
@pytest.mark.parametrize("method", ["qr", "svd"])
def test_leverage_scores_of_ill_conditioned_and_rank_deficient_keys(name, method):
    K, exact, rank = keys_with_spectrum(300, SPECTRA[name])
    for scale in (1.0, 1e-150, 1e150):  # far from 1: scores are scale-invariant
        lev = sketchla.leverage_scores(K * scale, method=method)
        assert lev.sum() == pytest.approx(rank, abs=1e-6)
        assert lev.min() >= -1e-12 and lev.max() <= 1 + 1e-12
        np.testing.assert_allclose(lev, exact, atol=1e-3)


@pytest.mark.parametrize("name", sorted(SPECTRA))
def test_universal_set_of_ill_conditioned_keys_keeps_every_heavy_key(name):
    """Witness-query property: key j's weight for the witness query q_j = W diag(1/s) U_j^T
    (K q_j = U U_j^T) is exactly its leverage score l_j, so U_eps must hold every key with
    l_j >= eps (up to the 1e-3 score accuracy above) and nothing with l_j < eps - 1e-3;
    |U_eps| <= rank / eps."""
    K, exact, rank = keys_with_spectrum(300, SPECTRA[name], seed=2)
    eps = float(np.quantile(exact, 0.9))  # about 30 keys above the threshold
    got = set(sketchla.universal_set(K, eps).tolist())
    assert {j for j in range(len(exact)) if exact[j] >= eps + 1e-3} <= got
    assert all(exact[j] >= eps - 1e-3 for j in got)
    assert len(got) <= rank / eps
