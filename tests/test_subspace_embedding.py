"""Subspace embedding: all singular values of S U lie in [1 - eps, 1 + eps] for an orthonormal
basis U of a tall A, at the sketch sizes theory asks for, over a fixed set of 20 seeds.

Sizes and tolerated failures (n = 8192, d = 8):

* Gaussian, m = 200: Davidson-Szarek, sigma(S U) in [1 - sqrt(d/m) - t/sqrt(m),
  1 + sqrt(d/m) + t/sqrt(m)] w.p. >= 1 - 2 exp(-t^2/2); t = 3 gives eps = 0.412 <= 0.5 with
  per-seed failure p <= 0.0222. Tolerate 2 failures of 20: a correct sketch exceeds that with
  probability P[Bin(20, 0.0222) >= 3] < 0.9%.
* SRHT, m = 4 (sqrt(d) + sqrt(8 log(d n)))^2 log(d) (Tropp 2011, Thm 3.1): sigma in
  [0.40, 1.48] except w.p. O(1/d); we test [1 - 0.6, 1 + 0.6] and tolerate 3 failures of 20.
* CountSketch, m = (d^2 + d) / (delta eps^2) with eps = 0.5, delta = 0.2 (Clarkson-Woodruff
  2013 / Meng-Mahoney 2013 second-moment bound): per-seed failure <= 0.2. Tolerate 9 of 20
  (P[Bin(20, 0.2) >= 10] < 0.3%).
* SparseSign, s = 8, m = 4 d log(d / delta) / eps^2 with delta = 0.1 (OSNAP, Nelson-Nguyen
  2013, whose constants are not explicit: this checks the practical size). Tolerate 2 of 20.

The coherent matrix (d identity rows among n - d rows of size 1e-4, leverage ~1 on the identity
rows) is where uniform row sampling at the same m fails on (nearly) every seed; every sketch
above must not.
"""

import numpy as np
import pytest

from sketchla.testing import make_operator

N, D, SEEDS = 8192, 8, range(20)
EPS = 0.5

CASES = {
    # kind: (m, eps tested, failures tolerated of 20)
    "gaussian": (200, EPS, 2),
    "srht": (int(np.ceil(4 * (np.sqrt(D) + np.sqrt(8 * np.log(D * N))) ** 2 * np.log(D))), 0.6, 3),
    "countsketch": (int(np.ceil((D * D + D) / (0.2 * EPS**2))), EPS, 9),
    "sparse_sign": (int(np.ceil(4 * D * np.log(D / 0.1) / EPS**2)), EPS, 2),
}


def _basis(A):
    return np.linalg.qr(A)[0]


def random_tall():
    return _basis(np.random.default_rng(0).standard_normal((N, D)))


def coherent():
    A = np.vstack([np.eye(D), 1e-4 * np.random.default_rng(1).standard_normal((N - D, D))])
    return _basis(A)


def distortion(SU):
    s = np.linalg.svd(SU, compute_uv=False)
    return max(s.max() - 1.0, 1.0 - s.min())


def make(kind, m, seed):
    return make_operator(kind, m, N, rng=seed, nnz_per_col=8)


@pytest.mark.parametrize("matrix", [random_tall, coherent], ids=["random", "coherent"])
@pytest.mark.parametrize("kind", list(CASES))
def test_subspace_embedding(kind, matrix):
    m, eps, tolerated = CASES[kind]
    U = matrix()
    failures = sum(distortion(make(kind, m, seed) @ U) > eps for seed in SEEDS)
    assert failures <= tolerated, f"{kind}: {failures}/20 seeds distort by more than {eps}"


def test_uniform_sampling_fails_on_the_coherent_matrix():
    U = coherent()
    m = CASES["countsketch"][0]
    fails = 0
    for seed in SEEDS:
        rows = np.random.default_rng(seed).choice(N, size=m, replace=False)
        fails += distortion(np.sqrt(N / m) * U[rows]) > EPS
    assert fails >= 19  # the identity rows are each kept with prob. m/N ~ 0.18 only
