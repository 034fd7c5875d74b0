"""The counter arithmetic of the seed contract (:mod:`sketchla.random`), compiled with numba.

These scalar kernels are the single definition of the contract on the CPU (SplitMix64 of
(key, stream, index), Lemire's multiply-shift, Box-Muller, Floyd's sampling); the GPU
kernels must reproduce them operation for operation. :mod:`sketchla.random` wraps them in
:class:`~sketchla.random.Stream`; the other kernels of this package call them inline.
"""

from __future__ import annotations

import numba
import numpy as np

from .._jit import dual_kernel

_U64 = np.uint64
_MIX_A = _U64(0xBF58476D1CE4E5B9)
_MIX_B = _U64(0x94D049BB133111EB)
_LO32 = _U64(0xFFFFFFFF)
_ONE = _U64(1)
_TWO_M53 = 2.0**-53
_TWO_PI = 2.0 * np.pi


# ---------------------------------------------------------------------------------------------
# Scalar kernels (numba). These are the single definition of the contract on the CPU; the CUDA
# version (issue 6) must reproduce them operation for operation.
# ---------------------------------------------------------------------------------------------
@numba.njit(cache=True, inline="always")
def mix64(z):
    """Stafford variant-13 64-bit finaliser (a bijection of uint64)."""
    z = (z ^ (z >> _U64(30))) * _MIX_A
    z = (z ^ (z >> _U64(27))) * _MIX_B
    return z ^ (z >> _U64(31))


@numba.njit(cache=True, inline="always")
def counter_u64(key, gamma, i):
    """The i-th uint64 of the stream (key, gamma); i is a non-negative integer."""
    return mix64(key + gamma * (_U64(i) + _ONE))


@numba.njit(cache=True, inline="always")
def mulhi64(a, b):
    """High 64 bits of the 128-bit product a * b (both uint64)."""
    a_lo = a & _LO32
    a_hi = a >> _U64(32)
    b_lo = b & _LO32
    b_hi = b >> _U64(32)
    t = a_lo * b_lo
    m1 = a_hi * b_lo + (t >> _U64(32))
    m2 = a_lo * b_hi + (m1 & _LO32)
    return a_hi * b_hi + (m1 >> _U64(32)) + (m2 >> _U64(32))


@numba.njit(cache=True, inline="always")
def counter_below(key, gamma, i, n):
    """Integer in [0, n) (int64) from the i-th output; n >= 1."""
    return np.int64(mulhi64(counter_u64(key, gamma, i), _U64(n)))


@numba.njit(cache=True, inline="always")
def counter_sign(key, gamma, i):
    """+1.0 or -1.0 from the top bit of the i-th output."""
    return 1.0 - 2.0 * np.float64(counter_u64(key, gamma, i) >> _U64(63))


@numba.njit(cache=True, inline="always")
def counter_uniform(key, gamma, i):
    """Uniform float64 in [0, 1) with 53 random bits."""
    return np.float64(counter_u64(key, gamma, i) >> _U64(11)) * _TWO_M53


@numba.njit(cache=True, inline="always")
def counter_normal(key, gamma, i):
    """Standard normal entry i (Box-Muller on the output pair (2k, 2k+1), k = i // 2)."""
    k = i // 2
    u1 = 1.0 - counter_uniform(key, gamma, 2 * k)  # in (0, 1]: log is finite
    u2 = counter_uniform(key, gamma, 2 * k + 1)
    r = np.sqrt(-2.0 * np.log(u1))
    if i % 2 == 0:
        return r * np.cos(_TWO_PI * u2)
    return r * np.sin(_TWO_PI * u2)


@numba.njit(cache=True, inline="always")
def floyd_sample_into(key, gamma, offset, k, n, out):
    """Write k distinct integers of [0, n) into out[:k] (Floyd's algorithm, draw t uses index
    offset + t). Membership is a linear scan: O(k^2), meant for small k (sparse sketches)."""
    for t in range(k):
        upper = n - k + t  # draw from [0, upper]
        r = counter_below(key, gamma, offset + t, upper + 1)
        for q in range(t):
            if out[q] == r:
                r = upper
                break
        out[t] = r


@numba.njit(cache=True)
def _floyd_sample_mask(key, gamma, k, n):
    """k distinct integers of [0, n), ascending, via Floyd's algorithm with an n-entry mask."""
    taken = np.zeros(n, dtype=np.bool_)
    for t in range(k):
        upper = n - k + t
        r = counter_below(key, gamma, t, upper + 1)
        if taken[r]:
            r = upper
        taken[r] = True
    return np.flatnonzero(taken)


@numba.njit(cache=True)
def _floyd_sample_set(key, gamma, k, n):
    """The same k integers as ``_floyd_sample_mask`` (same draws, same collision rule), with a
    hash set of the k draws instead of an n-entry mask: O(k) memory for any n < 2^63."""
    taken = set()
    out = np.empty(k, dtype=np.int64)
    for t in range(k):
        upper = n - k + t
        r = counter_below(key, gamma, t, upper + 1)
        if r in taken:
            r = upper
        taken.add(r)
        out[t] = r
    out.sort()
    return out


#: ``sample_without_replacement`` uses the n-entry mask while n <= this multiple of k (a
#: sequential byte mask is faster than hashing), the hash set above it
_MASK_RATIO = 64


# --------------------------------------------------------------------------------------------
# Vectorised helpers over index arrays (used by operators, tests and users)
# --------------------------------------------------------------------------------------------
@dual_kernel
def _u64_many(key, gamma, idx):
    out = np.empty(idx.shape[0], dtype=np.uint64)
    for t in numba.prange(idx.shape[0]):
        out[t] = counter_u64(key, gamma, idx[t])
    return out


@dual_kernel
def _below_many(key, gamma, idx, n):
    out = np.empty(idx.shape[0], dtype=np.int64)
    for t in numba.prange(idx.shape[0]):
        out[t] = counter_below(key, gamma, idx[t], n)
    return out


@dual_kernel
def _sign_many(key, gamma, idx):
    out = np.empty(idx.shape[0], dtype=np.float64)
    for t in numba.prange(idx.shape[0]):
        out[t] = counter_sign(key, gamma, idx[t])
    return out


@dual_kernel
def _uniform_many(key, gamma, idx):
    out = np.empty(idx.shape[0], dtype=np.float64)
    for t in numba.prange(idx.shape[0]):
        out[t] = counter_uniform(key, gamma, idx[t])
    return out


@dual_kernel
def _normal_many(key, gamma, idx):
    out = np.empty(idx.shape[0], dtype=np.float64)
    for t in numba.prange(idx.shape[0]):
        out[t] = counter_normal(key, gamma, idx[t])
    return out
