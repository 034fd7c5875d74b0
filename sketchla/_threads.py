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
from collections.abc import Iterator

from threadpoolctl import threadpool_limits

__all__ = ["serial_blas"]

#: below this many loop iterations the (millisecond) cost of switching limits is not worth it
MIN_ITERATIONS = 8


@contextlib.contextmanager
def serial_blas(iterations: int = MIN_ITERATIONS) -> Iterator[None]:
    """Limit BLAS to one thread inside the block when a loop of ``iterations`` small kernels
    follows (restored on exit; a no-op for fewer than ``MIN_ITERATIONS``)."""
    if iterations < MIN_ITERATIONS:
        yield
        return
    with threadpool_limits(limits=1, user_api="blas"):
        yield
