"""sketchla.sklearn.SketchRandomProjection: scikit-learn's estimator checks and the JL contract."""

import numpy as np
import pytest
import scipy.sparse as sp

pytest.importorskip("sklearn")

from sklearn.utils.estimator_checks import check_estimator

import sketchla
from sketchla.sklearn import SketchRandomProjection, jl_min_dim


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.SkipTestWarning")  # array-API check
@pytest.mark.parametrize(
    "estimator",
    [
        SketchRandomProjection(n_components=2, kind="gaussian", rng=0),
        SketchRandomProjection(n_components=2, kind="countsketch", rng=0),
        SketchRandomProjection(n_components=3, kind="sparse_sign", nnz_per_col=2, rng=0),
        SketchRandomProjection(n_components=1, kind="srht", rng=0),
        SketchRandomProjection(n_components=2, kind="countsketch", dense_output=False, rng=0),
    ],
    ids=["gaussian", "countsketch", "sparse_sign", "srht", "countsketch-sparse"],
)
def test_check_estimator(estimator):
    """scikit-learn's full estimator check suite (clone, get/set_params, fit idempotence with a
    fixed rng, dtypes, sparse input, feature names, pickling, ...)."""
    check_estimator(estimator)


def test_auto_components_follow_the_jl_bound():
    """n_components="auto" is the JL dimension 4 ln(n) / (eps^2/2 - eps^3/3) for the samples
    seen by fit (scikit-learn's formula, rounded up); too large for n_features is an error."""
    from sklearn.random_projection import johnson_lindenstrauss_min_dim

    for n, eps in [(100, 0.5), (1000, 0.3), (10**6, 0.1)]:
        assert jl_min_dim(n, eps) - johnson_lindenstrauss_min_dim(n, eps=eps) in (0, 1)
    X = np.random.default_rng(0).standard_normal((100, 2000))
    proj = SketchRandomProjection(eps=0.5, kind="srht", rng=0).fit(X)
    assert proj.n_components_ == jl_min_dim(100, 0.5) and proj.transform(X).shape[1] == 222
    with pytest.raises(ValueError, match="larger than n_features=2000"):
        SketchRandomProjection(eps=0.1, rng=0).fit(X)
    with pytest.raises(ValueError, match="kind must be one of"):
        SketchRandomProjection(kind="fft").fit(X)
    with pytest.raises(ValueError, match="n_components must be a positive int"):
        SketchRandomProjection(n_components=0).fit(X)


@pytest.mark.parametrize("kind", ["srht", "countsketch", "sparse_sign", "gaussian"])
def test_transform_is_x_times_s_transpose_and_preserves_distances(kind):
    """transform(X) = X S^T with S the operator seeded by rng; pairwise distances of 60 points
    are kept within the JL factor (eps = 0.5, k = jl_min_dim: the bound holds with
    probability >= 1 - 1/n; seeds fixed)."""
    rng = np.random.default_rng(1)
    X = rng.standard_normal((60, 1024))
    proj = SketchRandomProjection(eps=0.5, kind=kind, rng=3).fit(X)
    Z = proj.transform(X)
    S = proj.operator_
    np.testing.assert_allclose(Z, (S @ X.T).T, rtol=1e-12)
    i, j = np.triu_indices(60, 1)
    ratio = ((Z[i] - Z[j]) ** 2).sum(1) / ((X[i] - X[j]) ** 2).sum(1)
    assert 0.5 < ratio.min() and ratio.max() < 1.5
    # same rng, same projection; a Generator is accepted
    np.testing.assert_array_equal(
        SketchRandomProjection(eps=0.5, kind=kind, rng=3).fit_transform(X), Z
    )
    g = SketchRandomProjection(eps=0.5, kind=kind, rng=np.random.default_rng(5))
    assert g.fit_transform(X).shape == Z.shape


def test_sparse_input_and_sparse_output():
    """Sparse X is never densified by the hash sketches; dense_output=False gives a sparse
    result equal to the dense one."""
    X = sp.random_array((50, 3000), density=0.01, format="csr", rng=np.random.default_rng(2))
    dense = SketchRandomProjection(100, kind="countsketch", rng=0).fit_transform(X)
    sparse = SketchRandomProjection(
        100, kind="countsketch", dense_output=False, rng=0
    ).fit_transform(X)
    assert sp.issparse(sparse) and sparse.shape == (50, 100)
    np.testing.assert_allclose(sparse.toarray(), dense, rtol=1e-13, atol=1e-15)


def test_core_import_does_not_need_sklearn():
    """import sketchla does not import scikit-learn (the transformer is an optional extra)."""
    import subprocess
    import sys

    code = "import sys, sketchla; print('sklearn' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
    assert not hasattr(sketchla, "SketchRandomProjection")
