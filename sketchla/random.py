"""The seed contract: every random quantity is a pure function of (seed, stream, index).

Operators never store their random entries. Entry ``i`` of a random quantity (a hash bucket,
a sign, a sampled row, a Gaussian) is computed from a counter-based generator, so it is

* reproducible across calls, processes, platforms and thread counts,
* computable for any block of indices without generating the ones before it (streaming and
  distributed sketches need no stored operator), and
* implementable bit-identically on a GPU: the integer part is 64-bit multiply/xor/shift.

Construction
------------
The public keyword is ``rng=`` (SPEC 7), resolved by :func:`resolve_rng` to a SeedSequence:
an int >= 0 or a SeedSequence is used as is; a :class:`numpy.random.Generator` is mapped
deterministically (four 32-bit words drawn from it, advancing it, become the entropy of a
SeedSequence: the same generator state gives the same operator); None (the default of every
public function) draws fresh OS entropy. ``seed=`` is a deprecated alias (passing both is a
TypeError). That seed (an int >= 0, a :class:`numpy.random.SeedSequence`, or None) and a
``stream`` id (a small int naming the purpose, see ``STREAM_*``) are hashed by NumPy's
SeedSequence (``spawn_key=(..., stream)``) into a 64-bit ``key`` and an odd 64-bit ``gamma``.
The ``i``-th 64-bit output of the stream is the SplitMix64 output

    x_i = mix64(key + gamma * (i + 1))   (mod 2^64),

with Stafford's variant-13 finaliser ``mix64`` (the SplittableRandom generator of Steele,
Lea & Flood, OOPSLA 2014). ``mix64`` is a bijection, so distinct indices of one stream give
distinct outputs. Derived variates:

* integer in [0, n):   ``mulhi64(x_i, n)`` (Lemire's multiply-shift; bias <= n / 2^64),
* sign:                ``+1`` if the top bit of ``x_i`` is 0 else ``-1``,
* uniform in [0, 1):   ``(x_i >> 11) * 2^-53``,
* standard normal:     Box-Muller on the pair ``(x_{2k}, x_{2k+1})``: entry ``2k`` is the
  cosine branch, entry ``2k + 1`` the sine branch. Only this variate calls libm (log, sqrt,
  cos/sin), so on another device it agrees up to the last bits of libm, not bitwise.
* k distinct integers in [0, n): Floyd's algorithm, draw ``t`` using index ``offset + t``.
"""

from __future__ import annotations

import numbers
import os
import sys
import warnings
from dataclasses import dataclass

import numpy as np

from ._kernels.counter import (  # noqa: F401 re-exported: the kernels of the contract
    _MASK_RATIO,
    _U64,
    _below_many,
    _floyd_sample_mask,
    _floyd_sample_set,
    _normal_many,
    _sign_many,
    _u64_many,
    _uniform_many,
    counter_below,
    counter_normal,
    counter_sign,
    counter_u64,
    counter_uniform,
    floyd_sample_into,
    mix64,
    mulhi64,
)

__all__ = [
    "STREAM_AMM_SAMPLES",
    "STREAM_GAUSSIAN",
    "STREAM_HASH_BUCKETS",
    "STREAM_HASH_SIGNS",
    "STREAM_LIGHT_SAMPLES",
    "STREAM_MULTIROUND_PLANES",
    "STREAM_MULTIROUND_SAMPLES",
    "STREAM_PILOT_ROWS",
    "STREAM_SIMHASH_PLANES",
    "STREAM_SRHT_ROWS",
    "STREAM_SRHT_SIGNS",
    "UNSET",
    "RngLike",
    "SeedLike",
    "Stream",
    "as_seed_sequence",
    "child_seed",
    "external_stacklevel",
    "recorded_rng",
    "resolve_rng",
    "rng_alias",
    "rng_repr",
    "stream",
]

SeedLike = int | np.random.SeedSequence | None
#: what ``rng=`` accepts (SPEC 7): an int >= 0, a SeedSequence, a numpy Generator, or None
RngLike = int | np.random.SeedSequence | np.random.Generator | None


class _Unset:
    """Sentinel of a deprecated keyword that was not passed."""

    def __repr__(self) -> str:
        return "<unset>"


#: default of the deprecated ``seed=`` keyword (distinguishes "not passed" from None)
UNSET = _Unset()

# Stream ids: one per purpose. Never renumber (that would change every published sketch).
STREAM_GAUSSIAN = 1
STREAM_SRHT_SIGNS = 2
STREAM_SRHT_ROWS = 3
STREAM_HASH_BUCKETS = 4
STREAM_HASH_SIGNS = 5
STREAM_SIMHASH_PLANES = 8  # SimHash hyperplanes (sketchla.lsh)
STREAM_LIGHT_SAMPLES = 9  # sampled (light) key columns of ApproxD / HyperAttention
STREAM_PILOT_ROWS = 10  # pilot query rows of ApproxD's lower clamp and importance probabilities
STREAM_AMM_SAMPLES = 11  # sampled column/row pairs of approx_matmul
STREAM_MULTIROUND_PLANES = 12  # hyperplanes of every round of the multi-round LSH heavy part
STREAM_MULTIROUND_SAMPLES = 13  # per-query light samples of the multi-round heavy part


def as_seed_sequence(seed: SeedLike, name: str = "seed") -> np.random.SeedSequence:
    """Normalise ``seed``: an int >= 0 or a SeedSequence; None draws fresh OS entropy (the
    resulting SeedSequence's ``entropy`` reproduces it)."""
    if isinstance(seed, np.random.SeedSequence):
        return seed
    if seed is None:
        return np.random.SeedSequence()
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, numbers.Integral):
        raise TypeError(
            f"{name} must be a non-negative int, a numpy.random.SeedSequence or None, "
            f"got {type(seed).__name__}"
        )
    if seed < 0:
        raise ValueError(f"{name} must be non-negative, got {seed}")
    return np.random.SeedSequence(int(seed))


def resolve_rng(
    rng: RngLike, seed: SeedLike | _Unset = UNSET, *, stacklevel: int = 3
) -> np.random.SeedSequence:
    """The SeedSequence of an ``rng=`` argument (SPEC 7), honouring the deprecated ``seed=``.

    * an int >= 0 or a SeedSequence: used as is (the same value gives the same sketch);
    * a :class:`numpy.random.Generator`: four 32-bit words are drawn from it (advancing it, as
      any consumer of a Generator does) and become the entropy of a SeedSequence, so the same
      generator state gives the same result;
    * None: fresh OS entropy (kept in the returned SeedSequence's ``entropy``).

    ``seed`` is the deprecated alias of ``rng``: it emits a DeprecationWarning, and passing
    both is a TypeError.
    """
    rng = rng_alias(rng, seed, stacklevel=stacklevel + 1)
    if isinstance(rng, np.random.Generator):
        words = rng.integers(0, 2**32, size=4, dtype=np.uint64)
        return np.random.SeedSequence([int(w) for w in words])
    if isinstance(rng, np.random.BitGenerator | np.random.RandomState):
        raise TypeError(
            "rng must be an int, a numpy.random.SeedSequence, a numpy.random.Generator or "
            f"None, got {type(rng).__name__} (wrap it: numpy.random.Generator(...))"
        )
    return as_seed_sequence(rng, "rng")


_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


def external_stacklevel() -> int:
    """The ``stacklevel`` for :func:`resolve_rng` (or ``warnings.warn``) called from the calling
    function that makes a warning point at the first frame outside the sketchla package (the
    user's line), however many sketchla frames lie between."""
    level = 2  # the caller of this function, seen from inside resolve_rng
    frame = sys._getframe(1)
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE_DIR):
        frame = frame.f_back  # type: ignore[assignment]
        level += 1
    return level


def recorded_rng(
    rng: RngLike, seed: object, seed_sequence: np.random.SeedSequence
) -> int | np.random.SeedSequence:
    """What an object built from ``rng=`` (or the deprecated ``seed=``) records as its ``rng``:
    the int or SeedSequence as given, else (None, a Generator) the SeedSequence derived from
    it, so that ``repr`` and copies rebuild the same object."""
    given = rng if isinstance(seed, _Unset) else seed
    if isinstance(given, numbers.Integral) and not isinstance(given, (bool, np.bool_)):
        return int(given)
    if isinstance(given, np.random.SeedSequence):
        return given
    return seed_sequence


def rng_repr(rng: RngLike, seed_sequence: np.random.SeedSequence) -> str:
    """Text for ``rng=`` in a repr that rebuilds the same object: the int as given, else the
    SeedSequence's entropy (for None or a Generator, the entropy that was drawn)."""
    if isinstance(rng, numbers.Integral) and not isinstance(rng, (bool, np.bool_)):
        return repr(int(rng))
    ss = seed_sequence
    if not ss.spawn_key and ss.pool_size == 4 and isinstance(ss.entropy, int):
        return repr(ss.entropy)
    return f"SeedSequence({ss.entropy!r}, spawn_key={tuple(ss.spawn_key)!r})"


def rng_alias(rng: RngLike, seed: SeedLike | _Unset = UNSET, *, stacklevel: int = 3) -> RngLike:
    """``rng`` after honouring the deprecated ``seed=`` alias (DeprecationWarning; both given
    is a TypeError), *without* converting it: for functions that use randomness only in some
    modes and must not advance a Generator they do not draw from."""
    if isinstance(seed, _Unset):
        return rng
    if rng is not None:
        raise TypeError("pass rng= only: seed= is its deprecated alias, got both")
    warnings.warn(
        "seed= is deprecated and will be removed; pass rng= instead (SPEC 7)",
        DeprecationWarning,
        stacklevel=stacklevel,
    )
    return seed


def child_seed(seed: SeedLike, k: int) -> np.random.SeedSequence:
    """The k-th child of ``seed`` as a pure function (``SeedSequence.spawn`` would mutate the
    caller's object, so two calls with one SeedSequence would differ). Equal to
    ``SeedSequence(seed).spawn(k + 1)[k]`` for a fresh SeedSequence."""
    ss = as_seed_sequence(seed)
    return np.random.SeedSequence(ss.entropy, spawn_key=(*ss.spawn_key, k), pool_size=ss.pool_size)


def _fix_gamma(g: int) -> int:
    """Odd gamma with enough bit transitions (SplittableRandom.mixGamma's rule)."""
    g |= 1
    if bin(g ^ (g >> 1)).count("1") < 24:
        g ^= 0xAAAAAAAAAAAAAAAA
    return g


@dataclass(frozen=True)
class Stream:
    """One random stream: ``key`` and odd ``gamma`` (uint64). Entry i of any variate is a pure
    function of (key, gamma, i); see the module docstring for the definitions."""

    key: np.uint64
    gamma: np.uint64

    @staticmethod
    def _index(index) -> tuple[np.ndarray, tuple[int, ...]]:
        idx = np.asarray(index)
        if idx.dtype.kind not in "iu":
            raise TypeError(f"index must be an integer array, got dtype {idx.dtype}")
        if idx.size and idx.min() < 0:
            raise ValueError("index must be non-negative")
        return np.ascontiguousarray(idx.ravel(), dtype=np.int64), idx.shape

    def uint64(self, index) -> np.ndarray:
        """The raw 64-bit outputs at ``index``."""
        idx, shape = self._index(index)
        return _u64_many(self.key, self.gamma, idx, work=8 * idx.size).reshape(shape)

    def integers(self, index, n: int) -> np.ndarray:
        """Integers in [0, n) at ``index`` (int64)."""
        idx, shape = self._index(index)
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        return _below_many(self.key, self.gamma, idx, n, work=8 * idx.size).reshape(shape)

    def signs(self, index) -> np.ndarray:
        """+-1.0 at ``index`` (float64)."""
        idx, shape = self._index(index)
        return _sign_many(self.key, self.gamma, idx, work=8 * idx.size).reshape(shape)

    def uniform(self, index) -> np.ndarray:
        """Uniform [0, 1) floats at ``index``."""
        idx, shape = self._index(index)
        return _uniform_many(self.key, self.gamma, idx, work=8 * idx.size).reshape(shape)

    def normal(self, index) -> np.ndarray:
        """Standard normal floats at ``index``."""
        idx, shape = self._index(index)
        return _normal_many(self.key, self.gamma, idx, work=8 * idx.size).reshape(shape)

    def sample_without_replacement(self, k: int, n: int) -> np.ndarray:
        """``k`` distinct integers of [0, n) in ascending order (uniform over k-subsets)."""
        if not 0 <= k <= n:
            raise ValueError(f"need 0 <= k <= n, got k={k}, n={n}")
        if n <= _MASK_RATIO * max(k, 1):
            return _floyd_sample_mask(self.key, self.gamma, k, n)
        return _floyd_sample_set(self.key, self.gamma, k, n)  # same set, O(k) memory


def stream(seed: SeedLike, stream_id: int) -> Stream:
    """The stream ``stream_id`` of ``seed`` (see the module docstring)."""
    ss = as_seed_sequence(seed)
    child = np.random.SeedSequence(
        ss.entropy, spawn_key=(*ss.spawn_key, int(stream_id)), pool_size=ss.pool_size
    )
    key, gamma = (int(v) for v in child.generate_state(2, dtype=np.uint64))
    return Stream(np.uint64(key), np.uint64(_fix_gamma(gamma)))
