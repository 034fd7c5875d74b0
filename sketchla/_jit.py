"""numba compilation helper: every parallel kernel also has a serial twin.

A parallel region costs tens of microseconds to start, and on a small machine it can wait a
whole scheduler slice (milliseconds) for a core held by another library's spinning threads
(OpenBLAS workers busy-wait after each BLAS call). So small problems run the serial compile of
the same function. Both compiles execute the same loop iterations in the same order within each
iteration, and reductions across iterations are done in a fixed order by the kernels, so the
two give bitwise-identical results.
"""

from __future__ import annotations

import types
from collections.abc import Callable

import numba

#: inputs touching fewer bytes than this run serially
PARALLEL_MIN_BYTES = 4 * 2**20


class DualKernel:
    """``k(*args, work=bytes)`` runs the parallel compile when ``work >= PARALLEL_MIN_BYTES``,
    the serial one otherwise; ``k.parallel`` / ``k.serial`` are the numba dispatchers."""

    def __init__(self, fn: Callable) -> None:
        self.parallel = numba.njit(cache=True, parallel=True)(fn)
        self.serial = numba.njit(cache=True)(_renamed_copy(fn, "_serial"))
        self.__doc__ = fn.__doc__
        self.__name__ = fn.__name__

    def __call__(self, *args, work: int):
        kernel = self.parallel if work >= PARALLEL_MIN_BYTES else self.serial
        return kernel(*args)


def _renamed_copy(fn: Callable, suffix: str) -> Callable:
    """The same function under another qualified name. numba's on-disk cache is keyed by
    qualified name and signature, not by compile flags: without this the serial and parallel
    compiles would share cache entries, and whichever compiled first would serve both."""
    copy = types.FunctionType(
        fn.__code__, fn.__globals__, fn.__name__ + suffix, fn.__defaults__, fn.__closure__
    )
    copy.__qualname__ = fn.__qualname__ + suffix
    copy.__module__ = fn.__module__
    copy.__doc__ = fn.__doc__
    return copy


def dual_kernel(fn: Callable) -> DualKernel:
    """Decorator: compile ``fn`` (which uses ``numba.prange``) serially and in parallel."""
    return DualKernel(fn)
