"""BLAS threading for loops of small dense kernels.

A loop of many small factorisations (a 256 x 256 Cholesky, a 64 x 64 triangular-pentagonal
QR) gains nothing from a multi-threaded BLAS, and on a loaded machine it loses a lot: OpenBLAS
threads spin-wait for each other, and when another process holds a core one call can stall
for many times its own work. Measured on the 2-core development machine with another job
running: ``prefix_leverage_scores`` on 32768 x 64 took 0.30 s with one BLAS thread and 3.8-27 s
with two. Such loops run under :func:`serial_blas`; large products (attention tiles, Gram
matrices of big blocks) keep every thread.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

import threadpoolctl
from threadpoolctl import ThreadpoolController

__all__ = ["serial_blas"]

#: below this many loop iterations the (millisecond) cost of switching limits is not worth it
MIN_ITERATIONS = 8

# The BLAS thread count is process-wide, so the limit is shared by every thread inside a
# serial_blas block: the first thread to enter saves the original limits and sets one thread,
# the last one to leave restores them. (threadpool_limits per call is not safe across threads:
# a thread entering while another holds the limit saves "1" as the original and restores it
# after the other has left, leaving the process on one BLAS thread for good.) threadpoolctl
# >= 3.6 also lets only one "controlling" Python thread change OpenBLAS's pthreads pool and
# silently ignores the others, so the thread that restores may not be the one that limited:
# the control is released around each change, under the lock.
_lock = threading.Lock()
_holders = 0
_limiter: object | None = None


def _release_control() -> None:
    """Let any thread change OpenBLAS's shared pool next (threadpoolctl >= 3.6)."""
    controller = getattr(threadpoolctl, "OpenBLASController", None)
    clear = getattr(controller, "clear_controlling_thread", None)
    if clear is not None:
        clear(force=True)


def _enter() -> None:
    global _holders, _limiter
    with _lock:
        if _holders == 0:  # a fresh controller sees BLAS libraries loaded since the last call
            _release_control()
            _limiter = ThreadpoolController().limit(limits=1, user_api="blas")
            _release_control()
        _holders += 1


def _leave() -> None:
    global _holders, _limiter
    with _lock:
        _holders -= 1
        if _holders == 0 and _limiter is not None:
            _release_control()
            _limiter.restore_original_limits()  # type: ignore[attr-defined]
            _release_control()
            _limiter = None


@contextlib.contextmanager
def serial_blas(iterations: int = MIN_ITERATIONS) -> Iterator[None]:
    """Limit BLAS to one thread inside the block when a loop of ``iterations`` small kernels
    follows (restored on exit; a no-op for fewer than ``MIN_ITERATIONS``).

    Thread-safe: while any thread is inside a block the process runs BLAS on one thread, and
    the original limits come back when the last one leaves, whatever the interleaving.
    """
    if iterations < MIN_ITERATIONS:
        yield
        return
    _enter()
    try:
        yield
    finally:
        _leave()
