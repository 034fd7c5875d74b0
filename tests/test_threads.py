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


def _set_blas_threads(k: int) -> None:
    """Set every BLAS pool to k threads and leave OpenBLAS's control free (threadpoolctl >= 3.6
    lets one thread at a time change it)."""
    import threadpoolctl

    threadpoolctl.ThreadpoolController().limit(limits=k, user_api="blas")
    clear = getattr(
        getattr(threadpoolctl, "OpenBLASController", None), "clear_controlling_thread", None
    )
    if clear is not None:
        clear(force=True)


def _run_threads(*targets) -> None:
    """Run each target in its own thread and re-raise the first error in the caller."""
    import threading

    errors: list[BaseException] = []

    def wrap(fn):
        def run():
            try:
                fn()
            except BaseException as exc:  # re-raised below
                errors.append(exc)

        return run

    threads = [threading.Thread(target=wrap(fn)) for fn in targets]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    if errors:
        raise errors[0]


def test_serial_blas_overlapping_threads_restore_the_original_limit():
    """Issue 20, defect 2: thread A enters, thread B enters, A leaves, B leaves. With a
    per-call threadpool_limits, B saved A's "1" as its original and restored it last, leaving
    the process on one BLAS thread for good (and B ran with A's restored 2 threads meanwhile).
    The interleaving is forced with events, so the test is deterministic."""
    import threading

    before = _blas_threads()
    _set_blas_threads(2)
    try:
        a_in, b_in, a_out = threading.Event(), threading.Event(), threading.Event()

        def thread_a():
            with serial_blas(MIN_ITERATIONS):
                a_in.set()
                assert b_in.wait(10)
            a_out.set()

        def thread_b():
            assert a_in.wait(10)
            with serial_blas(MIN_ITERATIONS):
                b_in.set()
                assert a_out.wait(10)
                assert all(t == 1 for t in _blas_threads()), "B is inside: one thread"

        _run_threads(thread_a, thread_b)
        assert all(t == 2 for t in _blas_threads())
    finally:
        for k in set(before):
            _set_blas_threads(k)


def test_concurrent_online_leverage_scores_keep_blas_threads():
    """16 concurrent online_leverage_scores calls (loops under serial_blas) leave the BLAS
    thread count as it was, and each gives the answer of a lone call."""
    from concurrent.futures import ThreadPoolExecutor

    A = np.random.default_rng(1).standard_normal((300, 6))
    expected = online_leverage_scores(A, ridge=1.0, block_size=8)
    before = _blas_threads()
    _set_blas_threads(2)
    try:
        with ThreadPoolExecutor(8) as pool:
            results = list(
                pool.map(lambda _: online_leverage_scores(A, ridge=1.0, block_size=8), range(16))
            )
        assert all(t == 2 for t in _blas_threads())
    finally:
        for k in set(before):
            _set_blas_threads(k)
    for r in results:
        np.testing.assert_allclose(r, expected, rtol=1e-12, atol=1e-14)
