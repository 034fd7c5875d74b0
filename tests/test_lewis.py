"""Lewis weights, certified lp-sensitivity bounds, the p and causal universal sets (issue 3)."""

import numpy as np
import pytest
import scipy.optimize
from hypothesis import given, settings
from hypothesis import strategies as st

import sketchla
from sketchla.scores import prefix_leverage_scores


@st.composite
def matrices(draw, max_n=30, max_d=5):
    """(A, rank): A = B C with inner dimension r, some zero rows, heavy-tailed row norms."""
    n = draw(st.integers(1, max_n))
    d = draw(st.integers(1, max_d))
    r = draw(st.integers(0, min(n, d)))
    rng = np.random.default_rng(draw(st.integers(0, 2**32)))
    A = rng.standard_normal((n, r)) @ rng.standard_normal((r, d))
    A *= rng.lognormal(0, 1, (n, 1))
    A[rng.random(n) < draw(st.floats(0, 0.3))] = 0.0
    A *= 10.0 ** draw(st.integers(-3, 3))
    return A, np.linalg.matrix_rank(A)


def independent_fixed_point_map(A, w, p):
    """T_i(w) = (a_i^T (A^T W^{1-2/p} A)^+ a_i)^{p/2} on the nonzero rows, via numpy's pinv."""
    nz = w > 0
    M = A[nz].T @ (w[nz, None] ** (1 - 2 / p) * A[nz])
    tau = np.einsum("ij,jk,ik->i", A[nz], np.linalg.pinv(M, rcond=1e-12, hermitian=True), A[nz])
    T = np.zeros_like(w)
    T[nz] = np.maximum(tau, 0) ** (p / 2)
    return T


# ---------------------------------------------------------------- Lewis weights


@given(matrices())
def test_lewis_weights_at_p2_are_the_leverage_scores(ar):
    A, _ = ar
    w, info = sketchla.lewis_weights(A, 2, return_info=True)
    np.testing.assert_allclose(w, sketchla.leverage_scores(A), atol=1e-12)
    assert info.converged and info.n_iter == 0


@pytest.mark.parametrize("p", [1, 1.5, 3, 4, 6])
@settings(max_examples=15)
@given(ar=matrices())
def test_lewis_weights_are_a_fixed_point_summing_to_rank(p, ar):
    A, rank = ar
    tol = 1e-10
    w, info = sketchla.lewis_weights(A, p, tol=tol, return_info=True)
    assert info.converged and info.residual <= tol
    assert np.all(w >= 0) and np.all(w <= 1 + 1e-9)
    assert np.all(w[~A.any(axis=1)] == 0)
    assert w.sum() == pytest.approx(rank, abs=1e-7 * max(rank, 1))
    # the residual is re-measured independently (numpy pinv, no code shared with ours)
    if rank:
        nz = w > 0
        T = independent_fixed_point_map(A, w, p)
        assert np.max(np.abs(T[nz] / w[nz] - 1)) <= 1e-6


@pytest.mark.parametrize("p", [0.5, 1, 3, 6])
def test_lewis_weights_are_invariant_under_column_maps_scaling_and_row_permutation(p):
    rng = np.random.default_rng(4)
    A = rng.standard_normal((60, 4)) * rng.lognormal(0, 1, (60, 1))
    G = rng.standard_normal((4, 4)) + 3 * np.eye(4)
    perm = rng.permutation(60)
    w = sketchla.lewis_weights(A, p)
    np.testing.assert_allclose(sketchla.lewis_weights(A @ G, p), w, rtol=1e-7, atol=1e-12)
    np.testing.assert_allclose(sketchla.lewis_weights(-7.5 * A, p), w, rtol=1e-7, atol=1e-12)
    np.testing.assert_allclose(sketchla.lewis_weights(A[perm], p), w[perm], rtol=1e-7)


def test_lewis_weights_report_non_convergence_honestly():
    A = np.random.default_rng(0).standard_normal((80, 5)) * np.arange(1, 81)[:, None]
    w, info = sketchla.lewis_weights(A, 6, max_iter=1, return_info=True)
    assert not info.converged and info.residual > 1e-10 and info.n_iter == 1
    T = independent_fixed_point_map(A, w, 6)
    assert np.max(np.abs(T / w - 1)) == pytest.approx(info.residual, rel=1e-6)
    assert np.max(np.abs(T - w)) == pytest.approx(info.abs_residual, rel=1e-6)


# ---------------------------------------------------------------- sensitivity bounds


def _test_matrices():
    rng = np.random.default_rng(1)
    gaussian = rng.standard_normal((25, 3))
    heavy = rng.standard_normal((25, 4)) * rng.lognormal(0, 1.5, (25, 1))
    deficient = rng.standard_normal((20, 2)) @ rng.standard_normal((2, 4))
    deficient[3] = 0.0
    return [gaussian, heavy, deficient]


def _ratio(A, x, i, p):
    y = np.abs(A @ x)
    return y[i] ** p / np.sum(y**p)


def best_ratio(A, i, p, rng, n_random=200):
    """A lower bound on s_i = sup_x |a_i.x|^p / ||Ax||_p^p: the best of random x, the leverage
    witness and a local optimisation of ||A x||_p^p over {x : a_i.x = 1} (convex for p >= 1,
    an LP at p = 1: then it is the true sensitivity). Returns (ratio, x)."""
    a = A[i]
    if not a.any():
        return 0.0, np.zeros(A.shape[1])
    n, d = A.shape
    X = rng.standard_normal((d, n_random))
    X[:, 0] = np.linalg.pinv(A.T @ A) @ a  # the leverage witness
    r = np.abs(A @ X) ** p
    r = r[i] / np.maximum(r.sum(axis=0), 1e-300)
    best, x_best = r.max(), X[:, r.argmax()]
    x0 = a / (a @ a)
    N = scipy.linalg.null_space(a[None])  # x = x0 + N z satisfies a.x = 1
    if p == 1:  # min sum t s.t. -t <= A(x0 + N z) <= t: an LP in (z, t)
        k = N.shape[1]
        AN, Ax0 = A @ N, A @ x0
        c = np.r_[np.zeros(k), np.ones(n)]
        A_ub = np.block([[AN, -np.eye(n)], [-AN, -np.eye(n)]])
        b_ub = np.r_[-Ax0, Ax0]
        res = scipy.optimize.linprog(c, A_ub=A_ub, b_ub=b_ub, bounds=(None, None))
        x = x0 + N @ res.x[:k]
    else:

        def f(z):
            y = A @ (x0 + N @ z)
            grad = np.zeros_like(y)  # |y|^p is not differentiable at 0 for p <= 1: use 0 there
            nz = y != 0
            grad[nz] = p * np.abs(y[nz]) ** (p - 1) * np.sign(y[nz])
            return np.sum(np.abs(y) ** p), N.T @ (A.T @ grad)

        z0 = N.T @ (x_best / (a @ x_best) - x0)
        x = x0 + N @ scipy.optimize.minimize(f, z0, jac=True, method="BFGS").x
    if _ratio(A, x, i, p) > best:
        best, x_best = _ratio(A, x, i, p), x
    return best, x_best


@pytest.mark.parametrize("p", [0.5, 1, 1.5, 2, 3, 4, 6])
def test_sensitivity_bounds_dominate_random_and_optimised_ratios(p):
    rng = np.random.default_rng(2)
    for A in _test_matrices():
        rank = np.linalg.matrix_rank(A)
        methods = ["lewis"] + (["lift", "best"] if p in (2, 4, 6) else [])
        bounds = {m: sketchla.sensitivity_bounds(A, p, method=m) for m in methods}
        for i in range(A.shape[0]):
            s, _ = best_ratio(A, i, p, rng)
            for m, u in bounds.items():
                assert u[i] >= s * (1 - 1e-8), (m, i, u[i], s)
        u = bounds["lewis"]
        assert np.all((u >= 0) & (u <= 1))
        # not vacuous: the totals of the Lewis bounds (rank for p <= 2, rank^{p/2} above)
        assert u.sum() <= rank ** max(1, p / 2) * (1 + 1e-6)


@pytest.mark.parametrize("p", [1, 3, 6])
def test_sensitivity_bounds_hold_for_unconverged_weights(p):
    # certified for the weights actually computed: one iteration only, still an upper bound
    rng = np.random.default_rng(3)
    A = _test_matrices()[1]
    u = sketchla.sensitivity_bounds(A, p, max_iter=1)
    for i in range(A.shape[0]):
        assert u[i] >= best_ratio(A, i, p, rng)[0] * (1 - 1e-8)


def test_p1_bound_is_close_to_the_true_sensitivity():
    # at p = 1 the LP gives the exact sensitivity; Lewis weights are within a factor ~ d
    rng = np.random.default_rng(5)
    A = _test_matrices()[0]
    u = sketchla.sensitivity_bounds(A, 1)
    s = np.array([best_ratio(A, i, 1, rng)[0] for i in range(A.shape[0])])
    assert np.all(u >= s * (1 - 1e-8)) and np.all(u <= A.shape[1] * s)


@pytest.mark.parametrize("p", [1, 3, 4])
@pytest.mark.parametrize("eps", [0.1, 0.3])
def test_every_p_heavy_entry_lies_in_the_p_universal_set(p, eps):
    rng = np.random.default_rng(6)
    for K in _test_matrices():
        U = sketchla.universal_set(K, eps, p=p)
        assert U.dtype == np.int64 and np.all(np.diff(U) > 0)
        bounds = sketchla.sensitivity_bounds(K, p)
        assert len(U) <= bounds.sum() / eps + 1e-9
        # adversarial queries (the optimised maximisers, one per key) plus random ones
        Q = [best_ratio(K, j, p, rng)[1] for j in range(K.shape[0])]
        Q = np.vstack(Q + list(rng.standard_normal((100, K.shape[1]))))
        W = np.abs(Q @ K.T) ** p
        keep = W.sum(axis=1) > 0
        W = W[keep] / W[keep].sum(axis=1, keepdims=True)
        heavy = np.unique(np.nonzero(W >= eps)[1])
        assert set(heavy.tolist()) <= set(U.tolist())


# ---------------------------------------------------------------- causal universal set


def brute_prefix_scores(K):
    return np.array(
        [sketchla.leverage_scores(K[: j + 1], method="svd")[j] for j in range(K.shape[0])]
    )


@given(matrices(max_n=40, max_d=6), st.integers(1, 20))
def test_prefix_leverage_scores_match_brute_force(ar, block):
    K, rank = ar
    c = prefix_leverage_scores(K, block_size=block)
    np.testing.assert_allclose(c, brute_prefix_scores(K), atol=1e-8)
    assert np.all((c >= 0) & (c <= 1))
    assert c.sum() >= rank - 1e-9  # each new direction scores 1


def test_prefix_scores_versus_ridge_online_scores():
    rng = np.random.default_rng(7)
    K = rng.standard_normal((50, 4))
    K[30] = 1e-3 * np.array([0, 0, 0, 1.0]) + K[:3].sum(axis=0)  # in span? no: but close
    K[:30, 3] = 0.0  # rows < 30 span only the first 3 coordinates
    c = prefix_leverage_scores(K)
    assert c[30] == 1.0  # outside the span of the rows before it
    for lam in (1e-2, 1e-6):
        x = sketchla.online_leverage_scores(K, ridge=lam)
        assert x[30] / (1 + x[30]) < c[30]  # ridge under-estimates it
    # rows inside the span: x / (1 + x) -> c as the ridge -> 0 (block_size=1: the blocked
    # Gram-Cholesky whitening loses accuracy when cond(G + lambda I) ~ 1e12)
    x = sketchla.online_leverage_scores(K, ridge=1e-10, block_size=1)
    inside = np.r_[3:30, 32:50]
    np.testing.assert_allclose(x[inside] / (1 + x[inside]), c[inside], rtol=1e-8)


def test_causal_set_is_not_bounded_by_rank_over_eps():
    # documented: keys along one direction with doubling norms each score about 3/4
    K = (2.0 ** np.arange(30))[:, None] * np.array([[1.0, 0.0]])
    c = prefix_leverage_scores(K)
    assert np.all(c[1:] >= 0.75 - 1e-12)
    assert len(sketchla.universal_set(K, 0.5, causal=True)) == 30  # > rank / eps = 2


def causal_heavy(Q, K, eps, p):
    """(t, j) with j <= t and |q_t.k_j|^p >= eps * sum_{i <= t} |q_t.k_i|^p (rows t of Q)."""
    W = np.tril(np.abs(Q @ K.T) ** p)
    tot = W.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        W = np.where(tot > 0, W / tot, 0.0)
    return np.unique(np.nonzero(W >= eps)[1])


@pytest.mark.parametrize("p", [2, 1, 4])
@settings(max_examples=20)
@given(ar=matrices(max_n=40, max_d=4), eps=st.floats(0.05, 1.0), seed=st.integers(0, 2**32))
def test_every_causal_heavy_entry_lies_in_the_causal_set(p, ar, eps, seed):
    K, _ = ar
    n, d = K.shape
    U = sketchla.universal_set(K, eps, p=p, causal=True)
    assert U.dtype == np.int64 and np.all(np.diff(U) > 0)
    if not K.any():
        assert U.size == 0
        return
    rng = np.random.default_rng(seed)
    # random queries, and at position t = j the witness (K_{<=j}^T K_{<=j})^+ k_j of key j
    Q_random = rng.standard_normal((n, d))
    Q_witness = np.vstack([np.linalg.pinv(K[: j + 1].T @ K[: j + 1]) @ K[j] for j in range(n)])
    for Q in (Q_random, Q_witness):
        assert set(causal_heavy(Q, K, eps, p).tolist()) <= set(U.tolist())
    if p == 2:  # the witness makes key j exactly c_j-heavy at t = j: the scores are tight
        c = prefix_leverage_scores(K)
        w = (Q_witness @ K.T) ** 2
        for j in np.flatnonzero(K.any(axis=1)):
            assert w[j, j] / w[j, : j + 1].sum() == pytest.approx(c[j], rel=1e-6)


# ---------------------------------------------------------------- streaming method


@given(matrices(max_n=60, max_d=5), st.floats(0.02, 1.0), st.integers(1, 25))
def test_streaming_method_equals_exact_method(ar, eps, block):
    K, rank = ar
    exact = sketchla.universal_set(K, eps)
    np.testing.assert_array_equal(
        sketchla.universal_set(K, eps, method="streaming", block_size=block), exact
    )
    merge = sketchla.universal_set(
        K, eps, method="streaming", block_size=block, streaming_mode="merge"
    )
    assert set(exact.tolist()) <= set(merge.tolist()) and len(merge) <= rank / eps + 1e-9


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "call, exc, msg",
    [
        (lambda: sketchla.lewis_weights(np.ones((4, 2)), 0.0), ValueError, "p must be"),
        (lambda: sketchla.lewis_weights(np.ones((4, 2)), -1), ValueError, "p must be"),
        (lambda: sketchla.lewis_weights(np.ones((4, 2)), np.inf), ValueError, "p must be"),
        (lambda: sketchla.lewis_weights(np.ones((4, 2)), "1"), TypeError, "p must be"),
        (lambda: sketchla.lewis_weights(np.array([[np.nan, 1.0]]), 1), ValueError, "NaN"),
        (lambda: sketchla.lewis_weights(np.ones((0, 2)), 1), ValueError, "A is empty"),
        (lambda: sketchla.lewis_weights(np.ones((4, 2)), 1, tol=0), ValueError, "tol"),
        (lambda: sketchla.sensitivity_bounds(np.ones((4, 2)), 0), ValueError, "p must be"),
        (
            lambda: sketchla.sensitivity_bounds(np.ones((4, 2)), 3, method="lift"),
            ValueError,
            "even",
        ),
        (lambda: sketchla.sensitivity_bounds(np.ones((4, 2)), 4, method="x"), ValueError, "method"),
        (lambda: sketchla.sensitivity_bounds(np.ones((0, 2)), 4), ValueError, "A is empty"),
        (lambda: sketchla.universal_set(np.ones((4, 2)), 0.0, p=3), ValueError, "eps must be"),
        (lambda: sketchla.universal_set(np.ones((4, 2)), 1.1, p=1), ValueError, "eps must be"),
        (lambda: sketchla.universal_set(np.ones((4, 2)), 0.1, p=0), ValueError, "p must be"),
        (lambda: sketchla.universal_set(np.ones((4, 2)), 0.1, p=-2), ValueError, "p must be"),
        (
            lambda: sketchla.universal_set(np.array([[np.nan, 0.0]]), 0.1, causal=True),
            ValueError,
            "K contains NaN",
        ),
        (lambda: sketchla.universal_set(np.ones((0, 2)), 0.1, p=3), ValueError, "K is empty"),
        (lambda: sketchla.universal_set(np.ones((0, 2)), 0.1, causal=True), ValueError, "empty"),
        (
            lambda: sketchla.universal_set(np.ones((4, 2)), 0.1, p=3, causal=True),
            ValueError,
            "even",
        ),
        (
            lambda: sketchla.universal_set(np.ones((4, 2)), 0.1, p=3, method="sketch"),
            ValueError,
            "p=2",
        ),
        (
            lambda: sketchla.universal_set(np.ones((4, 2)), 0.1, method="streaming", jl_dim=2),
            TypeError,
            "unexpected",
        ),
        (
            lambda: sketchla.universal_set(np.ones((4, 2)), 0.1, method="streaming", block_size=0),
            ValueError,
            "block_size",
        ),
    ],
)
def test_bad_input(call, exc, msg):
    with pytest.raises(exc, match=msg):
        call()


@pytest.mark.parametrize("p", [0.5, 1, 2, 3, 4])
@pytest.mark.parametrize("causal", [False, True])
def test_rank_zero_keys_give_an_empty_set(p, causal):
    if causal and p == 3:
        return  # not supported (tested above)
    K = np.zeros((6, 3))
    assert sketchla.universal_set(K, 0.1, p=p, causal=causal).size == 0
    assert np.all(sketchla.sensitivity_bounds(K, p) == 0)
    assert np.all(sketchla.lewis_weights(K, p) == 0)


def test_float32_in_float32_out_and_info_type():
    K = np.random.default_rng(0).standard_normal((50, 4)).astype(np.float32)
    w, info = sketchla.lewis_weights(K, 3, return_info=True)
    assert w.dtype == np.float32 and isinstance(info, sketchla.scores.LewisInfo)
    assert prefix_leverage_scores(K).dtype == np.float32
    np.testing.assert_allclose(w, sketchla.lewis_weights(K.astype(np.float64), 3), rtol=1e-6)
    u = sketchla.sensitivity_bounds(K, 3)
    assert np.all(u >= sketchla.lewis_weights(K.astype(np.float64), 3) * (1 - 1e-9))
