"""sketchla._threads.serial_blas: one BLAS thread inside, the caller's setting restored after."""

import numpy as np
from threadpoolctl import threadpool_info

from sketchla._threads import MIN_ITERATIONS, serial_blas
from sketchla.scores import online_leverage_scores, prefix_leverage_scores


def _blas_threads() -> list[int]:
    return [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"]


def test_serial_blas_limits_and_restores():
    before = _blas_threads()
    assert before, "numpy's BLAS should be visible to threadpoolctl"
    with serial_blas(MIN_ITERATIONS):
        assert all(t == 1 for t in _blas_threads())
    assert _blas_threads() == before
    with serial_blas(MIN_ITERATIONS - 1):  # short loops: left alone
        assert _blas_threads() == before


def test_scores_do_not_change_under_serial_blas():
    """The loops that run under serial_blas give the same scores as the same calls made with
    the caller's BLAS setting for a single block (block_size >= n: no limit applied)."""
    rng = np.random.default_rng(0)
    A = rng.standard_normal((600, 12))
    blocked = prefix_leverage_scores(A, block_size=16)  # 38 blocks: serial BLAS
    whole = prefix_leverage_scores(A, block_size=600)
    np.testing.assert_allclose(blocked, whole, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(
        online_leverage_scores(A, ridge=1.0, block_size=16),
        online_leverage_scores(A, ridge=1.0, block_size=600),
        rtol=1e-9,
        atol=1e-12,
    )
