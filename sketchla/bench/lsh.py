"""``sketchla bench lsh``: SimHash + sortLSH throughput, and ApproxD against exact row sums.

Compared in one interleaved run per phase:

* hashing + Gray-order sort of n rows (``SimHash.sort_order``: fused projection/sign/pack
  kernel, counting sort over 2^r buckets) vs the plain numpy composition (matmul, sign, pack,
  prefix-XOR, stable argsort), float32, r = 7 bits;
* :func:`sketchla.approx_rowsums` (defaults b = m = 256, and m = ``m``) vs the exact blockwise
  log-sum-exp of the n_rowsums x n_rowsums logits (1024 query rows per block, float32), on the
  "flat" instance; the maximum and median relative error of D (|D~/D - 1|) is reported for the
  flat, planted, sink and large-norm instances of :mod:`sketchla.testing.attention_instances`
  (logits scaled by 1/sqrt(d)).

* the multi-round heavy part (``keys=MultiRoundLSH()``, ``MULTIROUND`` below: T = 32 rounds of
  b = 16-key code-aligned windows, m = 512 per-query light samples) on the same instances,
  with the Horvitz-Thompson light sum and with the cross-fitted quadratic control variate
  (``rest=ControlVariate(m)``), which is also timed at the default sizes.

Goal of issue 4 (2-core machine): approx_rowsums >= 20x faster than exact at n = 65536, d = 64
with median relative error <= 5% on flat and planted.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..attention import ControlVariate, MultiRoundLSH, Uniform, approx_rowsums
from ..lsh import SimHash, inverse_gray_code
from ..testing.attention_instances import attention_instance
from ._timing import Case, Comparison, compare, run_interleaved

#: sizes of ``sketchla bench lsh --quick``
QUICK = {"n": 2**16, "d": 16, "n_rowsums": 4096}

N_BITS = 7
#: the multi-round configuration compared beside the sortLSH rows
MULTIROUND: dict[str, Any] = {
    "keys": MultiRoundLSH(block_size=16, n_rounds=32),
    "rest": Uniform(512, replace=False),
}
MULTIROUND_CV: dict[str, Any] = {**MULTIROUND, "rest": ControlVariate(512, replace=False)}
COMPARISONS = [
    Comparison(
        "hash + sort vs numpy composition",
        "simhash sort_order",
        "numpy hash+argsort",
        None,
        "speed-up",
    ),
    Comparison(
        "approx_rowsums (b=m=256) vs exact", "approx_rowsums default", "exact lse", 20.0, "speed-up"
    ),
    Comparison(
        "approx_rowsums (b=256, m=M) vs exact", "approx_rowsums m=M", "exact lse", 20.0, "speed-up"
    ),
    Comparison(
        "approx_rowsums (b=m=256) + control variate vs exact",
        "approx_rowsums default cv",
        "exact lse",
        20.0,
        "speed-up",
    ),
    Comparison(
        "approx_rowsums multiround (b=16, T=32, m=512) vs exact",
        "approx_rowsums multiround",
        "exact lse",
        20.0,
        "speed-up",
    ),
    Comparison(
        "approx_rowsums multiround + control variate vs exact",
        "approx_rowsums multiround cv",
        "exact lse",
        20.0,
        "speed-up",
    ),
]


def numpy_sort_order(X: np.ndarray, planes: np.ndarray) -> np.ndarray:
    """The baseline: what a user writes with numpy alone."""
    bits = (X @ planes > 0).astype(np.uint64)
    codes = (bits << np.arange(planes.shape[1], dtype=np.uint64)).sum(axis=1, dtype=np.uint64)
    return np.argsort(inverse_gray_code(codes), kind="stable")


def exact_log_rowsums(Q: np.ndarray, K: np.ndarray, rows: int = 1024) -> np.ndarray:
    """Exact log D in query blocks (O(rows * n) memory), max-shifted log-sum-exp."""
    out = np.empty(Q.shape[0], dtype=Q.dtype)
    for s in range(0, Q.shape[0], rows):
        S = Q[s : s + rows] @ K.T
        mx = S.max(axis=1, keepdims=True)
        S -= mx
        np.exp(S, out=S)
        out[s : s + rows] = np.log(S.sum(axis=1)) + mx[:, 0]
    return out


def _instance(kind: str, n: int, d: int, seed: int):
    Q, K, _ = attention_instance(kind, n, d, d_v=1, rng=seed, dtype=np.float32)
    return Q * np.float32(1 / np.sqrt(d)), K


def run(
    n: int = 2**20,
    d: int = 64,
    m: int = 1024,
    repeat: int = 5,
    seed: int = 0,
    n_rowsums: int = 65536,
    progress=None,
) -> dict:
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d), dtype=np.float32)
    h = SimHash(d, N_BITS, rng=seed)
    planes = h.planes.astype(np.float32)
    Q, K = _instance("flat", n_rowsums, d, seed)
    label = f"approx_rowsums m={m}"
    cases = [
        Case("simhash sort_order", lambda: h.sort_order(X)),
        Case("numpy hash+argsort", lambda: numpy_sort_order(X, planes)),
        Case("approx_rowsums default", lambda: approx_rowsums(Q, K, rng=seed)),
        Case(label, lambda: approx_rowsums(Q, K, rest=Uniform(m), rng=seed)),
        Case(
            "approx_rowsums default cv",
            lambda: approx_rowsums(Q, K, rest=ControlVariate(256), rng=seed),
        ),
        Case("approx_rowsums multiround", lambda: approx_rowsums(Q, K, rng=seed, **MULTIROUND)),
        Case(
            "approx_rowsums multiround cv",
            lambda: approx_rowsums(Q, K, rng=seed, **MULTIROUND_CV),
        ),
        # seconds per call at full size: fewer repetitions
        Case("exact lse", lambda: exact_log_rowsums(Q, K), repeat=min(repeat, 2)),
    ]
    timed = run_interleaved(cases, repeat, progress)
    timed["approx_rowsums m=M"] = timed[label]
    same = np.array_equal(h.sort_order(X), numpy_sort_order(X, planes))
    sizes = {
        "n (hash)": n,
        "d": d,
        "n_bits": N_BITS,
        "n (rowsums)": n_rowsums,
        "M": m,
        "repeat": repeat,
        "dtype": "float32",
        "hash+sort rows/s": f"{n / timed['simhash sort_order'].median:.3g}",
        "same order as numpy": same,
    }
    for kind in ("flat", "planted", "sink", "large_norm"):
        if progress:
            progress(f"errors on {kind}")
        Qi, Ki = (Q, K) if kind == "flat" else _instance(kind, n_rowsums, d, seed)
        exact = exact_log_rowsums(Qi, Ki).astype(np.float64)
        for name, kwargs in (
            ("m=256", {"rest": Uniform(256)}),
            ("m=256 cv", {"rest": ControlVariate(256)}),
            (f"m={m}", {"rest": Uniform(m)}),
            ("multiround", MULTIROUND),
            ("multiround cv", MULTIROUND_CV),
        ):
            est = approx_rowsums(Qi, Ki, rng=seed, **kwargs)
            assert isinstance(est, np.ndarray)
            rel = np.abs(np.expm1(est.astype(np.float64) - exact))
            sizes[f"{kind} {name} rel err median/max"] = f"{np.median(rel):.3f}/{rel.max():.2f}"
    rows = compare(timed, COMPARISONS)
    return {"sizes": sizes, "cases": timed, "rows": rows}
