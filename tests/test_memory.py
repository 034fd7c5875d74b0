"""Peak memory of exact and hyper attention stays O(n (d + d_v) + tile), never O(n^2).

Measured with tracemalloc, which traces NumPy's allocations (the inputs are allocated before
tracing starts, so the peak is what the solver itself allocates). d = d_v = 64, float32.

* ``hyper_attention`` at n = 65536 (about 1 s): the n x n logits would be 16 GiB; the solver
  holds sorted copies of Q, K, V and chunks of about 2^22 logits. Measured peak 113 MiB;
  bound ``4 n (d + d_v) 4 B + 2^22 * 16 B`` = 192 MiB. Also linear in n: the peak at n grows
  by at most 4.5x from n/4 (16x if it were quadratic).
* ``exact_attention`` at n = 32768 (about 5 s; n = 65536 takes about 23 s on the 2-core test
  machine, so the smaller n is used): the n x n logits would be 4 GiB; the blocked pass holds
  one block_q x block_k tile (1024 x 4096 float32 = 16 MiB), the output and O(block_q d_v)
  accumulators. Measured peak 34 MiB; bound ``2 n (d + d_v) 4 B + tile + 4 MiB`` = 52 MiB.
"""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

import sketchla
from sketchla.attention.exact import BLOCK_K, BLOCK_Q

D = D_V = 64


def qkv(n, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((n, c), dtype=np.float32) for c in (D, D, D_V)]


def peak_bytes(fn, *args, **kwargs) -> int:
    tracemalloc.start()
    try:
        out = fn(*args, **kwargs)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert np.isfinite(out).all()
    return peak


@pytest.mark.slow
def test_hyper_attention_peak_memory_is_linear_at_n_65536():
    n = 65536
    peak = peak_bytes(sketchla.hyper_attention, *qkv(n), rng=0)
    bound = 4 * n * (D + D_V) * 4 + 2**22 * 16
    assert peak < bound, f"peak {peak / 2**20:.1f} MiB > bound {bound / 2**20:.1f} MiB"
    assert peak < n * n * 4 / 64  # far below the n x n float32 matrix (16 GiB)
    small = peak_bytes(sketchla.hyper_attention, *qkv(n // 4), rng=0)
    assert peak < 4.5 * small, f"peak {peak / 2**20:.1f} MiB vs {small / 2**20:.1f} at n/4"


@pytest.mark.slow
def test_exact_attention_peak_memory_is_one_tile_at_n_32768():
    n = 32768
    peak = peak_bytes(sketchla.exact_attention, *qkv(n))
    tile = BLOCK_Q * BLOCK_K * 4
    bound = 2 * n * (D + D_V) * 4 + tile + 2**22
    assert peak < bound, f"peak {peak / 2**20:.1f} MiB > bound {bound / 2**20:.1f} MiB"
    assert peak < n * n * 4 / 64  # far below the n x n float32 matrix (4 GiB)
